import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import { testDatabaseKind } from "../../../test/helpers/database.ts";
import { createAxis, createMachine } from "../../../test/helpers/factories.ts";
import { pgErrorCode } from "../../platform/errors.ts";
import { AxisDataPartitions, dayOf, maintenanceLockTimeoutMs } from "./partitions.ts";

const day = 86_400_000;
const dayPartitioned = ["axis_data", "axis_data_1s", "axis_data_5s", "axis_data_10s"];

let t: TestApp;
let machineId: number;

beforeAll(async () => {
  t = await buildTestApp();
  // Made now: the tests move the clock days ahead, past the Admin token's expiry.
  machineId = (await createMachine(t)).machine_id;
  await createAxis(t, machineId, { axis_name: "X" });
});
afterAll(() => t.close());

/** The day partitions `table` has, by name, from the catalog. */
async function partitionsOf(table: string): Promise<string[]> {
  const { rows } = await t.database.db.query<{ name: string }>(
    `select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
     join pg_class p on p.oid = i.inhparent
     where p.relname = $1 and p.relnamespace = to_regnamespace(current_schema())::oid
     order by 1`,
    [table],
  );
  return rows.map((row) => row.name);
}

const nameOf = (table: string, dayStart: number) =>
  `${table}_${new Date(dayStart).toISOString().slice(0, 10).replaceAll("-", "")}`;

/** Moves the clock to days no earlier run has made partitions for; returns the new today. */
function freshDays(): number {
  t.clock.advance(10 * day);
  return dayOf(t.clock.now());
}

describe("maintenance", () => {
  it("makes today's and the next two days' partitions of raw samples and every partitioned rollup tier", async () => {
    const today = freshDays();
    const days = [today, today + day, today + 2 * day];
    for (const table of dayPartitioned)
      for (const name of days.map((dayStart) => nameOf(table, dayStart)))
        expect(await partitionsOf(table)).not.toContain(name);

    await t.services.maintain();

    for (const table of dayPartitioned) {
      expect(await partitionsOf(table)).toEqual(
        expect.arrayContaining(days.map((dayStart) => nameOf(table, dayStart))),
      );
      expect(await partitionsOf(table)).not.toContain(nameOf(table, today + 3 * day));
    }
    // Run again, it finds them there.
    await t.services.maintain();
  });
});

