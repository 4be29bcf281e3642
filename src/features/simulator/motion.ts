import { type PartProgramContext, writePartProgram } from "./part-program.ts";
import { type SeededRandom, seededRandom } from "./seeded-random.ts";
import { planTrapezoid, profileAt, type TrapezoidProfile } from "./velocity-profile.ts";

export const AXIS_NAMES = ["X", "Y", "Z", "A", "C"] as const;
export type AxisName = (typeof AXIS_NAMES)[number];

/** mm/s and mm/s² for X, Y, Z; deg/s and deg/s² for A and C: what the `axis` rows carry. */
export interface AxisLimits {
  maxVelocity: number;
  maxAcceleration: number;
}
export type AxisLimitsTable = Record<AxisName, AxisLimits>;

export const DEFAULT_AXIS_LIMITS: AxisLimitsTable = {
  X: { maxVelocity: 500, maxAcceleration: 2000 },
  Y: { maxVelocity: 500, maxAcceleration: 2000 },
  Z: { maxVelocity: 500, maxAcceleration: 2000 },
  A: { maxVelocity: 100, maxAcceleration: 400 },
  C: { maxVelocity: 100, maxAcceleration: 400 },
};

/** Machine coordinates. C is an endless rotary table, so it has no travel limits. */
export const AXIS_TRAVEL: Record<Exclude<AxisName, "C">, { min: number; max: number }> = {
  X: { min: -400, max: 400 },
  Y: { min: -300, max: 300 },
  Z: { min: -450, max: 0 },
  A: { min: -120, max: 120 },
};

const TRAVELLING_AXES = ["X", "Y", "Z", "A"] as const;

/** X, Y, Z, A, C in AXIS_NAMES order; C unwrapped, so its motion is continuous across 360°. */
export type Pose = [number, number, number, number, number];
export type AxisTargets = Partial<Record<AxisName, number>>;

export interface Tool {
  toolNumber: number;
  /** Tool length, mm: it sets how high the spindle sits above the part. */
  toolOffset: number;
  /** mm/min: every feed move made with this tool uses it. */
  feedrate: number;
}

export type MotionKind = "homing" | "rapid" | "feed" | "arc" | "dwell" | "tool_change";

interface SegmentBase {
  kind: MotionKind;
  start: number;
  duration: number;
  /** Where the block ends: what the control shows as the target position. */
  target: Pose;
  toolNumber: number;
  /** mm/min of a feed move or arc; null for rapids and dwells. */
  feedrate: number | null;
}
interface LinearSegment extends SegmentBase {
  shape: "line";
  from: Pose;
  delta: Pose;
  /** Over the fraction of the move done (0 → 1), so that all axes arrive together. */
  profile: TrapezoidProfile;
}
interface ArcSegment extends SegmentBase {
  shape: "arc";
  from: Pose;
  centerX: number;
  centerY: number;
  radius: number;
  startAngle: number;
  direction: 1 | -1;
  /** Over the path length, mm. */
  profile: TrapezoidProfile;
}
interface DwellSegment extends SegmentBase {
  shape: "dwell";
}
export type Segment = LinearSegment | ArcSegment | DwellSegment;

const NEGLIGIBLE_TRAVEL = 1e-9;

/**
 * Turns moves into timed segments under the axis limits. Every move starts and ends at rest
 * (exact stop, as G61), so consecutive segments join with continuous position and velocity.
 */
export class MotionPlanner {
  readonly segments: Segment[] = [];

  constructor(
    readonly limits: AxisLimitsTable,
    public pose: Pose,
    public tool: Tool,
    public time = 0,
  ) {}

  rapid(to: AxisTargets, kind: MotionKind = "rapid", speedScale = 1): void {
    this.line(to, kind, null, speedScale);
  }

  /** A straight feed move at the tool's feedrate over the X/Y/Z path. */
  feed(to: AxisTargets): void {
    this.line(to, "feed", this.tool.feedrate, 1);
  }

