import type uPlot from "uplot";
import type { Query } from "../api/client.ts";
import { breakAtGaps, bucketWidth } from "./chart-gaps.ts";
import type { Quantity } from "./units.ts";

/** The fields a history chart can plot (`homed` is a flag, not a curve; the samples' CSV has it). */
export const historyFields = [
  { name: "actual_position", label: "Actual position", quantity: "position" },
  { name: "target_position", label: "Target position", quantity: "position" },
  { name: "distance_to_go", label: "Distance to go", quantity: "position" },
  { name: "velocity", label: "Velocity", quantity: "velocity" },
  { name: "acceleration", label: "Acceleration", quantity: "acceleration" },
] as const satisfies readonly { name: string; label: string; quantity: Quantity }[];

export type HistoryField = (typeof historyFields)[number]["name"];

export const historyWindows = [
  { id: "15m", label: "Last 15 min", minutes: 15 },
  { id: "1h", label: "Last 1 h", minutes: 60 },
  { id: "24h", label: "Last 24 h", minutes: 1440 },
  { id: "custom", label: "Custom", minutes: 0 },
] as const;

export type WindowId = (typeof historyWindows)[number]["id"];

/** One history question, with its window already resolved to instants (epoch ms). */
export interface HistoryRequest {
  machines: number[];
  axes: string[];
  fields: HistoryField[];
  from: number;
  to: number;
  maxPoints: number;
}

/**
 * The query string of `/api/axis-data/` for a request: the buckets charted (JSON, or the same as
 * CSV), or (`samples`) every sample of the window as CSV, with `homed`, which no chart shows.
 */
export function historyQuery(request: HistoryRequest, csv?: "buckets" | "samples"): Query {
  const samples = csv === "samples";
  return {
    machine_id: request.machines,
    axis_name: request.axes,
    fields: samples ? [...request.fields, "homed"] : request.fields,
    from: new Date(request.from).toISOString(),
    to: new Date(request.to).toISOString(),
    max_points: samples ? undefined : request.maxPoints,
    format: csv ? "csv" : undefined,
  };
}

/** A downsampled row of `/api/axis-data/`: per field F its average `F`, `F_min` and `F_max`. */
export type HistoryRow = {
  axis: number;
  machine_id: number;
  machine_name: string;
  axis_name: string;
  update_timestamp: string;
  samples: number;
} & Record<string, number | string | boolean | null>;

export interface HistorySeries {
  /** "machine name · axis". */
  label: string;
  machineId: number;
  axisName: string;
}

/** Per field, uPlot columns: time, then for each series its average, min and max. */
export interface HistoryChartData {
  series: HistorySeries[];
  byField: Map<HistoryField, uPlot.AlignedData>;
  buckets: number;
  samples: number;
  /** The width of the answer's buckets in ms, as the server stated it. */
  bucketMs: number | undefined;
}

const asNumber = (value: unknown): number | null =>
  typeof value === "number" && Number.isFinite(value) ? value : null;

/**
 * Aligns every series' buckets on one time column. A bucket one series lacks is a null (a gap,
 * not a zero), and so is a period where every series lacks them (Spindle stopped, say): uPlot
 * draws a gap there instead of a straight line across.
 */
export function chartData(
  rows: readonly HistoryRow[],
  fields: readonly HistoryField[],
  bucketMs: number | undefined,
) {
  const seriesIndex = new Map<number, number>();
  const series: HistorySeries[] = [];
  const times = new Set<number>();
  let samples = 0;
  for (const row of rows) {
    if (!seriesIndex.has(row.axis)) {
      seriesIndex.set(row.axis, series.length);
      series.push({
        label: `${row.machine_name} · ${row.axis_name}`,
        machineId: row.machine_id,
        axisName: row.axis_name,
      });
    }
    times.add(Date.parse(row.update_timestamp));
    samples += Number(row.samples) || 0;
  }
  const time = [...times].sort((a, b) => a - b);
  const slot = new Map(time.map((t, i) => [t, i]));
  const seconds = time.map((t) => t / 1000);
  // Gaps are judged by the data's own cadence, not the stated width: samples every 20 s in
  // buckets of 10 s are a sparse series, not a gap at every step.
  const width = bucketWidth(seconds);
  const byField = new Map<HistoryField, uPlot.AlignedData>();
  for (const field of fields) {
    const columns: (number | null)[][] = [];
    for (let i = 0; i < series.length * 3; i++) columns.push(new Array(time.length).fill(null));
    for (const row of rows) {
      const s = seriesIndex.get(row.axis)!;
      const at = slot.get(Date.parse(row.update_timestamp))!;
      columns[s * 3]![at] = asNumber(row[field]);
      columns[s * 3 + 1]![at] = asNumber(row[`${field}_min`]);
      columns[s * 3 + 2]![at] = asNumber(row[`${field}_max`]);
    }
    byField.set(field, breakAtGaps(seconds, columns, width));
  }
  return {
    series,
    byField,
    buckets: rows.length,
    samples,
    bucketMs,
  } satisfies HistoryChartData;
}

