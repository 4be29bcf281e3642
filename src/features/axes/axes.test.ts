import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import { describeBadInput } from "../../../test/helpers/bad-input.ts";
import { expectRefused, links, send } from "../../../test/helpers/crud.ts";
import { createAxis, createMachine } from "../../../test/helpers/factories.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp({ BODY_LIMIT: "2048" });
});
afterAll(() => t.close());

const ids = (rows: { axis_id: number }[]) => rows.map((row) => row.axis_id);

describe("axes CRUD", () => {
  it("POST creates an axis and answers 201 with its generated id", async () => {
    const machine = await createMachine(t);
    const answer = await send(t, "POST", "/data/axes/", {
      machine: machine.machine_id,
      axis_name: "X",
      max_acceleration: 2500.5,
      max_velocity: 600,
    });
    expect(answer.statusCode).toBe(201);
    expect(answer.json()).toEqual({
      axis_id: expect.any(Number),
      machine: machine.machine_id,
      axis_name: "X",
      max_acceleration: 2500.5,
      max_velocity: 600,
    });
  });

  it("ignores a client-sent axis_id (read-only)", async () => {
    const machine = await createMachine(t);
    const answer = await send(t, "POST", "/data/axes/", {
      axis_id: 424242,
      machine: machine.machine_id,
      axis_name: "Y",
      max_acceleration: 1,
      max_velocity: 1,
    });
    expect(answer.statusCode).toBe(201);
    expect(answer.json().axis_id).not.toBe(424242);
  });

  it("GET one and GET list answer the axis", async () => {
    const machine = await createMachine(t);
    const axis = await createAxis(t, machine.machine_id);
    expect((await send(t, "GET", `/data/axes/${axis.axis_id}/`)).json()).toEqual(axis);
    const list = await send(t, "GET", `/data/axes/?machine=${machine.machine_id}`);
    expect(list.statusCode).toBe(200);
    expect(list.json()).toEqual([axis]);
  });

  it("PUT replaces, PATCH changes some fields", async () => {
    const machine = await createMachine(t);
    const other = await createMachine(t);
    const axis = await createAxis(t, machine.machine_id);
    const put = await send(t, "PUT", `/data/axes/${axis.axis_id}/`, {
      machine: other.machine_id,
      axis_name: "Z",
      max_acceleration: 10,
      max_velocity: 20,
    });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({
      axis_id: axis.axis_id,
      machine: other.machine_id,
      axis_name: "Z",
      max_acceleration: 10,
      max_velocity: 20,
    });
    const patch = await send(t, "PATCH", `/data/axes/${axis.axis_id}/`, { max_velocity: 99.5 });
    expect(patch.statusCode).toBe(200);
    expect(patch.json()).toEqual({ ...put.json(), max_velocity: 99.5 });
  });

  it("DELETE answers 204, then 404", async () => {
    const machine = await createMachine(t);
    const axis = await createAxis(t, machine.machine_id);
    const url = `/data/axes/${axis.axis_id}/`;
    expect((await send(t, "DELETE", url)).statusCode).toBe(204);
    await expectRefused(t, { method: "GET", url, headers: t.adminAuth }, 404, {
      detail: "Not found.",
    });
    await expectRefused(t, { method: "DELETE", url, headers: t.adminAuth }, 404, {
      detail: "Not found.",
    });
    await expectRefused(t, { method: "PATCH", url, headers: t.adminAuth, payload: {} }, 404, {
      detail: "Not found.",
    });
  });

  it("axis_name is unique per machine: a duplicate is 400 naming axis_name", async () => {
    const machine = await createMachine(t);
    const other = await createMachine(t);
    const x = await createAxis(t, machine.machine_id, { axis_name: "X" });
    const y = await createAxis(t, machine.machine_id, { axis_name: "Y" });
    const duplicate = {
      error: { axis_name: ["This machine already has an axis with this name."] },
    };
    await expectRefused(
      t,
      {
        method: "POST",
        url: "/data/axes/",
        headers: t.adminAuth,
        payload: {
          machine: machine.machine_id,
          axis_name: "X",
          max_acceleration: 1,
          max_velocity: 1,
        },
      },
      400,
      duplicate.error,
    );
    await expectRefused(
      t,
      {
        method: "PATCH",
        url: `/data/axes/${y.axis_id}/`,
        headers: t.adminAuth,
        payload: { axis_name: "X" },
      },
      400,
      duplicate.error,
    );
    // The same name on another machine is fine.
    await createAxis(t, other.machine_id, { axis_name: "X" });
    expect((await send(t, "GET", `/data/axes/${x.axis_id}/`)).json()).toEqual(x);
  });

  it("refuses axis names that are not identifiers, and non-positive limits", async () => {
    const machine = await createMachine(t);
    for (const [field, value] of [
      ["axis_name", "X; drop table axis"],
      ["axis_name", "1X"],
      ["axis_name", "X".repeat(33)],
      ["max_acceleration", 0],
      ["max_velocity", -1],
    ] as const) {
      const answer = await expectRefused(
        t,
        {
          method: "POST",
          url: "/data/axes/",
          headers: t.adminAuth,
          payload: {
            machine: machine.machine_id,
            axis_name: "A",
            max_acceleration: 1,
            max_velocity: 1,
            [field]: value,
          },
        },
        400,
      );
      expect(Object.keys(answer.json())).toEqual([field]);
    }
  });
});

