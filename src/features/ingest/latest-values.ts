import type { AxisSampleRow, ToolRow, ToolUsageRow, ValidBatch } from "./ingest-batch.ts";

/**
 * The newest value of every series, in memory: what the live feed answers `get_axis_data` and
 * snapshots from, with no database query. A sample older than the one held is ignored, so
 * out-of-order arrivals never move a series back in time.
 */
export class LatestValues {
  readonly axes = new Map<number, AxisSampleRow>();
  readonly tools = new Map<number, ToolRow>();
  readonly toolUsage = new Map<number, ToolUsageRow>();

  apply(batch: ValidBatch): void {
    for (const row of batch.axis) keepNewest(this.axes, row.axisId, row);
    for (const row of batch.tools) keepNewest(this.tools, row.toolId, row);
    for (const row of batch.toolUsage) keepNewest(this.toolUsage, row.machineId, row);
  }

  forget(predicate: (machineId: number) => boolean): void {
    for (const map of [this.axes, this.tools, this.toolUsage] as Map<
      number,
      { machineId: number }
    >[]) {
      for (const [key, row] of map) if (predicate(row.machineId)) map.delete(key);
    }
  }
}

function keepNewest<Row extends { timeMs: number }>(
  map: Map<number, Row>,
  key: number,
  row: Row,
): void {
  const held = map.get(key);
  if (!held || held.timeMs <= row.timeMs) map.set(key, row);
}
