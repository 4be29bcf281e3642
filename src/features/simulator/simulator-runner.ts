import type { ChangeFeed } from "../../platform/change-feed.ts";
import type { Database } from "../../platform/database.ts";
import { DomainError } from "../../platform/errors.ts";
import type { ValidBatch } from "../ingest/ingest-batch.ts";
import type { LiveHub } from "../live/live-hub.ts";
import type { FleetCatalog } from "../machines/fleet-catalog.ts";
import { ensureFleet, type ProvisionedMachine } from "../machines/fleet-provisioning.ts";
import { DEFAULT_FIELD_SPEC_FILE, readFieldSpec } from "./field-spec.ts";
import {
  buildSchedules,
  describeFleet,
  type FleetReport,
  type FleetShape,
  type MachineDescription,
  type RunningFleet,
  startFleet,
} from "./fleet.ts";
import type { AxisName } from "./motion.ts";
import {
  BatchRefused,
  type BatchTarget,
  limitsFrom,
  PipelineSink,
  type SinkTarget,
} from "./simulator-service.ts";

export interface SimulatorOptions {
  machines: number;
  firstMachineId?: number | undefined;
  axes?: readonly AxisName[];
  fieldsFile?: string | undefined;
  speed?: number | undefined;
  seed?: number | undefined;
  durationMs?: number | undefined;
}

export interface SimulatorHooks {
  onReport?: (report: FleetReport) => void;
  onPause?: (reason: string) => void;
}

/** Where the fleet's rows go and how the fleet's machines come to exist there. */
export interface SimulatorTarget extends SinkTarget {
  provision(machines: MachineDescription[]): Promise<Map<number, ProvisionedMachine>>;
}

/**
 * This process's own database, through the ingest pipeline every other source uses. The tools
 * it makes are read into `live`'s latest values as a CRUD write's are: they are never ingested
 * until put to use, and the values were loaded before they existed.
 */
export function databaseTarget({
  db,
  changes,
  catalog,
  ingest,
  live,
}: {
  db: Database;
  changes: ChangeFeed;
  catalog: Pick<FleetCatalog, "fleet">;
  ingest: BatchTarget;
  live: Pick<LiveHub, "storedChanged">;
}): SimulatorTarget {
  const present = async (table: "machine" | "axis" | "tool", ids: Set<number>) =>
    new Set(
      (
        await db.query<{ id: number }>(
          `select ${table}_id as id from ${table} where ${table}_id = any($1::bigint[])`,
          [[...ids]],
        )
      ).rows.map((row) => Number(row.id)),
    );
  return {
    provision: async (machines) => {
      const provisioned = await ensureFleet(db, changes, machines);
      const tools = [...provisioned.values()].flatMap((machine) =>
        machine.toolIds.filter((id) => id !== undefined),
      );
      await live.storedChanged({ axes: [], tools, machines: [] });
      return provisioned;
    },
    submit: async (batch) =>
      ingest.submit(await placedNow(batch, catalog)).catch((error: unknown) => {
        // The pipeline refuses a batch only for what it holds: here, something deleted meanwhile.
        throw error instanceof DomainError && error.code === "validation"
          ? new BatchRefused(error.message)
          : error;
      }),
    remaining: async (ids) => ({
      machines: await present("machine", ids.machines),
      axes: await present("axis", ids.axes),
      tools: await present("tool", ids.tools),
    }),
  };
}

/**
 * The batch with each sample under its axis's machine and name as they are now. The simulator
 * knows its axes by the names they had when it started; one renamed or moved through the API
 * since keeps its motion but is stored, and shown live, where it now is. (Ingest over HTTP
 * resolves names against the same catalog.) An axis the catalog lacks keeps its row, which the
 * database refuses if it was deleted, as the sink expects.
 */
async function placedNow(
  batch: ValidBatch,
  catalog: Pick<FleetCatalog, "fleet">,
): Promise<ValidBatch> {
  if (batch.axis.length === 0) return batch;
  // A catalog that cannot load leaves the batch as it is: the pipeline answers for the database.
  const fleet = await catalog.fleet().catch(() => undefined);
  if (!fleet) return batch;
  const { axes } = fleet;
  const moved = batch.axis.some((row) => {
    const axis = axes.get(row.axisId);
    return (
      axis !== undefined && (axis.axisName !== row.axisName || axis.machineId !== row.machineId)
    );
  });
  if (!moved) return batch;
  return {
    ...batch,
    axis: batch.axis.map((row) => {
      const axis = axes.get(row.axisId);
      return axis ? { ...row, machineId: axis.machineId, axisName: axis.axisName } : row;
    }),
  };
}

export interface RunningSimulator {
  fleet: RunningFleet;
  stop(): Promise<void>;
}

/** Reads the field spec, makes sure the fleet exists, and starts it. */
export async function startSimulator(
  target: SimulatorTarget,
  options: SimulatorOptions,
  hooks: SimulatorHooks = {},
): Promise<RunningSimulator> {
  const spec = await readFieldSpec(
    options.fieldsFile ?? DEFAULT_FIELD_SPEC_FILE,
    options.speed === undefined ? {} : { speed: options.speed },
  );
  const shape: FleetShape = {
    machines: options.machines,
    ...(options.firstMachineId === undefined ? {} : { firstMachineId: options.firstMachineId }),
    seed: options.seed ?? 1,
    toolCapacity: 24,
    ...(options.axes ? { axes: options.axes } : {}),
  };
  // A speed the spec cannot run at is refused before any machine is created for it.
  buildSchedules(spec);
  const provisioned = await target.provision(describeFleet(shape));
  const sink = new PipelineSink(target, provisioned, hooks.onPause);
  const fleet = startFleet({
    ...shape,
    axisLimits: limitsFrom(provisioned),
    spec,
    sink,
    ...(options.durationMs === undefined ? {} : { durationMs: options.durationMs }),
    ...(hooks.onReport ? { onReport: hooks.onReport } : {}),
  });
  return {
    fleet,
    async stop() {
      sink.stop();
      await fleet.stop();
    },
  };
}
