import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import { blockedBy, otherSession, testDatabaseKind } from "../../../test/helpers/database.ts";
import { createAxis, createMachine, ingestAxisData } from "../../../test/helpers/factories.ts";
import { changeChannel } from "../../platform/change-feed.ts";
import { AxisDataPartitions } from "../axis-data/partitions.ts";
import { encodeJson } from "./history-encoding.ts";
import { createHistoryService } from "./history-service.ts";
import { RollupMaintainer } from "./rollups.ts";

let t: TestApp;
let machineId: number;
let axisX: number;
let axisY: number;

beforeAll(async () => {
  t = await buildTestApp({
    RETENTION_DAYS: "30",
    ROLLUP_1S_RETENTION_DAYS: "60",
    ROLLUP_5S_RETENTION_DAYS: "65",
    ROLLUP_10S_RETENTION_DAYS: "75",
    ROLLUP_1M_RETENTION_DAYS: "90",
  });
  machineId = (await createMachine(t)).machine_id;
  axisX = (await createAxis(t, machineId, { axis_name: "X" })).axis_id;
  axisY = (await createAxis(t, machineId, { axis_name: "Y" })).axis_id;
});
afterAll(() => t.close());

interface Sample {
  axis_name: string;
  timestamp: string;
  actual_position: number;
  target_position: number;
  velocity: number;
  acceleration: number;
  homed: boolean;
}

/** Samples every 100 ms for 3 s across a minute boundary, with spikes, for X and Y. */
function series(start: number): Sample[] {
  const samples: Sample[] = [];
  for (let i = 0; i < 30; i++) {
    for (const axis_name of ["X", "Y"]) {
      const spike = i === 7 ? 1000 : i === 23 ? -1000 : 0;
      samples.push({
        axis_name,
        timestamp: new Date(start + i * 100).toISOString(),
        actual_position: Math.sin(i) * 10 + spike + (axis_name === "Y" ? 5 : 0),
        target_position: Math.cos(i) * 10,
        velocity: i - 15,
        acceleration: (i % 4) - 2,
        homed: i !== 12,
      });
    }
  }
  return samples;
}

const send = (rows: Sample[]) =>
  t.inject({
    method: "POST",
    url: "/api/ingest/",
    headers: t.adminAuth,
    payload: { axis_data: rows.map((row) => ({ machine_id: machineId, ...row })) },
  });

function expected(samples: Sample[], axisName: string, widthMs: number) {
  const buckets = new Map<number, Sample[]>();
  for (const sample of samples.filter((row) => row.axis_name === axisName)) {
    const bucket = Math.floor(Date.parse(sample.timestamp) / widthMs) * widthMs;
    buckets.set(bucket, [...(buckets.get(bucket) ?? []), sample]);
  }
  return [...buckets.entries()]
    .sort(([a], [b]) => a - b)
    .map(([bucket, rows]) => {
      const last = rows.reduce((a, b) =>
        Date.parse(a.timestamp) >= Date.parse(b.timestamp) ? a : b,
      );
      const values = rows.map((row) => row.actual_position);
      const dtg = rows.map((row) => row.target_position - row.actual_position);
      return {
        bucket,
        samples: rows.length,
        actual_position_min: Math.min(...values),
        actual_position_max: Math.max(...values),
        actual_position_sum: values.reduce((a, b) => a + b, 0),
        actual_position_last: last.actual_position,
        distance_to_go_min: Math.min(...dtg),
        distance_to_go_max: Math.max(...dtg),
        homed_all: rows.every((row) => row.homed),
        homed_any: rows.some((row) => row.homed),
        homed_last: last.homed,
      };
    });
}

async function stored(table: string, axisId: number) {
  const { rows } = await t.database.db.query<Record<string, number | boolean | Date>>(
    `select * from ${table} where axis_id = $1 order by update_timestamp`,
    [axisId],
  );
  return rows.map((row) => ({
    bucket: (row.update_timestamp as Date).getTime(),
    samples: row.samples,
    actual_position_min: row.actual_position_min,
    actual_position_max: row.actual_position_max,
    actual_position_sum: row.actual_position_sum,
    actual_position_last: row.actual_position_last,
    distance_to_go_min: row.distance_to_go_min,
    distance_to_go_max: row.distance_to_go_max,
    homed_all: row.homed_all,
    homed_any: row.homed_any,
    homed_last: row.homed_last,
  }));
}

