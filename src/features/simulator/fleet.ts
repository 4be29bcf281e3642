import { entityIntervals, type FieldSpec } from "./field-spec.ts";
import {
  AXIS_NAMES,
  type AxisLimitsTable,
  type AxisName,
  DEFAULT_TOOL_CAPACITY,
  MachineMotion,
  type MachineReadout,
  type Tool,
  wrapDegrees,
} from "./motion.ts";
import type { AxisSample, SampleBatch, SampleSink } from "./samples.ts";
import { machineSeed } from "./seeded-random.ts";

/** The seed's generator numbered its machines from here; ids stay stable across runs. */
export const FIRST_MACHINE_ID = 81258856;
export const MAX_MACHINES = 10_000;

export interface MachineDescription {
  machineId: number;
  machineName: string;
  toolCapacity: number;
  axes: { axisName: AxisName; maxVelocity: number; maxAcceleration: number }[];
  /** The tool table: offset and feedrate of every tool in the magazine. */
  tools: readonly Tool[];
}

export interface FleetShape {
  /** 1 to 10,000. */
  machines: number;
  /**
   * The first machine's id (default FIRST_MACHINE_ID); the others follow it. A machine's name
   * and motion go with its id, so one is the same machine whichever run simulates it.
   */
  firstMachineId?: number;
  seed?: number;
  /** The axes to report; a subset without A and C runs 3-axis programs. Default all five. */
  axes?: readonly AxisName[];
  toolCapacity?: number;
  /** Per machine when the database's `axis` rows say otherwise than the defaults. */
  axisLimits?: Partial<AxisLimitsTable> | ((machineId: number) => Partial<AxisLimitsTable>);
}

/** Epoch milliseconds and a way to wait: the real clock, or a virtual one in tests. */
export interface FleetClock {
  now(): number;
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const systemClock: FleetClock = {
  // Monotonic: a wall-clock step (NTP) must not make the fleet skip or repeat ticks.
  now: () => performance.timeOrigin + performance.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms));
      signal.addEventListener("abort", done, { once: true });
      function done() {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      }
    }),
};

export interface FleetOptions extends FleetShape {
  spec: FieldSpec;
  sink: SampleSink;
  /** Stop after this long; without it the fleet runs until stop(). */
  durationMs?: number;
  clock?: FleetClock;
  /** Lag beyond which the fleet drops the overdue ticks and jumps to the present. Default 1 s. */
  maxLagMs?: number;
  /** A tick of 10,000 machines is split into batches of at most this many samples. */
  maxBatchSamples?: number;
  reportEveryMs?: number;
  onReport?: (report: FleetReport) => void;
}

export interface FleetStats {
  machines: number;
  startedAt: number;
  elapsedMs: number;
  samples: { axis: number; tool: number; toolUsage: number; total: number };
  samplesPerSecond: number;
  /** What the spec asks for: machines × reported axes × axis ticks/s, plus tool and usage. */
  expectedSamplesPerSecond: number;
  /** How far behind the clock the last written tick was once its write returned. */
  lagMs: number;
  maxLagMs: number;
  /** Samples dropped by skipping ahead; never silently: `keepingUp` turns false with them. */
  skippedSamples: number;
  keepingUp: boolean;
}

export interface FleetReport extends FleetStats {
  /** Samples/s since the previous report. */
  recentSamplesPerSecond: number;
  message: string;
}

export interface RunningFleet {
  readonly machines: readonly MachineDescription[];
  /** Resolves with the final stats at the end of the duration or after stop(); rejects if the sink fails. */
  readonly done: Promise<FleetStats>;
  stats(): FleetStats;
  /** Finishes the write under way, reports once more and resolves. */
  stop(): Promise<FleetStats>;
}

type ScheduledEntity = "axis" | "tool" | "tool_usage";
const SCHEDULED_ENTITIES: readonly ScheduledEntity[] = ["axis", "tool", "tool_usage"];

/** One field interval's ticks: start + k·interval, on whole milliseconds. */
interface Schedule {
  entity: ScheduledEntity;
  intervalMs: number;
  next: number;
}

interface SimulatedMachine {
  description: MachineDescription;
  motion: MachineMotion;
  /** Positions in AXIS_NAMES of the axes reported. */
  axisIndexes: number[];
}

export const machineName = (index: number) => `Machine ${String(index + 1).padStart(2, "0")}`;

