/**
 * A small seeded PRNG (mulberry32): Math.random cannot be seeded, and `--seed N` must replay a
 * run exactly. Statistical quality is ample for part programs; speed matters at 10,000 machines.
 */
export interface SeededRandom {
  /** Uniform in [0, 1). */
  next(): number;
  /** Uniform in [min, max). */
  between(min: number, max: number): number;
  /** Uniform integer in [min, max], both included. */
  integer(min: number, max: number): number;
  pick<T>(choices: readonly T[]): T;
  chance(probability: number): boolean;
}

export function seededRandom(seed: number): SeededRandom {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    between: (min, max) => min + (max - min) * next(),
    integer: (min, max) => min + Math.floor((max - min + 1) * next()),
    pick: (choices) => {
      if (choices.length === 0) throw new RangeError("pick from an empty list");
      return choices[Math.floor(choices.length * next())]!;
    },
    chance: (probability) => next() < probability,
  };
}

/**
 * One independent stream per machine from the run's seed: neighbouring machines must not run
 * the same program, and adding machines must not change the programs of the existing ones.
 */
export function machineSeed(runSeed: number, machineIndex: number): number {
  let h = (runSeed ^ Math.imul(machineIndex + 1, 0x9e3779b9)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