/** `datetime-local` text (the browser's zone) to epoch ms, or NaN. */
export const fromLocalInput = (text: string) => (text ? new Date(text).getTime() : Number.NaN);

/** Epoch ms to `datetime-local` text in the browser's zone, to the second. */
export function toLocalInput(epochMs: number): string {
  const d = new Date(epochMs);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** "15 min", "2.5 h", "3 d": a window's length for people. */
export function describeSpan(ms: number): string {
  const seconds = ms / 1000;
  if (seconds < 120) return `${+seconds.toFixed(1)} s`;
  if (seconds < 7200) return `${+(seconds / 60).toFixed(1)} min`;
  if (seconds < 172_800) return `${+(seconds / 3600).toFixed(1)} h`;
  return `${+(seconds / 86_400).toFixed(1)} d`;
}

/** "250 ms", "1.5 s", "2 min": a bucket's width, exact where a window's length is rounded. */
export function describeWidth(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${+(ms / 1000).toFixed(3)} s`;
  return describeSpan(ms);
}

/**
 * What the history page shows, as written in its address, so a view can be bookmarked, shared
 * and reloaded: `?machine_id=1,2&axis_name=X,Y&fields=actual_position&window=1h`, or an absolute
 * span (a custom window, or a zoom) as `&from=…&to=…` in ISO 8601.
 */
export interface HistoryView {
  machines: number[];
  axes: string[];
  fields: HistoryField[];
  window: { relative: Exclude<WindowId, "custom"> } | { from: number; to: number };
}

/** Every value of a list parameter, whether repeated (`?a=1&a=2`) or comma-separated. */
function listParam(params: URLSearchParams, name: string): string[] {
  return params
    .getAll(name)
    .flatMap((value) => value.split(","))
    .map((value) => value.trim())
    .filter(Boolean);
}

/**
 * Reads a view from an address. Anything unknown or malformed (a machine the user cannot see, a
 * field that does not exist, an unparsable date) is left out rather than refused: the page shows
 * the rest, falling back to the first machine, the first axis, the actual position and the last
 * 15 minutes.
 */
export function viewFromSearch(
  params: URLSearchParams,
  known: { machines: readonly number[]; axisNames: readonly string[] },
): HistoryView {
  const machines = [
    ...new Set(
      listParam(params, "machine_id")
        .map(Number)
        .filter((id) => known.machines.includes(id)),
    ),
  ];
  const axes = [
    ...new Set(listParam(params, "axis_name").filter((a) => known.axisNames.includes(a))),
  ];
  const fieldNames: readonly string[] = historyFields.map((f) => f.name);
  const fields = [
    ...new Set(listParam(params, "fields").filter((f) => fieldNames.includes(f))),
  ] as HistoryField[];
  const from = Date.parse(params.get("from") ?? "");
  const to = Date.parse(params.get("to") ?? "");
  const relative = historyWindows.find((w) => w.id === params.get("window") && w.id !== "custom");
  return {
    machines: machines.length > 0 ? machines : known.machines.slice(0, 1),
    axes: axes.length > 0 ? axes : known.axisNames.slice(0, 1),
    fields: fields.length > 0 ? fields : ["actual_position"],
    window:
      Number.isFinite(from) && Number.isFinite(to) && from < to
        ? { from, to }
        : { relative: (relative?.id ?? "15m") as Exclude<WindowId, "custom"> },
  };
}

/** The query string (without `?`) that `viewFromSearch` reads back as `view`. */
export function searchFromView(view: HistoryView): string {
  const params = new URLSearchParams();
  params.set("machine_id", view.machines.join(","));
  params.set("axis_name", view.axes.join(","));
  params.set("fields", view.fields.join(","));
  if ("relative" in view.window) params.set("window", view.window.relative);
  else {
    params.set("from", new Date(view.window.from).toISOString());
    params.set("to", new Date(view.window.to).toISOString());
  }
  // Commas and colons read better unescaped, and are legal in a query.
  return params.toString().replaceAll("%2C", ",").replaceAll("%3A", ":");
}