function expectClose(actual: Record<string, unknown>[], wanted: Record<string, unknown>[]) {
  expect(actual.length).toBe(wanted.length);
  actual.forEach((row, i) => {
    for (const [key, value] of Object.entries(wanted[i]!)) {
      if (typeof value === "number")
        expect(row[key] as number, `${i}.${key}`).toBeCloseTo(value, 9);
      else expect(row[key], `${i}.${key}`).toEqual(value);
    }
  });
}

describe("rollups", () => {
  // 1.5 s before a minute boundary, a few minutes ago.
  const start = Math.floor((Date.now() - 5 * 60_000) / 60_000) * 60_000 - 1500;
  const samples = series(start);

  it("hold each 1 s, 5 s, 10 s and 1 min bucket's exact count, min, max, sum and last, across a minute boundary", async () => {
    expect((await send(samples)).statusCode).toBe(202);
    await t.services.rollups.flush();
    for (const [axisName, axisId] of [
      ["X", axisX],
      ["Y", axisY],
    ] as const) {
      expectClose(await stored("axis_data_1s", axisId), expected(samples, axisName, 1000));
      expectClose(await stored("axis_data_5s", axisId), expected(samples, axisName, 5000));
      expectClose(await stored("axis_data_10s", axisId), expected(samples, axisName, 10_000));
      expectClose(await stored("axis_data_1m", axisId), expected(samples, axisName, 60_000));
    }
    // One 5 s bucket on each side of the minute, each made of two 1 s rows (5 and 10 samples).
    expect((await stored("axis_data_5s", axisX)).map((row) => row.samples)).toEqual([15, 15]);
    expect((await stored("axis_data_10s", axisX)).length).toBe(2);
    expect((await stored("axis_data_1m", axisX)).length).toBe(2);
  });

  it("never count a retried batch twice", async () => {
    const before = await stored("axis_data_1m", axisX);
    expect((await send(samples)).json().duplicates).toBe(samples.length);
    await t.services.rollups.flush();
    expect(await stored("axis_data_1m", axisX)).toEqual(before);
  });

  it("take in a late sample: its buckets are recomputed", async () => {
    const late: Sample = {
      axis_name: "X",
      timestamp: new Date(start + 50).toISOString(),
      actual_position: 5000,
      target_position: 0,
      velocity: 0,
      acceleration: 0,
      homed: false,
    };
    expect((await send([late])).statusCode).toBe(202);
    await t.services.rollups.flush();
    expectClose(await stored("axis_data_1s", axisX), expected([...samples, late], "X", 1000));
    expectClose(await stored("axis_data_5s", axisX), expected([...samples, late], "X", 5000));
    expectClose(await stored("axis_data_10s", axisX), expected([...samples, late], "X", 10_000));
    expectClose(await stored("axis_data_1m", axisX), expected([...samples, late], "X", 60_000));
  });

  it("are what history reads for wide buckets: raw samples removed behind their back change nothing", async () => {
    const window = `machine_id=${machineId}&axis_name=X&from=${new Date(start - 58_500).toISOString()}&to=${new Date(start + 61_500).toISOString()}`;
    const ask = async (maxPoints: number) =>
      (
        await t.inject({
          method: "GET",
          url: `/api/axis-data/?${window}&max_points=${maxPoints}`,
          headers: t.adminAuth,
        })
      ).json();
    const minutes = await ask(2);
    // 24 buckets of 5 s: the 10 s grid's 12 would be under 2/3 of them.
    const fiveSeconds = await ask(24);
    const seconds = await ask(120);
    expect(minutes.length).toBe(2);
    for (const answer of [minutes, fiveSeconds, seconds]) {
      expect(answer.reduce((sum: number, row: { samples: number }) => sum + row.samples, 0)).toBe(
        31,
      );
    }
    expect(fiveSeconds.map((row: { samples: number }) => row.samples)).toEqual([16, 15]);
    // Only the rollups still know these samples now.
    await t.database.db.query("delete from axis_data where axis_id = $1", [axisX]);
    expect(await ask(2)).toEqual(minutes);
    expect(await ask(24)).toEqual(fiveSeconds);
    expect(await ask(120)).toEqual(seconds);
    // Raw-only answers (no max_points) do see the deletion.
    expect(
      (
        await t.inject({ method: "GET", url: `/api/axis-data/?${window}`, headers: t.adminAuth })
      ).json(),
    ).toEqual([]);
  });

  it("can be rebuilt from raw samples, as after a crash", async () => {
    await t.database.db.query("delete from axis_data_1s");
    await t.database.db.query("delete from axis_data_5s");
    await t.database.db.query("delete from axis_data_10s");
    await t.database.db.query("delete from axis_data_1m");
    await t.services.rollups.rebuild(new Date(start - 60_000), new Date(start + 120_000));
    expectClose(await stored("axis_data_5s", axisY), expected(samples, "Y", 5000));
    expectClose(await stored("axis_data_10s", axisY), expected(samples, "Y", 10_000));
    expectClose(await stored("axis_data_1m", axisY), expected(samples, "Y", 60_000));
    // X's raw samples were deleted above: a rebuild makes its rollups agree with that.
    expect(await stored("axis_data_5s", axisX)).toEqual([]);
    expect(await stored("axis_data_10s", axisX)).toEqual([]);
    expect(await stored("axis_data_1m", axisX)).toEqual([]);
  });
});

