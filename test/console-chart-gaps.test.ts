import { describe, expect, it } from "vitest";
import type { AxisSample } from "../web/src/api/types.ts";
import { AxisSeries } from "../web/src/state/axis-series.ts";
import { breakAtGaps, bucketWidth } from "../web/src/state/chart-gaps.ts";
import { chartData, type HistoryRow } from "../web/src/state/history.ts";

// A period with no data (Spindle stopped for two minutes, a machine switched off) must show as a
// gap in the console's charts, not as a straight line joining the points either side.
const started = Date.UTC(2026, 10, 24, 8);
const seconds = (at: number) => started / 1000 + at;

/** Where a column has a null between two values: the gaps uPlot draws. */
function gapsOf(time: ArrayLike<number>, column: ArrayLike<number | null | undefined>) {
  const gaps: [number, number][] = [];
  for (let i = 1; i < column.length - 1; i++) {
    if (column[i] == null && column[i - 1] != null) {
      let next = i + 1;
      while (next < column.length && column[next] == null) next++;
      if (next < column.length) gaps.push([time[i - 1]!, time[next]!]);
    }
  }
  return gaps;
}

describe("gaps in the console's charts", () => {
  it("breaks a line where the steps grow far beyond the usual spacing, whatever the rate", () => {
    // 10 Hz, then 2 min of nothing, then 10 Hz again.
    const fast = [...Array(50).keys()].map((i) => i / 10);
    const time = [...fast, ...fast.map((t) => t + 125)];
    const [shownTime, values] = breakAtGaps(time, [time.map((t) => t * 2)]);
    expect(gapsOf(shownTime, values!)).toEqual([[4.9, 125]]);

    // 5 s samples (or coarse buckets) are not gaps, nor is a rate that slows down smoothly.
    const slow = [...Array(40).keys()].map((i) => i * 5);
    const [slowTime, slowValues] = breakAtGaps(slow, [slow]);
    expect(gapsOf(slowTime, slowValues!)).toEqual([]);
    const downsampledThenLive = [...Array(20).keys()].map((i) => i * 1.8);
    const joined = [...downsampledThenLive, ...fast.map((t) => t + 36)];
    const [joinedTime, joinedValues] = breakAtGaps(joined, [joined]);
    expect(gapsOf(joinedTime, joinedValues!)).toEqual([]);
  });

  it("does not break a live line after a short first step or at repeated timestamps", () => {
    // The first sample just before the next (as a window's start can be), then 1 s steps.
    const time = [0, 0.05, ...[...Array(20).keys()].map((i) => 1.05 + i)];
    const [shownTime, values] = breakAtGaps(time, [time]);
    expect(gapsOf(shownTime, values!)).toEqual([]);
    // Two samples in one millisecond (a zero step), then the usual rate: no gap.
    const repeated = [0, 1, 2, 2, 2, 3, 4, 5, 6, 7, 8];
    const [repeatedTime, repeatedValues] = breakAtGaps(repeated, [repeated]);
    expect(gapsOf(repeatedTime, repeatedValues!)).toEqual([]);
    // But a real stop after them still is one.
    const stopped = [...repeated, 40, 41, 42];
    const [stoppedTime, stoppedValues] = breakAtGaps(stopped, [stopped]);
    expect(gapsOf(stoppedTime, stoppedValues!)).toEqual([[8, 40]]);
  });

  it("breaks history buckets by their width: a partial first bucket is no gap, a missing one is", () => {
    // 10 s buckets; the first is partial, labelled at the window's start 2 s before the second.
    const buckets = [98, ...[...Array(10).keys()].map((i) => 100 + i * 10)];
    expect(bucketWidth(buckets)).toBe(10);
    const [time, values] = breakAtGaps(buckets, [buckets], bucketWidth(buckets));
    expect(gapsOf(time, values!)).toEqual([]);
    // Two buckets missing right after the first: a gap even at the first step.
    const late = [100, 130, 140, 150, 160];
    const [lateTime, lateValues] = breakAtGaps(late, [late], bucketWidth(late));
    expect(gapsOf(lateTime, lateValues!)).toEqual([[100, 130]]);
    // One bucket missing in the middle: a step of two widths.
    const holed = [0, 10, 20, 40, 50];
    const [holedTime, holedValues] = breakAtGaps(holed, [holed], 10);
    expect(gapsOf(holedTime, holedValues!)).toEqual([[20, 40]]);
  });

  it("draws a history bucket gap where every series lacks buckets", () => {
    const rows: HistoryRow[] = [];
    for (const axis of [1, 2]) {
      for (let i = 0; i < 60; i++) {
        // Minutes 4 and 5 of the window: Spindle was stopped.
        if (i >= 24 && i < 36) continue;
        rows.push({
          axis,
          machine_id: 7,
          machine_name: "DMU 50 #07",
          axis_name: axis === 1 ? "X" : "Y",
          update_timestamp: new Date(started + i * 10_000).toISOString(),
          samples: 100,
          velocity: i,
          velocity_min: i - 1,
          velocity_max: i + 1,
        });
      }
    }
    const data = chartData(rows, ["velocity"], 10_000).byField.get("velocity")!;
    const time = data[0];
    for (let column = 1; column < data.length; column++) {
      expect(gapsOf(time, data[column]!)).toEqual([[seconds(230), seconds(360)]]);
    }
  });

  it("breaks a machine page's live chart across a stop of its samples", () => {
    const axis = new AxisSeries();
    const sample = (at: number): AxisSample => ({
      axis: 1,
      machine_id: 7,
      axis_name: "X",
      actual_position: at,
      target_position: at,
      distance_to_go: 0,
      homed: true,
      acceleration: 0,
      velocity: 1,
      update_timestamp: new Date(started + at * 1000).toISOString(),
    });
    for (let i = 0; i < 30; i++) axis.push(sample(i * 0.5));
    for (let i = 0; i < 30; i++) axis.push(sample(135 + i * 0.5));
    const [time, ...columns] = axis.data();
    for (const column of columns) {
      expect(gapsOf(time, column)).toEqual([[seconds(14.5), seconds(135)]]);
    }
    expect(axis.last?.actual_position).toBe(149.5);
  });
});
