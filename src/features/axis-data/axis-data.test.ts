import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import { describeBadInput } from "../../../test/helpers/bad-input.ts";
import { expectRefused, isoUtc, links, send } from "../../../test/helpers/crud.ts";
import { createAxis, createAxisData, createMachine } from "../../../test/helpers/factories.ts";

const retentionDays = 30;
let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp({ BODY_LIMIT: "2048", RETENTION_DAYS: String(retentionDays) });
});
afterAll(() => t.close());

const minute = 60_000;
const day = 86_400_000;
/** A time `ms` from the test clock's now, as a client would send it. */
const at = (ms: number) => new Date(t.clock.now().getTime() + ms).toISOString();
const ids = (rows: { axis_data_id: number }[]) => rows.map((row) => row.axis_data_id);

async function newAxis(name = "X") {
  const machine = await createMachine(t);
  return { machine, axis: await createAxis(t, machine.machine_id, { axis_name: name }) };
}

describe("axis data CRUD", () => {
  it("POST answers 201 with the axis's machine and name, and distance_to_go = target − actual", async () => {
    const { machine, axis } = await newAxis("C");
    const time = new Date(Math.floor((t.clock.now().getTime() - day) / 1000) * 1000);
    const inParis = new Date(time.getTime() + 3_600_000).toISOString().replace("Z", "+01:00");
    const answer = await send(t, "POST", "/data/axises/", {
      axis: axis.axis_id,
      actual_position: 10.5,
      target_position: 4,
      homed: false,
      acceleration: -1.5,
      velocity: 250,
      update_timestamp: inParis,
    });
    expect(answer.statusCode, answer.body).toBe(201);
    expect(answer.json()).toEqual({
      axis_data_id: expect.any(Number),
      axis: axis.axis_id,
      machine_id: machine.machine_id,
      machine_name: machine.machine_name,
      axis_name: "C",
      actual_position: 10.5,
      target_position: 4,
      distance_to_go: -6.5,
      homed: false,
      acceleration: -1.5,
      velocity: 250,
      update_timestamp: time.toISOString(),
    });
  });

  it("stamps a sample sent without a time with now, in ISO 8601 UTC", async () => {
    const { axis } = await newAxis();
    const sample = await createAxisData(t, axis.axis_id);
    expect(sample.update_timestamp).toMatch(isoUtc);
    expect(Math.abs(Date.parse(sample.update_timestamp) - t.clock.now().getTime())).toBeLessThan(
      minute,
    );
  });

  it("ignores a client-sent distance_to_go and recomputes it on every change", async () => {
    const { axis } = await newAxis();
    const sample = await createAxisData(t, axis.axis_id, {
      actual_position: 1,
      target_position: 3,
      distance_to_go: 999,
      update_timestamp: at(-minute),
    });
    expect(sample.distance_to_go).toBe(2);
    const url = `/data/axises/${sample.axis_data_id}/`;
    const ignored = await send(t, "PATCH", url, { distance_to_go: 42 });
    expect(ignored.statusCode).toBe(200);
    expect(ignored.json()).toEqual(sample);
    const moved = await send(t, "PATCH", url, { target_position: 10 });
    expect(moved.json().distance_to_go).toBe(9);
    const replaced = await send(t, "PUT", url, {
      axis: axis.axis_id,
      actual_position: 5,
      target_position: 5,
      homed: true,
      acceleration: 0,
      velocity: 0,
      distance_to_go: 7,
    });
    expect(replaced.statusCode).toBe(200);
    expect(replaced.json()).toMatchObject({
      axis_data_id: sample.axis_data_id,
      distance_to_go: 0,
      update_timestamp: sample.update_timestamp,
    });
  });

  it("GET one, GET list, DELETE 204 then 404", async () => {
    const { axis } = await newAxis();
    const sample = await createAxisData(t, axis.axis_id, { update_timestamp: at(-2 * minute) });
    const url = `/data/axises/${sample.axis_data_id}/`;
    expect((await send(t, "GET", url)).json()).toEqual(sample);
    expect((await send(t, "GET", `/data/axises/?axis=${axis.axis_id}`)).json()).toEqual([sample]);
    expect((await send(t, "DELETE", url)).statusCode).toBe(204);
    for (const method of ["GET", "DELETE"] as const) {
      await expectRefused(t, { method, url, headers: t.adminAuth }, 404, { detail: "Not found." });
    }
  });

  it("moves a sample to another day's partition when its time changes", async () => {
    const { axis } = await newAxis();
    const sample = await createAxisData(t, axis.axis_id, { update_timestamp: at(-minute) });
    const url = `/data/axises/${sample.axis_data_id}/`;
    const earlier = at(-5 * day);
    const answer = await send(t, "PATCH", url, { update_timestamp: earlier });
    expect(answer.statusCode, answer.body).toBe(200);
    expect(answer.json().update_timestamp).toBe(earlier);
    expect((await send(t, "GET", url)).json().update_timestamp).toBe(earlier);
  });

  it("refuses samples outside the retention window with 400 naming update_timestamp", async () => {
    const { axis } = await newAxis();
    const kept = await createAxisData(t, axis.axis_id, {
      update_timestamp: at(-(retentionDays - 1) * day),
    });
    for (const time of [at(-(retentionDays + 1) * day), at(2 * day), "1970-01-01T00:00:00Z"]) {
      const post = await expectRefused(
        t,
        {
          method: "POST",
          url: "/data/axises/",
          headers: t.adminAuth,
          payload: {
            axis: axis.axis_id,
            actual_position: 0,
            target_position: 0,
            homed: true,
            acceleration: 0,
            velocity: 0,
            update_timestamp: time,
          },
        },
        400,
      );
      expect(Object.keys(post.json()), time).toEqual(["update_timestamp"]);
      const patch = await expectRefused(
        t,
        {
          method: "PATCH",
          url: `/data/axises/${kept.axis_data_id}/`,
          headers: t.adminAuth,
          payload: { update_timestamp: time },
        },
        400,
      );
      expect(Object.keys(patch.json()), time).toEqual(["update_timestamp"]);
    }
  });

  it("a second sample of one axis at the same time is 400 naming update_timestamp", async () => {
    const { axis } = await newAxis();
    const time = at(-3 * minute);
    const first = await createAxisData(t, axis.axis_id, { update_timestamp: time });
    const second = await createAxisData(t, axis.axis_id, { update_timestamp: at(-4 * minute) });
    const duplicate = { update_timestamp: ["This axis already has a sample at this time."] };
    await expectRefused(
      t,
      {
        method: "POST",
        url: "/data/axises/",
        headers: t.adminAuth,
        payload: {
          axis: axis.axis_id,
          actual_position: 0,
          target_position: 0,
          homed: true,
          acceleration: 0,
          velocity: 0,
          update_timestamp: time,
        },
      },
      400,
      duplicate,
    );
    await expectRefused(
      t,
      {
        method: "PATCH",
        url: `/data/axises/${second.axis_data_id}/`,
        headers: t.adminAuth,
        payload: { update_timestamp: time },
      },
      400,
      duplicate,
    );
    expect((await send(t, "GET", `/data/axises/${first.axis_data_id}/`)).json()).toEqual(first);
  });

  it("keeps a time's microseconds, as ingest does: two samples within one millisecond are two", async () => {
    const { axis } = await newAxis();
    const milli = at(-2 * minute).replace("Z", "");
    const first = await createAxisData(t, axis.axis_id, { update_timestamp: `${milli}100Z` });
    const second = await createAxisData(t, axis.axis_id, {
      update_timestamp: `${milli}900+00:00`,
    });
    expect([first.update_timestamp, second.update_timestamp]).toEqual([
      `${milli}100Z`,
      `${milli}900Z`,
    ]);
    // The sample ingest would store at that instant is the same row, not a third.
    const ingested = await t.inject({
      method: "POST",
      url: "/api/ingest/",
      headers: t.adminAuth,
      payload: {
        axis_data: [
          {
            machine_id: axis.machine,
            axis_name: axis.axis_name,
            timestamp: `${milli}100Z`,
            actual_position: 0,
            target_position: 0,
            velocity: 0,
            acceleration: 0,
            homed: true,
          },
        ],
      },
    });
    expect(ingested.json()).toMatchObject({ accepted: 1, duplicates: 1 });
  });

  it("deleting an axis deletes its samples", async () => {
    const { axis } = await newAxis();
    const sample = await createAxisData(t, axis.axis_id, { update_timestamp: at(-minute) });
    expect((await send(t, "DELETE", `/data/axes/${axis.axis_id}/`)).statusCode).toBe(204);
    expect((await send(t, "GET", `/data/axises/${sample.axis_data_id}/`)).statusCode).toBe(404);
  });
});