describe("a late sample beside live data", () => {
  it("recomputes its own minute and the live ones, not every minute between them", async () => {
    const axisZ = (await createAxis(t, machineId, { axis_name: "Z" })).axis_id;
    const minute = (at: number) => Math.floor(at / 60_000) * 60_000;
    const now = minute(Date.now()) - 60_000 + 15_000;
    const late = minute(now - 20 * 86_400_000) + 30_000;
    // A sample the maintainer never heard of, between the two: recomputing every minute from
    // `late` to `now` would roll it up.
    const between = minute(now - 10 * 86_400_000) + 30_000;
    await t.services.partitions.ensure([between]);
    await t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
       values ($1, $2, 1, 1, 0, 0, true)`,
      [axisZ, new Date(between)],
    );
    const sample = (at: number, actual_position: number) => ({
      machine_id: machineId,
      axis_name: "Z",
      timestamp: new Date(at).toISOString(),
      actual_position,
      target_position: 0,
      velocity: 0,
      acceleration: 0,
      homed: true,
    });
    await ingestAxisData(t, [sample(late, 7), sample(now, 3), sample(now + 100, 5)]);
    await t.services.rollups.flush();
    expect(t.services.rollups.pendingSince()).toBeUndefined();
    const minutes = await stored("axis_data_1m", axisZ);
    expect(minutes.map((row) => [row.bucket, row.samples, row.actual_position_max])).toEqual([
      [minute(late), 1, 7],
      [minute(now), 2, 5],
    ]);
    // Once told, it rolls that minute up too.
    t.services.rollups.noteSample(axisZ, between);
    await t.services.rollups.flush();
    expect((await stored("axis_data_1m", axisZ)).map((row) => row.bucket)).toEqual([
      minute(late),
      minute(between),
      minute(now),
    ]);
  });
});

describe("what the rollups have not caught up with yet", () => {
  it("is read raw for its own series only, not every series of the window", async () => {
    const machine = (await createMachine(t)).machine_id as number;
    const ids = {
      X: (await createAxis(t, machine, { axis_name: "X" })).axis_id as number,
      Y: (await createAxis(t, machine, { axis_name: "Y" })).axis_id as number,
    };
    const from = Math.floor((Date.now() - 10 * 60_000) / 60_000) * 60_000;
    const rows = ["X", "Y"].flatMap((axis_name) =>
      Array.from({ length: 120 }, (_, i) => ({
        machine_id: machine,
        axis_name,
        timestamp: new Date(from + i * 1000).toISOString(),
        actual_position: i,
        target_position: i,
        velocity: 0,
        acceleration: 0,
        homed: true,
      })),
    );
    await ingestAxisData(t, rows);
    await t.services.rollups.flush();
    // Only the rollups know these samples now: whatever is read raw comes back empty.
    await t.database.db.query("delete from axis_data where axis_id = any($1::bigint[])", [
      [ids.X, ids.Y],
    ]);
    // A maintainer that has heard of a sample of X in the second minute and not rolled it up.
    const lagging = new RollupMaintainer(t.database.db, t.services.partitions, []);
    lagging.noteSample(ids.X, from + 90_000);
    const history = createHistoryService({ db: t.database.db, clock: t.clock, rollups: lagging });
    const query = await history.query({
      machineIds: [machine],
      from: new Date(from),
      to: new Date(from + 120_000),
      maxPoints: 2,
    });
    let json = "";
    for await (const chunk of encodeJson(query)) json += chunk;
    const samples = (axis: string) =>
      (JSON.parse(json) as { axis_name: string; samples: number }[])
        .filter((row) => row.axis_name === axis)
        .map((row) => row.samples);
    // X's first minute from its rollup row, its second raw (gone); Y's both from rollups.
    expect(samples("X")).toEqual([60]);
    expect(samples("Y")).toEqual([60, 60]);
  });
});

/** The rollup maintainer of another process, or of this one restarted: it has heard of nothing. */
const anotherProcess = (onRecomputed?: (axisIds: number[], fromMs: number, toMs: number) => void) =>
  new RollupMaintainer(
    t.database.db,
    new AxisDataPartitions(t.database.db, "axis_data_1s"),
    [
      new AxisDataPartitions(t.database.db, "axis_data_5s"),
      new AxisDataPartitions(t.database.db, "axis_data_10s"),
    ],
    undefined,
    onRecomputed,
  );

describe("after a crash", () => {
  const minute = (at: number) => Math.floor(at / 60_000) * 60_000;
  let axis: number;
  // Each test's own axis: a sample another test wrote an hour ahead would be its newest.
  beforeEach(async () => {
    const machine = (await createMachine(t)).machine_id as number;
    axis = (await createAxis(t, machine, { axis_name: "X" })).axis_id as number;
  });

  /** A sample written as a producer's commit writes it, and never heard of by this process. */
  async function commitBehindItsBack(time: number, actualPosition = 1) {
    await t.services.partitions.ensure([time]);
    await t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
       values ($1, $2, $3, 0, 0, 0, true)`,
      [axis, new Date(time), actualPosition],
    );
  }

  const marked = async () =>
    (
      await t.database.db.query<{ minute: Date }>(
        "select minute from rollup_pending where axis_id = $1 order by minute",
        [axis],
      )
    ).rows.map((row) => row.minute.getTime());

  const minuteRows = async () =>
    (await stored("axis_data_1m", axis)).map((row) => [row.bucket, row.samples]);

  it("a late sample's minute is marked in its own commit and rolled up after a restart", async () => {
    const late = minute(Date.now() - 3 * 86_400_000) + 20_250;
    const ahead = minute(Date.now() + 3_600_000) + 5_000;
    const live = Date.now() - 1000;
    await commitBehindItsBack(late);
    await commitBehindItsBack(late + 30_000);
    await commitBehindItsBack(ahead);
    await commitBehindItsBack(live);
    // A live sample is not marked: the restart's window covers it, without a write per commit.
    expect(await marked()).toEqual([minute(late), minute(ahead)]);
    const restarted = anotherProcess();
    await restarted.recover(Date.now());
    await restarted.sweepMarked();
    expect(await minuteRows()).toEqual([
      [minute(late), 2],
      [minute(live), 1],
      [minute(ahead), 1],
    ]);
    // Recomputed, the marks are gone.
    expect(await marked()).toEqual([]);
  });

  it("a restart long after the crash still finds the live samples before it", async () => {
    const live = Date.now() - 2000;
    await commitBehindItsBack(live, 42);
    expect(await marked()).toEqual([]);
    // Restarted two hours on: the window before now misses the sample, the one before the
    // newest sample holds it.
    await anotherProcess().recover(Date.now() + 2 * 3_600_000);
    expect(await minuteRows()).toContainEqual([minute(live), expect.any(Number)]);
    const { rows } = await t.database.db.query<{ max: number }>(
      "select actual_position_max as max from axis_data_1s where axis_id = $1 and update_timestamp = $2",
      [axis, new Date(Math.floor(live / 1000) * 1000)],
    );
    expect(rows).toEqual([{ max: 42 }]);
  });

  it("a running process's sweep rolls up what a stopped one marked", async () => {
    const late = minute(Date.now() - 2 * 86_400_000) + 7_000;
    await commitBehindItsBack(late);
    const running = anotherProcess();
    running.start(60_000, 20);
    try {
      const deadline = Date.now() + 10_000;
      while ((await marked()).length > 0) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } finally {
      await running.close();
    }
    expect(await minuteRows()).toContainEqual([minute(late), 1]);
  });

  it("a rebuild goes an hour per transaction, and misses nothing at the hours' edges", async () => {
    const hour = 3_600_000;
    const start = Math.floor((Date.now() - 2 * 86_400_000) / hour) * hour;
    const edges = [start + hour - 1, start + hour, start + 2 * hour - 1, start + 2 * hour];
    for (const time of edges) await commitBehindItsBack(time);
    await t.database.db.query("delete from rollup_pending where axis_id = $1", [axis]);
    const recomputed: [number, number][] = [];
    const rebuilding = anotherProcess((_axes, from, to) => recomputed.push([from, to]));
    await rebuilding.rebuild(new Date(start + 30 * 60_000), new Date(start + 2 * hour + 60_000));
    expect(recomputed).toEqual([
      [start + 30 * 60_000, start + hour],
      [start + hour, start + 2 * hour],
      [start + 2 * hour, start + 2 * hour + 60_000],
    ]);
    expect(await minuteRows()).toEqual(edges.map((time) => [minute(time), 1]));
  });

  it("a sweep goes an hour of marks per transaction", async () => {
    const hour = 3_600_000;
    const start = Math.floor((Date.now() - 3 * 86_400_000) / hour) * hour;
    const times = [start + 5_000, start + hour + 5_000, start + 3 * hour - 5_000];
    for (const time of times) await commitBehindItsBack(time);
    const recomputed: number[] = [];
    await anotherProcess((axes, from) => {
      if (axes.includes(axis)) recomputed.push(from);
    }).sweepMarked();
    expect(recomputed).toEqual(times.map(minute));
    expect(await marked()).toEqual([]);
    expect(await minuteRows()).toEqual(times.map((time) => [minute(time), 1]));
  });

  it("maintenance rolls up what is marked before retention drops anything", async () => {
    const late = minute(Date.now() - 86_400_000) + 9_000;
    await commitBehindItsBack(late);
    await t.services.maintain();
    expect(await marked()).toEqual([]);
    expect(await minuteRows()).toContainEqual([minute(late), 1]);
  });
});

