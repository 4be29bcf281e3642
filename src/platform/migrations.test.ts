import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
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