describe("axes list: filters, pagination, ordering", () => {
  let machine: number;
  let axes: { axis_id: number; axis_name: string; max_velocity: number }[];
  beforeAll(async () => {
    machine = (await createMachine(t)).machine_id;
    axes = [];
    for (const [name, velocity] of [
      ["X", 300],
      ["Y", 100],
      ["Z", 500],
      ["A", 200],
      ["C", 400],
    ] as const) {
      axes.push(await createAxis(t, machine, { axis_name: name, max_velocity: velocity }));
    }
    const other = (await createMachine(t)).machine_id;
    await createAxis(t, other, { axis_name: "X" });
  });

  it("filters by machine and by axis_name, together or alone", async () => {
    expect(ids((await send(t, "GET", `/data/axes/?machine=${machine}`)).json())).toEqual(ids(axes));
    const named = (await send(t, "GET", "/data/axes/?axis_name=X&limit=10000")).json();
    expect(named.length).toBeGreaterThanOrEqual(2);
    expect(named.every((axis: { axis_name: string }) => axis.axis_name === "X")).toBe(true);
    const both = (await send(t, "GET", `/data/axes/?machine=${machine}&axis_name=X`)).json();
    expect(both).toEqual([axes[0]]);
    expect((await send(t, "GET", `/data/axes/?machine=${machine}&axis_name=B`)).json()).toEqual([]);
  });

  it("refuses filter values of the wrong shape with 400 naming the filter", async () => {
    for (const [query, field] of [
      ["machine=abc", "machine"],
      ["machine=0", "machine"],
      ["machine=1%3B%20drop%20table%20axis", "machine"],
      ["axis_name=%27%3B%20drop%20table%20axis%3B%20--", "axis_name"],
    ] as const) {
      const answer = await expectRefused(
        t,
        { method: "GET", url: `/data/axes/?${query}`, headers: t.adminAuth },
        400,
      );
      expect(Object.keys(answer.json()), query).toEqual([field]);
    }
  });

  it("pages with limit and offset, Link next/prev and X-Total-Count", async () => {
    const first = await send(t, "GET", `/data/axes/?machine=${machine}&limit=3`);
    expect(first.headers["x-total-count"]).toBe("5");
    expect(ids(first.json())).toEqual(ids(axes.slice(0, 3)));
    expect(links(first).prev).toBeUndefined();
    const second = await send(t, "GET", links(first).next!);
    expect(ids(second.json())).toEqual(ids(axes.slice(3)));
    expect(links(second).next).toBeUndefined();
    const back = await send(t, "GET", links(second).prev!);
    expect(ids(back.json())).toEqual(ids(axes.slice(0, 3)));
  });

  it("orders by a field, ascending or descending", async () => {
    const byVelocity = [...axes].sort((a, b) => a.max_velocity - b.max_velocity);
    const ascending = await send(t, "GET", `/data/axes/?machine=${machine}&ordering=max_velocity`);
    expect(ids(ascending.json())).toEqual(ids(byVelocity));
    const descending = await send(t, "GET", `/data/axes/?machine=${machine}&ordering=-axis_name`);
    expect(descending.json().map((axis: { axis_name: string }) => axis.axis_name)).toEqual([
      "Z",
      "Y",
      "X",
      "C",
      "A",
    ]);
    await expectRefused(
      t,
      { method: "GET", url: "/data/axes/?ordering=secret", headers: t.adminAuth },
      400,
      { ordering: [expect.stringContaining("Cannot order by")] },
    );
  });
});

describeBadInput(() => t, {
  path: "/data/axes/",
  fields: {
    machine: "id",
    axis_name: "string",
    max_acceleration: "number",
    max_velocity: "number",
  },
  required: ["machine", "axis_name", "max_acceleration", "max_velocity"],
  references: ["machine"],
  validBody: async () => ({
    machine: (await createMachine(t)).machine_id,
    axis_name: "X",
    max_acceleration: 1000,
    max_velocity: 100,
  }),
  existing: async () => (await createAxis(t, (await createMachine(t)).machine_id)).axis_id,
});