describe.runIf(testDatabaseKind() === "postgres")("a mark recomputed under a commit", () => {
  it("waits for the commit that holds it and reads its samples", async () => {
    const machine = (await createMachine(t)).machine_id as number;
    const axis = (await createAxis(t, machine, { axis_name: "X" })).axis_id as number;
    const second = Math.floor((Date.now() - 86_400_000) / 1000) * 1000;
    await t.services.partitions.ensure([second]);
    const insert = `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
                    values ($1, $2, 0, 0, 0, 0, true)`;
    await t.database.db.query(insert, [axis, new Date(second + 100)]);
    const producer = await otherSession(t.database);
    try {
      // A producer's commit in flight, holding the mark it extended to its sample.
      await producer.query("begin");
      await producer.query(insert, [axis, new Date(second + 200)]);
      // Meanwhile a process sweeps the mark and recomputes its second.
      const sweeper = anotherProcess();
      const recomputing = sweeper.sweepMarked();
      await blockedBy(producer, "%rollup_pending%");
      await producer.query("commit");
      await recomputing;
      const { rows } = await t.database.db.query<{ samples: number }>(
        "select samples from axis_data_1s where axis_id = $1",
        [axis],
      );
      expect(rows).toEqual([{ samples: 2 }]);
      expect(
        (await t.database.db.query("select 1 from rollup_pending where axis_id = $1", [axis])).rows,
      ).toEqual([]);
    } finally {
      await producer.query("rollback").catch(() => {});
      await producer.end();
    }
  });
});

