import { Type } from "@sinclair/typebox";

/** Shared field shapes. Every number is bounded: JSON allows 1e400, which would become Infinity. */
export const Id = (description?: string) =>
  Type.Integer({
    minimum: 1,
    maximum: Number.MAX_SAFE_INTEGER,
    ...(description ? { description } : {}),
  });

export const Measurement = (description: string) =>
  Type.Number({ minimum: -1e12, maximum: 1e12, description });

export const Timestamp = (description = "ISO 8601; UTC in answers") =>
  Type.String({ format: "date-time", maxLength: 40, description });

export const IdList = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });
