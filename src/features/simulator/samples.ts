import type { AxisName } from "./motion.ts";

/**
 * What the simulator hands to a sink: one row per axis, tool report and tool-in-use report,
 * shaped like the `axis_data`, `tool` and `tool_usage` tables (distance_to_go is computed by
 * the database as target − actual, so it is not carried).
 */
export interface AxisSample {
  machineId: number;
  axisName: AxisName;
  /** Epoch ms, a whole number: the tick the sample belongs to, not when it was written. */
  time: number;
  actualPosition: number;
  targetPosition: number;
  velocity: number;
  acceleration: number;
  homed: boolean;
}

export interface ToolSample {
  machineId: number;
  /** 1..tool_capacity: always the tool in use at `time`. */
  toolNumber: number;
  time: number;
  toolOffset: number;
  /** mm/min, the feedrate that tool's feed moves run at. */
  feedrate: number;
}

export interface ToolUsageSample {
  machineId: number;
  /** A tool number, 1..tool_capacity. */
  toolInUse: number;
  time: number;
}

export interface SampleBatch {
  axis: AxisSample[];
  tool: ToolSample[];
  toolUsage: ToolUsageSample[];
}

/** Awaited: a slow sink holds the simulator back, which then reports the lag and skips ahead. */
export interface SampleSink {
  write(batch: SampleBatch): Promise<void>;
}
