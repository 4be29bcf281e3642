import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../../test/helpers/app.ts";
import { createAxis, createMachine, ingestAxisData } from "../../../test/helpers/factories.ts";
import { encodeJson } from "./history-encoding.ts";

// Finished downsampled buckets are kept between requests (bucket-cache.ts). These tests check
// that an answer never shows a bucket its rollups no longer agree with.

let t: TestApp;
let machineId: number;
let axisId: number;
beforeAll(async () => {
  t = await buildTestApp();
  machineId = (await createMachine(t)).machine_id;
  axisId = (await createAxis(t, machineId, { axis_name: "X" })).axis_id;
});
afterAll(() => t.close());

const minute = 60_000;
// Five minutes at 10 Hz, ending a few minutes ago: every bucket is finished.
const start = Math.floor((Date.now() - 10 * minute) / minute) * minute;
const end = start + 5 * minute;

const sample = (at: number, actual: number) => ({
  machine_id: machineId,
  axis_name: "X",
  timestamp: new Date(at).toISOString(),
  actual_position: actual,
  target_position: 0,
  velocity: 1,
  acceleration: 0,
  homed: true,
});

async function ingest(rows: ReturnType<typeof sample>[]) {
  await ingestAxisData(t, rows);
  await t.services.rollups.flush();
}

// `from` off the grid, so the first bucket is a partial one read from raw samples every time.
const query = `machine_id=MACHINE&from=${new Date(start + 1234).toISOString()}&to=${new Date(end).toISOString()}&max_points=30`;
async function buckets(): Promise<Record<string, unknown>[]> {
  const answer = await t.inject({
    method: "GET",
    url: `/api/axis-data/?${query.replace("MACHINE", String(machineId))}`,
    headers: t.adminAuth,
  });
  expect(answer.statusCode, answer.body).toBe(200);
  return answer.json();
}

/** What the rollups hold now, through a service that keeps no cache. */
async function uncached(): Promise<Record<string, unknown>[]> {
  const { createHistoryService } = await import("./history-service.ts");
  const history = createHistoryService({ db: t.database.db, clock: t.clock });
  const answer = await history.query({
    machineIds: [machineId],
    from: new Date(start + 1234),
    to: new Date(end),
    maxPoints: 30,
  });
  let json = "";
  for await (const chunk of encodeJson(answer)) json += chunk;
  return JSON.parse(json);
}

/** Every bucket's numbers are those the rollups give now. */
async function agreesWithRollups(): Promise<boolean> {
  const wanted = await uncached();
  const got = await buckets();
  return (
    got.length === wanted.length &&
    got.every((row, i) =>
      ["actual_position", "actual_position_min", "actual_position_max", "samples"].every(
        (column) => row[column] === wanted[i]![column],
      ),
    )
  );
}

async function eventually(check: () => Promise<boolean>) {
  for (let i = 0; i < 50 && !(await check()); i++) await sleep(50);
  expect(await check()).toBe(true);
}

describe("finished buckets kept between requests", () => {
  it("answer the same the second time, partial edge buckets included", async () => {
    const rows = [];
    for (let at = start; at < end; at += 100) rows.push(sample(at, Math.sin(at / 5000) * 100));
    await ingest(rows);
    const first = await buckets();
    expect(first.length).toBeGreaterThan(20);
    expect(first.reduce((sum, row) => sum + (row.samples as number), 0)).toBe(3000 - 13);
    expect(await buckets()).toEqual(first);
  });

  it("a late sample in a finished bucket shows in the next answer", async () => {
    const before = await buckets();
    const late = start + 2 * minute + 50;
    await ingest([sample(late, 9999)]);
    const after = await buckets();
    const changed = after.filter((row, i) => JSON.stringify(row) !== JSON.stringify(before[i]));
    expect(changed).toHaveLength(1);
    expect(changed[0]).toMatchObject({ actual_position_max: 9999 });
    expect(changed[0]!.samples).toBe((before[after.indexOf(changed[0]!)]!.samples as number) + 1);
  });

  it("another process's recompute, announced on spindle_rollups, is heard", async () => {
    await buckets();
    // As another process's maintainer would: rollup rows rewritten, then announced at commit.
    const table = ["axis_data_1s", "axis_data_5s", "axis_data_10s", "axis_data_1m"];
    await t.database.db.transaction(async (tx) => {
      for (const name of table)
        await tx.query(
          `update ${name} set actual_position_max = 4242 where axis_id = $1 and update_timestamp >= $2 and update_timestamp < $3`,
          [axisId, new Date(start + 3 * minute), new Date(start + 3 * minute + 1000)],
        );
      await tx.query("select pg_notify('spindle_rollups', $1)", [
        `${start + 3 * minute}:${start + 3 * minute + 1000}`,
      ]);
    });
    await eventually(async () => (await buckets()).some((row) => row.actual_position_max === 4242));
    expect(await agreesWithRollups()).toBe(true);
  });

  it.each([
    "",
    "garbage",
    "1:2:3",
    "-:-",
    "99999999999999999999999:1",
    "'; drop table axis_data_10s; --",
    "*",
  ])("a malformed announcement %j forgets everything, harmlessly", async (payload) => {
    await buckets();
    await t.database.db.transaction(async (tx) => {
      await tx.query(
        "update axis_data_10s set actual_position_min = actual_position_min - 1 where axis_id = $1",
        [axisId],
      );
      await tx.query(
        "update axis_data_5s set actual_position_min = actual_position_min - 1 where axis_id = $1",
        [axisId],
      );
      await tx.query(
        "update axis_data_1s set actual_position_min = actual_position_min - 1 where axis_id = $1",
        [axisId],
      );
      await tx.query("select pg_notify('spindle_rollups', $1)", [payload]);
    });
    // Every bucket again agrees with the rollups: the cache kept nothing stale.
    await eventually(agreesWithRollups);
  });
});
