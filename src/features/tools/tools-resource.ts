import { Type } from "@sinclair/typebox";
import type { Clock } from "../../platform/context.ts";
import type { Database } from "../../platform/database.ts";
import { exactIsoSql } from "../../platform/database.ts";
import { invalid } from "../../platform/errors.ts";
import type { ResourceDefinition } from "../../platform/resource.ts";
import { Id, Measurement, Timestamp } from "../../platform/schema-types.ts";

const machineMissing = { field: "machine", reason: "Invalid pk - machine does not exist." };
const timeFilters = (column: string) => ({
  since: {
    sql: (p: string) => `${column} >= ${p}::timestamptz`,
    schema: Timestamp("Rows at or after this time"),
  },
  until: {
    sql: (p: string) => `${column} < ${p}::timestamptz`,
    schema: Timestamp("Rows before this time"),
  },
});

/**
 * A tool's or tool usage report's time at most a day ahead, as ingest checks it
 * (`checkSampleTime`): one far in the future would outrank every later report, which would then
 * change nothing. Older times are kept: a tool's offset may have been set years ago, and ingest's
 * retention bound is for samples.
 */
function checkReportTime(clock: Clock, input: Record<string, unknown>): void {
  const given = input.update_timestamp as string | undefined;
  if (given === undefined) return;
  if (new Date(given).getTime() > clock.now().getTime() + 86_400_000)
    throw invalid({ update_timestamp: ["More than a day in the future."] });
}

export const toolsResource = (clock: Clock): ResourceDefinition => ({
  name: "tool",
  noun: "tool",
  path: "/data/tools/",
  tag: "tools",
  table: "tool",
  from: "tool t",
  alias: "t",
  idField: "tool_id",
  idColumn: "tool_id",
  clientSuppliedId: false,
  columns: {
    tool_id: "t.tool_id",
    machine: "t.machine_id",
    tool_offset: "t.tool_offset",
    feedrate: "t.feedrate",
    update_timestamp: exactIsoSql("t.update_timestamp"),
  },
  writable: {
    machine: "machine_id",
    tool_offset: "tool_offset",
    feedrate: "feedrate",
    update_timestamp: "update_timestamp",
  },
  filters: {
    machine: { sql: (p) => `t.machine_id = ${p}`, schema: Id() },
    ...timeFilters("t.update_timestamp"),
  },
  orderable: ["tool_id", "machine", "tool_offset", "feedrate", "update_timestamp"],
  orderExpressions: { update_timestamp: "t.update_timestamp" },
  defaultOrdering: ["tool_id"],
  defaultLimit: 1000,
  cachedUntilChanged: ["tool", "machine"],
  row: Type.Object({
    tool_id: Type.Integer(),
    machine: Type.Integer(),
    tool_offset: Type.Number(),
    feedrate: Type.Number(),
    update_timestamp: Type.String({ format: "date-time" }),
  }),
  input: Type.Object({
    machine: Id("machine_id of the machine holding this tool"),
    tool_offset: Measurement("Tool length offset, mm"),
    feedrate: Type.Number({ minimum: 0, maximum: 1e9, description: "mm/min" }),
    update_timestamp: Type.Optional(Timestamp("Defaults to now")),
  }),
  readOnly: ["tool_id"],
  constraints: { tool_machine_id_fkey: machineMissing },
  prepare: async (_db, input) => checkReportTime(clock, input),
});

export const toolUsageResource = (clock: Clock): ResourceDefinition => ({
  name: "toolusage",
  noun: "tool usage record",
  path: "/data/tool-usage/",
  tag: "tool usage",
  table: "tool_usage",
  from: "tool_usage u",
  alias: "u",
  idField: "usage_id",
  idColumn: "usage_id",
  clientSuppliedId: false,
  columns: {
    usage_id: "u.usage_id",
    machine: "u.machine_id",
    tool_in_use: "u.tool_in_use",
    update_timestamp: exactIsoSql("u.update_timestamp"),
  },
  writable: {
    machine: "machine_id",
    tool_in_use: "tool_in_use",
    update_timestamp: "update_timestamp",
  },
  filters: {
    machine: { sql: (p) => `u.machine_id = ${p}`, schema: Id() },
    ...timeFilters("u.update_timestamp"),
    // Each machine's newest report: the tool in use now. One index probe per machine, so a
    // machine that has kept its tool for weeks is found however busy the others are. (A plain
    // condition, not `not $n or …`: under an OR, PostgreSQL tests every row against the list.)
    latest: {
      sql: (p, latest) =>
        latest
          ? `${p}::boolean and u.usage_id in (select (select l.usage_id from tool_usage l
             where l.machine_id = m.machine_id order by l.update_timestamp desc limit 1) from machine m)`
          : `not ${p}::boolean`,
      schema: Type.Boolean({ description: "true: only each machine's newest report" }),
    },
  },
  orderable: ["usage_id", "machine", "tool_in_use", "update_timestamp"],
  orderExpressions: { update_timestamp: "u.update_timestamp" },
  defaultOrdering: ["usage_id"],
  defaultLimit: 1000,
  row: Type.Object({
    usage_id: Type.Integer(),
    machine: Type.Integer(),
    tool_in_use: Type.Integer(),
    update_timestamp: Type.String({ format: "date-time" }),
  }),
  input: Type.Object({
    machine: Id("machine_id"),
    tool_in_use: Id("tool_id of a tool of the same machine"),
    update_timestamp: Type.Optional(Timestamp("Defaults to now")),
  }),
  readOnly: ["usage_id"],
  constraints: {
    tool_usage_machine_id_fkey: machineMissing,
    tool_usage_machine_time_key: {
      field: "update_timestamp",
      reason: "This machine already has a tool usage report at this time.",
    },
  },
  prepare: async (db, input, existing) => {
    checkReportTime(clock, input);
    await checkToolBelongsToMachine(db, input, existing);
  },
});

/** The tool in use must be one of the machine's own tools. */
async function checkToolBelongsToMachine(
  db: Database,
  input: Record<string, unknown>,
  existing?: Record<string, unknown>,
): Promise<void> {
  const machine = input.machine ?? existing?.machine;
  const tool = input.tool_in_use ?? existing?.tool_in_use;
  if (input.machine === undefined && input.tool_in_use === undefined) return;
  const { rows } = await db.query("select 1 from tool where tool_id = $1 and machine_id = $2", [
    tool,
    machine,
  ]);
  if (rows.length > 0) return;
  const { rows: machines } = await db.query("select 1 from machine where machine_id = $1", [
    machine,
  ]);
  if (machines.length === 0) throw invalid({ machine: [machineMissing.reason] });
  throw invalid({ tool_in_use: [`Tool ${tool} is not a tool of machine ${machine}.`] });
}