  /** A circular arc in the XY plane around (centerX, centerY); positive sweep is counter-clockwise. */
  arc(centerX: number, centerY: number, sweep: number): void {
    const [x, y] = this.pose;
    const radius = Math.hypot(x - centerX, y - centerY);
    if (radius < 0.1 || Math.abs(sweep) < NEGLIGIBLE_TRAVEL) return;
    this.assertInTravel({ X: centerX - radius, Y: centerY - radius });
    this.assertInTravel({ X: centerX + radius, Y: centerY + radius });
    const vMax = Math.min(this.limits.X.maxVelocity, this.limits.Y.maxVelocity);
    const aMax = Math.min(this.limits.X.maxAcceleration, this.limits.Y.maxAcceleration);
    // Each axis feels tangential plus centripetal acceleration: |a_axis| ≤ a_t + v²/R. Half of
    // the limit for each keeps the sum within it, however the arc is oriented.
    const pathAcceleration = aMax / 2;
    const pathVelocity = Math.min(this.tool.feedrate / 60, vMax, Math.sqrt((aMax / 2) * radius));
    const profile = planTrapezoid(radius * Math.abs(sweep), pathVelocity, pathAcceleration);
    const startAngle = Math.atan2(y - centerY, x - centerX);
    const endAngle = startAngle + sweep;
    const target: Pose = [...this.pose];
    target[0] = centerX + radius * Math.cos(endAngle);
    target[1] = centerY + radius * Math.sin(endAngle);
    this.push({
      start: this.time,
      toolNumber: this.tool.toolNumber,
      shape: "arc",
      kind: "arc",
      feedrate: this.tool.feedrate,
      from: [...this.pose],
      target,
      centerX,
      centerY,
      radius,
      startAngle,
      direction: sweep > 0 ? 1 : -1,
      profile,
      duration: profile.duration,
    });
  }

  dwell(seconds: number, kind: MotionKind = "dwell"): void {
    if (seconds <= 0) return;
    this.push({
      start: this.time,
      toolNumber: this.tool.toolNumber,
      shape: "dwell",
      kind,
      feedrate: null,
      target: [...this.pose],
      duration: seconds,
    });
  }

  changeTool(tool: Tool, seconds: number): void {
    this.tool = tool;
    this.dwell(seconds, "tool_change");
  }

  private line(to: AxisTargets, kind: MotionKind, feedrate: number | null, speedScale: number) {
    this.assertInTravel(to);
    const target = AXIS_NAMES.map((axis, i) => to[axis] ?? this.pose[i]!) as Pose;
    const delta = target.map((value, i) => value - this.pose[i]!) as Pose;
    if (delta.every((d) => Math.abs(d) < NEGLIGIBLE_TRAVEL)) return;
    // Plan the fraction of the move done, s ∈ [0, 1]: axis i moves delta_i·s, so its velocity
    // and acceleration are delta_i·ṡ and delta_i·s̈, and the slowest axis sets the pace.
    let rate = Number.POSITIVE_INFINITY;
    let rateChange = Number.POSITIVE_INFINITY;
    AXIS_NAMES.forEach((axis, i) => {
      const travel = Math.abs(delta[i]!);
      if (travel < NEGLIGIBLE_TRAVEL) return;
      rate = Math.min(rate, (speedScale * this.limits[axis].maxVelocity) / travel);
      rateChange = Math.min(rateChange, (speedScale * this.limits[axis].maxAcceleration) / travel);
    });
    if (feedrate !== null) rate = Math.min(rate, feedrate / 60 / feedPathLength(delta));
    const profile = planTrapezoid(1, rate, rateChange);
    this.push({
      start: this.time,
      toolNumber: this.tool.toolNumber,
      shape: "line",
      kind,
      feedrate,
      from: [...this.pose],
      delta,
      target,
      profile,
      duration: profile.duration,
    });
  }

  private push(segment: Segment): void {
    this.segments.push(segment);
    this.time += segment.duration;
    this.pose = [...segment.target];
  }

  private assertInTravel(to: AxisTargets): void {
    for (const axis of TRAVELLING_AXES) {
      const value = to[axis];
      const travel = AXIS_TRAVEL[axis];
      if (value !== undefined && (value < travel.min - 1e-6 || value > travel.max + 1e-6)) {
        throw new RangeError(`${axis}${value.toFixed(3)} is outside the travel of the machine`);
      }
    }
  }
}

/** The feedrate applies to the X/Y/Z path; a purely rotary move takes it in deg/min. */
function feedPathLength(delta: Pose): number {
  const linear = Math.hypot(delta[0], delta[1], delta[2]);
  return linear > 1e-6 ? linear : Math.max(Math.abs(delta[3]), Math.abs(delta[4]));
}

/**
 * A machine at one instant, overwritten by the next read: a fleet of 10,000 machines reads half
 * a million axis values a second, and fresh objects for each would keep the collector busy.
 */
export interface MachineReadout {
  time: number;
  /** Indexed as AXIS_NAMES; C is unwrapped here, shown modulo 360 by stateAt and the fleet. */
  readonly actual: Float64Array;
  readonly target: Float64Array;
  readonly velocity: Float64Array;
  readonly acceleration: Float64Array;
  readonly homed: boolean[];
  activity: MotionKind;
  tool: Tool;
  programmedFeedrate: number | null;
}

/** `value` within ±`limit`. */
const clamp = (value: number, limit: number) => Math.min(limit, Math.max(-limit, value));

