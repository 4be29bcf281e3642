/** What a field of an axis sample measures; its unit depends on the axis. */
export type Quantity = "position" | "velocity" | "acceleration";

/**
 * A, B and C turn about X, Y and Z (ISO 841): their positions are angles, in degrees. Numbered
 * too (A2 or C1 on a machine with two), in either case.
 */
export const isRotary = (axisName: string) => /^[ABC]\d*$/i.test(axisName);

const linear = { position: "mm", velocity: "mm/s", acceleration: "mm/s²" } as const;
const rotary = { position: "°", velocity: "°/s", acceleration: "°/s²" } as const;

/** The units of an axis' position, velocity and acceleration. */
export function axisUnits(axisName: string): Readonly<Record<Quantity, string>> {
  return isRotary(axisName) ? rotary : linear;
}

export function unitOf(quantity: Quantity, axisName: string): string {
  return axisUnits(axisName)[quantity];
}

/** The unit of a chart of these axes: "mm", "°", or both when linear and rotary are mixed. */
export function unitOfAxes(quantity: Quantity, axisNames: readonly string[]): string {
  return (
    [...new Set(axisNames.map((name) => unitOf(quantity, name)))].join(" · ") || linear[quantity]
  );
}
