import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import { describeBadInput } from "../../../test/helpers/bad-input.ts";
import { expectRefused, isoUtc, links, send } from "../../../test/helpers/crud.ts";
import { createMachine, createTool, createToolUsage } from "../../../test/helpers/factories.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp({ BODY_LIMIT: "2048" });
});
afterAll(() => t.close());

const toolIds = (rows: { tool_id: number }[]) => rows.map((row) => row.tool_id);
const usageIds = (rows: { usage_id: number }[]) => rows.map((row) => row.usage_id);

describe("tools CRUD", () => {
  it("POST creates a tool, update_timestamp defaulting to now, in ISO 8601 UTC", async () => {
    const machine = await createMachine(t);
    const answer = await send(t, "POST", "/data/tools/", {
      machine: machine.machine_id,
      tool_offset: -3.25,
      feedrate: 1500,
    });
    expect(answer.statusCode).toBe(201);
    const tool = answer.json();
    expect(tool).toEqual({
      tool_id: expect.any(Number),
      machine: machine.machine_id,
      tool_offset: -3.25,
      feedrate: 1500,
      update_timestamp: expect.stringMatching(isoUtc),
    });
    expect(Math.abs(Date.parse(tool.update_timestamp) - Date.now())).toBeLessThan(60_000);
  });

  it("answers a timestamp given with an offset in UTC", async () => {
    const machine = await createMachine(t);
    const tool = await createTool(t, machine.machine_id, {
      update_timestamp: "2026-03-01T12:30:00+02:00",
    });
    expect(tool.update_timestamp).toBe("2026-03-01T10:30:00.000Z");
  });

  it("GET one, GET list, PUT, PATCH, DELETE", async () => {
    const machine = await createMachine(t);
    const tool = await createTool(t, machine.machine_id);
    const url = `/data/tools/${tool.tool_id}/`;
    expect((await send(t, "GET", url)).json()).toEqual(tool);
    expect((await send(t, "GET", `/data/tools/?machine=${machine.machine_id}`)).json()).toEqual([
      tool,
    ]);
    const put = await send(t, "PUT", url, {
      machine: machine.machine_id,
      tool_offset: 1,
      feedrate: 2,
      update_timestamp: "2026-01-02T03:04:05Z",
    });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toEqual({
      tool_id: tool.tool_id,
      machine: machine.machine_id,
      tool_offset: 1,
      feedrate: 2,
      update_timestamp: "2026-01-02T03:04:05.000Z",
    });
    const patch = await send(t, "PATCH", url, { feedrate: 0 });
    expect(patch.json()).toEqual({ ...put.json(), feedrate: 0 });
    expect((await send(t, "DELETE", url)).statusCode).toBe(204);
    await expectRefused(t, { method: "GET", url, headers: t.adminAuth }, 404, {
      detail: "Not found.",
    });
  });

  it("refuses impossible calendar dates with 400 naming the field", async () => {
    const machine = await createMachine(t);
    for (const update_timestamp of [
      "2026-02-30T00:00:00Z",
      "2026-01-01T24:30:00Z",
      "0000-01-01T00:00:00Z",
    ]) {
      const answer = await expectRefused(
        t,
        {
          method: "POST",
          url: "/data/tools/",
          headers: t.adminAuth,
          payload: { machine: machine.machine_id, tool_offset: 1, feedrate: 1, update_timestamp },
        },
        400,
      );
      expect(Object.keys(answer.json()), update_timestamp).toEqual(["update_timestamp"]);
    }
  });
});

