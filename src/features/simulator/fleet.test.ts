import { describe, expect, it } from "vitest";
import { DEFAULT_FIELD_SPEC_FILE, type FieldSpec, readFieldSpec } from "./field-spec.ts";
import {
  describeFleet,
  FIRST_MACHINE_ID,
  type FleetClock,
  type FleetOptions,
  type FleetReport,
  parseAxisList,
  startFleet,
  unionTicksPerSecond,
} from "./fleet.ts";
import { DEFAULT_AXIS_LIMITS } from "./motion.ts";
import type { AxisSample, SampleBatch, SampleSink } from "./samples.ts";

const START = Date.UTC(2025, 0, 6, 8, 0, 0);

/** Time passes only when the fleet sleeps, or when a sink says its write took a while. */
function virtualClock(): FleetClock & { advance(ms: number): void } {
  let now = START;
  return {
    now: () => now,
    sleep: async (ms) => {
      now += ms;
    },
    advance: (ms) => {
      now += ms;
    },
  };
}

function collectingSink(onWrite?: (batch: SampleBatch) => void): SampleSink & {
  batches: SampleBatch[];
  all(): SampleBatch;
} {
  const batches: SampleBatch[] = [];
  return {
    batches,
    write: async (batch) => {
      batches.push(batch);
      onWrite?.(batch);
    },
    all: () => ({
      axis: batches.flatMap((b) => b.axis),
      tool: batches.flatMap((b) => b.tool),
      toolUsage: batches.flatMap((b) => b.toolUsage),
    }),
  };
}

function spec(rows: [string, string, string][]): FieldSpec {
  return {
    source: "test",
    entries: rows.map(([entity, field, interval], i) => ({
      entity: entity as FieldSpec["entries"][number]["entity"],
      field,
      unit: "",
      type: "",
      intervalMs: interval === "static" ? null : Number(interval),
      row: i + 2,
    })),
  };
}

async function runVirtual(options: Omit<FleetOptions, "sink" | "clock">) {
  const sink = collectingSink();
  const stats = await startFleet({ ...options, sink, clock: virtualClock() }).done;
  return { stats, samples: sink.all(), batches: sink.batches };
}

const defaultSpec = await readFieldSpec(DEFAULT_FIELD_SPEC_FILE);

