import { describe, expect, it } from "vitest";
import { searchFromView, viewFromSearch } from "../web/src/state/history.ts";

// The console's history page keeps its view in the address; what a hand-edited or stale link
// holds must never break the page, only fall back.
const known = { machines: [3, 7, 12], axisNames: ["X", "Y", "Z"] };
const read = (search: string) => viewFromSearch(new URLSearchParams(search), known);

describe("history page address", () => {
  it("round-trips a relative window and an absolute span", () => {
    expect(
      searchFromView({
        machines: [3, 12],
        axes: ["X", "Z"],
        fields: ["actual_position", "velocity"],
        window: { relative: "24h" },
      }),
    ).toBe("machine_id=3,12&axis_name=X,Z&fields=actual_position,velocity&window=24h");
    expect(
      read("machine_id=3,12&axis_name=X,Z&fields=actual_position,velocity&window=24h").window,
    ).toEqual({
      relative: "24h",
    });
    const span = { from: Date.UTC(2026, 10, 24, 8), to: Date.UTC(2026, 10, 24, 9, 30, 0, 250) };
    const view = { machines: [7], axes: ["Y"], fields: ["acceleration" as const], window: span };
    const search = searchFromView(view);
    expect(search).toBe(
      "machine_id=7&axis_name=Y&fields=acceleration&from=2026-11-24T08:00:00.000Z&to=2026-11-24T09:30:00.250Z",
    );
    expect(read(search)).toEqual(view);
  });

  it("takes repeated or comma-separated lists, without duplicates", () => {
    expect(read("machine_id=12&machine_id=3,3&axis_name=Y,X&fields=velocity,velocity")).toEqual({
      machines: [12, 3],
      axes: ["Y", "X"],
      fields: ["velocity"],
      window: { relative: "15m" },
    });
  });

  it("leaves out what it does not know and falls back to the first machine, axis and 15 minutes", () => {
    const fallback = {
      machines: [3],
      axes: ["X"],
      fields: ["actual_position"],
      window: { relative: "15m" },
    };
    for (const hostile of [
      "",
      "machine_id=999&axis_name=Q&fields=password&window=custom",
      "machine_id=abc,-1,1e99,%00&axis_name=%3Cscript%3E&fields=__proto__,constructor",
      "window=forever&from=yesterday&to=now",
      "from=2026-11-24T09:00:00Z&to=2026-11-24T08:00:00Z",
      "from=2026-11-24T09:00:00Z",
      `machine_id=${"1,".repeat(10_000)}`,
    ]) {
      expect(read(hostile), hostile).toEqual(fallback);
    }
    expect(read("machine_id=7,999&axis_name=Z,Q&fields=homed,velocity")).toEqual({
      ...fallback,
      machines: [7],
      axes: ["Z"],
      fields: ["velocity"],
    });
    expect(
      viewFromSearch(new URLSearchParams("machine_id=1"), { machines: [], axisNames: [] }),
    ).toEqual({
      machines: [],
      axes: [],
      fields: ["actual_position"],
      window: { relative: "15m" },
    });
  });
});
