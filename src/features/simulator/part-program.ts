import type { MotionPlanner, Tool } from "./motion.ts";
import type { SeededRandom } from "./seeded-random.ts";

export interface PartProgramContext {
  planner: MotionPlanner;
  random: SeededRandom;
  tools: readonly Tool[];
  rotary: boolean;
}

/** Machine Z of the tool tip at the top of the part: the spindle sits a tool length above it. */
const PART_TOP_TIP_Z = -380;
const SAFE_HEIGHT = 50;
const CLEARANCE = 2;
const TOOL_CHANGE_Z = 0;
const PARK = { X: 0, Y: 250 } as const;

type Feature = (context: PartProgramContext, centerX: number, centerY: number) => void;

/**
 * Plans one part: a few tools, each cutting a few features (pockets, bores, drilled holes,
 * facing, and on 5-axis machines indexed 3+2 work and simultaneous rotary cuts), then parks
 * for the part change. Every choice comes from the machine's seeded stream.
 */
export function writePartProgram(context: PartProgramContext): void {
  const { planner, random } = context;
  const partX = random.between(-150, 150);
  const partY = random.between(-100, 100);
  const toolCount = random.integer(2, 4);
  for (let t = 0; t < toolCount; t += 1) {
    changeTool(context);
    if (context.rotary && random.chance(0.6)) indexRotaryAxes(context);
    const features: Feature[] = [contourPocket, circularPocket, drillPattern, faceMill];
    if (context.rotary) features.push(rotaryContour);
    const featureCount = random.integer(1, 3);
    for (let f = 0; f < featureCount; f += 1) {
      random.pick(features)(
        context,
        partX + random.between(-40, 40),
        partY + random.between(-40, 40),
      );
    }
  }
  planner.rapid({ Z: TOOL_CHANGE_Z });
  planner.rapid({ A: 0, C: nearestTurn(planner.pose[4]), ...PARK });
  planner.dwell(random.between(6, 15)); // operator swaps the part
}

function changeTool({ planner, random, tools }: PartProgramContext): void {
  const current = planner.tool.toolNumber;
  const choices = tools.length > 1 ? tools.filter((t) => t.toolNumber !== current) : tools;
  planner.rapid({ Z: TOOL_CHANGE_Z });
  planner.changeTool(random.pick(choices), random.between(4, 7));
  if (random.chance(0.3)) planner.dwell(random.between(1, 2)); // spindle run-up
}

/** 3+2 work: tilt A and turn C to a new face, C by the shorter way round. */
function indexRotaryAxes({ planner, random }: PartProgramContext): void {
  planner.rapid({ Z: TOOL_CHANGE_Z });
  const a = 15 * random.integer(-6, 6);
  const c = 15 * random.integer(0, 23);
  const currentC = planner.pose[4];
  const turn = ((((c - currentC) % 360) + 540) % 360) - 180;
  planner.rapid({ A: a, C: currentC + turn });
}

const surfaceZ = (tool: Tool) => PART_TOP_TIP_Z + tool.toolOffset;

function approach(planner: MotionPlanner, x: number, y: number): void {
  const top = surfaceZ(planner.tool);
  planner.rapid({ Z: Math.max(planner.pose[2], top + SAFE_HEIGHT) });
  planner.rapid({ X: x, Y: y });
  planner.rapid({ Z: top + CLEARANCE });
}

function retract(planner: MotionPlanner): void {
  planner.rapid({ Z: surfaceZ(planner.tool) + SAFE_HEIGHT });
}

/** A rectangular pocket wall with rounded corners, in one to three step-downs. */
function contourPocket({ planner, random }: PartProgramContext, cx: number, cy: number): void {
  const halfWidth = random.between(20, 80);
  const halfHeight = random.between(15, 60);
  const r = random.between(3, Math.min(halfWidth, halfHeight) - 1);
  const [left, right, bottom, top] = [
    cx - halfWidth,
    cx + halfWidth,
    cy - halfHeight,
    cy + halfHeight,
  ];
  approach(planner, left + r, bottom);
  const passes = random.integer(1, 3);
  const step = random.between(2, 5);
  for (let pass = 1; pass <= passes; pass += 1) {
    planner.feed({ Z: surfaceZ(planner.tool) - pass * step });
    planner.feed({ X: right - r });
    planner.arc(right - r, bottom + r, Math.PI / 2);
    planner.feed({ Y: top - r });
    planner.arc(right - r, top - r, Math.PI / 2);
    planner.feed({ X: left + r });
    planner.arc(left + r, top - r, Math.PI / 2);
    planner.feed({ Y: bottom + r });
    planner.arc(left + r, bottom + r, Math.PI / 2);
  }
  retract(planner);
}

/** A bore interpolated as full circles, climb or conventional. */
function circularPocket({ planner, random }: PartProgramContext, cx: number, cy: number): void {
  const radius = random.between(8, 50);
  const sweep = random.chance(0.5) ? 2 * Math.PI : -2 * Math.PI;
  approach(planner, cx + radius, cy);
  const passes = random.integer(1, 3);
  const step = random.between(2, 6);
  for (let pass = 1; pass <= passes; pass += 1) {
    planner.feed({ Z: surfaceZ(planner.tool) - pass * step });
    planner.arc(cx, cy, sweep);
  }
  retract(planner);
}

/** Holes on a bolt circle, each with a dwell at the bottom to break the chip. */
function drillPattern({ planner, random }: PartProgramContext, cx: number, cy: number): void {
  const holes = random.integer(3, 8);
  const radius = random.between(15, 60);
  const depth = random.between(5, 20);
  const phase = random.between(0, 2 * Math.PI);
  for (let h = 0; h < holes; h += 1) {
    const angle = phase + (2 * Math.PI * h) / holes;
    approach(planner, cx + radius * Math.cos(angle), cy + radius * Math.sin(angle));
    planner.feed({ Z: surfaceZ(planner.tool) - depth });
    planner.dwell(random.between(0.3, 1));
    planner.rapid({ Z: surfaceZ(planner.tool) + CLEARANCE });
  }
  retract(planner);
}

/** Zig-zag facing passes across the part top. */
function faceMill({ planner, random }: PartProgramContext, cx: number, cy: number): void {
  const halfWidth = random.between(30, 90);
  const halfHeight = random.between(20, 60);
  const stepOver = random.between(8, 15);
  approach(planner, cx - halfWidth, cy - halfHeight);
  planner.feed({ Z: surfaceZ(planner.tool) - random.between(0.5, 1.5) });
  let toRight = true;
  for (let y = cy - halfHeight; y <= cy + halfHeight; y += stepOver) {
    planner.feed({ Y: y });
    planner.feed({ X: toRight ? cx + halfWidth : cx - halfWidth });
    toRight = !toRight;
  }
  retract(planner);
}

/** Simultaneous 5-axis: C turns and A tilts while X traverses, as in swarf cutting. */
function rotaryContour({ planner, random }: PartProgramContext, cx: number, cy: number): void {
  const halfLength = random.between(20, 60);
  approach(planner, cx - halfLength, cy);
  planner.feed({ Z: surfaceZ(planner.tool) - random.between(1, 3) });
  const turn = random.between(90, 300) * (random.chance(0.5) ? 1 : -1);
  const tilt = Math.max(-90, Math.min(90, planner.pose[3] + random.between(-20, 20)));
  planner.feed({ X: cx + halfLength, A: tilt, C: planner.pose[4] + turn });
  retract(planner);
}

const nearestTurn = (c: number) => Math.round(c / 360) * 360;
