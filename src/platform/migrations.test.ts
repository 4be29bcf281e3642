import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { openDatabase } from "./database.ts";
import { loadMigrations, migrate, splitStatements } from "./migrations.ts";

describe("splitStatements", () => {
  it("splits on semicolons outside strings, comments and dollar-quoted bodies", () => {
    const sql = `create table a (x text default 'a;b'); -- a comment; with a semicolon
      create function f() returns int as $$ select 1; $$ language sql;
      insert into a values ('it''s; fine')`;
    expect(splitStatements(sql)).toEqual([
      "create table a (x text default 'a;b')",
      "create function f() returns int as $$ select 1; $$ language sql",
      "insert into a values ('it''s; fine')",
    ]);
  });
});

describe("migrate", () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await openTestDatabase({ migrated: false });
  });
  afterAll(() => database.drop());

  it("applies every migration once, then nothing", async () => {
    const names = (await loadMigrations()).map((migration) => migration.name);
    expect(names.slice(0, 2)).toEqual(["0001_initial", "0002_change_notifications"]);
    expect(await migrate(database.db)).toEqual(names);
    expect(await migrate(database.db)).toEqual([]);
  });

  it("creates the four groups with the contract's default matrix", async () => {
    const { rows } = await database.db.query<{ name: string; codes: string[] }>(
      `select g.name, array(select permission_code from group_permission gp where gp.group_id = g.id
                            order by permission_code) as codes
       from app_group g order by g.id`,
    );
    const byGroup = Object.fromEntries(rows.map((row) => [row.name, row.codes]));
    expect(byGroup.Admin).toHaveLength(32);
    expect(byGroup.Operator).toEqual([
      "axis.view",
      "axisdata.view",
      "machine.view",
      "tool.view",
      "toolusage.add",
      "toolusage.change",
      "toolusage.view",
    ]);
    expect(byGroup.Supervisor).toEqual([
      "axis.add",
      "axis.view",
      "axisdata.add",
      "axisdata.view",
      "machine.add",
      "machine.view",
      "tool.add",
      "tool.view",
      "toolusage.delete",
      "toolusage.view",
    ]);
    expect(byGroup.Manager).toEqual([
      "axis.add",
      "axis.change",
      "axis.view",
      "axisdata.add",
      "axisdata.change",
      "axisdata.view",
      "machine.add",
      "machine.change",
      "machine.view",
      "tool.add",
      "tool.change",
      "tool.view",
      "toolusage.change",
      "toolusage.view",
    ]);
  });
});

describe("sessions", () => {
  it("work in UTC whatever zone the server or the URL sets, so dates mean the same day", async () => {
    const base =
      process.env.TEST_DB_KIND === "postgres" ? process.env.TEST_DATABASE_URL : undefined;
    let url: string | undefined;
    if (base) {
      const zoned = new URL(base);
      // 13:45 ahead of UTC: midnight there is the previous day's 10:15 in UTC.
      zoned.searchParams.set("options", "-c TimeZone=Pacific/Chatham");
      url = zoned.toString();
    }
    const db = await openDatabase({ url, maxConnections: 2 });
    try {
      for (let i = 0; i < 3; i++) {
        const { rows } = await db.query<{ zone: string; midnight: string }>(
          "select current_setting('TimeZone') as zone, to_char('2026-03-01'::timestamptz at time zone 'UTC', 'YYYY-MM-DD HH24:MI') as midnight",
        );
        expect(rows[0]).toEqual({ zone: "UTC", midnight: "2026-03-01 00:00" });
      }
    } finally {
      await db.close();
    }
  });
});
