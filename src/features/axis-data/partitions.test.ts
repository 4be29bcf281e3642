import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import { testDatabaseKind } from "../../../test/helpers/database.ts";
import { createAxis, createMachine } from "../../../test/helpers/factories.ts";
import { pgErrorCode } from "../../platform/errors.ts";
import { dayOf, maintenanceLockTimeoutMs } from "./partitions.ts";

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

  /** A history query's transaction, still open: it holds axis_data's ACCESS SHARE lock. */
  async function holdReadLock(): Promise<() => Promise<void>> {
    await reader.query("begin");
    await reader.query("lock table axis_data in access share mode");
    return async () => {
      await reader.query("commit");
    };
  }

  /** `work`'s outcome, or "still waiting" once `ms` have passed. */
  const within = <T>(work: Promise<T>, ms: number) =>
    Promise.race([
      work.then(
        (value) => ({ value }),
        (error: unknown) => ({ error }),
      ),
      new Promise<"still waiting">((resolve) => setTimeout(() => resolve("still waiting"), ms)),
    ]);

  it("gives up within its lock timeout instead of queueing everyone behind it, and succeeds at the next run", async () => {
    const today = freshDays();
    const release = await holdReadLock();
    let outcome: Awaited<ReturnType<typeof within>>;
    const started = Date.now();
    try {
      outcome = await within(t.services.maintain(), maintenanceLockTimeoutMs + 3000);
    } finally {
      await release();
    }
    expect(outcome).not.toBe("still waiting");
    expect(Date.now() - started).toBeLessThan(maintenanceLockTimeoutMs + 2000);
    // The raw table's step gave up; the others ran all the same.
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

  it("once it has run, the first sample of the next day is stored at once, even behind a long reader", async () => {
    const tomorrow = freshDays() + day;
    const { authorization } = await t.userAuth(["Admin"]);
    await t.services.maintain();
    const release = await holdReadLock();
    let outcome: Awaited<ReturnType<typeof within>>;
    try {
      const sent = t.inject({
        method: "POST",
        url: "/api/ingest/",
        headers: { authorization },
        payload: {
          axis_data: [
            {
              machine_id: machineId,
              axis_name: "X",
              timestamp: new Date(tomorrow).toISOString(),
              actual_position: 1,
              target_position: 1,
              velocity: 0,
              acceleration: 0,
              homed: true,
            },
          ],
        },
      });
      outcome = await within(sent, 2000);
    } finally {
      await release();
    }
    expect(outcome).not.toBe("still waiting");
    const answer = (outcome as { value: { statusCode: number; body: string } }).value;
    expect(answer.statusCode, answer.body).toBe(202);
  });
});