describe.runIf(testDatabaseKind() === "postgres")("maintenance behind a long reader", () => {
  let reader: pg.Client;
  beforeAll(async () => {
    const url = new URL(t.database.url!);
    url.searchParams.set("options", `-c search_path=${t.database.schema}`);
    reader = new pg.Client({ connectionString: url.toString() });
    await reader.connect();
  });
  afterAll(() => reader.end());

  /**
   * `work`, started while a transaction holds axis_data in `mode` (ACCESS SHARE as a long history
   * query does, SHARE UPDATE EXCLUSIVE as a VACUUM or another process's DDL does): its outcome,
   * or "still waiting" once `ms` have passed. The lock is released either way.
   */
  async function behindLock<T>(
    mode: "access share" | "share update exclusive",
    work: () => Promise<T>,
    ms = 2000,
  ): Promise<{ value: T } | { error: unknown } | "still waiting"> {
    await reader.query("begin");
    await reader.query(`lock table axis_data in ${mode} mode`);
    try {
      return await Promise.race([
        work().then(
          (value) => ({ value }),
          (error: unknown) => ({ error }),
        ),
        new Promise<"still waiting">((resolve) => setTimeout(() => resolve("still waiting"), ms)),
      ]);
    } finally {
      await reader.query("commit");
    }
  }

  it("makes the next days behind a long reader, neither waiting for it nor holding inserts up", async () => {
    const today = freshDays();
    const outcome = await behindLock("access share", () => t.services.maintain());
    expect(outcome).not.toBe("still waiting");
    expect(outcome).not.toHaveProperty("error");
    for (const table of dayPartitioned)
      expect(await partitionsOf(table)).toContain(nameOf(table, today + 2 * day));
  });

  it("behind other DDL, gives up within its lock timeout, and succeeds at the next run", async () => {
    const today = freshDays();
    const outcome = await behindLock(
      "share update exclusive",
      () => t.services.maintain(),
      maintenanceLockTimeoutMs + 3000,
    );
    expect(outcome).not.toBe("still waiting");
    // The raw table's step gave up by its lock timeout (55P03), well before the test's wait;
    // the others ran all the same.
    const failed = (outcome as { error?: unknown }).error;
    expect(failed).toBeInstanceOf(AggregateError);
    expect((failed as AggregateError).errors.map(pgErrorCode)).toEqual(["55P03"]);
    expect(await partitionsOf("axis_data")).not.toContain(nameOf("axis_data", today + day));
    for (const table of dayPartitioned.slice(1))
      expect(await partitionsOf(table)).toContain(nameOf(table, today + day));

    await t.services.maintain();
    for (const table of dayPartitioned)
      expect(await partitionsOf(table)).toContain(nameOf(table, today + 2 * day));
  });

  /** One sample of axis X at `time`, through POST /api/ingest/. */
  function ingestAt(time: number, authorization: string) {
    return t.inject({
      method: "POST",
      url: "/api/ingest/",
      headers: { authorization },
      payload: {
        axis_data: [
          {
            machine_id: machineId,
            axis_name: "X",
            timestamp: new Date(time).toISOString(),
            actual_position: 2,
            target_position: 3,
            velocity: 0,
            acceleration: 0,
            homed: true,
          },
        ],
      },
    });
  }

  it("once it has run, the first sample of the next day is stored at once, even behind a long reader", async () => {
    const tomorrow = freshDays() + day;
    const { authorization } = await t.userAuth(["Admin"]);
    await t.services.maintain();
    const outcome = await behindLock("access share", () => ingestAt(tomorrow, authorization));
    expect(outcome).not.toBe("still waiting");
    const answer = (outcome as { value: { statusCode: number; body: string } }).value;
    expect(answer.statusCode, answer.body).toBe(202);
  });

  it("stores a late sample of a day that has no partition at once, even behind a long reader", async () => {
    // Days no run has made: maintenance made the days ahead of earlier clocks only.
    const late = freshDays() - 3 * day + 3_600_000;
    expect(await partitionsOf("axis_data")).not.toContain(nameOf("axis_data", dayOf(late)));
    const { authorization } = await t.userAuth(["Admin"]);
    const outcome = await behindLock("access share", () => ingestAt(late, authorization));
    expect(outcome).not.toBe("still waiting");
    const stored = (outcome as { value: { statusCode: number; body: string } }).value;
    expect(stored.statusCode, stored.body).toBe(202);
    expect(await partitionsOf("axis_data")).toContain(nameOf("axis_data", dayOf(late)));
    // The attached day has the table's unique key: the same sample again is a duplicate.
    expect((await ingestAt(late, authorization)).json()).toEqual({ accepted: 1, duplicates: 1 });
  });

  it("makes a day that writers race to make once, and none of them fails", async () => {
    // Overlapping flushes (or processes) each find the day missing. The first makes it and waits
    // to attach it (behind other DDL here); the rest wait on its uncommitted catalog rows and,
    // once it commits, fail on them (23505). One that looks a moment later finds the table's row
    // type taken instead (42710): too narrow a window to hold open, it made about one run in
    // five of the overlapping-flushes ingest test mark the database unavailable.
    const late = freshDays() - 300 * day;
    const writers = Array.from({ length: 4 }, () => new AxisDataPartitions(t.database.db));
    const waitingOn = async (statement: string) => {
      await reader.query("select pg_stat_clear_snapshot()");
      const { rows } = await reader.query<{ n: number }>(
        `select count(*)::int as n from pg_stat_activity
         where wait_event_type = 'Lock' and query like $1`,
        [`${statement}%`],
      );
      return rows[0]!.n;
    };
    await reader.query("begin");
    let made: Promise<unknown>;
    try {
      await reader.query("lock table axis_data in share update exclusive mode");
      made = Promise.allSettled(writers.map((writer) => writer.ensure([late])));
      const deadline = Date.now() + 10_000;
      while ((await waitingOn("alter table")) < 1 || (await waitingOn("create table")) < 3) {
        expect(Date.now()).toBeLessThan(deadline);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    } finally {
      await reader.query("commit");
    }
    expect(await made).toEqual(writers.map(() => ({ status: "fulfilled", value: undefined })));
    expect(await partitionsOf("axis_data")).toContain(nameOf("axis_data", late));
  });

  it("reports, rather than takes as made, a day whose name something else holds", async () => {
    const late = freshDays() - 400 * day;
    const name = nameOf("axis_data", late);
    const writer = new AxisDataPartitions(t.database.db);
    await t.database.db.query(`create type ${name} as enum ('stray')`);
    try {
      const error = await writer.ensure([late]).catch((caught: unknown) => caught);
      expect(pgErrorCode(error)).toBe("42710");
    } finally {
      await t.database.db.query(`drop type ${name}`);
    }
    // Not remembered as made: once the name is free, the next write makes it.
    await writer.ensure([late]);
    expect(await partitionsOf("axis_data")).toContain(name);
  });

  it("finds a day another process made without taking any lock", async () => {
    const today = freshDays();
    await t.services.maintain();
    const elsewhere = new AxisDataPartitions(t.database.db);
    const outcome = await behindLock("share update exclusive", () =>
      elsewhere.ensure([today + day]),
    );
    expect(outcome).toEqual({ value: undefined });
  });
});
