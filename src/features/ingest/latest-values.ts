import { exactIsoSql, type Queryable } from "../../platform/database.ts";
import {
  type AxisSampleRow,
  epochMs,
  type ToolRow,
  type ToolUsageRow,
  type ValidBatch,
} from "./ingest-batch.ts";

/**
 * The newest value of every series, in memory: what the live feed answers `get_axis_data` and
 * snapshots from, with no database query. A sample older than the one held is ignored, so
 * out-of-order arrivals never move a series back in time.
 */
export class LatestValues {
  readonly axes = new Map<number, AxisSampleRow>();
  readonly tools = new Map<number, ToolRow>();
  readonly toolUsage = new Map<number, ToolUsageRow>();

  /**
   * Takes a committed batch's rows where they are newer. Returns the rows it replaced of tools now
   * on another machine: where those tools were, which the live feed tells has lost them.
   */
  apply(batch: ValidBatch): ToolRow[] {
    for (const row of batch.axis) keepNewest(this.axes, row.axisId, row);
    const left: ToolRow[] = [];
    for (const row of batch.tools) {
      const before = this.tools.get(row.toolId);
      keepNewest(this.tools, row.toolId, row);
      if (before && this.tools.get(row.toolId) === row && before.machineId !== row.machineId)
        left.push(before);
    }
    for (const row of batch.toolUsage) keepNewest(this.toolUsage, row.machineId, row);
    return left;
  }

  /**
   * Fills the cache from the database at start, so the live feed knows every series' newest
   * value before new data arrives. One backward index probe per series (a lateral lookup on the
   * (axis_id, update_timestamp) key), never a scan; samples older than `since` are left out.
   */
  async load(db: Queryable, since: Date): Promise<void> {
    this.apply(await readStored(db, { since }));
  }
}

/** Which stored values `readStored` reads: some series only, or every one since a time. */
export interface StoredKeys {
  /** Leaves out samples and reports older than this. */
  since?: Date;
  axes?: number[];
  tools?: number[];
  /** Machines whose tool in use is read. */
  machines?: number[];
}

/**
 * The newest stored sample of each axis, each tool's row and each machine's newest tool usage
 * report: of every series, or with `axes`, `tools` or `machines` given, of those alone (an
 * empty list reads none of that kind).
 */
export async function readStored(db: Queryable, keys: StoredKeys): Promise<ValidBatch> {
  const since = keys.since ?? new Date(0);
  // null: every key; otherwise the keys listed.
  const only = (ids: number[] | undefined) => (ids === undefined ? null : `{${ids.join(",")}}`);
  const read = (ids: number[] | undefined) => ids === undefined || ids.length > 0;
  /** A row's time as `t`: exact ISO 8601 text, to the microsecond (`epochMs` reads it). */
  const times = (column: string) => `${exactIsoSql(column)} as t`;
  const axes = read(keys.axes)
    ? await db.query<{
        axis_id: number;
        machine_id: number;
        axis_name: string;
        t: string;
        actual_position: number;
        target_position: number;
        velocity: number;
        acceleration: number;
        homed: boolean;
      }>(
        `select x.axis_id, x.machine_id, x.axis_name, ${times("d.update_timestamp")},
                d.actual_position, d.target_position, d.velocity, d.acceleration, d.homed
         from axis x cross join lateral (
           select * from axis_data a where a.axis_id = x.axis_id and a.update_timestamp >= $1
           order by a.update_timestamp desc limit 1) d
         where $2::bigint[] is null or x.axis_id = any($2::bigint[])`,
        [since, only(keys.axes)],
      )
    : { rows: [] };
  const tools = read(keys.tools)
    ? await db.query<{
        tool_id: number;
        machine_id: number;
        t: string;
        tool_offset: number;
        feedrate: number;
      }>(
        `select tool_id, machine_id, ${times("update_timestamp")}, tool_offset, feedrate
         from tool where $1::bigint[] is null or tool_id = any($1::bigint[])`,
        [only(keys.tools)],
      )
    : { rows: [] };
  const usage = read(keys.machines)
    ? await db.query<{
        machine_id: number;
        tool_in_use: number;
        t: string;
      }>(
        `select m.machine_id, u.tool_in_use, ${times("u.update_timestamp")}
         from machine m cross join lateral (
           select * from tool_usage t where t.machine_id = m.machine_id and t.update_timestamp >= $1
           order by t.update_timestamp desc limit 1) u
         where $2::bigint[] is null or m.machine_id = any($2::bigint[])`,
        [since, only(keys.machines)],
      )
    : { rows: [] };
  return {
    axis: axes.rows.map((row) => ({
      axisId: row.axis_id,
      machineId: row.machine_id,
      axisName: row.axis_name,
      time: row.t,
      timeMs: epochMs(row.t),
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
      timeMs: epochMs(row.t),
      toolOffset: row.tool_offset,
      feedrate: row.feedrate,
    })),
    toolUsage: usage.rows.map((row) => ({
      machineId: row.machine_id,
      toolInUse: row.tool_in_use,
      time: row.t,
      timeMs: epochMs(row.t),
    })),
  };
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