describe("fleet timing", () => {
  it("writes the spec's rate over a 10 s run: every field at start, then once per interval", async () => {
    const { stats, samples } = await runVirtual({
      spec: defaultSpec,
      machines: 3,
      durationMs: 10_000,
    });
    // 100 ms axis ticks in [0, 10 s): 100 per axis; tool (15 min) and tool in use (5 min) once.
    expect(samples.axis).toHaveLength(3 * 5 * 100);
    expect(samples.tool).toHaveLength(3);
    expect(samples.toolUsage).toHaveLength(3);
    for (const kind of [samples.axis, samples.tool, samples.toolUsage]) {
      expect(kind.filter((s) => s.time === START)).toHaveLength(kind === samples.axis ? 15 : 3);
    }
    const axisTimes = [...new Set(samples.axis.map((s) => s.time))];
    expect(axisTimes).toEqual(Array.from({ length: 100 }, (_, k) => START + 100 * k));
    expect(stats.expectedSamplesPerSecond).toBeCloseTo(3 * (5 * 10 + 1 / 900 + 1 / 300), 9);
    expect(stats.samplesPerSecond / stats.expectedSamplesPerSecond).toBeGreaterThan(0.95);
    expect(stats.samplesPerSecond / stats.expectedSamplesPerSecond).toBeLessThan(1.05);
    expect(stats).toMatchObject({
      elapsedMs: 10_000,
      skippedSamples: 0,
      keepingUp: true,
      lagMs: 0,
    });
  });

  it("divides the intervals by the speed factor", async () => {
    const fast = await readFieldSpec(DEFAULT_FIELD_SPEC_FILE, { speed: 100 });
    const { samples } = await runVirtual({ spec: fast, machines: 2, durationMs: 10_000 });
    expect(samples.axis).toHaveLength(2 * 5 * 10_000); // every 1 ms
    expect(samples.tool).toHaveLength(2 * 2); // every 9 s: 0 and 9 s
    expect(samples.toolUsage).toHaveLength(2 * 4); // every 3 s: 0, 3, 6 and 9 s
    const tooFast = await readFieldSpec(DEFAULT_FIELD_SPEC_FILE, { speed: 1000 });
    expect(() => startFleet({ spec: tooFast, machines: 1, sink: collectingSink() })).toThrow(
      /below 1 ms/,
    );
    // So slow that an interval is endless (or beyond a year): refused, not a loop that never
    // sleeps and never hears a signal.
    for (const speed of [1e-310, 1e-6]) {
      const tooSlow = await readFieldSpec(DEFAULT_FIELD_SPEC_FILE, { speed });
      expect(() => startFleet({ spec: tooSlow, machines: 1, sink: collectingSink() })).toThrow(
        /longer than a year/,
      );
    }
  });

  it("writes an axis row on each field's tick when axis fields differ, coinciding ticks once", async () => {
    const mixed = spec([
      ["axis", "actual_position", "100"],
      ["axis", "velocity", "250"],
      ["machine", "machine_name", "static"],
    ]);
    const { stats, samples } = await runVirtual({
      spec: mixed,
      machines: 1,
      durationMs: 1000,
      axes: ["X"],
    });
    expect(samples.axis.map((s) => s.time - START)).toEqual([
      0, 100, 200, 250, 300, 400, 500, 600, 700, 750, 800, 900,
    ]);
    expect(stats.expectedSamplesPerSecond).toBe(12);
    expect(samples.tool).toEqual([]);
    expect(unionTicksPerSecond([100, 250])).toBe(12);
  });

  it("skips ahead and says so when the sink cannot keep up, never drifting behind the clock", async () => {
    const clock = virtualClock();
    const reports: FleetReport[] = [];
    const sink = collectingSink(() => clock.advance(1500));
    const stats = await startFleet({
      spec: defaultSpec,
      sink,
      clock,
      machines: 2,
      durationMs: 20_000,
      reportEveryMs: 5000,
      onReport: (report) => reports.push(report),
    }).done;
    expect(stats.skippedSamples).toBeGreaterThan(0);
    expect(stats.keepingUp).toBe(false);
    expect(stats.lagMs).toBeLessThanOrEqual(1500);
    expect(reports.some((r) => /cannot keep up: skipped [\d,]+ samples/.test(r.message))).toBe(
      true,
    );
    const times = sink.batches.map((b) => b.axis[0]!.time);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Each write lands within a write's time of the clock: the series keeps up with real time.
    expect(times.at(-1)! - START).toBeGreaterThan(20_000 - 2 * 1500);
  });

  it("reports achieved and expected rates every few seconds", async () => {
    const reports: FleetReport[] = [];
    await runVirtual({
      spec: defaultSpec,
      machines: 2,
      durationMs: 12_000,
      reportEveryMs: 5000,
      onReport: (report) => reports.push(report),
    });
    expect(reports.map((r) => r.elapsedMs)).toEqual([5000, 10_000, 12_000]);
    expect(reports[1]!.message).toMatch(/^2 machines: 100 samples\/s \(spec: 100\), lag 0 ms$/);
    expect(reports[1]!.recentSamplesPerSecond).toBe(100);
  });

  it("stops on request, finishing the write under way", async () => {
    const clock = virtualClock();
    let fleet: ReturnType<typeof startFleet> | undefined;
    let writesAfterStop = 0;
    let stopped = false;
    const sink = collectingSink(() => {
      if (stopped) writesAfterStop += 1;
      if (sink.batches.length === 20) {
        stopped = true;
        void fleet!.stop();
      }
    });
    fleet = startFleet({ spec: defaultSpec, sink, clock, machines: 1 });
    const stats = await fleet.done;
    expect(sink.batches).toHaveLength(20);
    expect(writesAfterStop).toBe(0);
    expect(stats.samples.axis).toBe(sink.all().axis.length);
  });

  it("keeps to the real clock for a short run", async () => {
    const sink = collectingSink();
    // A generous lag limit: on a loaded machine ticks arrive late but none is dropped, so the
    // count is exact without any timing assertion.
    const stats = await startFleet({
      spec: defaultSpec,
      sink,
      machines: 2,
      durationMs: 2500,
      maxLagMs: 60_000,
    }).done;
    const { axis } = sink.all();
    expect(axis).toHaveLength(2 * 5 * 25);
    const times = [...new Set(axis.map((s) => s.time))];
    expect(times.map((t) => t - stats.startedAt)).toEqual(
      Array.from({ length: 25 }, (_, k) => 100 * k),
    );
    expect(stats.elapsedMs).toBe(2500);
  });
});

