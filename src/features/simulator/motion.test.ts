import { describe, expect, it } from "vitest";
import {
  AXIS_NAMES,
  AXIS_TRAVEL,
  type AxisLimitsTable,
  axisLimitsWith,
  MachineMotion,
  type MachineState,
} from "./motion.ts";
import { planTrapezoid, profileAt } from "./velocity-profile.ts";

const SEEDS = [1, 2, 3, 42, 81258856];
/** Round-off only: the profiles are closed form, so limits hold up to the last bit. */
const EPSILON = 1e-9;

function run(motion: MachineMotion, seconds: number, step: number): MachineState[] {
  const states: MachineState[] = [];
  for (let k = 0; k * step <= seconds; k += 1) states.push(motion.stateAt(k * step));
  return states;
}

/** C is shown modulo 360: compare positions the short way round. */
function travelled(axis: string, from: number, to: number): number {
  const d = to - from;
  return axis === "C" ? d - 360 * Math.round(d / 360) : d;
}

/**
 * The physical invariants, as a list of violations: an `expect` per value would make a
 * million-sample check take minutes.
 */
function invariantViolations(states: MachineState[], limits: AxisLimitsTable): string[] {
  const violations: string[] = [];
  const fail = (state: MachineState, axis: string, what: string) => {
    if (violations.length < 10) violations.push(`t=${state.time.toFixed(3)} s, ${axis}: ${what}`);
  };
  states.forEach((state, k) => {
    const previous = states[k - 1];
    state.axes.forEach((axis, i) => {
      const { maxVelocity, maxAcceleration } = limits[axis.axisName];
      const name = axis.axisName;
      // Exactly within the limits, as stored rows are checked against max_velocity.
      if (Math.abs(axis.velocity) > maxVelocity) fail(state, name, `v=${axis.velocity}`);
      if (Math.abs(axis.acceleration) > maxAcceleration) {
        fail(state, name, `a=${axis.acceleration}`);
      }
      if (axis.distanceToGo !== axis.targetPosition - axis.actualPosition) {
        fail(state, name, "distance_to_go ≠ target − actual");
      }
      const travel = name === "C" ? { min: 0, max: 360 - 1e-12 } : AXIS_TRAVEL[name];
      if (axis.actualPosition < travel.min - 1e-6 || axis.actualPosition > travel.max + 1e-6) {
        fail(state, name, `position ${axis.actualPosition} outside [${travel.min}, ${travel.max}]`);
      }
      if (!previous) return;
      const before = previous.axes[i]!;
      const dt = state.time - previous.time;
      // Velocity is maxAcceleration-Lipschitz, and for such a function the trapezoid rule
      // misses its integral by at most a·Δt²/4: the exact bound, not a fudge factor.
      const expected = ((before.velocity + axis.velocity) / 2) * dt;
      const moved = travelled(name, before.actualPosition, axis.actualPosition);
      if (Math.abs(moved - expected) > (maxAcceleration * dt * dt) / 4 + 1e-9) {
        fail(state, name, `moved ${moved}, but v·Δt = ${expected}`);
      }
      if (Math.abs(axis.velocity - before.velocity) > maxAcceleration * dt * (1 + EPSILON)) {
        fail(state, name, `velocity jumped from ${before.velocity} to ${axis.velocity}`);
      }
      if (before.homed && !axis.homed) fail(state, name, "lost its home");
    });
  });
  return violations;
}

describe("velocity profile", () => {
  it("cruises at the limit on a long move and stops exactly at its end", () => {
    const profile = planTrapezoid(1000, 500, 2000);
    expect(profile.accelerationTime).toBe(0.25);
    expect(profile.duration).toBeCloseTo(2.25, 12);
    expect(profileAt(profile, 1)).toEqual({ distance: 62.5 + 375, velocity: 500, acceleration: 0 });
    expect(profileAt(profile, profile.duration)).toEqual({
      distance: 1000,
      velocity: 0,
      acceleration: 0,
    });
  });

  it("never reaches the limit on a short move: a triangle", () => {
    const profile = planTrapezoid(2, 500, 2000);
    expect(profile.peakVelocity).toBeCloseTo(Math.sqrt(4000), 12);
    expect(profile.cruiseTime).toBe(0);
    const middle = profileAt(profile, profile.accelerationTime);
    expect(middle.distance).toBeCloseTo(1, 12);
  });
});

