import type { IngestResult, ValidBatch } from "../ingest/ingest-batch.ts";
import { IngestUnavailable } from "../ingest/ingest-pipeline.ts";
import type { ProvisionedMachine } from "../machines/fleet-provisioning.ts";
import type { AxisName } from "./motion.ts";
import type { SampleBatch, SampleSink } from "./samples.ts";

/** Anything that takes validated batches and answers once they are committed. */
export interface BatchTarget {
  /** `stop` aborts a write under way, where the target can (a request to a remote server). */
  submit(batch: ValidBatch, stop?: AbortSignal): Promise<IngestResult>;
}

/** Turns the simulator's samples (tool numbers, axis names) into rows keyed by database ids. */
export function toValidBatch(
  samples: SampleBatch,
  fleet: Map<number, ProvisionedMachine>,
): ValidBatch {
  const iso = (time: number) => new Date(time).toISOString();
  return {
    axis: samples.axis.flatMap((sample) => {
      const axisId = fleet.get(sample.machineId)?.axisIds.get(sample.axisName);
      if (axisId === undefined) return [];
      return [
        {
          axisId,
          machineId: sample.machineId,
          axisName: sample.axisName,
          time: iso(sample.time),
          timeMs: sample.time,
          actualPosition: sample.actualPosition,
          targetPosition: sample.targetPosition,
          velocity: sample.velocity,
          acceleration: sample.acceleration,
          homed: sample.homed,
        },
      ];
    }),
    tools: samples.tool.flatMap((sample) => {
      const toolId = fleet.get(sample.machineId)?.toolIds[sample.toolNumber - 1];
      if (toolId === undefined) return [];
      return [
        {
          toolId,
          machineId: sample.machineId,
          time: iso(sample.time),
          timeMs: sample.time,
          toolOffset: sample.toolOffset,
          feedrate: sample.feedrate,
        },
      ];
    }),
    toolUsage: samples.toolUsage.flatMap((sample) => {
      const toolId = fleet.get(sample.machineId)?.toolIds[sample.toolInUse - 1];
      if (toolId === undefined) return [];
      return [
        {
          machineId: sample.machineId,
          toolInUse: toolId,
          time: iso(sample.time),
          timeMs: sample.time,
        },
      ];
    }),
  };
}

/** Ids of a simulated fleet: its machines, their axes and their tools. */
export interface FleetIds {
  machines: Set<number>;
  axes: Set<number>;
  tools: Set<number>;
}

/**
 * The target refused a batch as a whole, because of what the batch holds: on a running fleet,
 * that something it names (a machine, axis or tool) was deleted meanwhile.
 */
export class BatchRefused extends Error {
  override name = "BatchRefused";
}

/** What a sink needs of its target: writing batches, and which of the fleet's ids remain. */
export interface SinkTarget extends BatchTarget {
  remaining(ids: FleetIds): Promise<FleetIds>;
}

/**
 * The simulator's sink: rows go to the target's ingest, the same pipeline as every other
 * source's. When the target is away or busy the write waits and tries again, which pauses the
 * simulator; it reports the lag and skips ahead rather than queue without bound. A machine,
 * axis or tool deleted while the fleet runs is left alone from then on: the sink forgets it and
 * sends the rest of the batch. Once stopped, a write that cannot be delivered is dropped, not
 * retried: it was never acknowledged.
 */
export class PipelineSink implements SampleSink {
  private readonly stopping = new AbortController();

  constructor(
    private readonly target: SinkTarget,
    private readonly fleet: Map<number, ProvisionedMachine>,
    private readonly onPause: (reason: string) => void = () => {},
  ) {}

  async write(samples: SampleBatch): Promise<void> {
    const { signal } = this.stopping;
    let batch = toValidBatch(samples, this.fleet);
    for (;;) {
      if (rowCount(batch) === 0) return;
      try {
        try {
          await this.target.submit(batch, signal);
          return;
        } catch (error) {
          if (!(error instanceof BatchRefused) || signal.aborted) throw error;
          // Asking what remains may itself find the target away: retried like a write.
          if (!(await this.forgetDeleted())) throw error;
          batch = toValidBatch(samples, this.fleet);
        }
      } catch (error) {
        if (signal.aborted) return;
        if (!(error instanceof IngestUnavailable)) throw error;
        this.onPause(error.message);
        await sleep(error.retryAfterSeconds * 1000, signal);
        if (signal.aborted) return;
      }
    }
  }

  /** Stops retrying: a write waiting for the target gives up at once. */
  stop(): void {
    this.stopping.abort();
  }

  /** Drops what no longer exists from the fleet; false when nothing had gone. */
  private async forgetDeleted(): Promise<boolean> {
    const ids: FleetIds = { machines: new Set(), axes: new Set(), tools: new Set() };
    for (const [machineId, machine] of this.fleet) {
      ids.machines.add(machineId);
      for (const axisId of machine.axisIds.values()) ids.axes.add(axisId);
      for (const toolId of machine.toolIds) if (toolId !== undefined) ids.tools.add(toolId);
    }
    const left = await this.target.remaining(ids);
    let forgot = false;
    for (const [machineId, machine] of this.fleet) {
      if (!left.machines.has(machineId)) {
        this.fleet.delete(machineId);
        forgot = true;
        continue;
      }
      for (const [axisName, axisId] of machine.axisIds)
        if (!left.axes.has(axisId)) {
          machine.axisIds.delete(axisName);
          forgot = true;
        }
      machine.toolIds = machine.toolIds.map((toolId) => {
        if (toolId === undefined || left.tools.has(toolId)) return toolId;
        forgot = true;
        return undefined;
      });
    }
    return forgot;
  }
}

const rowCount = (batch: ValidBatch) =>
  batch.axis.length + batch.tools.length + batch.toolUsage.length;

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

/** The database's limits per axis, for the motion model (an existing machine keeps its own). */
export function limitsFrom(fleet: Map<number, ProvisionedMachine>) {
  return (machineId: number) => {
    const limits: Partial<Record<AxisName, { maxVelocity: number; maxAcceleration: number }>> = {};
    for (const [name, value] of fleet.get(machineId)?.axisLimits ?? [])
      limits[name as AxisName] = value;
    return limits;
  };
}