export function parseAxisList(text: string): AxisName[] {
  const names = text
    .split(",")
    .map((name) => name.trim().toUpperCase())
    .filter(Boolean);
  const unknown = names.filter((name) => !(AXIS_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0 || names.length === 0 || new Set(names).size !== names.length) {
    throw new RangeError(
      `axes must be distinct names among ${AXIS_NAMES.join(",")}, not "${text}"`,
    );
  }
  return AXIS_NAMES.filter((name) => names.includes(name));
}

/** The machines a run will simulate, for creating their rows before it starts. */
export function describeFleet(shape: FleetShape): MachineDescription[] {
  return buildMachines(shape).map((machine) => machine.description);
}

function buildMachines(shape: FleetShape): SimulatedMachine[] {
  const {
    machines: count,
    firstMachineId: first = FIRST_MACHINE_ID,
    seed = 1,
    toolCapacity = DEFAULT_TOOL_CAPACITY,
  } = shape;
  if (!Number.isInteger(count) || count < 1 || count > MAX_MACHINES) {
    throw new RangeError(`machines must be a whole number from 1 to ${MAX_MACHINES}, not ${count}`);
  }
  if (!Number.isSafeInteger(first) || first < 1 || first > Number.MAX_SAFE_INTEGER - count + 1) {
    throw new RangeError(`the first machine id must be a whole number from 1, not ${first}`);
  }
  const axes = shape.axes ? parseAxisList(shape.axes.join(",")) : [...AXIS_NAMES];
  const axisIndexes = axes.map((name) => AXIS_NAMES.indexOf(name));
  return Array.from({ length: count }, (_, i) => {
    const machineId = first + i;
    // Its place in the default numbering names it and seeds its motion.
    const place = machineId - FIRST_MACHINE_ID;
    const limits =
      typeof shape.axisLimits === "function" ? shape.axisLimits(machineId) : shape.axisLimits;
    const motion = new MachineMotion({
      seed: machineSeed(seed, place),
      limits,
      toolCapacity,
      rotary: axes.includes("A") || axes.includes("C"),
    });
    const description: MachineDescription = {
      machineId,
      machineName: place >= 0 ? machineName(place) : `Machine ${machineId}`,
      toolCapacity,
      axes: axes.map((axisName) => ({ axisName, ...motion.limits[axisName] })),
      tools: motion.tools,
    };
    return { description, motion, axisIndexes };
  });
}

export function startFleet(options: FleetOptions): RunningFleet {
  const runner = new FleetRunner(options);
  const done = runner.run();
  return {
    machines: runner.machines.map((machine) => machine.description),
    done,
    stats: () => runner.stats(),
    stop: () => {
      runner.stop();
      return done;
    },
  };
}

class FleetRunner {
  readonly machines: SimulatedMachine[];
  private readonly clock: FleetClock;
  private readonly schedules: Schedule[];
  private readonly startedAt: number;
  private readonly endsAt: number;
  private readonly abort = new AbortController();
  private readonly counts = { axis: 0, tool: 0, toolUsage: 0 };
  private batch: SampleBatch = emptyBatch();
  private lagMs = 0;
  private maxLagMs = 0;
  private skippedSamples = 0;
  private lastReport: { at: number; total: number; skipped: number };

  constructor(private readonly options: FleetOptions) {
    this.machines = buildMachines(options);
    this.clock = options.clock ?? systemClock;
    this.schedules = buildSchedules(options.spec);
    this.startedAt = Math.ceil(this.clock.now());
    this.endsAt =
      options.durationMs === undefined
        ? Number.POSITIVE_INFINITY
        : this.startedAt + options.durationMs;
    this.lastReport = { at: this.startedAt, total: 0, skipped: 0 };
  }

  stop(): void {
    this.abort.abort();
  }

  async run(): Promise<FleetStats> {
    while (!this.abort.signal.aborted) {
      const due = this.nextTick();
      const now = this.clock.now();
      if (now >= this.endsAt && due >= this.endsAt) break;
      if (due <= now && due < this.endsAt) await this.writeDueTicks();
      else await this.sleepUntil(Math.min(due, this.endsAt));
      this.reportIfDue();
    }
    return this.report();
  }

  stats(): FleetStats {
    const now = Math.min(this.clock.now(), this.endsAt);
    const elapsedMs = Math.max(0, now - this.startedAt);
    const total = this.counts.axis + this.counts.tool + this.counts.toolUsage;
    return {
      machines: this.machines.length,
      startedAt: this.startedAt,
      elapsedMs,
      samples: { ...this.counts, total },
      samplesPerSecond: elapsedMs > 0 ? (total * 1000) / elapsedMs : 0,
      expectedSamplesPerSecond: this.expectedSamplesPerSecond(),
      lagMs: this.lagMs,
      maxLagMs: this.maxLagMs,
      skippedSamples: this.skippedSamples,
      keepingUp: this.skippedSamples === this.lastReport.skipped && this.lagMs <= this.lagLimitMs(),
    };
  }

  private nextTick(): number {
    let next = Number.POSITIVE_INFINITY;
    for (const schedule of this.schedules) next = Math.min(next, this.tickTime(schedule));
    return next;
  }

  private tickTime(schedule: Schedule): number {
    return this.startedAt + schedule.next * schedule.intervalMs;
  }

  /** Catches up tick by tick while the lag is small; beyond the limit, jumps to the present. */
  private async writeDueTicks(): Promise<void> {
    const now = this.clock.now();
    if (now - this.nextTick() > this.lagLimitMs()) this.skipTo(now);
    for (let time = this.nextTick(); time <= now && time < this.endsAt; time = this.nextTick()) {
      const due = new Set<ScheduledEntity>();
      for (const schedule of this.schedules) {
        if (this.tickTime(schedule) !== time) continue;
        due.add(schedule.entity);
        schedule.next += 1;
      }
      await this.sampleTick(time, due);
    }
    await this.flush();
    this.lagMs = Math.max(0, this.clock.now() - (this.nextTickBefore(now) ?? now));
    this.maxLagMs = Math.max(this.maxLagMs, this.lagMs);
  }

  /** The most recent tick written, to measure the lag against. */
  private nextTickBefore(now: number): number | undefined {
    let latest: number | undefined;
    for (const schedule of this.schedules) {
      if (schedule.next === 0) continue;
      const time = this.startedAt + (schedule.next - 1) * schedule.intervalMs;
      if (time <= now) latest = Math.max(latest ?? time, time);
    }
    return latest;
  }

  private skipTo(now: number): void {
    for (const schedule of this.schedules) {
      const latestDue = Math.floor((now - this.startedAt) / schedule.intervalMs);
      if (latestDue <= schedule.next) continue;
      this.skippedSamples += (latestDue - schedule.next) * this.samplesPerTick(schedule.entity);
      schedule.next = latestDue;
    }
  }

  private async sampleTick(time: number, due: Set<ScheduledEntity>): Promise<void> {
    const machineTime = (time - this.startedAt) / 1000;
    const maxBatch = this.options.maxBatchSamples ?? 10_000;
    for (const { description, motion, axisIndexes } of this.machines) {
      if (batchSize(this.batch) + axisIndexes.length + 2 > maxBatch) await this.flush();
      const readout = motion.readAt(machineTime);
      const { machineId } = description;
      if (due.has("axis")) {
        for (const i of axisIndexes) this.batch.axis.push(axisSample(machineId, time, readout, i));
      }
      const { toolNumber, toolOffset, feedrate } = readout.tool;
      if (due.has("tool"))
        this.batch.tool.push({ machineId, toolNumber, time, toolOffset, feedrate });
      if (due.has("tool_usage"))
        this.batch.toolUsage.push({ machineId, toolInUse: toolNumber, time });
    }
  }

  private async flush(): Promise<void> {
    const batch = this.batch;
    if (batchSize(batch) === 0) return;
    this.batch = emptyBatch();
    await this.options.sink.write(batch);
    this.counts.axis += batch.axis.length;
    this.counts.tool += batch.tool.length;
    this.counts.toolUsage += batch.toolUsage.length;
  }

  private async sleepUntil(time: number): Promise<void> {
    const reportAt = this.lastReport.at + this.reportEveryMs();
    const wait = Math.min(time, reportAt) - this.clock.now();
    if (wait > 0) await this.clock.sleep(wait, this.abort.signal);
  }

  private reportIfDue(): void {
    if (this.clock.now() >= this.lastReport.at + this.reportEveryMs()) this.report();
  }

  /** Reports the window since the last report; returns what it reported. */
  private report(): FleetStats {
    const stats = this.stats();
    const now = this.clock.now();
    const windowMs = now - this.lastReport.at;
    const recentSamplesPerSecond =
      windowMs > 0 ? ((stats.samples.total - this.lastReport.total) * 1000) / windowMs : 0;
    this.lastReport = { at: now, total: stats.samples.total, skipped: stats.skippedSamples };
    this.options.onReport?.({ ...stats, recentSamplesPerSecond, message: describeStats(stats) });
    return stats;
  }

  private samplesPerTick(entity: ScheduledEntity): number {
    const perMachine = entity === "axis" ? (this.machines[0]?.axisIndexes.length ?? 0) : 1;
    return perMachine * this.machines.length;
  }

  private expectedSamplesPerSecond(): number {
    return SCHEDULED_ENTITIES.reduce((sum, entity) => {
      const intervals = this.schedules.filter((s) => s.entity === entity).map((s) => s.intervalMs);
      return sum + unionTicksPerSecond(intervals) * this.samplesPerTick(entity);
    }, 0);
  }

  private lagLimitMs(): number {
    return this.options.maxLagMs ?? 1000;
  }

  private reportEveryMs(): number {
    return this.options.reportEveryMs ?? 5000;
  }
}

/**
 * One schedule per distinct interval of an entity. A row carries every field of its entity, so
 * when fields differ, a row is written on each field's tick (coinciding ticks once).
 */
/**
 * The spec's update intervals as schedules; a RangeError when one is below 1 ms (a speed too
 * high for the spec). Call it to check a spec before creating a fleet for it.
 */
export function buildSchedules(spec: FieldSpec): Schedule[] {
  return SCHEDULED_ENTITIES.flatMap((entity) =>
    [...new Set(entityIntervals(spec, entity).map((ms) => wholeMilliseconds(entity, ms)))].map(
      (intervalMs) => ({ entity, intervalMs, next: 0 }),
    ),
  );
}

/** The longest update interval a schedule takes: due times stay exact, far from overflow. */
const longestIntervalMs = 366 * 86_400_000;

/** Timestamps are whole milliseconds; a sped-up 100 ms / 3 becomes 33 ms. */
function wholeMilliseconds(entity: string, intervalMs: number): number {
  const rounded = Math.round(intervalMs);
  // An endless one (a huge number in the spec, or a tiny --speed) would make every due time NaN:
  // a loop that never sleeps, deaf to signals.
  if (!(rounded <= longestIntervalMs)) {
    throw new RangeError(`the ${entity} interval of ${intervalMs} ms is longer than a year`);
  }
  if (rounded < 1) {
    throw new RangeError(
      `the ${entity} interval of ${intervalMs} ms is below 1 ms; lower the speed`,
    );
  }
  return rounded;
}

/** Ticks per second of the union of several periodic schedules, by inclusion–exclusion. */
export function unionTicksPerSecond(intervalsMs: readonly number[]): number {
  let rate = 0;
  const subsets = 1 << intervalsMs.length;
  for (let mask = 1; mask < subsets; mask += 1) {
    let period = 1;
    let size = 0;
    intervalsMs.forEach((interval, i) => {
      if (mask & (1 << i)) {
        period = leastCommonMultiple(period, interval);
        size += 1;
      }
    });
    rate += (size % 2 === 1 ? 1 : -1) * (1000 / period);
  }
  return rate;
}

function leastCommonMultiple(a: number, b: number): number {
  let [x, y] = [a, b];
  while (y !== 0) [x, y] = [y, x % y];
  return (a / x) * b;
}

export function describeStats(stats: FleetStats): string {
  const rate = (n: number) => Math.round(n).toLocaleString("en-US");
  const seconds = (ms: number) =>
    ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
  const line =
    `${stats.machines} machines: ${rate(stats.samplesPerSecond)} samples/s ` +
    `(spec: ${rate(stats.expectedSamplesPerSecond)}), lag ${seconds(stats.lagMs)}`;
  if (stats.keepingUp) return line;
  return `${line}; cannot keep up: skipped ${rate(stats.skippedSamples)} samples so far to stay on the clock`;
}

function axisSample(
  machineId: number,
  time: number,
  readout: Readonly<MachineReadout>,
  i: number,
): AxisSample {
  let actualPosition = readout.actual[i]!;
  let targetPosition = readout.target[i]!;
  const axisName = AXIS_NAMES[i]!;
  if (axisName === "C") {
    // Shown modulo 360; the target keeps the signed move still to go (see motion.ts axisState).
    const wrapped = wrapDegrees(actualPosition);
    targetPosition = wrapped + (targetPosition - actualPosition);
    actualPosition = wrapped;
  }
  return {
    machineId,
    axisName,
    time,
    actualPosition,
    targetPosition,
    velocity: readout.velocity[i]!,
    acceleration: readout.acceleration[i]!,
    homed: readout.homed[i]!,
  };
}

const emptyBatch = (): SampleBatch => ({ axis: [], tool: [], toolUsage: [] });
const batchSize = (batch: SampleBatch) =>
  batch.axis.length + batch.tool.length + batch.toolUsage.length;
