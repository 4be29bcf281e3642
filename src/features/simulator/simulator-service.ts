import type { IngestResult, ValidBatch } from "../ingest/ingest-batch.ts";
import { IngestUnavailable } from "../ingest/ingest-pipeline.ts";
import type { ProvisionedMachine } from "../machines/fleet-provisioning.ts";
import type { AxisName } from "./motion.ts";
import type { SampleBatch, SampleSink } from "./samples.ts";

/** Anything that takes validated batches and answers once they are committed. */
export interface BatchTarget {
  submit(batch: ValidBatch): Promise<IngestResult>;
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

/**
 * The sink of the in-process simulator: it feeds the same ingest pipeline as every other
 * source. When the pipeline refuses (database slow or away) the write waits and tries again,
 * which pauses the simulator; it reports the lag and skips ahead rather than queue without bound.
 */
export class PipelineSink implements SampleSink {
  private stopped = false;

  constructor(
    private readonly target: BatchTarget,
    private readonly fleet: Map<number, ProvisionedMachine>,
    private readonly onPause: (reason: string) => void = () => {},
  ) {}

  async write(samples: SampleBatch): Promise<void> {
    const batch = toValidBatch(samples, this.fleet);
    for (;;) {
      try {
        await this.target.submit(batch);
        return;
      } catch (error) {
        if (!(error instanceof IngestUnavailable) || this.stopped) throw error;
        this.onPause(error.message);
        await new Promise((resolve) => setTimeout(resolve, error.retryAfterSeconds * 1000));
      }
    }
  }

  stop(): void {
    this.stopped = true;
  }
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