describe("report times", () => {
  it("more than a day ahead are refused for tools and tool usage, and change nothing", async () => {
    const machine = await createMachine(t);
    const tool = await createTool(t, machine.machine_id);
    const usage = await createToolUsage(t, machine.machine_id, tool.tool_id);
    const ahead = new Date(Date.now() + 2 * 86_400_000).toISOString();
    for (const [method, url, body] of [
      ["POST", "/data/tools/", { machine: machine.machine_id, tool_offset: 1, feedrate: 1 }],
      ["PATCH", `/data/tools/${tool.tool_id}/`, {}],
      [
        "PUT",
        `/data/tools/${tool.tool_id}/`,
        { machine: machine.machine_id, tool_offset: 1, feedrate: 1 },
      ],
      ["POST", "/data/tool-usage/", { machine: machine.machine_id, tool_in_use: tool.tool_id }],
      ["PATCH", `/data/tool-usage/${usage.usage_id}/`, {}],
    ] as const) {
      for (const update_timestamp of [ahead, "9999-12-31T00:00:00Z"]) {
        const answer = await send(t, method, url, { ...body, update_timestamp });
        expect(answer.statusCode, `${method} ${url}`).toBe(400);
        expect(answer.json()).toEqual({ update_timestamp: ["More than a day in the future."] });
      }
    }
    expect((await send(t, "GET", `/data/tools/${tool.tool_id}/`)).json()).toEqual(tool);
    expect((await send(t, "GET", `/data/tool-usage/${usage.usage_id}/`)).json()).toEqual(usage);
    // Within a day ahead (a producer's clock a little fast), and years back, are kept.
    for (const update_timestamp of [
      new Date(Date.now() + 3_600_000).toISOString(),
      "2019-05-01T00:00:00.000Z",
    ]) {
      const answer = await send(t, "PATCH", `/data/tools/${tool.tool_id}/`, { update_timestamp });
      expect(answer.statusCode).toBe(200);
      expect(answer.json().update_timestamp).toBe(update_timestamp);
    }
  });
});

describe("tools list: filters, pagination, ordering", () => {
  let machine: number;
  let tools: { tool_id: number; feedrate: number; update_timestamp: string }[];
  beforeAll(async () => {
    machine = (await createMachine(t)).machine_id;
    tools = [];
    for (let day = 1; day <= 4; day++) {
      tools.push(
        await createTool(t, machine, {
          feedrate: [300, 100, 400, 200][day - 1],
          update_timestamp: `2026-05-0${day}T00:00:00Z`,
        }),
      );
    }
    await createTool(t, (await createMachine(t)).machine_id);
  });

  it("filters by machine, since (inclusive) and until (exclusive)", async () => {
    const base = `/data/tools/?machine=${machine}`;
    expect(toolIds((await send(t, "GET", base)).json())).toEqual(toolIds(tools));
    const since = await send(t, "GET", `${base}&since=2026-05-02T00:00:00Z`);
    expect(toolIds(since.json())).toEqual(toolIds(tools.slice(1)));
    const until = await send(t, "GET", `${base}&until=2026-05-03T00:00:00Z`);
    expect(toolIds(until.json())).toEqual(toolIds(tools.slice(0, 2)));
    const window = await send(
      t,
      "GET",
      `${base}&since=2026-05-02T00:00:00Z&until=2026-05-04T00:00:00Z`,
    );
    expect(toolIds(window.json())).toEqual(toolIds(tools.slice(1, 3)));
    expect(window.headers["x-total-count"]).toBe("2");
  });

  it("refuses bad since/until with 400 naming the filter", async () => {
    for (const [query, field] of [
      ["since=yesterday", "since"],
      ["until=2026-02-30T00:00:00Z", "until"],
      ["since=%27%3B%20drop%20table%20tool%3B%20--", "since"],
      ["machine=-3", "machine"],
    ] as const) {
      const answer = await expectRefused(
        t,
        { method: "GET", url: `/data/tools/?${query}`, headers: t.adminAuth },
        400,
      );
      expect(Object.keys(answer.json()), query).toEqual([field]);
    }
  });

  it("pages and orders", async () => {
    const first = await send(
      t,
      "GET",
      `/data/tools/?machine=${machine}&limit=3&ordering=-feedrate`,
    );
    expect(first.headers["x-total-count"]).toBe("4");
    const byFeedrate = [...tools].sort((a, b) => b.feedrate - a.feedrate);
    expect(toolIds(first.json())).toEqual(toolIds(byFeedrate.slice(0, 3)));
    const next = links(first).next!;
    expect(next).toContain("ordering=-feedrate");
    expect(toolIds((await send(t, "GET", next)).json())).toEqual(toolIds(byFeedrate.slice(3)));
    const byTime = await send(
      t,
      "GET",
      `/data/tools/?machine=${machine}&ordering=-update_timestamp`,
    );
    expect(toolIds(byTime.json())).toEqual(toolIds([...tools].reverse()));
  });
});

