import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import { describeBadInput } from "../../../test/helpers/bad-input.ts";
import { expectRefused, links, send } from "../../../test/helpers/crud.ts";
import { blockedBy, otherSession, testDatabaseKind } from "../../../test/helpers/database.ts";
import {
  createAxis,
  createAxisData,
  createMachine,
  createTool,
  createToolUsage,
  nextMachineId,
} from "../../../test/helpers/factories.ts";
import { pgErrorCode } from "../../platform/errors.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp({ BODY_LIMIT: "2048" });
});
afterAll(() => t.close());

const count = async (table: string, machine: number) =>
  Number(
    (
      await t.database.db.query<{ n: number }>(
        table === "axis_data"
          ? "select count(*) as n from axis_data d join axis x using (axis_id) where x.machine_id = $1"
          : `select count(*) as n from ${table} where machine_id = $1`,
        [machine],
      )
    ).rows[0]!.n,
  );

describe("machines CRUD", () => {
  it("POST creates a machine with the client's id and answers 201 with it", async () => {
    const id = nextMachineId();
    const answer = await send(t, "POST", "/data/machines/", {
      machine_id: id,
      machine_name: "Haas VF-2",
      tool_capacity: 20,
    });
    expect(answer.statusCode).toBe(201);
    expect(answer.json()).toEqual({ machine_id: id, machine_name: "Haas VF-2", tool_capacity: 20 });
  });

  it("GET one answers the machine, GET list includes it", async () => {
    const machine = await createMachine(t);
    const one = await send(t, "GET", `/data/machines/${machine.machine_id}/`);
    expect(one.statusCode).toBe(200);
    expect(one.json()).toEqual(machine);
    const list = await send(t, "GET", "/data/machines/?limit=10000");
    expect(list.statusCode).toBe(200);
    expect(Array.isArray(list.json())).toBe(true);
    expect(list.json()).toContainEqual(machine);
  });

  it("PUT replaces every field and keeps the id", async () => {
    const machine = await createMachine(t);
    const answer = await send(t, "PUT", `/data/machines/${machine.machine_id}/`, {
      machine_id: machine.machine_id,
      machine_name: "Renamed",
      tool_capacity: 40,
    });
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toEqual({
      machine_id: machine.machine_id,
      machine_name: "Renamed",
      tool_capacity: 40,
    });
    expect((await send(t, "GET", `/data/machines/${machine.machine_id}/`)).json()).toEqual(
      answer.json(),
    );
  });

  it("PUT refuses to change the client-supplied id", async () => {
    const machine = await createMachine(t);
    await expectRefused(
      t,
      {
        method: "PUT",
        url: `/data/machines/${machine.machine_id}/`,
        headers: t.adminAuth,
        payload: { ...machine, machine_id: nextMachineId() },
      },
      400,
      { machine_id: ["This field cannot be changed."] },
    );
  });

  it("PATCH changes only the fields given; an empty PATCH changes nothing", async () => {
    const machine = await createMachine(t);
    const answer = await send(t, "PATCH", `/data/machines/${machine.machine_id}/`, {
      tool_capacity: 7,
    });
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toEqual({ ...machine, tool_capacity: 7 });
    const empty = await send(t, "PATCH", `/data/machines/${machine.machine_id}/`, {});
    expect(empty.statusCode).toBe(200);
    expect(empty.json()).toEqual({ ...machine, tool_capacity: 7 });
  });

  it("DELETE answers 204, then the machine is 404", async () => {
    const machine = await createMachine(t);
    const url = `/data/machines/${machine.machine_id}/`;
    const answer = await send(t, "DELETE", url);
    expect(answer.statusCode).toBe(204);
    expect(answer.body).toBe("");
    expect((await send(t, "GET", url)).statusCode).toBe(404);
    expect((await send(t, "DELETE", url)).json()).toEqual({ detail: "Not found." });
  });

  it("unknown ids are 404 on GET, PUT, PATCH and DELETE", async () => {
    const url = `/data/machines/${nextMachineId()}/`;
    await expectRefused(t, { method: "GET", url, headers: t.adminAuth }, 404, {
      detail: "Not found.",
    });
    await expectRefused(
      t,
      {
        method: "PUT",
        url,
        headers: t.adminAuth,
        payload: { machine_id: 1, machine_name: "x", tool_capacity: 1 },
      },
      404,
      { detail: "Not found." },
    );
    await expectRefused(t, { method: "PATCH", url, headers: t.adminAuth, payload: {} }, 404, {
      detail: "Not found.",
    });
    await expectRefused(t, { method: "DELETE", url, headers: t.adminAuth }, 404, {
      detail: "Not found.",
    });
  });

  it("deleting a machine deletes its axes, tools, tool usage and axis data", async () => {
    const machine = await createMachine(t);
    const other = await createMachine(t);
    for (const m of [machine, other]) {
      const axis = await createAxis(t, m.machine_id);
      await createAxisData(t, axis.axis_id);
      const tool = await createTool(t, m.machine_id);
      await createToolUsage(t, m.machine_id, tool.tool_id);
    }
    const tables = ["axis", "tool", "tool_usage", "axis_data"];
    for (const table of tables) expect(await count(table, machine.machine_id)).toBe(1);
    expect((await send(t, "DELETE", `/data/machines/${machine.machine_id}/`)).statusCode).toBe(204);
    for (const table of tables) {
      expect(await count(table, machine.machine_id), table).toBe(0);
      expect(await count(table, other.machine_id), table).toBe(1);
    }
  });

  it("a duplicate machine_id is 400 naming machine_id, and the first machine is kept", async () => {
    const machine = await createMachine(t);
    await expectRefused(
      t,
      {
        method: "POST",
        url: "/data/machines/",
        headers: t.adminAuth,
        payload: { ...machine, machine_name: "Impostor" },
      },
      400,
      { machine_id: ["machine with this machine id already exists."] },
    );
    expect((await send(t, "GET", `/data/machines/${machine.machine_id}/`)).json()).toEqual(machine);
  });

  it("stores SQL-looking names verbatim, finds them by filter, and drops nothing", async () => {
    const name = "'; drop table machine; --";
    const machine = await createMachine(t, { machine_name: name });
    expect(machine.machine_name).toBe(name);
    const found = await send(
      t,
      "GET",
      `/data/machines/?machine_name=${encodeURIComponent(name)}&ordering=machine_name`,
    );
    expect(found.statusCode).toBe(200);
    expect(found.json()).toEqual([machine]);
    const tricky = `x' or '1'='1`;
    const none = await send(t, "GET", `/data/machines/?machine_name=${encodeURIComponent(tricky)}`);
    expect(none.json()).toEqual([]);
    expect((await send(t, "GET", "/data/machines/")).json().length).toBeGreaterThan(1);
  });

  it("keeps unicode names and bounds their length", async () => {
    const machine = await createMachine(t, { machine_name: "Fräse 5-Achs ⚙ 機械" });
    expect(machine.machine_name).toBe("Fräse 5-Achs ⚙ 機械");
    await expectRefused(
      t,
      {
        method: "POST",
        url: "/data/machines/",
        headers: t.adminAuth,
        payload: { machine_id: nextMachineId(), machine_name: "x".repeat(256), tool_capacity: 1 },
      },
      400,
      { machine_name: ["Ensure this field has no more than 255 characters."] },
    );
  });

  it("refuses a NUL character in a name, in a body or a filter, without a 500", async () => {
    await expectRefused(
      t,
      {
        method: "POST",
        url: "/data/machines/",
        headers: t.adminAuth,
        payload: { machine_id: nextMachineId(), machine_name: "a\u0000b", tool_capacity: 1 },
      },
      400,
    );
    await expectRefused(
      t,
      { method: "GET", url: "/data/machines/?machine_name=a%00b", headers: t.adminAuth },
      400,
    );
  });

  it("refuses out-of-range ids and capacities", async () => {
    for (const payload of [
      { machine_id: 0, machine_name: "x", tool_capacity: 1 },
      { machine_id: -5, machine_name: "x", tool_capacity: 1 },
      { machine_id: 2 ** 53, machine_name: "x", tool_capacity: 1 },
      { machine_id: nextMachineId(), machine_name: "x", tool_capacity: -1 },
      { machine_id: nextMachineId(), machine_name: "x", tool_capacity: 10001 },
    ]) {
      const key = payload.tool_capacity === 1 ? "machine_id" : "tool_capacity";
      const answer = await expectRefused(
        t,
        { method: "POST", url: "/data/machines/", headers: t.adminAuth, payload },
        400,
      );
      expect(Object.keys(answer.json())).toEqual([key]);
    }
  });
});

