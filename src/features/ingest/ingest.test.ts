import { type ClientRequest, request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import {
  createAxis,
  createMachine,
  createTool,
  snapshot,
} from "../../../test/helpers/factories.ts";
import type { ValidBatch } from "./ingest-batch.ts";
import { parseNdjson } from "./ingest-routes.ts";

let t: TestApp;
let machineId: number;
let toolId: number;
let otherToolId: number;
const axisIds: Record<string, number> = {};

beforeAll(async () => {
  t = await buildTestApp();
  machineId = (await createMachine(t)).machine_id;
  for (const axis_name of ["X", "Y", "Z", "A", "C"])
    axisIds[axis_name] = (await createAxis(t, machineId, { axis_name })).axis_id;
  toolId = (await createTool(t, machineId, { update_timestamp: "2020-01-01T00:00:00Z" })).tool_id;
  const other = await createMachine(t);
  otherToolId = (await createTool(t, other.machine_id)).tool_id;
});
afterAll(() => t.close());

let tick = 0;
/** A distinct instant per call, so each sample is new unless a test repeats it on purpose. */
const at = () => new Date(Date.now() - 60_000 + ++tick).toISOString();
const sample = (overrides: Record<string, unknown> = {}) => ({
  machine_id: machineId,
  axis_name: "X",
  actual_position: 10,
  target_position: 12,
  velocity: 100,
  acceleration: 5,
  homed: true,
  timestamp: at(),
  ...overrides,
});
const ingest = (payload: unknown, headers: Record<string, string> = t.adminAuth) =>
  t.inject({ method: "POST", url: "/api/ingest/", headers, payload: payload as object });
const count = async (table = "axis_data") =>
  Number(
    (await t.database.db.query<{ n: number }>(`select count(*)::int as n from ${table}`)).rows[0]!
      .n,
  );

describe("POST /api/ingest/", () => {
  it("commits a batch before answering 202", async () => {
    const before = await count();
    const rows = ["X", "Y", "Z", "A", "C"].map((axis_name) => sample({ axis_name }));
    const answer = await ingest({ axis_data: rows });
    expect(answer.statusCode).toBe(202);
    expect(answer.json()).toEqual({ accepted: 5, duplicates: 0 });
    expect(await count()).toBe(before + 5);
  });

  it("stores every field, distance_to_go derived, the client's timestamp to the microsecond", async () => {
    const timestamp = "2026-01-01T00:00:00.123456Z";
    const fresh = new Date(Date.now() - 1000).toISOString().replace(/\.(\d{3})Z$/, ".$1789Z");
    const row = sample({
      axis_name: "Y",
      actual_position: 1.5,
      target_position: 4,
      velocity: -3.25,
      acceleration: 0.5,
      homed: false,
      timestamp: fresh,
    });
    expect((await ingest({ axis_data: [row] })).statusCode).toBe(202);
    const { rows } = await t.database.db.query<Record<string, unknown>>(
      "select actual_position, target_position, distance_to_go, velocity, acceleration, homed, to_char(update_timestamp at time zone 'UTC', 'US') as micros from axis_data where axis_id = $1 and update_timestamp = $2",
      [axisIds.Y, fresh],
    );
    expect(rows[0]).toMatchObject({
      actual_position: 1.5,
      target_position: 4,
      distance_to_go: 2.5,
      velocity: -3.25,
      acceleration: 0.5,
      homed: false,
    });
    expect(String(rows[0]!.micros).slice(-3)).toBe("789");
    expect(timestamp).toBeTruthy();
  });

  it("stores every number exactly, the smallest and the largest, and times given in any zone", async () => {
    const values = [0.1 + 0.2, 5e-324, -1e-7, 1e12, -1e12, 123456789.12345679];
    const base = Date.now() - 30_000;
    const rows = values.map((value, i) =>
      sample({
        axis_name: "A",
        actual_position: value,
        target_position: -value,
        velocity: value / 3,
        acceleration: i,
        homed: i % 2 === 0,
        // base + i written as local time at +05:30, 5.5 h ahead of UTC.
        timestamp: `${new Date(base + i + 5.5 * 3_600_000).toISOString().slice(0, -1)}+05:30`,
      }),
    );
    expect((await ingest({ axis_data: rows })).json()).toEqual({ accepted: 6, duplicates: 0 });
    const { rows: stored } = await t.database.db.query<Record<string, unknown>>(
      "select actual_position, target_position, velocity, acceleration, homed, update_timestamp from axis_data where axis_id = $1 and update_timestamp >= $2 order by update_timestamp",
      [axisIds.A, new Date(base)],
    );
    expect(stored).toEqual(
      values.map((value, i) => ({
        actual_position: value,
        target_position: -value,
        velocity: value / 3,
        acceleration: i,
        homed: i % 2 === 0,
        update_timestamp: new Date(base + i),
      })),
    );
  });

  it("is idempotent: a retried batch is accepted and counted as duplicates, never stored twice", async () => {
    const rows = [
      sample(),
      sample(),
      sample({ axis: axisIds.Z, machine_id: undefined, axis_name: undefined }),
    ];
    expect((await ingest({ axis_data: rows })).json()).toEqual({ accepted: 3, duplicates: 0 });
    const before = await count();
    expect((await ingest({ axis_data: rows })).json()).toEqual({ accepted: 3, duplicates: 3 });
    expect(await count()).toBe(before);
  });

  it("keeps every time in one form, UTC, to the microsecond given", async () => {
    // Ahead of every other sample of the axis, so the latest value is this one.
    const base = Date.now() + 60_000;
    const local = `${new Date(base + 5.5 * 3_600_000).toISOString().slice(0, 19)}.123456+05:30`;
    const answer = await ingest({
      axis_data: [sample({ axis_name: "Y", timestamp: local })],
    });
    expect(answer.statusCode, answer.body).toBe(202);
    const utc = `${new Date(base).toISOString().slice(0, 19)}.123456Z`;
    expect(t.services.latest.axes.get(axisIds.Y!)!.time).toBe(utc);
    const { rows } = await t.database.db.query<{ same: boolean }>(
      "select update_timestamp = $2::timestamptz as same from axis_data where axis_id = $1 order by update_timestamp desc limit 1",
      [axisIds.Y, utc],
    );
    expect(rows[0]!.same).toBe(true);
  });

  it("uses the time of receipt when a row has no timestamp", async () => {
    const started = Date.now();
    const { timestamp: _, ...row } = sample({ axis_name: "C" });
    expect((await ingest({ axis_data: [row] })).statusCode).toBe(202);
    const { rows } = await t.database.db.query<{ update_timestamp: Date }>(
      "select update_timestamp from axis_data where axis_id = $1 order by update_timestamp desc limit 1",
      [axisIds.C],
    );
    expect(rows[0]!.update_timestamp.getTime()).toBeGreaterThanOrEqual(started - 5);
  });

  it("refuses two rows of one series without a timestamp in one batch: they would be one sample", async () => {
    const { timestamp: _, ...x } = sample({ axis_name: "C" });
    const tool = (await createTool(t, machineId)).tool_id;
    const before = await count();
    const cases = [
      { axis_data: [x, { ...x, actual_position: 55 }] },
      {
        tool_data: [
          { tool_id: tool, tool_offset: 1, feedrate: 1 },
          { tool_id: tool, tool_offset: 2, feedrate: 1 },
        ],
      },
      {
        tool_usage: [
          { machine_id: machineId, tool_in_use: tool },
          { machine_id: machineId, tool_in_use: tool },
        ],
      },
    ];
    for (const batch of cases) {
      const answer = await ingest(batch);
      expect(answer.statusCode, answer.body).toBe(400);
      const [kind] = Object.keys(batch);
      expect(JSON.stringify(answer.json())).toContain(
        "Another row of this series in the batch has no timestamp",
      );
      expect(answer.json().errors).toEqual([
        expect.objectContaining({ kind, index: 1, field: "timestamp" }),
      ]);
    }
    expect(await count()).toBe(before);
    // One row per series, or rows each with its time, are taken as before.
    const { timestamp: __, ...y } = sample({ axis_name: "Y" });
    expect((await ingest({ axis_data: [x, y] })).json()).toEqual({ accepted: 2, duplicates: 0 });
    expect((await ingest({ axis_data: [x, sample({ axis_name: "C" })] })).json()).toEqual({
      accepted: 2,
      duplicates: 0,
    });
  });

  it("takes NDJSON: batch objects and single rows with a kind", async () => {
    const lines = [
      JSON.stringify({ axis_data: [sample(), sample()] }),
      JSON.stringify({ kind: "axis_data", ...sample() }),
      "",
    ].join("\n");
    const answer = await t.inject({
      method: "POST",
      url: "/api/ingest/",
      headers: { ...t.adminAuth, "content-type": "application/x-ndjson" },
      payload: lines,
    });
    expect(answer.statusCode).toBe(202);
    expect(answer.json().accepted).toBe(3);
  });

  it("refuses an NDJSON line with a key that is no row kind, naming the line, as the JSON body is refused", async () => {
    const cases: [object[], string][] = [
      [[{ "axis-data": [sample()] }], "Line 1: Unknown field(s): axis-data."],
      [
        [{ axis_data: [sample()] }, { axis_data: [sample()], tool_dta: [] }],
        "Line 2: Unknown field(s): tool_dta.",
      ],
    ];
    for (const [lines, detail] of cases) {
      const before = await snapshot(t);
      const answer = await t.inject({
        method: "POST",
        url: "/api/ingest/",
        headers: { ...t.adminAuth, "content-type": "application/x-ndjson" },
        payload: lines.map((line) => JSON.stringify(line)).join("\n"),
      });
      expect(answer.statusCode, answer.body).toBe(400);
      expect(answer.json().detail).toBe(`${detail} Expected axis_data, tool_data, tool_usage.`);
      expect(await snapshot(t)).toBe(before);
    }
  });

  it("updates tools and logs tool usage, idempotently", async () => {
    const when = at();
    const payload = {
      tool_data: [{ tool_id: toolId, tool_offset: 101.5, feedrate: 2400, timestamp: when }],
      tool_usage: [{ machine_id: machineId, tool_in_use: toolId, timestamp: when }],
    };
    expect((await ingest(payload)).json()).toEqual({ accepted: 2, duplicates: 0 });
    const tool = await t.inject({
      method: "GET",
      url: `/data/tools/${toolId}/`,
      headers: t.adminAuth,
    });
    expect(tool.json()).toMatchObject({ tool_offset: 101.5, feedrate: 2400 });
    expect((await ingest(payload)).json()).toEqual({ accepted: 2, duplicates: 2 });
    const older = {
      tool_data: [
        {
          tool_id: toolId,
          tool_offset: 1,
          feedrate: 1,
          timestamp: new Date(Date.parse(when) - 1000).toISOString(),
        },
      ],
    };
    expect((await ingest(older)).json()).toEqual({ accepted: 1, duplicates: 1 });
    expect(
      (
        await t.inject({ method: "GET", url: `/data/tools/${toolId}/`, headers: t.adminAuth })
      ).json().tool_offset,
    ).toBe(101.5);
  });

  it("applies the newest of one tool's reports in a batch, to the microsecond, the last of equal times", async () => {
    const tool = (await createTool(t, machineId, { update_timestamp: "2021-01-01T00:00:00Z" }))
      .tool_id as number;
    const day = new Date(Date.now() - 86_400_000).toISOString().slice(0, 19);
    const stamp = (micros: string) => `${day}.${micros}Z`;
    const report = (tool_offset: number, micros: string) => ({
      tool_id: tool,
      tool_offset,
      feedrate: 1,
      timestamp: stamp(micros),
    });
    const published: ValidBatch[] = [];
    const stop = t.services.ingest.onCommitted((batch) => published.push(batch));
    const stored = async () =>
      (await t.inject({ method: "GET", url: `/data/tools/${tool}/`, headers: t.adminAuth })).json()
        .tool_offset;
    try {
      // Within one millisecond, the later microsecond first.
      const sub = { tool_data: [report(21, "000200"), report(22, "000100")] };
      expect((await ingest(sub)).json()).toEqual({ accepted: 2, duplicates: 1 });
      expect(await stored()).toBe(21);
      // A microsecond later, in the same millisecond: the newest, in the database and in memory.
      const equal = { tool_data: [report(31, "000300"), report(32, "000300")] };
      expect((await ingest(equal)).json()).toEqual({ accepted: 2, duplicates: 1 });
      expect(await stored()).toBe(32);
      expect(t.services.latest.tools.get(tool)?.toolOffset).toBe(32);
      // What is published is what was applied.
      expect(published.map((batch) => batch.tools.map((row) => row.toolOffset))).toEqual([
        [21],
        [32],
      ]);
    } finally {
      stop();
    }
  });

  it("keeps the newest value of every series in memory and publishes each committed batch", async () => {
    const published: ValidBatch[] = [];
    const stop = t.services.ingest.onCommitted((batch) => published.push(batch));
    const newest = sample({
      axis_name: "A",
      actual_position: 77,
      timestamp: new Date(Date.now() - 10).toISOString(),
    });
    const older = sample({
      axis_name: "A",
      actual_position: 11,
      timestamp: new Date(Date.now() - 5000).toISOString(),
    });
    await ingest({ axis_data: [newest, older] });
    stop();
    expect(t.services.latest.axes.get(axisIds.A!)?.actualPosition).toBe(77);
    expect(published).toHaveLength(1);
    expect(published[0]!.axis.map((row) => row.actualPosition)).toEqual([77, 11]);
  });

  it("holds committed values only: a row is latest once stored, and a refused one never", async () => {
    const row = (axisId: number, actualPosition: number) => {
      const timeMs = Date.now() - 1;
      return {
        axisId,
        machineId,
        axisName: "X",
        time: new Date(timeMs).toISOString(),
        timeMs,
        actualPosition,
        targetPosition: 0,
        velocity: 0,
        acceleration: 0,
        homed: true,
      };
    };
    // Validation passed (submit takes validated batches), then the axis went: the database
    // refuses the row, and the live feed must not show it.
    const gone = 987_654_321;
    const refused = t.services.ingest.submit({ axis: [row(gone, 1)], tools: [], toolUsage: [] });
    expect(t.services.latest.axes.has(gone)).toBe(false);
    await expect(refused).rejects.toThrow(/deleted meanwhile/);
    expect(t.services.latest.axes.has(gone)).toBe(false);

    const stored = t.services.ingest.submit({
      axis: [row(axisIds.C!, 4242)],
      tools: [],
      toolUsage: [],
    });
    expect(t.services.latest.axes.get(axisIds.C!)?.actualPosition).not.toBe(4242);
    await stored;
    expect(t.services.latest.axes.get(axisIds.C!)?.actualPosition).toBe(4242);
  });
});

describe("refused batches store nothing", () => {
  const problemsOf = async (payload: unknown) => {
    const before = await snapshot(t);
    const answer = await ingest(payload);
    expect(answer.statusCode, answer.body).toBe(400);
    expect(await snapshot(t)).toBe(before);
    return answer.json().errors as { kind: string; index: number; field: string; reason: string }[];
  };

  it("names each bad row's index and field, and refuses the good rows with them", async () => {
    const errors = await problemsOf({
      axis_data: [
        sample(),
        sample({ velocity: "fast" }),
        sample({ machine_id: 999_999 }),
        sample({ axis_name: "Q" }),
        sample({ homed: "yes", actual_position: null }),
        sample({ timestamp: "yesterday" }),
        sample({ timestamp: "2001-01-01T00:00:00Z" }),
        sample({ timestamp: new Date(Date.now() + 3 * 86_400_000).toISOString() }),
        sample({ axis: 123_456_789, machine_id: undefined, axis_name: undefined }),
        "not a row",
        sample({ acceleration: 1e300 }),
      ],
    });
    expect(errors.map(({ index, field }) => `${index}:${field}`)).toEqual([
      "1:velocity",
      "2:machine_id",
      "3:axis_name",
      "4:actual_position",
      "4:homed",
      "5:timestamp",
      "6:timestamp",
      "7:timestamp",
      "8:axis",
      "9:non_field_errors",
      "10:acceleration",
    ]);
    expect(errors[1]!.reason).toBe("Machine 999999 does not exist.");
  });

  it("counts a row with several problems once in its detail", async () => {
    const answer = await ingest({
      axis_data: [sample({ homed: "yes", actual_position: null, velocity: "fast" }), sample()],
      tool_usage: [{ machine_id: "x", tool_in_use: "y" }],
    });
    expect(answer.statusCode, answer.body).toBe(400);
    expect(answer.json().errors.length).toBeGreaterThan(3);
    expect(answer.json().detail).toBe("The batch has 2 bad rows; nothing of it was stored.");
    const shapeless = await ingest({ axis_data: "x", tool_usage: "y" });
    expect(shapeless.statusCode, shapeless.body).toBe(400);
    expect(shapeless.json().detail).toBe("The batch is malformed; nothing of it was stored.");
  });

  it("counts every bad row, and says so when it lists only the first 1000 problems", async () => {
    // 1200 empty rows: six problems each (five fields missing, and the axis unnamed).
    const answer = await ingest({ axis_data: Array.from({ length: 1200 }, () => ({})) });
    expect(answer.statusCode, answer.body).toBe(400);
    const { detail, errors } = answer.json();
    expect(errors).toHaveLength(1000);
    const perRow = errors.filter((e: { index: number }) => e.index === 0).length;
    expect(perRow).toBeGreaterThan(1);
    expect(detail).toBe(
      `The batch has 1200 bad rows; nothing of it was stored. The first 1000 of ${1200 * perRow} problems are listed.`,
    );
  });

  it("refuses dates that do not exist and zones the database does not take, naming the row", async () => {
    const long = await buildTestApp({ RETENTION_DAYS: "800", ROLLUP_1S_RETENTION_DAYS: "800" });
    try {
      const machine = (await createMachine(long)).machine_id;
      await createAxis(long, machine, { axis_name: "X" });
      const now = new Date();
      // The last June and February before now: June 31 and February 30 never exist, though
      // Date.parse rolls them over into July and March.
      const june = now.getUTCMonth() > 6 ? now.getUTCFullYear() : now.getUTCFullYear() - 1;
      const february = now.getUTCMonth() > 2 ? now.getUTCFullYear() : now.getUTCFullYear() - 1;
      const yesterday = new Date(now.getTime() - 86_400_000).toISOString().slice(0, 19);
      const row = (timestamp: string) => ({ ...sample({ timestamp }), machine_id: machine });
      const before = await snapshot(long);
      const answer = await long.inject({
        method: "POST",
        url: "/api/ingest/",
        headers: long.adminAuth,
        payload: {
          axis_data: [
            row(`${june}-06-31T12:00:00Z`),
            row(`${february}-02-30T12:00:00Z`),
            row(`${yesterday}+20:00`),
            row(`${yesterday}.1234567Z`),
          ],
        },
      });
      expect(answer.statusCode, answer.body).toBe(400);
      const errors = answer.json().errors as { index: number; field: string; reason: string }[];
      expect(errors.map(({ index, field }) => `${index}:${field}`)).toEqual([
        "0:timestamp",
        "1:timestamp",
        "2:timestamp",
        "3:timestamp",
      ]);
      for (const error of errors) expect(error.reason).toMatch(/wrong format/);
      expect(await snapshot(long)).toBe(before);
      expect(long.services.latest.axes.size).toBe(0);
    } finally {
      await long.close();
    }
  });

  it("refuses tool rows for unknown tools or another machine's tool", async () => {
    const errors = await problemsOf({
      tool_data: [
        { tool_id: 987_654, tool_offset: 1, feedrate: 1 },
        { tool_id: toolId, tool_offset: 1, feedrate: -5 },
      ],
      tool_usage: [
        { machine_id: machineId, tool_in_use: otherToolId },
        { machine_id: 42, tool_in_use: toolId },
      ],
    });
    expect(errors.map(({ kind, index, field }) => `${kind}:${index}:${field}`)).toEqual([
      "tool_data:0:tool_id",
      "tool_data:1:feedrate",
      "tool_usage:0:tool_in_use",
      "tool_usage:1:machine_id",
    ]);
  });

  it("refuses a row that names its axis or its tool's machine two ways that disagree", async () => {
    const otherMachine = (await createMachine(t)).machine_id;
    await createAxis(t, otherMachine, { axis_name: "X" });
    const errors = await problemsOf({
      axis_data: [
        sample({ axis: axisIds.X, machine_id: otherMachine }),
        sample({ axis: axisIds.X, axis_name: "Y" }),
        sample({ axis: axisIds.X, machine_id: "one", axis_name: 7 }),
        // Agreeing, they are taken: the batch is refused for the rows above only.
        sample({ axis: axisIds.X }),
      ],
      tool_data: [
        { tool_id: toolId, tool_offset: 1, feedrate: 1, machine_id: otherMachine },
        { tool_id: toolId, tool_offset: 1, feedrate: 1, machine: otherMachine },
        { tool_id: toolId, tool_offset: 1, feedrate: 1, machine_id: machineId },
      ].map((row, i) => ({ ...row, timestamp: new Date(Date.now() - i * 1000).toISOString() })),
    });
    expect(errors.map(({ kind, index, field }) => `${kind}:${index}:${field}`)).toEqual([
      "axis_data:0:machine_id",
      "axis_data:1:axis_name",
      "axis_data:2:machine_id",
      "axis_data:2:axis_name",
      "tool_data:0:machine_id",
      "tool_data:1:machine",
    ]);
    expect(errors[0]!.reason).toBe(`Axis ${axisIds.X} is an axis of machine ${machineId}.`);
    expect(errors[1]!.reason).toBe(`Axis ${axisIds.X} is named "X".`);
    expect(errors[4]!.reason).toBe(`Tool ${toolId} is a tool of machine ${machineId}.`);
  });

  it.each([
    [[sample()], "Expected an object"],
    [{ axis_data: sample() }, "The batch is malformed"],
    [{ axis_data: [sample()], extra: [] }, "Unknown field(s): extra"],
    [{ axis_data: [sample()], "'; drop table axis_data; --": 1 }, "Unknown field(s)"],
  ])("answers %j with 400", async (payload, detail) => {
    const before = await snapshot(t);
    const answer = await ingest(payload);
    expect(answer.statusCode).toBe(400);
    expect(answer.json().detail).toContain(detail);
    expect(await snapshot(t)).toBe(before);
  });

  it("answers malformed JSON and NDJSON with the line, and oversized bodies with 413", async () => {
    const broken = await t.inject({
      method: "POST",
      url: "/api/ingest/",
      headers: { ...t.adminAuth, "content-type": "application/json" },
      payload: '{"axis_data": [',
    });
    expect(broken.statusCode).toBe(400);
    const ndjson = await t.inject({
      method: "POST",
      url: "/api/ingest/",
      headers: { ...t.adminAuth, "content-type": "application/x-ndjson" },
      payload: `${JSON.stringify({ axis_data: [] })}\n{oops`,
    });
    expect(ndjson.statusCode).toBe(400);
    expect(ndjson.json().detail).toMatch(/^JSON parse error on line 2/);
    expect(() => parseNdjson('{"kind":"machine_data"}')).toThrow(/kind must be one of/);
    const small = await buildTestApp({ INGEST_BODY_LIMIT: "2048" });
    try {
      const big = await small.inject({
        method: "POST",
        url: "/api/ingest/",
        headers: small.adminAuth,
        payload: { axis_data: Array.from({ length: 100 }, () => sample()) },
      });
      expect(big.statusCode).toBe(413);
    } finally {
      await small.close();
    }
  });
});

describe("who may ingest", () => {
  it("a machine adapter with the ingest scope, and users holding axisdata.add", async () => {
    const client = await t.token({ grant_type: "client_credentials", scope: "ingest" });
    const adapter = { authorization: `Bearer ${client.json().access_token}` };
    expect((await ingest({ axis_data: [sample()] }, adapter)).statusCode).toBe(202);
    expect(
      (
        await ingest(
          { tool_data: [{ tool_id: toolId, tool_offset: 3, feedrate: 4, timestamp: at() }] },
          adapter,
        )
      ).statusCode,
    ).toBe(202);
    // The adapter's token cannot read anything, nor make or move a tool through CRUD.
    expect(
      (await t.inject({ method: "GET", url: "/data/machines/", headers: adapter })).statusCode,
    ).toBe(403);
    const tool = { machine: machineId, tool_offset: 1, feedrate: 1 };
    for (const [method, url] of [
      ["POST", "/data/tools/"],
      ["PUT", `/data/tools/${toolId}/`],
      ["PATCH", `/data/tools/${toolId}/`],
    ] as const)
      expect(
        (await t.inject({ method, url, headers: adapter, payload: tool })).statusCode,
        `${method} ${url}`,
      ).toBe(403);
    for (const group of ["Manager", "Supervisor"]) {
      const { authorization } = await t.userAuth([group]);
      expect((await ingest({ axis_data: [sample()] }, { authorization })).statusCode).toBe(202);
    }
  });

  it("a user's tool_data needs tool.change and tool_usage toolusage.add, as through CRUD; else 403 and nothing stored", async () => {
    const toolOffset = async () =>
      (
        await t.database.db.query<{ o: number }>(
          "select tool_offset as o from tool where tool_id = $1",
          [toolId],
        )
      ).rows[0]!.o;
    const toolRow = (tool_offset: number) => ({
      tool_id: toolId,
      tool_offset,
      feedrate: 10,
      timestamp: at(),
    });
    const usageRow = () => ({ machine_id: machineId, tool_in_use: toolId, timestamp: at() });
    // A Supervisor may add samples but neither change a tool nor add tool usage.
    const supervisor = { authorization: (await t.userAuth(["Supervisor"])).authorization };
    const before = {
      offset: await toolOffset(),
      samples: await count(),
      usage: await count("tool_usage"),
    };
    for (const payload of [
      { tool_data: [toolRow(before.offset + 1)] },
      { tool_usage: [usageRow()] },
      { axis_data: [sample()], tool_data: [toolRow(before.offset + 2)] },
      { axis_data: [sample()], tool_usage: [usageRow()] },
      // Not a list (in a JSON body): refused for who sends it before what it holds.
      { tool_data: "soon" },
      { tool_usage: null },
    ]) {
      const answer = await ingest(payload, supervisor);
      expect(answer.statusCode, JSON.stringify(payload)).toBe(403);
      expect(answer.json()).toEqual({
        detail: "You do not have permission to perform this action.",
      });
    }
    for (const row of [
      { kind: "tool_usage", ...usageRow() },
      { kind: "tool_data", ...toolRow(before.offset + 1) },
    ]) {
      const ndjson = await t.inject({
        method: "POST",
        url: "/api/ingest/",
        headers: { ...supervisor, "content-type": "application/x-ndjson" },
        payload: [JSON.stringify({ axis_data: [sample()] }), JSON.stringify(row)].join("\n"),
      });
      expect(ndjson.statusCode, row.kind).toBe(403);
    }
    expect(await toolOffset()).toBe(before.offset);
    expect(await count()).toBe(before.samples);
    expect(await count("tool_usage")).toBe(before.usage);
    // Empty lists of the others ask for nothing.
    expect(
      (await ingest({ axis_data: [sample()], tool_data: [], tool_usage: [] }, supervisor))
        .statusCode,
    ).toBe(202);
    expect(await count()).toBe(before.samples + 1);

    // A Manager may change tools but not add tool usage.
    const manager = { authorization: (await t.userAuth(["Manager"])).authorization };
    expect((await ingest({ tool_data: [toolRow(before.offset + 3)] }, manager)).statusCode).toBe(
      202,
    );
    expect(await toolOffset()).toBe(before.offset + 3);
    expect((await ingest({ tool_usage: [usageRow()] }, manager)).statusCode).toBe(403);
    expect(await count("tool_usage")).toBe(before.usage);

    // A machine adapter's ingest scope sends every kind, and so does an Admin's token narrowed
    // to that scope.
    const client = await t.token({ grant_type: "client_credentials", scope: "ingest" });
    const adapter = { authorization: `Bearer ${client.json().access_token}` };
    const narrowed = { authorization: (await t.userAuth(["Admin"], "ingest")).authorization };
    for (const [i, sender] of [adapter, narrowed].entries()) {
      const offset = before.offset + 4 + i;
      const all = { axis_data: [sample()], tool_data: [toolRow(offset)], tool_usage: [usageRow()] };
      expect((await ingest(all, sender)).json()).toEqual({ accepted: 3, duplicates: 0 });
      expect(await toolOffset()).toBe(offset);
      expect(await count("tool_usage")).toBe(before.usage + 1 + i);
    }
  });

  it("not an Operator, nor a token without ingest or write scope, nor anyone without a token", async () => {
    const operator = await t.userAuth(["Operator"]);
    expect(
      (await ingest({ axis_data: [sample()] }, { authorization: operator.authorization }))
        .statusCode,
    ).toBe(403);
    const reader = await t.token({ grant_type: "client_credentials", scope: "read" });
    expect(
      (
        await ingest(
          { axis_data: [sample()] },
          { authorization: `Bearer ${reader.json().access_token}` },
        )
      ).statusCode,
    ).toBe(403);
    expect(
      (await t.inject({ method: "POST", url: "/api/ingest/", payload: { axis_data: [] } }))
        .statusCode,
    ).toBe(401);
  });
});

describe("back-pressure", () => {
  it("refuses with 503 and Retry-After once the queue is full, and takes rows again after it drains", async () => {
    const slow = await buildTestApp(
      {},
      { ingest: { maxQueuedRows: 3, flushRows: 1000, flushDelayMs: 300 } },
    );
    try {
      const machine = (await createMachine(slow)).machine_id;
      await createAxis(slow, machine, { axis_name: "X" });
      const row = (i: number) => ({
        ...sample({
          machine_id: machine,
          timestamp: new Date(Date.now() - 1000 + i).toISOString(),
        }),
      });
      const send = (rows: unknown[]) =>
        slow.inject({
          method: "POST",
          url: "/api/ingest/",
          headers: slow.adminAuth,
          payload: { axis_data: rows },
        });
      const first = send([row(1), row(2), row(3)]);
      // Let the first batch reach the queue before the second arrives.
      await new Promise((resolve) => setTimeout(resolve, 100));
      const second = await send([row(4)]);
      expect(second.statusCode).toBe(503);
      expect(second.headers["retry-after"]).toBe("1");
      expect((await first).statusCode).toBe(202);
      expect((await send([row(4)])).statusCode).toBe(202);
    } finally {
      await slow.close();
    }
  });
});

describe("bodies in flight", () => {
  it("refuses a request beyond INGEST_BYTES_IN_FLIGHT before reading it, and takes it once there is room", async () => {
    // Commits wait 300 ms for company, so a client can leave before its answer.
    const small = await buildTestApp(
      { INGEST_BYTES_IN_FLIGHT: "4096" },
      { ingest: { flushDelayMs: 300 } },
    );
    const address = await small.app.listen({ port: 0, host: "127.0.0.1" });
    try {
      const machine = (await createMachine(small)).machine_id;
      await createAxis(small, machine, { axis_name: "X" });
      let i = 0;
      const body = (rows: number) =>
        JSON.stringify({
          axis_data: Array.from({ length: rows }, () =>
            sample({
              machine_id: machine,
              timestamp: new Date(Date.now() - 5000 + ++i).toISOString(),
            }),
          ),
        });
      const headers = { ...small.adminAuth, "content-type": "application/json" };
      /** A request whose body is sent only in part: in flight until it is ended or destroyed. */
      const halfSent = (text: string) => {
        let request: ClientRequest | undefined;
        const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
          request = httpRequest(
            `${address}/api/ingest/`,
            {
              method: "POST",
              headers: { ...headers, "content-length": String(text.length) },
              // A connection of its own, never one another request left open.
              agent: false,
            },
            (response) => {
              let received = "";
              response.on("data", (chunk) => {
                received += chunk;
              });
              response.on("end", () => resolve({ status: response.statusCode!, body: received }));
            },
          );
          request.on("error", reject);
          request.write(text.slice(0, 100));
        });
        return { answer, request: request! };
      };
      const send = (text: string) =>
        fetch(`${address}/api/ingest/`, { method: "POST", headers, body: text });
      const stored = async () =>
        Number(
          (await small.database.db.query<{ n: number }>("select count(*)::int as n from axis_data"))
            .rows[0]!.n,
        );

      const large = body(16);
      const second = body(10);
      // Either alone fits the budget of 4096 bytes; both at once do not.
      expect(large.length).toBeLessThan(4096);
      expect(large.length + second.length).toBeGreaterThan(4096);
      /**
       * Sends `second` until it is refused because `held()` (a request kept in flight) holds its
       * place. Until the server has reached that request, `second` is taken; if a `second` was
       * in flight when it got there, that request was the one refused, and is sent again.
       */
      const refusedWhile = async (held: () => ReturnType<typeof halfSent>, again: () => void) => {
        const deadline = Date.now() + 10_000;
        for (;;) {
          const answer = await send(second);
          if (answer.status === 503) return answer;
          expect(answer.status).toBe(202);
          const turnedAway = await Promise.race([
            held().answer.then((one) => one.status === 503),
            new Promise<false>((resolve) => setTimeout(() => resolve(false), 10)),
          ]);
          if (turnedAway) {
            again();
            // Not while a `second` holds its place, or it is turned away again.
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
          expect(Date.now()).toBeLessThan(deadline);
        }
      };
      let first = halfSent(large);
      const refused = await refusedWhile(
        () => first,
        () => {
          first = halfSent(large);
        },
      );
      expect(refused.headers.get("retry-after")).toBe("1");
      expect(await refused.json()).toEqual({ detail: "Ingest is saturated; retry later." });
      const before = await stored();
      first.request.end(large.slice(100));
      expect((await first.answer).status).toBe(202);
      expect(await stored()).toBe(before + 16);
      expect((await send(body(10))).status).toBe(202);

      // A client that goes away gives its place back: mid-body, or once its body is in, before
      // the answer (its rows are committed all the same).
      for (const leave of ["mid-body", "after the body"] as const) {
        let gone = halfSent(large);
        gone.answer.catch(() => {});
        await refusedWhile(
          () => gone,
          () => {
            gone = halfSent(large);
            gone.answer.catch(() => {});
          },
        );
        if (leave === "after the body") {
          gone.request.end(large.slice(100));
          await new Promise((resolve) => gone.request.once("finish", resolve));
        }
        gone.request.destroy();
        const until = Date.now() + 10_000;
        while ((await send(body(10))).status !== 202) expect(Date.now()).toBeLessThan(until);
      }
    } finally {
      await small.close();
    }
  });
});