function evaluateSegment(segment: Segment, time: number, into: MachineReadout): void {
  copyPose(segment.target, into.target);
  switch (segment.shape) {
    case "dwell":
      copyPose(segment.target, into.actual);
      into.velocity.fill(0);
      into.acceleration.fill(0);
      return;
    case "line": {
      const { distance, velocity, acceleration } = profileAt(segment.profile, time - segment.start);
      for (let i = 0; i < 5; i += 1) {
        const delta = segment.delta[i]!;
        into.actual[i] = segment.from[i]! + delta * distance;
        into.velocity[i] = delta * velocity;
        into.acceleration[i] = delta * acceleration;
      }
      return;
    }
    case "arc":
      evaluateArc(segment, time, into);
      return;
    default: {
      const unknown: never = segment;
      throw new Error(`unknown segment ${JSON.stringify(unknown)}`);
    }
  }
}

function evaluateArc(segment: ArcSegment, time: number, into: MachineReadout): void {
  const {
    distance: s,
    velocity: v,
    acceleration: a,
  } = profileAt(segment.profile, time - segment.start);
  const { radius: r, direction: k } = segment;
  const angle = segment.startAngle + (k * s) / r;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const centripetal = (v * v) / r;
  copyPose(segment.from, into.actual);
  into.actual[0] = segment.centerX + r * cos;
  into.actual[1] = segment.centerY + r * sin;
  into.velocity.fill(0);
  into.velocity[0] = -k * sin * v;
  into.velocity[1] = k * cos * v;
  into.acceleration.fill(0);
  into.acceleration[0] = -k * sin * a - cos * centripetal;
  into.acceleration[1] = k * cos * a - sin * centripetal;
}

/** By hand: TypedArray.set from a plain array takes a slow generic path. */
function copyPose(pose: Pose, into: Float64Array): void {
  for (let i = 0; i < 5; i += 1) into[i] = pose[i]!;
}

/** C as a rotary table shows it, in [0, 360). */
export function wrapDegrees(degrees: number): number {
  const turned = ((degrees % 360) + 360) % 360;
  return turned === 360 ? 0 : turned;
}

export interface AxisState {
  axisName: AxisName;
  actualPosition: number;
  targetPosition: number;
  velocity: number;
  acceleration: number;
  homed: boolean;
  distanceToGo: number;
}

export interface MachineState {
  /** Seconds since the machine was switched on. */
  time: number;
  axes: AxisState[];
  activity: MotionKind;
  tool: Tool;
  /** mm/min of the feed move under way, else null. */
  programmedFeedrate: number | null;
}

export interface MachineMotionOptions {
  seed: number;
  limits?: Partial<AxisLimitsTable>;
  toolCapacity?: number;
  /** False for a 3-axis machine: its programs never move A or C. */
  rotary?: boolean;
}

export const DEFAULT_TOOL_CAPACITY = 24;
const HOMING_SPEED_SCALE = 0.25;

/**
 * One machine: homes after power-on, then machines part after part. Segments are planned a
 * program ahead and evaluated in closed form at whatever instants are asked, in order.
 */
export class MachineMotion {
  readonly limits: AxisLimitsTable;
  readonly tools: readonly Tool[];
  private readonly random: SeededRandom;
  private readonly planner: MotionPlanner;
  private readonly homedAt: number[] = [];
  private readonly programContext: PartProgramContext;
  private current = 0;
  private readonly readout: MachineReadout = {
    time: Number.NEGATIVE_INFINITY,
    actual: new Float64Array(5),
    target: new Float64Array(5),
    velocity: new Float64Array(5),
    acceleration: new Float64Array(5),
    homed: [false, false, false, false, false],
    activity: "homing",
    tool: { toolNumber: 0, toolOffset: 0, feedrate: 0 },
    programmedFeedrate: null,
  };

  constructor(options: MachineMotionOptions) {
    this.limits = axisLimitsWith(options.limits);
    this.random = seededRandom(options.seed);
    this.tools = makeToolTable(this.random, options.toolCapacity ?? DEFAULT_TOOL_CAPACITY);
    this.planner = new MotionPlanner(
      this.limits,
      powerOnPose(this.random),
      this.random.pick(this.tools),
    );
    this.programContext = {
      planner: this.planner,
      random: this.random,
      tools: this.tools,
      rotary: options.rotary ?? true,
    };
    this.home();
  }

  /** The state at `time` (seconds since power-on); times must not go backwards. */
  stateAt(time: number): MachineState {
    const readout = this.readAt(time);
    return {
      time,
      axes: AXIS_NAMES.map((axisName, i) => axisState(readout, axisName, i)),
      activity: readout.activity,
      tool: readout.tool,
      programmedFeedrate: readout.programmedFeedrate,
    };
  }

