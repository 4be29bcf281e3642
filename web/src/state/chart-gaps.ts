import type uPlot from "uplot";

/** A step this many times longer than the usual spacing of the points before it is a gap. */
const gapFactor = 3;
/** How many steps before a point make "the usual spacing" (their median). */
const recentSteps = 8;
/** With a known bucket width, a step longer than this many widths skips a bucket: a gap. */
const bucketGapFactor = 1.5;

/**
 * The columns with a row of nulls inside each period with no data, so uPlot breaks the line
 * there instead of joining the points either side.
 *
 * With `stepWidth` (history buckets, whose width is known) a gap is a step longer than one and a
 * half widths, from the first step on. Without it (live samples) a gap is a step more than three
 * times the median of the steps just before it, which follows the data's own rate and breaks the
 * line at most for a few points on a change of rate. There the first step is not counted
 * towards the median (a first bucket or sample can sit at the window's start, closer to the next
 * than the rest), nor are zero steps (two samples in one millisecond): either made the usual
 * spacing tiny, and every later step a gap.
 */
export function breakAtGaps(
  time: readonly number[],
  columns: readonly (readonly (number | null)[])[],
  stepWidth?: number,
): uPlot.AlignedData {
  const outTime: number[] = [];
  const out: (number | null)[][] = columns.map(() => []);
  const steps: number[] = [];
  for (let i = 0; i < time.length; i++) {
    if (i > 0) {
      const step = time[i]! - time[i - 1]!;
      const gap =
        stepWidth !== undefined
          ? step > bucketGapFactor * stepWidth
          : steps.length > 0 && step > gapFactor * median(steps);
      if (gap) {
        outTime.push((time[i - 1]! + time[i]!) / 2);
        for (const column of out) column.push(null);
      }
      if (i > 1 && step > 0) {
        steps.push(step);
        if (steps.length > recentSteps) steps.shift();
      }
    }
    outTime.push(time[i]!);
    for (const [c, column] of columns.entries()) out[c]!.push(column[i] ?? null);
  }
  return [outTime, ...out] as uPlot.AlignedData;
}

/**
 * The width of buckets (or raw samples, when too few to downsample) labelled at these times:
 * their shortest step but the first, which may be short (the first bucket may be partial,
 * labelled at the window's start). Undefined when it cannot be told.
 */
export function bucketWidth(time: readonly number[]): number | undefined {
  let shortest = Number.POSITIVE_INFINITY;
  for (let i = 2; i < time.length; i++) shortest = Math.min(shortest, time[i]! - time[i - 1]!);
  return Number.isFinite(shortest) && shortest > 0 ? shortest : undefined;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
