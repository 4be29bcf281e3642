import type { Clock } from "../../platform/context.ts";
import { isoTimeParts } from "../../platform/validation.ts";
import { checkSampleTime } from "../axis-data/axis-data-resource.ts";
import type { Fleet } from "../machines/fleet-catalog.ts";
import {
  type RawBatch,
  type RowKind,
  type RowProblem,
  type ValidBatch,
  withMicros,
} from "./ingest-batch.ts";

export const maxRowsPerBatch = 100_000;
const measurementLimit = 1e12;

/** The most problems a refusal lists; it counts them all. */
export const maxProblemsListed = 1000;

/** How much of a batch was wrong: its bad rows (each counted once) and all their problems. */
export interface Refusal {
  badRows: number;
  problems: number;
}

export interface ValidationContext {
  fleet: Fleet;
  clock: Clock;
  retentionDays: number;
  /** tool_id → machine_id for the tools a batch names (looked up only when it has tool rows). */
  toolOwners: Map<number, number>;
}

/**
 * Checks every row and resolves its references. A batch with any problem is refused whole, so
 * every problem is collected (up to a bound) to let a producer fix them all in one go.
 */
export function validateBatch(
  raw: RawBatch,
  context: ValidationContext,
): { batch: ValidBatch; problems: RowProblem[]; refused: Refusal } {
  const problems: RowProblem[] = [];
  // Counted whole though listed only up to a bound: a batch of 50,000 bad rows is told so.
  const badRows = new Set<string>();
  const refused: Refusal = { badRows: 0, problems: 0 };
  const problem = (kind: RowKind, index: number, field: string, reason: string) => {
    refused.problems++;
    // Problems of the batch itself (index -1: not a list, too many rows) are no row's.
    if (index >= 0 && !badRows.has(`${kind} ${index}`)) {
      badRows.add(`${kind} ${index}`);
      refused.badRows++;
    }
    if (problems.length < maxProblemsListed) problems.push({ kind, index, field, reason });
  };
  const batch: ValidBatch = { axis: [], tools: [], toolUsage: [] };
  const receivedAt = context.clock.now();

  const rows = (kind: RowKind): unknown[] => {
    const value = raw[kind];
    if (value === undefined) return [];
    if (!Array.isArray(value)) {
      problem(kind, -1, kind, "Expected a list of rows.");
      return [];
    }
    return value;
  };

  const axisRows = rows("axis_data");
  const toolRows = rows("tool_data");
  const usageRows = rows("tool_usage");
  if (axisRows.length + toolRows.length + usageRows.length > maxRowsPerBatch) {
    problem("axis_data", -1, "non_field_errors", `At most ${maxRowsPerBatch} rows per batch.`);
    return { batch, problems, refused };
  }

  // Rows without a time are stamped with the batch's time of receipt: two of one series would be
  // one sample (the second a duplicate; for a tool, the first lost), so each must say its time.
  const stamped = {
    axis: new Set<number>(),
    tools: new Set<number>(),
    toolUsage: new Set<number>(),
  };
  const stampedOnce = (
    row: RowReader,
    seen: Set<number>,
    key: number | undefined,
    time: RowTime | undefined,
  ) => {
    if (!time?.received || key === undefined) return;
    if (seen.has(key))
      row.fail(
        "timestamp",
        "Another row of this series in the batch has no timestamp either: both would be stamped with the time of receipt, as one sample. Give each its timestamp.",
      );
    seen.add(key);
  };

  axisRows.forEach((value, index) => {
    const row = new RowReader("axis_data", index, value, problem);
    if (!row.isObject) return;
    const axis = resolveAxis(row, context.fleet);
    const actualPosition = row.number("actual_position");
    const targetPosition = row.number("target_position");
    const velocity = row.number("velocity");
    const acceleration = row.number("acceleration");
    const homed = row.boolean("homed");
    const time = row.time(receivedAt, context);
    stampedOnce(row, stamped.axis, axis?.axisId, time);
    if (!row.ok || !axis || !time) return;
    // One object literal, so every row shares one shape (the ring and the live feed keep them).
    batch.axis.push({
      axisId: axis.axisId,
      machineId: axis.machineId,
      axisName: axis.axisName,
      time: time.time,
      timeMs: time.timeMs,
      actualPosition: actualPosition!,
      targetPosition: targetPosition!,
      velocity: velocity!,
      acceleration: acceleration!,
      homed: homed!,
    });
  });

  toolRows.forEach((value, index) => {
    const row = new RowReader("tool_data", index, value, problem);
    if (!row.isObject) return;
    const toolId = row.id("tool_id");
    const toolOffset = row.number("tool_offset");
    const feedrate = row.number("feedrate", 0);
    const time = row.time(receivedAt, context);
    const machineId = toolId === undefined ? undefined : context.toolOwners.get(toolId);
    if (toolId !== undefined && machineId === undefined)
      row.fail("tool_id", `Tool ${toolId} does not exist.`);
    // A report does not move a tool (`PATCH /data/tools/<id>/` does): a machine it names must be
    // the one holding the tool, or the report would be filed as that machine's.
    for (const field of ["machine_id", "machine"])
      if (machineId !== undefined && row.value[field] != null && row.value[field] !== machineId)
        row.fail(field, `Tool ${toolId} is a tool of machine ${machineId}.`);
    stampedOnce(row, stamped.tools, toolId, time);
    if (!row.ok || toolId === undefined || machineId === undefined || !time) return;
    batch.tools.push({
      toolId,
      machineId,
      time: time.time,
      timeMs: time.timeMs,
      toolOffset: toolOffset!,
      feedrate: feedrate!,
    });
  });

  usageRows.forEach((value, index) => {
    const row = new RowReader("tool_usage", index, value, problem);
    if (!row.isObject) return;
    const machineId = row.id("machine_id");
    const toolInUse = row.id("tool_in_use");
    const time = row.time(receivedAt, context);
    if (machineId !== undefined && !context.fleet.machines.has(machineId)) {
      row.fail("machine_id", `Machine ${machineId} does not exist.`);
    } else if (
      toolInUse !== undefined &&
      machineId !== undefined &&
      context.toolOwners.get(toolInUse) !== machineId
    ) {
      row.fail("tool_in_use", `Tool ${toolInUse} is not a tool of machine ${machineId}.`);
    }
    stampedOnce(row, stamped.toolUsage, machineId, time);
    if (!row.ok || machineId === undefined || toolInUse === undefined || !time) return;
    batch.toolUsage.push({ machineId, toolInUse, time: time.time, timeMs: time.timeMs });
  });

  return { batch, problems, refused };
}