  /** As stateAt, into one reused readout: valid until the next read. */
  readAt(time: number): Readonly<MachineReadout> {
    if (time < this.readout.time) {
      throw new RangeError(
        `machine time runs forward only (${time} s after ${this.readout.time} s)`,
      );
    }
    const segment = this.segmentAt(time);
    const readout = this.readout;
    readout.time = time;
    evaluateSegment(segment, time, readout);
    for (let i = 0; i < 5; i += 1) {
      readout.homed[i] = time >= this.homedAt[i]!;
      // Planned at the limits, but delta·(max/|delta|) may land one rounding step beyond them:
      // a reading must not, or an audit against max_velocity flags it.
      const { maxVelocity, maxAcceleration } = this.limits[AXIS_NAMES[i]!];
      readout.velocity[i] = clamp(readout.velocity[i]!, maxVelocity);
      readout.acceleration[i] = clamp(readout.acceleration[i]!, maxAcceleration);
    }
    readout.activity = segment.kind;
    readout.tool = this.tools[segment.toolNumber - 1]!;
    readout.programmedFeedrate = segment.feedrate;
    return readout;
  }

  /** Z clears first, as a real machine does, then X/Y, then the rotary axes. */
  private home(): void {
    const planner = this.planner;
    const homeRotaryC = Math.round(planner.pose[4] / 360) * 360;
    const steps: [AxisTargets, number[]][] = [
      [{ Z: 0 }, [2]],
      [{ X: 0, Y: 0 }, [0, 1]],
      [{ A: 0, C: homeRotaryC }, [3, 4]],
    ];
    for (const [targets, axes] of steps) {
      planner.rapid(targets, "homing", HOMING_SPEED_SCALE);
      for (const i of axes) this.homedAt[i] = planner.time;
    }
  }

  private segmentAt(time: number): Segment {
    const segments = this.planner.segments;
    for (;;) {
      while (this.current < segments.length) {
        const segment = segments[this.current]!;
        if (time < segment.start + segment.duration) return segment;
        this.current += 1;
      }
      if (this.current > 1000) {
        segments.splice(0, this.current);
        this.current = 0;
      }
      const before = segments.length;
      writePartProgram(this.programContext);
      if (segments.length === before) throw new Error("a part program planned no motion");
    }
  }
}

/**
 * C is shown modulo 360 like a real rotary table; its target keeps the signed distance still to
 * travel, so distance_to_go stays the true remaining move when C crosses 0°.
 */
export function axisState(readout: MachineReadout, axisName: AxisName, i: number): AxisState {
  let actualPosition = readout.actual[i]!;
  let targetPosition = readout.target[i]!;
  if (axisName === "C") {
    const wrapped = wrapDegrees(actualPosition);
    targetPosition = wrapped + (targetPosition - actualPosition);
    actualPosition = wrapped;
  }
  return {
    axisName,
    actualPosition,
    targetPosition,
    velocity: readout.velocity[i]!,
    acceleration: readout.acceleration[i]!,
    homed: readout.homed[i]!,
    distanceToGo: targetPosition - actualPosition,
  };
}

export function axisLimitsWith(overrides: Partial<AxisLimitsTable> = {}): AxisLimitsTable {
  const limits = { ...DEFAULT_AXIS_LIMITS, ...overrides };
  for (const axis of AXIS_NAMES) {
    const { maxVelocity, maxAcceleration } = limits[axis];
    if (
      !(maxVelocity > 0 && maxAcceleration > 0 && Number.isFinite(maxVelocity + maxAcceleration))
    ) {
      throw new RangeError(`axis ${axis}: max_velocity and max_acceleration must be positive`);
    }
  }
  return limits;
}

/** Lengths and cutting feeds as a tool crib would set them: round numbers within a range. */
function makeToolTable(random: SeededRandom, capacity: number): Tool[] {
  if (!Number.isInteger(capacity) || capacity < 1) {
    throw new RangeError(`tool_capacity must be a whole number ≥ 1, not ${capacity}`);
  }
  return Array.from({ length: capacity }, (_, i) => ({
    toolNumber: i + 1,
    toolOffset: Math.round(random.between(60, 180) * 1000) / 1000,
    feedrate: 10 * random.integer(30, 300),
  }));
}

/** Where the axes stand at power-on (drawn from the seed, as if stopped there); nothing is homed yet. */
function powerOnPose(random: SeededRandom): Pose {
  return [
    random.between(-300, 300),
    random.between(-200, 200),
    random.between(-300, -50),
    random.between(-60, 60),
    random.between(0, 360),
  ];
}
