import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { invalid } from "../../platform/errors.ts";
import { Timestamp } from "../../platform/schema-types.ts";
import { isoTimeParts } from "../../platform/validation.ts";
import { axisSampleFields } from "../axis-data/axis-sample-fields.ts";

/** The measured fields of an axis sample, in the seed's order. */
export const historyFields = axisSampleFields;
export type HistoryField = (typeof historyFields)[number];

export const historyLimits = {
  /** The longest window one request may cover. */
  maxWindowDays: 400,
  maxMachineIds: 1000,
  maxAxisNames: 100,
  maxPoints: 100_000,
  /** `minutes` may cover the whole maximum window. */
  maxMinutes: 400 * 24 * 60,
  defaultMinutes: 15,
} as const;

/** The refusal of `fields` given as an empty list (absent means every field). */
export const emptyFields = "This list may not be empty; leave fields out for every field.";

/** What the service takes: parameters already split into lists and parsed, not yet bounded. */
export interface HistoryInput {
  machineIds?: number[] | undefined;
  axisNames?: string[] | undefined;
  minutes?: number | undefined;
  from?: Date | undefined;
  to?: Date | undefined;
  /** The digits of `from` and `to` past the second, as given (`"000400"`): a Date keeps three. */
  fromFraction?: string | undefined;
  toFraction?: string | undefined;
  fields?: string[] | undefined;
  maxPoints?: number | undefined;
}

export type HistoryFormat = "json" | "csv";

// ------------------------------------------------------------------- parameters

const listDescription = (what: string) =>
  `${what}: repeat the parameter, give a comma list, or (JSON body) an array`;

const Format = Type.Union([Type.Literal("json"), Type.Literal("csv")], {
  description: "`json` (default): an array of rows; `csv`: a header line, then one line per row",
});
const Minutes = Type.Integer({
  minimum: 1,
  maximum: historyLimits.maxMinutes,
  description: `Window ending now (or ending at \`to\`, or starting at \`from\`); default ${historyLimits.defaultMinutes}`,
});
const MaxPoints = Type.Integer({
  minimum: 1,
  maximum: historyLimits.maxPoints,
  description:
    "Downsample each series (one per machine × axis) to at most this many time buckets; each row then carries F (average), F_min, F_max per field, the bucket start and `samples`",
});
const From = Timestamp("Window start, inclusive (ISO 8601)");
const To = Timestamp("Window end, exclusive (ISO 8601)");

const textList = (description: string, maxItems: number) =>
  Type.Array(Type.String({ maxLength: 20_000 }), { maxItems, description });

/** Query string: Ajv turns a single value into a one-item list; commas are split afterwards. */
export const HistoryQueryString = Type.Object(
  {
    machine_id: Type.Optional(
      textList(listDescription("Machines; absent = all"), historyLimits.maxMachineIds),
    ),
    axis_name: Type.Optional(
      textList(listDescription("Axis names; absent = all"), historyLimits.maxAxisNames),
    ),
    minutes: Type.Optional(Minutes),
    from: Type.Optional(From),
    to: Type.Optional(To),
    fields: Type.Optional(
      textList(listDescription(`Subset of ${historyFields.join(", ")}; absent = all`), 50),
    ),
    max_points: Type.Optional(MaxPoints),
    format: Type.Optional(Format),
  },
  { additionalProperties: false },
);

const bodyList = (item: TSchema, description: string, maxItems: number) =>
  Type.Union([item, Type.String({ maxLength: 20_000 }), Type.Array(item, { maxItems })], {
    description,
  });

/** JSON body of POST: the same names; lists as arrays (a single value or a comma list also works). */
export const HistoryBody = Type.Object(
  {
    machine_id: Type.Optional(
      bodyList(
        Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
        listDescription("Machines; absent = all"),
        historyLimits.maxMachineIds,
      ),
    ),
    axis_name: Type.Optional(
      bodyList(
        Type.String({ maxLength: 32 }),
        listDescription("Axis names; absent = all"),
        historyLimits.maxAxisNames,
      ),
    ),
    minutes: Type.Optional(Minutes),
    from: Type.Optional(From),
    to: Type.Optional(To),
    fields: Type.Optional(
      bodyList(
        Type.String({ maxLength: 100 }),
        listDescription(`Subset of ${historyFields.join(", ")}; absent = all`),
        50,
      ),
    ),
    max_points: Type.Optional(MaxPoints),
    format: Type.Optional(Format),
  },
  { additionalProperties: false },
);

export type HistoryParams = Static<typeof HistoryQueryString> | Static<typeof HistoryBody>;

