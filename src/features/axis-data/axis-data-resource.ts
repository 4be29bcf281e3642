import { Type } from "@sinclair/typebox";
import type { Clock } from "../../platform/context.ts";
import { exactIsoSql } from "../../platform/database.ts";
import { invalid } from "../../platform/errors.ts";
import type { ResourceDefinition } from "../../platform/resource.ts";
import { Id, Measurement, Timestamp } from "../../platform/schema-types.ts";
import { AxisName } from "../axes/axes-resource.ts";
import type { AxisDataPartitions } from "./partitions.ts";

export interface AxisDataRules {
  clock: Clock;
  retentionDays: number;
  partitions: AxisDataPartitions;
  /** Told of every sample written, changed or deleted here (the rollups recompute its buckets). */
  onSampleWritten?: (axisId: number, timeMs: number) => void;
}

/** Samples must fall inside the kept window: older ones would be dropped at once, and far-future
 * ones are a clock fault. The bound also caps how many partitions a client can cause. */
export function checkSampleTime(
  timeMs: number,
  nowMs: number,
  retentionDays: number,
): string | undefined {
  if (timeMs < nowMs - retentionDays * 86_400_000) {
    return `Older than the retention window of ${retentionDays} days.`;
  }
  if (timeMs > nowMs + 86_400_000) return "More than a day in the future.";
  return undefined;
}

export function axisDataResource(rules: AxisDataRules): ResourceDefinition {
  return {
    name: "axisdata",
    noun: "axis data sample",
    path: "/data/axises/",
    tag: "axis data",
    table: "axis_data",
    from: "axis_data d join axis x on x.axis_id = d.axis_id join machine m on m.machine_id = x.machine_id",
    alias: "d",
    idField: "axis_data_id",
    idColumn: "axis_data_id",
    clientSuppliedId: false,
    columns: {
      axis_data_id: "d.axis_data_id",
      axis: "d.axis_id",
      machine_id: "x.machine_id",
      machine_name: "m.machine_name",
      axis_name: "x.axis_name",
      actual_position: "d.actual_position",
      target_position: "d.target_position",
      distance_to_go: "d.distance_to_go",
      homed: "d.homed",
      acceleration: "d.acceleration",
      velocity: "d.velocity",
      update_timestamp: exactIsoSql("d.update_timestamp"),
    },
    writable: {
      axis: "axis_id",
      actual_position: "actual_position",
      target_position: "target_position",
      homed: "homed",
      acceleration: "acceleration",
      velocity: "velocity",
      update_timestamp: "update_timestamp",
    },
    filters: {
      machine: { sql: (p) => `x.machine_id = ${p}`, schema: Id() },
      axis: { sql: (p) => `d.axis_id = ${p}`, schema: Id() },
      axis_name: { sql: (p) => `x.axis_name = ${p}`, schema: AxisName },
      since: {
        sql: (p) => `d.update_timestamp >= ${p}::timestamptz`,
        schema: Timestamp("Samples at or after this time"),
      },
      until: {
        sql: (p) => `d.update_timestamp < ${p}::timestamptz`,
        schema: Timestamp("Samples before this time"),
      },
    },
    // Ordering by anything but the (axis, time) key would sort the whole series.
    orderable: ["axis", "update_timestamp", "axis_data_id"],
    orderExpressions: { update_timestamp: "d.update_timestamp" },
    defaultOrdering: ["axis", "update_timestamp"],
    defaultLimit: 100,
    countCap: 100_000,
    row: Type.Object({
      axis_data_id: Type.Integer(),
      axis: Type.Integer(),
      machine_id: Type.Integer(),
      machine_name: Type.String(),
      axis_name: Type.String(),
      actual_position: Type.Number(),
      target_position: Type.Number(),
      distance_to_go: Type.Number(),
      homed: Type.Boolean(),
      acceleration: Type.Number(),
      velocity: Type.Number(),
      update_timestamp: Type.String({ format: "date-time" }),
    }),
    input: Type.Object({
      axis: Id("axis_id of the axis sampled"),
      actual_position: Measurement("mm (linear) or degrees (rotary)"),
      target_position: Measurement("mm (linear) or degrees (rotary)"),
      homed: Type.Boolean(),
      acceleration: Measurement("mm/s² or °/s²"),
      velocity: Measurement("mm/s or °/s"),
      update_timestamp: Type.Optional(Timestamp("Defaults to now; within the retention window")),
    }),
    readOnly: ["axis_data_id", "machine_id", "machine_name", "axis_name", "distance_to_go"],
    constraints: {
      axis_data_axis_time_key: {
        field: "update_timestamp",
        reason: "This axis already has a sample at this time.",
      },
      axis_data_axis_id_fkey: { field: "axis", reason: "Invalid pk - axis does not exist." },
    },
    afterWrite: ({ before, after }) => {
      for (const row of [before, after])
        if (row)
          rules.onSampleWritten?.(
            Number(row.axis),
            new Date(row.update_timestamp as string | Date).getTime(),
          );
    },
    prepare: async (_db, input, existing) => {
      const given = input.update_timestamp as string | undefined;
      const time = given ? new Date(given) : existing ? undefined : rules.clock.now();
      if (!time) return;
      const problem = checkSampleTime(
        time.getTime(),
        rules.clock.now().getTime(),
        rules.retentionDays,
      );
      if (problem) throw invalid({ update_timestamp: [problem] });
      // The text as given: a Date would cut it to milliseconds, where ingest keeps microseconds.
      input.update_timestamp = given ?? time;
      await rules.partitions.ensure([time]);
    },
  };
}