describe("axis data list: filters, pagination, ordering", () => {
  let machine: { machine_id: number };
  let x: { axis_id: number };
  let y: { axis_id: number };
  let xSamples: { axis_data_id: number; update_timestamp: string }[];
  let ySamples: { axis_data_id: number; update_timestamp: string }[];
  const times = [-40, -30, -20, -10].map((minutes) => minutes * minute);
  beforeAll(async () => {
    machine = await createMachine(t);
    x = await createAxis(t, machine.machine_id, { axis_name: "X" });
    y = await createAxis(t, machine.machine_id, { axis_name: "Y" });
    xSamples = [];
    ySamples = [];
    for (const offset of times) {
      xSamples.push(await createAxisData(t, x.axis_id, { update_timestamp: at(offset) }));
      ySamples.push(await createAxisData(t, y.axis_id, { update_timestamp: at(offset) }));
    }
    const other = await newAxis("X");
    await createAxisData(t, other.axis.axis_id, { update_timestamp: at(-minute) });
  });

  it("filters by machine, axis, axis_name, since and until", async () => {
    const byMachine = (await send(t, "GET", `/data/axises/?machine=${machine.machine_id}`)).json();
    // Default ordering: by axis, then time.
    expect(ids(byMachine)).toEqual(ids([...xSamples, ...ySamples]));
    expect(ids((await send(t, "GET", `/data/axises/?axis=${y.axis_id}`)).json())).toEqual(
      ids(ySamples),
    );
    const named = await send(t, "GET", `/data/axises/?machine=${machine.machine_id}&axis_name=X`);
    expect(ids(named.json())).toEqual(ids(xSamples));
    const since = encodeURIComponent(xSamples[1]!.update_timestamp);
    const until = encodeURIComponent(xSamples[3]!.update_timestamp);
    const window = await send(
      t,
      "GET",
      `/data/axises/?axis=${x.axis_id}&since=${since}&until=${until}`,
    );
    expect(ids(window.json())).toEqual(ids(xSamples.slice(1, 3)));
    expect(window.headers["x-total-count"]).toBe("2");
  });

  it("pages with limit and offset, Link and X-Total-Count", async () => {
    const first = await send(t, "GET", `/data/axises/?machine=${machine.machine_id}&limit=3`);
    expect(first.headers["x-total-count"]).toBe("8");
    const all = [...xSamples, ...ySamples];
    expect(ids(first.json())).toEqual(ids(all.slice(0, 3)));
    const second = await send(t, "GET", links(first).next!);
    expect(ids(second.json())).toEqual(ids(all.slice(3, 6)));
    expect(links(second).prev).toContain("offset=0");
    const third = await send(t, "GET", links(second).next!);
    expect(ids(third.json())).toEqual(ids(all.slice(6)));
    expect(links(third).next).toBeUndefined();
  });

  it("orders by update_timestamp either way; other fields are 400", async () => {
    const ascending = await send(
      t,
      "GET",
      `/data/axises/?axis=${x.axis_id}&ordering=update_timestamp`,
    );
    expect(ids(ascending.json())).toEqual(ids(xSamples));
    const descending = await send(
      t,
      "GET",
      `/data/axises/?axis=${x.axis_id}&ordering=-update_timestamp`,
    );
    expect(ids(descending.json())).toEqual(ids([...xSamples].reverse()));
    for (const field of ["velocity", "-distance_to_go", "machine_name"]) {
      await expectRefused(
        t,
        { method: "GET", url: `/data/axises/?ordering=${field}`, headers: t.adminAuth },
        400,
        { ordering: [expect.stringContaining("Cannot order by")] },
      );
    }
  });

  it("refuses bad filter values with 400 naming the filter", async () => {
    for (const [query, field] of [
      ["axis=abc", "axis"],
      ["machine=1.5", "machine"],
      ["axis_name=%27%3B%20drop%20table%20axis_data%3B%20--", "axis_name"],
      ["since=not-a-time", "since"],
      ["until=2026-02-29T00:00:00Z", "until"],
    ] as const) {
      const answer = await expectRefused(
        t,
        { method: "GET", url: `/data/axises/?${query}`, headers: t.adminAuth },
        400,
      );
      expect(Object.keys(answer.json()), query).toEqual([field]);
    }
  });
});

let sampleOffset = 0;
describeBadInput(() => t, {
  path: "/data/axises/",
  fields: {
    axis: "id",
    actual_position: "number",
    target_position: "number",
    homed: "boolean",
    acceleration: "number",
    velocity: "number",
    update_timestamp: "timestamp",
  },
  required: ["axis", "actual_position", "target_position", "homed", "acceleration", "velocity"],
  references: ["axis"],
  validBody: async () => ({
    axis: (await newAxis()).axis.axis_id,
    actual_position: 1,
    target_position: 2,
    homed: true,
    acceleration: 0,
    velocity: 10,
  }),
  existing: async () =>
    (
      await createAxisData(t, (await newAxis()).axis.axis_id, {
        update_timestamp: at(-++sampleOffset * 1000),
      })
    ).axis_data_id,
});