describe("machines list: pagination and ordering", () => {
  let prefix: string;
  let ids: number[];
  beforeAll(async () => {
    prefix = `Page${process.pid}`;
    ids = [];
    for (let i = 0; i < 5; i++) {
      const machine = await createMachine(t, {
        machine_name: `${prefix}`,
        tool_capacity: 10 + ((i * 3) % 5),
      });
      ids.push(machine.machine_id);
    }
  });

  it("pages with limit and offset, with Link next/prev and X-Total-Count", async () => {
    const base = `/data/machines/?machine_name=${prefix}`;
    const first = await send(t, "GET", `${base}&limit=2`);
    expect(first.statusCode).toBe(200);
    expect(first.headers["x-total-count"]).toBe("5");
    expect(first.json().map((m: { machine_id: number }) => m.machine_id)).toEqual(ids.slice(0, 2));
    const firstLinks = links(first);
    expect(firstLinks.prev).toBeUndefined();
    expect(firstLinks.next).toBeDefined();

    const second = await send(t, "GET", firstLinks.next!);
    expect(second.json().map((m: { machine_id: number }) => m.machine_id)).toEqual(ids.slice(2, 4));
    expect(second.headers["x-total-count"]).toBe("5");
    const secondLinks = links(second);
    expect(new URL(secondLinks.prev!, "http://x").searchParams.get("offset")).toBe("0");
    expect(new URL(secondLinks.next!, "http://x").searchParams.get("machine_name")).toBe(prefix);

    const last = await send(t, "GET", secondLinks.next!);
    expect(last.json().map((m: { machine_id: number }) => m.machine_id)).toEqual(ids.slice(4));
    expect(links(last).next).toBeUndefined();
    expect(links(last).prev).toBeDefined();

    const past = await send(t, "GET", `${base}&offset=50`);
    expect(past.statusCode).toBe(200);
    expect(past.json()).toEqual([]);
    expect(past.headers["x-total-count"]).toBe("5");
  });

  it("accepts limit 10000 and refuses 10001", async () => {
    expect((await send(t, "GET", "/data/machines/?limit=10000")).statusCode).toBe(200);
    const answer = await send(t, "GET", "/data/machines/?limit=10001");
    expect(answer.statusCode).toBe(400);
    expect(Object.keys(answer.json())).toEqual(["limit"]);
  });

  it("orders by a field ascending or descending, the id breaking ties", async () => {
    const base = `/data/machines/?machine_name=${prefix}`;
    const ascending = (await send(t, "GET", `${base}&ordering=tool_capacity`)).json();
    const capacities = ascending.map((m: { tool_capacity: number }) => m.tool_capacity);
    expect(capacities).toEqual([...capacities].sort((a, b) => a - b));
    const descending = (await send(t, "GET", `${base}&ordering=-tool_capacity`)).json();
    expect(descending.map((m: { tool_capacity: number }) => m.tool_capacity)).toEqual(
      [...capacities].reverse(),
    );
    const byId = (await send(t, "GET", `${base}&ordering=-machine_id`)).json();
    expect(byId.map((m: { machine_id: number }) => m.machine_id)).toEqual([...ids].reverse());
  });

  it("refuses an unknown ordering field with 400 naming ordering", async () => {
    const answer = await send(t, "GET", "/data/machines/?ordering=password");
    expect(answer.statusCode).toBe(400);
    expect(Object.keys(answer.json())).toEqual(["ordering"]);
  });
});