/** The tool ids a raw batch names, to look their machines up before validating. */
export function namedToolIds(raw: RawBatch): number[] {
  const ids = new Set<number>();
  const collect = (rows: unknown, field: string) => {
    if (!Array.isArray(rows)) return;
    for (const row of rows) {
      const id = (row as Record<string, unknown> | null)?.[field];
      if (Number.isSafeInteger(id) && (id as number) > 0) ids.add(id as number);
    }
  };
  collect(raw.tool_data, "tool_id");
  collect(raw.tool_usage, "tool_in_use");
  return [...ids];
}

function resolveAxis(row: RowReader, fleet: Fleet) {
  const record = row.value;
  if (record.axis !== undefined) {
    const axisId = row.id("axis");
    if (axisId === undefined) return undefined;
    const axis = fleet.axes.get(axisId);
    if (!axis) return row.fail("axis", `Axis ${axisId} does not exist.`);
    // Named both ways, the two must agree: which one the producer meant is not for us to guess.
    if (record.machine_id != null && record.machine_id !== axis.machineId)
      row.fail("machine_id", `Axis ${axisId} is an axis of machine ${axis.machineId}.`);
    if (record.axis_name != null && record.axis_name !== axis.axisName)
      row.fail("axis_name", `Axis ${axisId} is named "${axis.axisName}".`);
    return axis;
  }
  const machineId = row.id("machine_id");
  const axisName = row.string("axis_name", 32);
  if (machineId === undefined || axisName === undefined) return undefined;
  const machine = fleet.machines.get(machineId);
  if (!machine) {
    row.fail("machine_id", `Machine ${machineId} does not exist.`);
    return undefined;
  }
  const axis = machine.axes.get(axisName);
  if (!axis) row.fail("axis_name", `Machine ${machineId} has no axis "${axisName}".`);
  return axis;
}