describe("machine motion", () => {
  it.each(SEEDS)(
    "keeps every axis within its limits, 100 ms samples over 5 minutes (seed %i)",
    (seed) => {
      const motion = new MachineMotion({ seed });
      expect(invariantViolations(run(motion, 300, 0.1), motion.limits)).toEqual([]);
    },
  );

  it.each(SEEDS)(
    "velocity and acceleration are the derivatives, 1 ms samples over 30 s (seed %i)",
    (seed) => {
      const motion = new MachineMotion({ seed });
      const step = 0.001;
      const states = run(motion, 30, step);
      expect(invariantViolations(states, motion.limits)).toEqual([]);
      // Acceleration changes in steps (trapezoid corners); only steps that straddle a corner may
      // disagree with the mean acceleration, and corners are rare on a 1 ms grid.
      let disagreeing = 0;
      let compared = 0;
      for (let k = 1; k < states.length; k += 1) {
        states[k]!.axes.forEach((axis, i) => {
          const before = states[k - 1]!.axes[i]!;
          const expected = ((before.acceleration + axis.acceleration) / 2) * step;
          compared += 1;
          if (Math.abs(axis.velocity - before.velocity - expected) > 1e-6) disagreeing += 1;
        });
      }
      expect(disagreeing / compared).toBeLessThan(0.01);
    },
  );

  it("starts unhomed and at rest, homes Z first, then stays homed", () => {
    const motion = new MachineMotion({ seed: 7 });
    const first = motion.stateAt(0);
    expect(first.activity).toBe("homing");
    expect(first.axes.every((axis) => !axis.homed && axis.velocity === 0)).toBe(true);
    const states = run(motion, 60, 0.05);
    const homedAt = (name: string) =>
      states.findIndex((s) => s.axes.find((a) => a.axisName === name)!.homed);
    expect(homedAt("Z")).toBeGreaterThan(0);
    expect(homedAt("Z")).toBeLessThan(homedAt("X"));
    expect(homedAt("X")).toBeLessThanOrEqual(homedAt("C"));
    expect(states.at(-1)!.axes.every((axis) => axis.homed)).toBe(true);
  });

  it("runs rapids, feeds, arcs, dwells and tool changes, feeding at the tool's feedrate", () => {
    const activities = new Set<string>();
    const toolsUsed = new Set<number>();
    const mismatches: number[] = [];
    for (const seed of SEEDS) {
      const motion = new MachineMotion({ seed, toolCapacity: 6 });
      for (const state of run(motion, 900, 0.1)) {
        activities.add(state.activity);
        toolsUsed.add(state.tool.toolNumber);
        if (state.tool !== motion.tools[state.tool.toolNumber - 1]) mismatches.push(state.time);
        if (state.programmedFeedrate === null) continue;
        const [x, y, z] = state.axes;
        const pathSpeed = Math.hypot(x!.velocity, y!.velocity, z!.velocity);
        if (
          state.programmedFeedrate !== state.tool.feedrate ||
          pathSpeed > (state.tool.feedrate / 60) * (1 + EPSILON)
        ) {
          mismatches.push(state.time);
        }
      }
    }
    expect(mismatches).toEqual([]);
    expect([...activities].sort()).toEqual(
      ["arc", "dwell", "feed", "homing", "rapid", "tool_change"].sort(),
    );
    expect(Math.min(...toolsUsed)).toBeGreaterThanOrEqual(1);
    expect(Math.max(...toolsUsed)).toBeLessThanOrEqual(6);
    expect(toolsUsed.size).toBeGreaterThan(3);
  });

  it("turns C across 0° and keeps distance_to_go the true remaining move", () => {
    let crossings = 0;
    for (const seed of SEEDS) {
      const states = run(new MachineMotion({ seed }), 1200, 0.1);
      for (let k = 1; k < states.length; k += 1) {
        const before = states[k - 1]!.axes[4]!.actualPosition;
        const after = states[k]!.axes[4]!.actualPosition;
        if (Math.abs(after - before) > 180) crossings += 1;
      }
    }
    expect(crossings).toBeGreaterThan(0);
  });

  it("never moves A or C on a machine without rotary axes", () => {
    const states = run(new MachineMotion({ seed: 3, rotary: false }), 900, 0.5);
    const afterHoming = states.filter((s) => s.axes[3]!.homed && s.axes[4]!.homed);
    expect(afterHoming.length).toBeGreaterThan(1000);
    expect(
      afterHoming.filter((s) => s.axes[3]!.velocity !== 0 || s.axes[4]!.velocity !== 0),
    ).toEqual([]);
  });

  it("respects the limits it is given, as the database's axis rows set them", () => {
    const limits = {
      X: { maxVelocity: 80, maxAcceleration: 150 },
      C: { maxVelocity: 30, maxAcceleration: 60 },
    };
    const motion = new MachineMotion({ seed: 5, limits });
    expect(motion.limits).toEqual(axisLimitsWith(limits));
    const states = run(motion, 300, 0.1);
    expect(invariantViolations(states, motion.limits)).toEqual([]);
    expect(Math.max(...states.map((s) => Math.abs(s.axes[0]!.velocity)))).toBeGreaterThan(40);
    expect(() => axisLimitsWith({ Y: { maxVelocity: 0, maxAcceleration: 1 } })).toThrow(/Y/);
  });

  it("is reproducible: the same seed gives the same series, another seed another", () => {
    const series = (seed: number) => run(new MachineMotion({ seed }), 120, 0.1);
    expect(series(11)).toEqual(series(11));
    expect(series(12)).not.toEqual(series(11));
  });

  it("does not depend on how often it is sampled", () => {
    const coarse = new MachineMotion({ seed: 9 });
    const fine = new MachineMotion({ seed: 9 });
    run(fine, 97.3, 0.001);
    for (const time of [97.3, 97.4, 250]) {
      expect(fine.stateAt(time)).toEqual(coarse.stateAt(time));
    }
  });

  it("only runs forward in time", () => {
    const motion = new MachineMotion({ seed: 1 });
    motion.stateAt(10);
    expect(() => motion.stateAt(9)).toThrow(/forward/);
    expect(AXIS_NAMES).toEqual(["X", "Y", "Z", "A", "C"]);
  });
});