describe("closing", () => {
  it("rolls up the rows committed while the server closes", async () => {
    const closing = await buildTestApp();
    try {
      const machine = (await createMachine(closing)).machine_id;
      const axis = (await createAxis(closing, machine, { axis_name: "X" })).axis_id;
      const start = Date.now() - 60_000;
      const rows = series(start).filter((row) => row.axis_name === "X");
      // The axis's own NOTIFY reaches this process after the write and empties the catalog;
      // arriving while ingest() validates, it would make ingest() reload and queue the batch
      // after close() began (refused, then). Notifications arrive in commit order, so once one
      // sent now has arrived, so has the axis's.
      await new Promise<void>((resolve) => {
        const stop = closing.services.changes.onChange((table) => {
          if (table !== "test_probe") return;
          stop();
          resolve();
        });
        void closing.database.db.query("select pg_notify($1, 'test_probe')", [changeChannel]);
      });
      // Loaded, so the batch is validated and queued before close() begins: accepted, then.
      await closing.services.catalog.fleet();
      const accepted = closing.services.ingest.ingest({
        axis_data: rows.map((row) => ({ machine_id: machine, ...row })),
      });
      await closing.app.close();
      expect(await accepted).toEqual({ accepted: rows.length, duplicates: 0 });
      const { rows: rolled } = await closing.database.db.query<{ n: number | null }>(
        "select sum(samples)::int as n from axis_data_1s where axis_id = $1",
        [axis],
      );
      expect(rolled[0]!.n).toBe(rows.length);
    } finally {
      await closing.services.ingest.close();
      await closing.database.drop();
    }
  });
});

