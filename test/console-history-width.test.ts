import { describe, expect, it } from "vitest";
import { describeWidth } from "../web/src/state/history.ts";

// The history page says the width of the buckets the server answered with (its
// X-Bucket-Width-Ms header; the browser test checks that the page shows it).
describe("the width of a history answer's buckets", () => {
  it("is said exactly: milliseconds below a second, then seconds", () => {
    expect(describeWidth(250)).toBe("250 ms");
    expect(describeWidth(1500)).toBe("1.5 s");
    expect(describeWidth(2000)).toBe("2 s");
    expect(describeWidth(300_000)).toBe("5 min");
  });
});