describe("fleet output", () => {
  const everySecond = spec([
    ["axis", "actual_position", "100"],
    ["tool", "tool_offset", "1000"],
    ["tool", "feedrate", "1000"],
    ["tool_usage", "tool_in_use", "1000"],
  ]);

  it("names machines from 81258856 upward and splits large ticks into batches", async () => {
    const machines = describeFleet({ machines: 10_000 });
    expect(machines[0]).toMatchObject({
      machineId: FIRST_MACHINE_ID,
      machineName: "Machine 01",
      toolCapacity: 24,
    });
    expect(machines[9_999]).toMatchObject({ machineId: 81268855, machineName: "Machine 10000" });
    expect(machines[0]!.axes).toEqual(
      (["X", "Y", "Z", "A", "C"] as const).map((axisName) => ({
        axisName,
        ...DEFAULT_AXIS_LIMITS[axisName],
      })),
    );
    const { batches } = await runVirtual({
      spec: everySecond,
      machines: 10_000,
      durationMs: 100,
      maxBatchSamples: 5000,
    });
    expect(batches.reduce((n, b) => n + b.axis.length, 0)).toBe(50_000);
    expect(
      Math.max(...batches.map((b) => b.axis.length + b.tool.length + b.toolUsage.length)),
    ).toBeLessThanOrEqual(5000);
  });

  it("starts at another id when asked, each machine named and moving as it would in a longer run", () => {
    const whole = describeFleet({ machines: 25 });
    const after = describeFleet({ machines: 5, firstMachineId: FIRST_MACHINE_ID + 20 });
    expect(after.map((machine) => machine.machineId)).toEqual(
      whole.slice(20).map((machine) => machine.machineId),
    );
    expect(after).toEqual(whole.slice(20));
    expect(after[0]!.machineName).toBe("Machine 21");
    const below = describeFleet({ machines: 2, firstMachineId: 7 });
    expect(below.map(({ machineId, machineName }) => [machineId, machineName])).toEqual([
      [7, "Machine 7"],
      [8, "Machine 8"],
    ]);
    // Below the default numbering too, the motion goes with the id, not the place in the run.
    const across = describeFleet({ machines: 8, firstMachineId: FIRST_MACHINE_ID - 4 });
    expect(across.slice(4)).toEqual(whole.slice(0, 4));
    expect(describeFleet({ machines: 1, firstMachineId: FIRST_MACHINE_ID - 3 })[0]).toEqual(
      across[1],
    );
    expect(across[0]!.tools).not.toEqual(across[4]!.tools);
    for (const firstMachineId of [0, -1, 1.5, Number.MAX_SAFE_INTEGER])
      expect(() => describeFleet({ machines: 2, firstMachineId })).toThrow(/first machine id/);
  });

  it("reports only the axes asked for, and 3-axis machines never turn A or C", async () => {
    expect(parseAxisList(" z,x ,Y")).toEqual(["X", "Y", "Z"]);
    expect(() => parseAxisList("X,B")).toThrow(/axes/);
    expect(() => parseAxisList("X,X")).toThrow(/axes/);
    const { samples } = await runVirtual({
      spec: everySecond,
      machines: 2,
      durationMs: 5000,
      axes: ["X", "Y", "Z"],
    });
    expect(new Set(samples.axis.map((s) => s.axisName))).toEqual(new Set(["X", "Y", "Z"]));
    expect(() => describeFleet({ machines: 0 })).toThrow(/1 to 10000/);
    expect(() => describeFleet({ machines: 10_001 })).toThrow(/1 to 10000/);
  });

  it("keeps physical invariants in the written series, for several machines over two minutes", async () => {
    const limits = { X: { maxVelocity: 300, maxAcceleration: 1000 } };
    const { samples } = await runVirtual({
      spec: everySecond,
      machines: 6,
      seed: 17,
      durationMs: 120_000,
      axisLimits: (machineId) => (machineId % 2 === 0 ? limits : {}),
    });
    const series = new Map<string, AxisSample[]>();
    for (const sample of samples.axis) {
      const key = `${sample.machineId}/${sample.axisName}`;
      series.set(key, [...(series.get(key) ?? []), sample]);
    }
    expect(series.size).toBe(30);
    const violations: string[] = [];
    for (const [key, points] of series) {
      const axis = points[0]!.axisName;
      const { maxVelocity, maxAcceleration } =
        axis === "X" && points[0]!.machineId % 2 === 0 ? limits.X : DEFAULT_AXIS_LIMITS[axis];
      expect(points[0]!.homed).toBe(false);
      expect(points.at(-1)!.homed).toBe(true);
      points.forEach((p, k) => {
        if (Math.abs(p.velocity) > maxVelocity * (1 + 1e-9))
          violations.push(`${key} v ${p.velocity}`);
        if (Math.abs(p.acceleration) > maxAcceleration * (1 + 1e-9))
          violations.push(`${key} a ${p.acceleration}`);
        if (axis === "C" && !(p.actualPosition >= 0 && p.actualPosition < 360))
          violations.push(`${key} C ${p.actualPosition}`);
        const before = points[k - 1];
        if (!before) return;
        const dt = (p.time - before.time) / 1000;
        let moved = p.actualPosition - before.actualPosition;
        if (axis === "C") moved -= 360 * Math.round(moved / 360);
        // Trapezoid rule on a maxAcceleration-Lipschitz velocity: error ≤ a·Δt²/4.
        const error = Math.abs(moved - ((before.velocity + p.velocity) / 2) * dt);
        if (error > (maxAcceleration * dt * dt) / 4 + 1e-9)
          violations.push(`${key} Δp ${error} at ${p.time}`);
        if (before.homed && !p.homed) violations.push(`${key} unhomed`);
      });
    }
    expect(violations).toEqual([]);
  });

  it("reports the tool in use, within the magazine, with that tool's own data", async () => {
    const { samples } = await runVirtual({
      spec: everySecond,
      machines: 4,
      toolCapacity: 8,
      durationMs: 600_000,
    });
    const machines = describeFleet({ machines: 4, toolCapacity: 8 });
    expect(samples.tool).toHaveLength(4 * 600);
    const usage = new Map(samples.toolUsage.map((u) => [`${u.machineId}@${u.time}`, u.toolInUse]));
    const mismatches = samples.tool.filter((t) => {
      const tool = machines[t.machineId - FIRST_MACHINE_ID]!.tools[t.toolNumber - 1];
      return (
        usage.get(`${t.machineId}@${t.time}`) !== t.toolNumber ||
        t.toolNumber < 1 ||
        t.toolNumber > 8 ||
        tool?.feedrate !== t.feedrate ||
        tool?.toolOffset !== t.toolOffset
      );
    });
    expect(mismatches).toEqual([]);
    const changes = machines.map(({ machineId }) => {
      const used = samples.toolUsage.filter((u) => u.machineId === machineId);
      return used.filter((u, k) => k > 0 && used[k - 1]!.toolInUse !== u.toolInUse).length;
    });
    expect(Math.min(...changes)).toBeGreaterThan(1);
  });

  it("is reproducible: the same seed gives the same series, another seed another", async () => {
    const run = (seed: number) =>
      runVirtual({ spec: defaultSpec, machines: 3, seed, durationMs: 30_000 });
    const [first, again, other] = await Promise.all([run(5), run(5), run(6)]);
    expect(again.samples).toEqual(first.samples);
    expect(other.samples.axis).not.toEqual(first.samples.axis);
  });
});