describe("retention", () => {
  const day = 86_400_000;
  const today = Math.floor(Date.now() / day) * day;

  async function putSample(axisId: number, time: number) {
    await t.services.partitions.ensure([time]);
    await t.database.db.query(
      "insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed) values ($1, $2, 0, 0, 0, 0, true) on conflict do nothing",
      [axisId, new Date(time)],
    );
  }

  it("drops whole raw partitions past RETENTION_DAYS and keeps every row inside it", async () => {
    const old = [today - 45 * day + 3_600_000, today - 31 * day - 1000];
    const kept = [today - 30 * day + 1000, today - 29 * day, today - day];
    for (const time of [...old, ...kept]) await putSample(axisX, time);
    await t.database.db.query(
      `insert into axis_data_1m (axis_id, update_timestamp, samples, last_timestamp,
         actual_position_min, actual_position_max, actual_position_sum, actual_position_last,
         target_position_min, target_position_max, target_position_sum, target_position_last,
         distance_to_go_min, distance_to_go_max, distance_to_go_sum, distance_to_go_last,
         velocity_min, velocity_max, velocity_sum, velocity_last,
         acceleration_min, acceleration_max, acceleration_sum, acceleration_last, homed_all, homed_any, homed_last)
       select $1, t, 1, t, 0,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,0, 0,0,0,0, true, true, true from unnest($2::timestamptz[]) t`,
      [axisX, [new Date(today - 100 * day), new Date(today - 89 * day)]],
    );
    const result = await t.services.applyRetention();
    // The partition holding "30 days ago + 1 s" also holds older rows of that day: it stays.
    expect(result.dropped.sort()).toEqual(
      old
        .map((time) => `axis_data_${new Date(time).toISOString().slice(0, 10).replaceAll("-", "")}`)
        .sort(),
    );
    expect(result.minuteRowsDeleted).toBe(1);
    const { rows } = await t.database.db.query<{ t: Date }>(
      "select update_timestamp as t from axis_data where axis_id = $1",
      [axisX],
    );
    const left = new Set(rows.map((row) => row.t.getTime()));
    for (const time of kept) expect(left.has(time)).toBe(true);
    for (const time of old) expect(left.has(time)).toBe(false);
    expect((await t.services.applyRetention()).dropped).toEqual([]);
  });

  it("forgets marks of samples past RETENTION_DAYS, whose rollups a recompute would wipe", async () => {
    const old = today - 40 * day + 60_000;
    const kept = today - 20 * day + 60_000;
    // Past the cut-off, in a day not dropped yet: its samples are still there to roll up.
    const lastDayKept = Math.floor((t.clock.now().getTime() - 30 * day) / day) * day;
    for (const minute of [old, lastDayKept, kept])
      await t.database.db.query(
        "insert into rollup_pending (axis_id, minute, first_time, last_time) values ($1, $2, $2, $2)",
        [axisY, new Date(minute)],
      );
    await t.services.applyRetention();
    const { rows } = await t.database.db.query<{ minute: Date }>(
      "select minute from rollup_pending where axis_id = $1",
      [axisY],
    );
    expect(rows.map((row) => row.minute.getTime()).sort()).toEqual([lastDayKept, kept]);
  });

  it("drops 1 s, 5 s and 10 s rollup days each past its own ROLLUP_*_RETENTION_DAYS", async () => {
    // 1 s: kept 60 days; 5 s: 65; 10 s: 75. A day 62 days ago has outlived its 1 s rows only;
    // one 70 days ago its 1 s and 5 s rows, not its 10 s ones.
    const days = [today - 80 * day, today - 70 * day, today - 62 * day, today - 50 * day];
    for (const table of ["axis_data_1s", "axis_data_5s", "axis_data_10s"]) {
      for (const time of days) {
        const name = `${table}_${new Date(time).toISOString().slice(0, 10).replaceAll("-", "")}`;
        await t.database.db.query(
          `create table if not exists ${name} partition of ${table}
           for values from ('${new Date(time).toISOString()}') to ('${new Date(time + day).toISOString()}')`,
        );
      }
    }
    const { dropped } = await t.services.applyRetention();
    const stamp = (time: number) => new Date(time).toISOString().slice(0, 10).replaceAll("-", "");
    expect(dropped.filter((name) => name.startsWith("axis_data_1s_")).sort()).toEqual([
      `axis_data_1s_${stamp(days[0]!)}`,
      `axis_data_1s_${stamp(days[1]!)}`,
      `axis_data_1s_${stamp(days[2]!)}`,
    ]);
    expect(dropped.filter((name) => name.startsWith("axis_data_5s_")).sort()).toEqual([
      `axis_data_5s_${stamp(days[0]!)}`,
      `axis_data_5s_${stamp(days[1]!)}`,
    ]);
    expect(dropped.filter((name) => name.startsWith("axis_data_10s_"))).toEqual([
      `axis_data_10s_${stamp(days[0]!)}`,
    ]);
  });
});

