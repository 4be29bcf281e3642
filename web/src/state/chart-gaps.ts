import type uPlot from "uplot";

/** A step this many times longer than the usual spacing of the points before it is a gap. */
const gapFactor = 3;
/** How many steps before a point make "the usual spacing" (their median). */
const recentSteps = 8;

/**
 * The columns with a row of nulls inside each period with no data, so uPlot breaks the line
 * there instead of joining the points either side. A period with no data is a step between two
 * points more than three times the median of the steps just before it: that follows the data's
 * own rate (10 Hz samples, 5 s samples, downsampled buckets) and a change of rate breaks the
 * line at most for a few points.
 */
export function breakAtGaps(
  time: readonly number[],
  columns: readonly (readonly (number | null)[])[],
): uPlot.AlignedData {
  const outTime: number[] = [];
  const out: (number | null)[][] = columns.map(() => []);
  const steps: number[] = [];
  for (let i = 0; i < time.length; i++) {
    if (i > 0) {
      const step = time[i]! - time[i - 1]!;
      if (steps.length > 0 && step > gapFactor * median(steps)) {
        outTime.push((time[i - 1]! + time[i]!) / 2);
        for (const column of out) column.push(null);
      }
      steps.push(step);
      if (steps.length > recentSteps) steps.shift();
    }
    outTime.push(time[i]!);
    for (const [c, column] of columns.entries()) out[c]!.push(column[i] ?? null);
  }
  return [outTime, ...out] as uPlot.AlignedData;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}
