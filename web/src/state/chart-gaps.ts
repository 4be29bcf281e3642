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
  const recent = new RecentSteps();
  for (let i = 0; i < time.length; i++) {
    if (i > 0) {
      const step = time[i]! - time[i - 1]!;
      const gap =
        stepWidth !== undefined
          ? step > bucketGapFactor * stepWidth
          : recent.count > 0 && step > gapFactor * recent.median();
      if (gap) {
        outTime.push((time[i - 1]! + time[i]!) / 2);
        for (const column of out) column.push(null);
      }
      if (i > 1 && step > 0) recent.add(step);
    }
    outTime.push(time[i]!);
    for (let c = 0; c < columns.length; c++) out[c]!.push(columns[c]![i] ?? null);
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

/**
 * The last `recentSteps` steps and their median. A chart of an hour of live samples asks for the
 * median at each of tens of thousands of points on every redraw: kept sorted in place, without
 * an array copied and sorted each time (which took ~200 ms a redraw for five axes).
 */
class RecentSteps {
  private readonly ring = new Float64Array(recentSteps);
  private readonly sorted = new Float64Array(recentSteps);
  private next = 0;
  count = 0;

  add(step: number): void {
    if (this.count === recentSteps) {
      this.remove(this.ring[this.next]!);
    }
    this.ring[this.next] = step;
    this.next = (this.next + 1) % recentSteps;
    let at = this.count++;
    while (at > 0 && this.sorted[at - 1]! > step) {
      this.sorted[at] = this.sorted[at - 1]!;
      at--;
    }
    this.sorted[at] = step;
  }

  median(): number {
    const middle = this.count >> 1;
    return this.count % 2 === 1
      ? this.sorted[middle]!
      : (this.sorted[middle - 1]! + this.sorted[middle]!) / 2;
  }

  private remove(step: number): void {
    let at = this.sorted.indexOf(step);
    this.count--;
    for (; at < this.count; at++) this.sorted[at] = this.sorted[at + 1]!;
  }
}