/** Splits lists however they came (array, repeated parameter, comma list) and parses them. */
export function parseHistoryParams(params: HistoryParams): {
  input: HistoryInput;
  format: HistoryFormat;
} {
  const errors: Record<string, string[]> = {};
  const fail = (field: string, reason: string) => {
    const reasons = errors[field] ?? [];
    if (!reasons.includes(reason)) reasons.push(reason);
    errors[field] = reasons;
  };
  const list = (field: string, value: unknown, maxItems: number): string[] | undefined => {
    if (value === undefined) return undefined;
    const items = (Array.isArray(value) ? value : [value])
      .flatMap((item) => String(item).split(","))
      .map((item) => item.trim());
    if (items.length > maxItems)
      fail(field, `Ensure this field has no more than ${maxItems} elements.`);
    return items;
  };

  const machineIds = list("machine_id", params.machine_id, historyLimits.maxMachineIds)?.map(
    (item) => {
      const id = Number(item);
      if (!/^\d{1,16}$/.test(item) || id < 1 || id > Number.MAX_SAFE_INTEGER) {
        fail("machine_id", "A valid integer is required.");
      }
      return id;
    },
  );
  const axisNames = list("axis_name", params.axis_name, historyLimits.maxAxisNames);
  for (const name of axisNames ?? []) {
    if (!/^[A-Za-z][A-Za-z0-9_]{0,31}$/.test(name)) fail("axis_name", "Enter a valid axis name.");
  }
  const fields = list("fields", params.fields, 50);
  if (fields?.length === 0) fail("fields", emptyFields);
  for (const field of fields ?? []) {
    if (!(historyFields as readonly string[]).includes(field)) {
      fail(
        "fields",
        `Unknown field "${field.slice(0, 50)}". Choose from: ${historyFields.join(", ")}.`,
      );
    }
  }
  if (Object.keys(errors).length > 0) throw invalid(errors);
  return {
    input: {
      machineIds: machineIds && [...new Set(machineIds)],
      axisNames: axisNames && [...new Set(axisNames)],
      minutes: params.minutes,
      from: params.from === undefined ? undefined : new Date(params.from),
      to: params.to === undefined ? undefined : new Date(params.to),
      fromFraction: params.from === undefined ? undefined : fractionOf(params.from),
      toFraction: params.to === undefined ? undefined : fractionOf(params.to),
      fields,
      maxPoints: params.max_points,
    },
    format: params.format ?? "json",
  };
}

// ------------------------------------------------------------------- answers

const seriesColumns = {
  axis: Type.Integer({ description: "axis_id" }),
  machine_id: Type.Integer(),
  machine_name: Type.String(),
  axis_name: Type.String(),
};

const optionalFields = (suffix: string, describe: (field: string) => string) =>
  Object.fromEntries(
    historyFields.map((field) => [
      `${field}${suffix}`,
      Type.Optional(
        field === "homed"
          ? Type.Boolean({ description: describe(field) })
          : Type.Number({ description: describe(field) }),
      ),
    ]),
  );

/** A raw sample: the seed's axis data row, with only the requested fields. */
export const HistorySample = Type.Object(
  {
    axis_data_id: Type.Integer(),
    ...seriesColumns,
    ...optionalFields("", (field) => field),
    update_timestamp: Type.String({ format: "date-time" }),
  },
  { title: "Raw sample (no max_points)" },
);

/** A time bucket of one series when `max_points` is given. */
export const HistoryBucket = Type.Object(
  {
    ...seriesColumns,
    ...optionalFields("", (field) =>
      field === "homed" ? "true if homed throughout the bucket" : `average ${field} in the bucket`,
    ),
    ...optionalFields("_min", (field) =>
      field === "homed" ? "false if ever not homed in the bucket" : `smallest ${field}`,
    ),
    ...optionalFields("_max", (field) =>
      field === "homed" ? "true if ever homed in the bucket" : `largest ${field}`,
    ),
    update_timestamp: Type.String({ format: "date-time", description: "bucket start" }),
    samples: Type.Integer({ description: "samples in the bucket" }),
  },
  { title: "Downsampled bucket (max_points given)" },
);

export const HistoryAnswer = Type.Union([Type.Array(HistorySample), Type.Array(HistoryBucket)], {
  description:
    "Ordered by axis, then time. Raw samples without max_points; time buckets with it (empty buckets are left out). format=csv gives the same columns as text/csv.",
});

/** The digits of a valid ISO 8601 time past the second. */
function fractionOf(time: string): string {
  return isoTimeParts(time)?.[7] ?? "";
}
