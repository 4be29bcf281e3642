import { afterEach, expect, it } from "vitest";
import { openTestDatabase, type TestDatabase } from "../../../test/helpers/database.ts";
import { loadMigrations, migrate, splitStatements } from "../../platform/migrations.ts";

// Each test migrates its own database up to the migration it checks.
let database: TestDatabase | undefined;
afterEach(async () => {
  await database?.drop();
  database = undefined;
});

const day = 86_400_000;

/** 1 s rollup columns in table order, all values derived from the second `i`. */
function secondRow(axisId: number, at: number, i: number) {
  const value = Math.sin(i) * 100;
  return [
    axisId,
    new Date(at),
    10,
    new Date(at + 900),
    value - 1,
    value + 1,
    value * 10,
    value,
    // target, distance_to_go, velocity, acceleration: the same numbers shifted
    value - 2,
    value + 2,
    value * 20,
    value + 0.5,
    -1,
    1,
    0,
    i % 3,
    -i,
    i,
    0,
    i,
    0,
    i % 7,
    i,
    i % 5,
    i % 11 !== 0,
    true,
    i % 2 === 0,
  ];
}

it.each([
  { migration: "0005", version: 5, table: "axis_data_10s", widthMs: 10_000 },
  { migration: "0006", version: 6, table: "axis_data_5s", widthMs: 5000 },
])("$migration fills $table from the 1 s rollups already there, on every day they cover", (tier) =>
  fillsFromSecondRollups(tier),
);

/** Migrates up to just before `version`, stores 1 s rollups around a midnight, then migrates. */
async function fillsFromSecondRollups({
  version,
  table,
  widthMs,
}: {
  version: number;
  table: string;
  widthMs: number;
}) {
  database = await openTestDatabase({ migrated: false });
  const { db } = database;
  const migrations = await loadMigrations();
  const before = migrations.filter((migration) => migration.version < version);
  await db.transaction(async (tx) => {
    for (const migration of before)
      for (const statement of splitStatements(migration.sql)) await tx.query(statement);
    // As the runner would have recorded them, so migrate() below applies only `version` onwards.
    await tx.query(`create table schema_migration (version integer primary key, name text not null,
      applied_at timestamptz not null default now())`);
    for (const migration of before)
      await tx.query("insert into schema_migration (version, name) values ($1, $2)", [
        migration.version,
        migration.name,
      ]);
  });
  await db.query(
    "insert into machine (machine_id, machine_name, tool_capacity) values (7, 'M7', 1)",
  );
  const { rows } = await db.query<{ axis_id: number }>(
    "insert into axis (machine_id, axis_name, max_acceleration, max_velocity) values (7, 'X', 1, 1) returning axis_id",
  );
  const axisId = Number(rows[0]!.axis_id);
  // 25 seconds just before and after midnight: buckets of two days, on both sides of it.
  const midnight = Date.UTC(2026, 10, 20);
  const seconds = Array.from({ length: 25 }, (_, i) => midnight - 12_000 + i * 1000);
  for (const at of [midnight - day, midnight]) {
    const name = `axis_data_1s_${new Date(at).toISOString().slice(0, 10).replaceAll("-", "")}`;
    await db.query(
      `create table ${name} partition of axis_data_1s for values from ('${new Date(at).toISOString()}') to ('${new Date(at + day).toISOString()}')`,
    );
  }
  for (const [i, at] of seconds.entries()) {
    const values = secondRow(axisId, at, i);
    await db.query(
      `insert into axis_data_1s values (${values.map((_, k) => `$${k + 1}`).join(", ")})`,
      values,
    );
  }

  await migrate(db);

  const filled = await db.query<Record<string, unknown>>(
    `select * from ${table} order by update_timestamp`,
  );
  const buckets = new Map<number, number[]>();
  for (const [i, at] of seconds.entries()) {
    const bucket = Math.floor(at / widthMs) * widthMs;
    buckets.set(bucket, [...(buckets.get(bucket) ?? []), i]);
  }
  expect(filled.rows.map((row) => (row.update_timestamp as Date).getTime())).toEqual([
    ...buckets.keys(),
  ]);
  expect(buckets.size).toBe(widthMs === 5000 ? 6 : 4);
  for (const row of filled.rows) {
    const members = buckets.get((row.update_timestamp as Date).getTime())!;
    const last = members.at(-1)!;
    const source = members.map((i) => secondRow(axisId, seconds[i]!, i));
    expect(row.samples).toBe(10 * members.length);
    expect(row.actual_position_min).toBeCloseTo(Math.min(...source.map((r) => r[4] as number)), 9);
    expect(row.actual_position_max).toBeCloseTo(Math.max(...source.map((r) => r[5] as number)), 9);
    expect(row.actual_position_sum).toBeCloseTo(
      source.reduce((sum, r) => sum + (r[6] as number), 0),
      9,
    );
    expect(row.actual_position_last).toBeCloseTo(Math.sin(last) * 100, 9);
    expect(row.homed_all).toBe(members.every((i) => i % 11 !== 0));
    expect(row.homed_last).toBe(last % 2 === 0);
  }
  // Both days got a partition, so the maintainer and retention find them as usual.
  const { rows: parts } = await db.query<{ name: string }>(
    `select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
     join pg_class p on p.oid = i.inhparent
     where p.relname = $1 and p.relnamespace = to_regnamespace(current_schema())::oid
     order by 1`,
    [table],
  );
  expect(parts.map((part) => part.name)).toEqual([`${table}_20261119`, `${table}_20261120`]);
}
