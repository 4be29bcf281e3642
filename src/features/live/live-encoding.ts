import { Packr } from "msgpackr";

/**
 * How a subscriber's rows are sent. `json` is the seed's shape (an array of row objects in a text
 * frame); `*-columns` sends one array per field instead of one object per row, so field names are
 * not repeated; `msgpack*` sends the same message as MessagePack in a binary frame.
 */
export const liveEncodings = ["json", "json-columns", "msgpack", "msgpack-columns"] as const;
export type LiveEncoding = (typeof liveEncodings)[number];

/** One WebSocket frame's payload, encoded once and sent as is to every socket that wants it. */
export interface Frame {
  data: Buffer;
  binary: boolean;
}

/** A message carrying rows: `type`, `seq` and flags, then `data` (rows) or `columns`. */
export interface RowsMessage {
  type: "axis_data" | "tool_data" | "tool_usage";
  seq: number;
  snapshot?: true;
  reset?: true;
  /** Keys of the series that no longer have a value (see `encodeMessages`). */
  deleted?: number[];
  rows: Record<string, unknown>[];
  /** The rows' fields, in order: the columns' names. */
  fields: readonly string[];
}

// Plain MessagePack maps (no msgpackr records or extensions), so any MessagePack decoder reads it;
// numbers that are not integers stay float64, so values arrive exactly as in JSON.
const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeRows(message: RowsMessage, encoding: LiveEncoding): Frame {
  const { rows, fields, ...head } = message;
  const body =
    encoding === "json" || encoding === "msgpack"
      ? { ...head, data: rows }
      : { ...head, columns: columnsOf(rows, fields) };
  return encoding === "json" || encoding === "json-columns"
    ? { data: Buffer.from(JSON.stringify(body)), binary: false }
    : { data: packr.pack(body), binary: true };
}

function columnsOf(
  rows: Record<string, unknown>[],
  fields: readonly string[],
): Record<string, unknown[]> {
  const columns: Record<string, unknown[]> = {};
  for (const field of fields) {
    const column = new Array<unknown>(rows.length);
    for (let i = 0; i < rows.length; i++) column[i] = rows[i]![field];
    columns[field] = column;
  }
  return columns;
}