describeBadInput(() => t, {
  path: "/data/machines/",
  fields: { machine_id: "id", machine_name: "string", tool_capacity: "integer" },
  required: ["machine_id", "machine_name", "tool_capacity"],
  references: [],
  validBody: async () => ({
    machine_id: nextMachineId(),
    machine_name: "Valid",
    tool_capacity: 12,
  }),
  existing: async () => (await createMachine(t)).machine_id,
});

describe("query parameters DRF clients send", () => {
  it("ignores unknown ones such as ?format=json, as DRF does", async () => {
    const t = await buildTestApp();
    try {
      const plain = await t.inject({ method: "GET", url: "/data/machines/", headers: t.adminAuth });
      const withFormat = await t.inject({
        method: "GET",
        url: "/data/machines/?format=json&page_size=5",
        headers: t.adminAuth,
      });
      expect(withFormat.statusCode).toBe(200);
      expect(withFormat.json()).toEqual(plain.json());
    } finally {
      await t.close();
    }
  });
});

describe.runIf(testDatabaseKind() === "postgres")("a deadlock with another session", () => {
  it("answers 503 with Retry-After, changes nothing, and the same request then succeeds", async () => {
    const machine = await createMachine(t);
    const tool = await createTool(t, machine.machine_id);
    const other = await otherSession(t.database);
    try {
      // Another session holds the tool; deleting the machine takes the machine's row, then
      // waits for the tool's to cascade to it.
      await other.query("begin");
      await other.query("select 1 from tool where tool_id = $1 for update", [tool.tool_id]);
      const remove = () =>
        t.inject({
          method: "DELETE",
          url: `/data/machines/${machine.machine_id}/`,
          headers: t.adminAuth,
        });
      const deleting = remove();
      await blockedBy(other, "delete from machine %");
      // The other session now wants the machine's row: each waits for the other. Each backend
      // looks for a deadlock once it has waited deadlock_timeout (1 s); the request's started
      // waiting 300 ms earlier, so it finds the cycle first and is the one aborted.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const crossing = other
        .query("select 1 from machine where machine_id = $1 for update", [machine.machine_id])
        .then(
          () => "locked",
          (error: unknown) => pgErrorCode(error),
        );
      const answer = await Promise.race([
        deleting,
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error("the DELETE is still waiting")), 10_000),
        ),
      ]);
      expect(answer.statusCode).toBe(503);
      expect(answer.headers["retry-after"]).toBe("1");
      expect(answer.json()).toEqual({
        detail: "The database aborted this request in a conflict with another; retry it.",
      });
      expect(await crossing).toBe("locked");
      await other.query("commit");
      expect(await count("tool", machine.machine_id)).toBe(1);
      expect((await remove()).statusCode).toBe(204);
      expect(await count("tool", machine.machine_id)).toBe(0);
    } finally {
      await other.query("rollback").catch(() => {});
      await other.end();
    }
  });
});
