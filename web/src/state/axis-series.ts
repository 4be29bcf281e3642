import type uPlot from "uplot";
import type { AxisSample } from "../api/types.ts";
import { breakAtGaps } from "./chart-gaps.ts";

/** One axis' samples as columns, the shape uPlot draws. */
export class AxisSeries {
  time: number[] = [];
  actual: number[] = [];
  target: number[] = [];
  toGo: number[] = [];
  velocity: number[] = [];
  acceleration: number[] = [];
  last: AxisSample | undefined;

  push(sample: AxisSample): void {
    const t = Date.parse(sample.update_timestamp) / 1000;
    if (this.time.length > 0 && t < this.time[this.time.length - 1]!) return;
    this.time.push(t);
    this.actual.push(sample.actual_position);
    this.target.push(sample.target_position);
    this.toGo.push(sample.distance_to_go);
    this.velocity.push(sample.velocity);
    this.acceleration.push(sample.acceleration);
    this.last = sample;
  }

  trim(beforeSeconds: number): void {
    let drop = 0;
    while (drop < this.time.length && this.time[drop]! < beforeSeconds) drop++;
    if (drop === 0) return;
    for (const column of [
      this.time,
      this.actual,
      this.target,
      this.toGo,
      this.velocity,
      this.acceleration,
    ]) {
      column.splice(0, drop);
    }
  }

  /** Copies for uPlot, with the line broken where no samples came (Spindle or the machine off). */
  data(): uPlot.AlignedData {
    return breakAtGaps(this.time, [
      this.actual,
      this.target,
      this.toGo,
      this.velocity,
      this.acceleration,
    ]);
  }
}