describe("latest values after a restart", () => {
  it("are loaded from the database: the newest sample of each series, tool and tool in use", async () => {
    const newest = new Date(Date.now() - 500).toISOString();
    await ingest({
      axis_data: [
        sample({
          axis_name: "Z",
          actual_position: 1,
          timestamp: new Date(Date.now() - 900).toISOString(),
        }),
        sample({ axis_name: "Z", actual_position: 2, timestamp: newest }),
      ],
      tool_usage: [{ machine_id: machineId, tool_in_use: toolId, timestamp: newest }],
    });
    const { LatestValues } = await import("./latest-values.ts");
    const fresh = new LatestValues();
    await fresh.load(t.database.db, new Date(Date.now() - 86_400_000));
    const z = fresh.axes.get(axisIds.Z!);
    expect(z?.actualPosition).toBe(2);
    expect(Date.parse(z!.time)).toBe(Date.parse(newest));
    expect(z?.machineId).toBe(machineId);
    expect(fresh.toolUsage.get(machineId)?.toolInUse).toBe(toolId);
    expect(fresh.tools.get(toolId)?.machineId).toBe(machineId);
    // Nothing older than the window is loaded.
    const empty = new LatestValues();
    await empty.load(t.database.db, new Date(Date.now() + 60_000));
    expect(empty.axes.size).toBe(0);
  });
});

