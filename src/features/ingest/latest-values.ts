import { isoMicrosFormat, type Queryable } from "../../platform/database.ts";
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

  /**
   * Fills the cache from the database at start, so the live feed knows every series' newest
   * value before new data arrives. One backward index probe per series (a lateral lookup on the
   * (axis_id, update_timestamp) key), never a scan; samples older than `since` are left out.
   */
  async load(db: Queryable, since: Date): Promise<void> {
    const axes = await db.query<{
      axis_id: number;
      machine_id: number;
      axis_name: string;
      t: string;
      ms: number;
      actual_position: number;
      target_position: number;
      velocity: number;
      acceleration: number;
      homed: boolean;
    }>(
      `select x.axis_id, x.machine_id, x.axis_name, to_char(d.update_timestamp at time zone 'UTC', ${isoMicrosFormat}) as t,
              (extract(epoch from d.update_timestamp) * 1000)::float8 as ms,
              d.actual_position, d.target_position, d.velocity, d.acceleration, d.homed
       from axis x cross join lateral (
         select * from axis_data a where a.axis_id = x.axis_id and a.update_timestamp >= $1
         order by a.update_timestamp desc limit 1) d`,
      [since],
    );
    const tools = await db.query<{
      tool_id: number;
      machine_id: number;
      t: string;
      ms: number;
      tool_offset: number;
      feedrate: number;
    }>(
      `select tool_id, machine_id, to_char(update_timestamp at time zone 'UTC', ${isoMicrosFormat}) as t,
              (extract(epoch from update_timestamp) * 1000)::float8 as ms, tool_offset, feedrate from tool`,
    );
    const usage = await db.query<{
      machine_id: number;
      tool_in_use: number;
      t: string;
      ms: number;
    }>(
      `select m.machine_id, u.tool_in_use, to_char(u.update_timestamp at time zone 'UTC', ${isoMicrosFormat}) as t,
              (extract(epoch from u.update_timestamp) * 1000)::float8 as ms
       from machine m cross join lateral (
         select * from tool_usage t where t.machine_id = m.machine_id and t.update_timestamp >= $1
         order by t.update_timestamp desc limit 1) u`,
      [since],
    );
    this.apply({
      axis: axes.rows.map((row) => ({
        axisId: row.axis_id,
        machineId: row.machine_id,
        axisName: row.axis_name,
        time: row.t,
        timeMs: row.ms,
        actualPosition: row.actual_position,
        targetPosition: row.target_position,
        velocity: row.velocity,
        acceleration: row.acceleration,
        homed: row.homed,
      })),
      tools: tools.rows.map((row) => ({
        toolId: row.tool_id,
        machineId: row.machine_id,
        time: row.t,
        timeMs: row.ms,
        toolOffset: row.tool_offset,
        feedrate: row.feedrate,
      })),
      toolUsage: usage.rows.map((row) => ({
        machineId: row.machine_id,
        toolInUse: row.tool_in_use,
        time: row.t,
        timeMs: row.ms,
      })),
    });
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
  // At an equal time the first stays, as in the database (`on conflict do nothing`).
  if (!held || held.timeMs < row.timeMs) map.set(key, row);
}
