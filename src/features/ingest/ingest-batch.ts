/** A batch as it arrives, from JSON, NDJSON or an in-process source. */
export interface RawBatch {
  axis_data?: unknown;
  tool_data?: unknown;
  tool_usage?: unknown;
}

export type RowKind = "axis_data" | "tool_data" | "tool_usage";
export const rowKinds: readonly RowKind[] = ["axis_data", "tool_data", "tool_usage"];

/** One validated axis sample, resolved to its axis. `time` keeps the client's precision. */
export interface AxisSampleRow {
  axisId: number;
  machineId: number;
  axisName: string;
  time: string;
  timeMs: number;
  actualPosition: number;
  targetPosition: number;
  velocity: number;
  acceleration: number;
  homed: boolean;
}

export interface ToolRow {
  toolId: number;
  machineId: number;
  time: string;
  timeMs: number;
  toolOffset: number;
  feedrate: number;
}

export interface ToolUsageRow {
  machineId: number;
  toolInUse: number;
  time: string;
  timeMs: number;
}

export interface ValidBatch {
  axis: AxisSampleRow[];
  tools: ToolRow[];
  toolUsage: ToolUsageRow[];
}

/**
 * Epoch milliseconds of a UTC ISO 8601 time (`…Z`), with its microseconds as the fraction. Rows
 * compare their times by this, so it is taken from the text by whichever path a row came (ingest,
 * or read back from the database) and the same instant gives the same number.
 */
export function epochMs(utcIso: string): number {
  const dot = utcIso.indexOf(".");
  return withMicros(Date.parse(utcIso), dot < 0 ? "" : utcIso.slice(dot + 1, utcIso.length - 1));
}

/** `ms` (whole milliseconds, as Date.parse gives them) with the digits of `fraction` past them. */
export function withMicros(ms: number, fraction: string): number {
  return ms + Number(fraction.slice(3).padEnd(3, "0")) / 1000;
}

export const rowCount = (batch: ValidBatch): number =>
  batch.axis.length + batch.tools.length + batch.toolUsage.length;

export interface RowProblem {
  kind: RowKind;
  index: number;
  field: string;
  reason: string;
}

export interface IngestResult {
  /** Rows committed now or already stored before (a retried batch). */
  accepted: number;
  /** Of those, rows that were already stored and were ignored. */
  duplicates: number;
}
