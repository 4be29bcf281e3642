import { describe, expect, it } from "vitest";
import { bucketStep, describeWidth } from "../web/src/state/history.ts";

// The history page says the width of the buckets the server answered with. The answer does not
// state it, so it is read from the buckets' starts.
const from = Date.UTC(2026, 10, 26, 7, 0, 0, 300);

describe("the width of a history answer's buckets", () => {
  it("is the common step of the starts, the first (labelled at the window's start) aside", () => {
    // A 2 s grid on multiples of 2 s; the first bucket is labelled with `from`, 0.3 s into it.
    const grid = (k: number) => Date.UTC(2026, 10, 26, 7, 0, 0) + k * 2000;
    expect(bucketStep([from, grid(1), grid(2), grid(3)])).toBe(2000);
  });

  it("survives empty buckets left out of the answer: samples every 5 s on a 2 s grid", () => {
    const starts = [0, 5, 10, 15, 20, 25].map((s) => Math.floor((s * 1000 + 700) / 2000) * 2000);
    expect(bucketStep([from, ...starts.map((t) => from + 10_000 + t)])).toBe(2000);
  });

  it("cannot be told from fewer than three buckets", () => {
    expect(bucketStep([])).toBeUndefined();
    expect(bucketStep([from, from + 2000])).toBeUndefined();
  });

  it("is said exactly: milliseconds below a second, then seconds", () => {
    expect(describeWidth(250)).toBe("250 ms");
    expect(describeWidth(1500)).toBe("1.5 s");
    expect(describeWidth(2000)).toBe("2 s");
    expect(describeWidth(300_000)).toBe("5 min");
  });
});