/** A row's time; `received` when it gave none and is stamped with the time of receipt. */
interface RowTime {
  time: string;
  timeMs: number;
  received?: true;
}

/** Reads one row's fields, recording a problem for each that is missing or malformed. */
class RowReader {
  ok = true;
  readonly isObject: boolean;
  readonly value: Record<string, unknown>;

  constructor(
    private readonly kind: RowKind,
    private readonly index: number,
    value: unknown,
    private readonly report: (kind: RowKind, index: number, field: string, reason: string) => void,
  ) {
    this.isObject = typeof value === "object" && value !== null && !Array.isArray(value);
    this.value = this.isObject ? (value as Record<string, unknown>) : {};
    if (!this.isObject) this.fail("non_field_errors", "Expected an object.");
  }

  /** Records a problem; returns undefined so a reader can `return this.fail(…)`. */
  fail(field: string, reason: string): undefined {
    this.ok = false;
    this.report(this.kind, this.index, field, reason);
    return undefined;
  }

  private present(field: string): unknown {
    const value = this.value[field];
    if (value === undefined || value === null) this.fail(field, "This field is required.");
    return value ?? undefined;
  }

  number(field: string, min = -measurementLimit): number | undefined {
    const value = this.present(field);
    if (value === undefined) return undefined;
    if (typeof value !== "number" || !Number.isFinite(value))
      return this.fail(field, "A valid number is required.");
    if (value < min || value > measurementLimit)
      return this.fail(field, `Must be between ${min} and ${measurementLimit}.`);
    return value;
  }

  id(field: string): number | undefined {
    const value = this.present(field);
    if (value === undefined) return undefined;
    if (!Number.isSafeInteger(value) || (value as number) < 1)
      return this.fail(field, "A valid positive integer is required.");
    return value as number;
  }

  boolean(field: string): boolean | undefined {
    const value = this.present(field);
    if (value === undefined) return undefined;
    if (typeof value !== "boolean") return this.fail(field, "Must be a valid boolean.");
    return value;
  }

  string(field: string, maxLength: number): string | undefined {
    const value = this.present(field);
    if (value === undefined) return undefined;
    if (typeof value !== "string" || value.length === 0 || value.length > maxLength) {
      return this.fail(field, `A string of 1 to ${maxLength} characters is required.`);
    }
    return value;
  }

  /** `timestamp` (or the seed's `update_timestamp`): ISO 8601, or absent for the time of receipt. */
  time(receivedAt: Date, context: ValidationContext): RowTime | undefined {
    const field = this.value.timestamp !== undefined ? "timestamp" : "update_timestamp";
    const value = this.value[field];
    if (value === undefined || value === null)
      return { time: receivedAt.toISOString(), timeMs: receivedAt.getTime(), received: true };
    // A real calendar date (Date.parse rolls 2026-06-31 over to July; PostgreSQL refuses it) and
    // a zone PostgreSQL takes, at most microseconds.
    const parts = typeof value === "string" && value.length <= 40 ? isoTimeParts(value) : undefined;
    const timeMs = parts && (parts[7]?.length ?? 0) <= 6 ? Date.parse(value as string) : Number.NaN;
    if (Number.isNaN(timeMs))
      return this.fail(
        field,
        "Datetime has wrong format. Use ISO 8601 with a zone, e.g. 2026-01-31T12:00:00.250Z.",
      );
    const outside = checkSampleTime(timeMs, receivedAt.getTime(), context.retentionDays);
    if (outside) return this.fail(field, outside);
    return {
      time: utcTime(value as string, parts!, timeMs),
      timeMs: withMicros(timeMs, parts![7] ?? ""),
    };
  }
}

/**
 * The time stored and pushed, in one form whatever the producer wrote: UTC, milliseconds at
 * least, digits past them kept. What most producers send (`toISOString()`) is that already.
 */
function utcTime(value: string, parts: RegExpExecArray, timeMs: number): string {
  const fraction = parts[7] ?? "";
  if (parts[8] === "Z" && value[10] === "T" && parts[6] !== undefined && fraction.length >= 3)
    return value;
  return new Date(timeMs).toISOString().replace("Z", `${fraction.slice(3)}Z`);
}