describe("overlapping flushes", () => {
  let o: TestApp;
  let axes: number[];
  beforeAll(async () => {
    o = await buildTestApp({}, { ingest: { flushRows: 50, flushesInFlight: 3 } });
    const machine = (await createMachine(o)).machine_id;
    axes = [];
    for (const axis_name of ["X", "Y", "Z", "A", "C"])
      axes.push((await createAxis(o, machine, { axis_name })).axis_id);
  });
  afterAll(() => o.close());

  const stored = async () =>
    Number(
      (await o.database.db.query<{ n: number }>("select count(*)::int as n from axis_data"))
        .rows[0]!.n,
    );
  /** A validated batch of `rows` samples starting at `startMs`, one per axis per millisecond. */
  const batchOf = (startMs: number, rows: number): ValidBatch => ({
    axis: Array.from({ length: rows }, (_, i) => {
      const timeMs = startMs + Math.floor(i / axes.length);
      return {
        axisId: axes[i % axes.length]!,
        machineId: 0,
        axisName: "X",
        time: new Date(timeMs).toISOString(),
        timeMs,
        actualPosition: i,
        targetPosition: i,
        velocity: 0,
        acceleration: 0,
        homed: true,
      };
    }),
    tools: [],
    toolUsage: [],
  });

  it("acknowledge and publish in the order the batches arrived, and store every row once", async () => {
    const before = await stored();
    const start = Date.now() - 120_000;
    const batches = Array.from({ length: 40 }, (_, i) => batchOf(start + i * 10, 25));
    const published: ValidBatch[] = [];
    const acknowledged: ValidBatch[] = [];
    const stop = o.services.ingest.onCommitted((batch) => published.push(batch));
    try {
      await Promise.all(
        batches.map(async (batch) => {
          await o.services.ingest.submit(batch);
          acknowledged.push(batch);
        }),
      );
    } finally {
      stop();
    }
    expect(published).toEqual(batches);
    expect(acknowledged).toEqual(batches);
    expect(await stored()).toBe(before + 1000);
  });

  it("a batch retried while its first attempt is in flight, rows in another order, is stored once", async () => {
    const before = await stored();
    const forward = batchOf(Date.now() - 240_000, 2000);
    const reversed: ValidBatch = { ...forward, axis: [...forward.axis].reverse() };
    // Each 2,000-row batch is a flush of its own (flushRows is 50); opposite key orders are how
    // two transactions deadlock, and the server aborting one must not refuse its rows.
    const pipeline = o.services.ingest;
    const results = await Promise.all([
      pipeline.submit(forward),
      pipeline.submit(reversed),
      pipeline.submit(forward),
    ]);
    expect(results.map((result) => result.accepted)).toEqual([2000, 2000, 2000]);
    expect(results.reduce((sum, result) => sum + result.duplicates, 0)).toBe(4000);
    expect(await stored()).toBe(before + 2000);
    expect(pipeline.status().available).toBe(true);
  });
});