describe("tool usage CRUD", () => {
  it("POST, GET, PUT, PATCH, DELETE", async () => {
    const machine = await createMachine(t);
    const [first, second] = [
      await createTool(t, machine.machine_id),
      await createTool(t, machine.machine_id),
    ];
    const created = await send(t, "POST", "/data/tool-usage/", {
      machine: machine.machine_id,
      tool_in_use: first.tool_id,
    });
    expect(created.statusCode).toBe(201);
    const usage = created.json();
    expect(usage).toEqual({
      usage_id: expect.any(Number),
      machine: machine.machine_id,
      tool_in_use: first.tool_id,
      update_timestamp: expect.stringMatching(isoUtc),
    });
    const url = `/data/tool-usage/${usage.usage_id}/`;
    expect((await send(t, "GET", url)).json()).toEqual(usage);
    const put = await send(t, "PUT", url, {
      machine: machine.machine_id,
      tool_in_use: second.tool_id,
      update_timestamp: "2026-06-01T00:00:00Z",
    });
    expect(put.json()).toEqual({
      ...usage,
      tool_in_use: second.tool_id,
      update_timestamp: "2026-06-01T00:00:00.000Z",
    });
    const patch = await send(t, "PATCH", url, { tool_in_use: first.tool_id });
    expect(patch.json()).toEqual({ ...put.json(), tool_in_use: first.tool_id });
    expect((await send(t, "DELETE", url)).statusCode).toBe(204);
    expect((await send(t, "GET", url)).statusCode).toBe(404);
  });

  it("tool_in_use must be a tool of the same machine", async () => {
    const machine = await createMachine(t);
    const other = await createMachine(t);
    const own = await createTool(t, machine.machine_id);
    const foreign = await createTool(t, other.machine_id);
    const usage = await createToolUsage(t, machine.machine_id, own.tool_id);
    for (const [method, url, payload] of [
      ["POST", "/data/tool-usage/", { machine: machine.machine_id, tool_in_use: foreign.tool_id }],
      ["POST", "/data/tool-usage/", { machine: machine.machine_id, tool_in_use: 987_654_321 }],
      [
        "PUT",
        `/data/tool-usage/${usage.usage_id}/`,
        { machine: machine.machine_id, tool_in_use: foreign.tool_id },
      ],
      ["PATCH", `/data/tool-usage/${usage.usage_id}/`, { tool_in_use: foreign.tool_id }],
      // Moving the record to another machine leaves its tool behind.
      ["PATCH", `/data/tool-usage/${usage.usage_id}/`, { machine: other.machine_id }],
    ] as const) {
      const answer = await expectRefused(t, { method, url, headers: t.adminAuth, payload }, 400);
      expect(Object.keys(answer.json()), JSON.stringify(payload)).toEqual(["tool_in_use"]);
    }
  });

  it("filters by machine and time, pages and orders", async () => {
    const machine = await createMachine(t);
    const tool = await createTool(t, machine.machine_id);
    const rows = [];
    for (const day of ["01", "02", "03"]) {
      const answer = await send(t, "POST", "/data/tool-usage/", {
        machine: machine.machine_id,
        tool_in_use: tool.tool_id,
        update_timestamp: `2026-07-${day}T08:00:00Z`,
      });
      rows.push(answer.json());
    }
    const base = `/data/tool-usage/?machine=${machine.machine_id}`;
    expect(usageIds((await send(t, "GET", base)).json())).toEqual(usageIds(rows));
    expect(usageIds((await send(t, "GET", `${base}&since=2026-07-02T08:00:00Z`)).json())).toEqual(
      usageIds(rows.slice(1)),
    );
    expect(usageIds((await send(t, "GET", `${base}&until=2026-07-02T08:00:00Z`)).json())).toEqual(
      usageIds(rows.slice(0, 1)),
    );
    const page = await send(t, "GET", `${base}&limit=2&ordering=-update_timestamp`);
    expect(usageIds(page.json())).toEqual(usageIds([rows[2], rows[1]]));
    expect(page.headers["x-total-count"]).toBe("3");
    expect(usageIds((await send(t, "GET", links(page).next!)).json())).toEqual(usageIds([rows[0]]));
  });

  it("?latest=true answers each machine's newest report, however many others report since", async () => {
    const quiet = await createMachine(t);
    const busy = await createMachine(t);
    const idle = await createMachine(t);
    const quietTool = await createTool(t, quiet.machine_id);
    const busyTool = await createTool(t, busy.machine_id);
    const report = async (machine: number, tool: number, at: string) =>
      (
        await send(t, "POST", "/data/tool-usage/", {
          machine,
          tool_in_use: tool,
          update_timestamp: at,
        })
      ).json();
    const quietOld = await report(quiet.machine_id, quietTool.tool_id, "2026-08-01T06:00:00Z");
    const quietNewest = await report(quiet.machine_id, quietTool.tool_id, "2026-08-01T07:00:00Z");
    const busyRows = [];
    for (let minute = 10; minute < 40; minute++)
      busyRows.push(await report(busy.machine_id, busyTool.tool_id, `2026-08-02T07:${minute}:00Z`));
    const ours = new Set([quiet.machine_id, busy.machine_id, idle.machine_id]);
    const latest = await send(t, "GET", "/data/tool-usage/?latest=true&limit=10000");
    expect(latest.statusCode).toBe(200);
    const mine = (latest.json() as { usage_id: number; machine: number }[]).filter((row) =>
      ours.has(row.machine),
    );
    expect(usageIds(mine).sort((a, b) => a - b)).toEqual(
      usageIds([quietNewest, busyRows.at(-1)]).sort((a, b) => a - b),
    );
    // Combined with the other filters, and counted as it is listed.
    const one = await send(t, "GET", `/data/tool-usage/?latest=true&machine=${quiet.machine_id}`);
    expect(usageIds(one.json())).toEqual([quietNewest.usage_id]);
    expect(one.headers["x-total-count"]).toBe("1");
    const everything = await send(
      t,
      "GET",
      `/data/tool-usage/?latest=false&machine=${quiet.machine_id}`,
    );
    expect(usageIds(everything.json())).toEqual(usageIds([quietOld, quietNewest]));
    await expectRefused(
      t,
      { method: "GET", url: "/data/tool-usage/?latest=newest", headers: t.adminAuth },
      400,
    );
  });
});

describeBadInput(() => t, {
  path: "/data/tools/",
  fields: {
    machine: "id",
    tool_offset: "number",
    feedrate: "number",
    update_timestamp: "timestamp",
  },
  required: ["machine", "tool_offset", "feedrate"],
  references: ["machine"],
  validBody: async () => ({
    machine: (await createMachine(t)).machine_id,
    tool_offset: 5,
    feedrate: 800,
  }),
  existing: async () => (await createTool(t, (await createMachine(t)).machine_id)).tool_id,
});

describe("tool usage", () => {
  describeBadInput(() => t, {
    path: "/data/tool-usage/",
    fields: { machine: "id", tool_in_use: "id", update_timestamp: "timestamp" },
    required: ["machine", "tool_in_use"],
    references: ["machine", "tool_in_use"],
    validBody: async () => {
      const machine = (await createMachine(t)).machine_id;
      return { machine, tool_in_use: (await createTool(t, machine)).tool_id };
    },
    existing: async () => {
      const machine = (await createMachine(t)).machine_id;
      const tool = await createTool(t, machine);
      return (await createToolUsage(t, machine, tool.tool_id)).usage_id;
    },
  });
});