describe("rollups of raw days retention dropped", () => {
  const day = 86_400_000;
  const minute = 60_000;
  let axis: number;
  /** The oldest raw day RETENTION_DAYS (30) keeps, and the day before it, which it drops. */
  let kept: number;
  let dropped: number;

  beforeAll(async () => {
    const machine = (await createMachine(t)).machine_id;
    axis = (await createAxis(t, machine, { axis_name: "X" })).axis_id;
    kept = Math.floor((t.clock.now().getTime() - 30 * day) / day) * day;
    dropped = kept - day;
  });

  /** Samples each `step` ms in [from, to), rolled up as ingest's would be. */
  async function rolledUp(from: number, to: number, step: number) {
    const times: number[] = [];
    for (let time = from; time < to; time += step) times.push(time);
    await t.services.partitions.ensure(times);
    await t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
       select $1, time, 1, 1, 0, 0, true from unnest($2::timestamptz[]) time on conflict do nothing`,
      [axis, times.map((time) => new Date(time))],
    );
    for (const time of times) t.services.rollups.noteSample(axis, time);
    await t.services.rollups.flush();
  }

  const rows = async (table: string, from: number, to: number) =>
    (
      await t.database.db.query<{ n: number }>(
        `select count(*)::int as n from ${table}
         where axis_id = $1 and update_timestamp >= $2 and update_timestamp < $3`,
        [axis, new Date(from), new Date(to)],
      )
    ).rows[0]!.n;

  it("are kept by a restart's recompute that reaches back into them", async () => {
    // An axis that stopped five minutes into the oldest day kept: its last quarter of an hour
    // began in the day dropped.
    await rolledUp(kept - 10 * minute, kept + 5 * minute, 1000);
    await t.services.applyRetention();
    expect(await rows("axis_data", kept - 10 * minute, kept)).toBe(0);
    expect(await rows("axis_data_1s", kept - 10 * minute, kept)).toBe(600);

    await t.services.rollups.recover(t.clock.now().getTime());
    expect(await rows("axis_data_1s", kept - 10 * minute, kept)).toBe(600);
    expect(await rows("axis_data_1m", kept - 10 * minute, kept)).toBe(10);
    expect(await rows("axis_data_1s", kept, kept + 5 * minute)).toBe(300);
  });

  it("are kept by a rebuild over them, which rolls up the days kept", async () => {
    await rolledUp(dropped + 12 * 3_600_000, dropped + 12 * 3_600_000 + 10 * minute, 10_000);
    await t.services.applyRetention();
    expect(await rows("axis_data", dropped, kept)).toBe(0);
    const before = await rows("axis_data_1s", dropped, kept);
    expect(before).toBeGreaterThanOrEqual(60);
    // Rolled up behind the maintainer's back: the rebuild must find them.
    await t.database.db.query(
      `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
       values ($1, $2, 1, 1, 0, 0, true)`,
      [axis, new Date(kept + 3_600_000)],
    );
    await t.services.rollups.rebuild(new Date(dropped), new Date(kept + 2 * 3_600_000), [axis]);
    expect(await rows("axis_data_1s", dropped, kept)).toBe(before);
    expect(await rows("axis_data_1s", kept + 3_600_000, kept + 2 * 3_600_000)).toBe(1);
  });
});