describe("a flush the database aborts as a conflict every time", () => {
  it("refuses that batch with 503 and takes the next one, the database still counted available", async () => {
    const db = t.database.db;
    // The database's own abort, every time, for one marked sample: what a batch caught in
    // contention it never wins would meet.
    await db.query(`create function abort_marked() returns trigger language plpgsql as $$
      begin
        if new.actual_position = -4040 then
          raise exception 'deadlock detected' using errcode = '40P01';
        end if;
        return new;
      end $$`);
    await db.query(
      "create trigger abort_marked before insert on axis_data for each row execute function abort_marked()",
    );
    try {
      const before = await count();
      const refused = await ingest({ axis_data: [sample({ actual_position: -4040 }), sample()] });
      expect(refused.statusCode).toBe(503);
      expect(refused.headers["retry-after"]).toBe("1");
      expect(refused.json()).toEqual({
        detail: "The batch kept conflicting with other writes; retry later.",
      });
      expect(await count()).toBe(before);
      expect(t.services.ingest.status().available).toBe(true);
      const next = await ingest({ axis_data: [sample()] });
      expect(next.statusCode).toBe(202);
      expect(await count()).toBe(before + 1);
    } finally {
      await db.query("drop trigger abort_marked on axis_data");
      await db.query("drop function abort_marked()");
    }
  });
});
