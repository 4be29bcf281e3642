import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testDatabaseKind } from "../../test/helpers/database.ts";
import { buildApp } from "../app.ts";
import { parseConfig } from "../config.ts";
import { createServices } from "../services.ts";
import { type Database, openDatabase } from "./database.ts";
import { migrate } from "./migrations.ts";

// PostgreSQL only: a database of this file's own, which is made to refuse new connections
// (as during maintenance: `alter database … allow_connections false`), or is dropped.
const onPostgres = testDatabaseKind() === "postgres";
const name = `spindle_refusing_${randomBytes(4).toString("hex")}`;
let admin: pg.Client;
let db: Database;
let app: Awaited<ReturnType<typeof buildApp>>;

beforeAll(async () => {
  if (!onPostgres) return;
  admin = new pg.Client({ connectionString: process.env.TEST_DATABASE_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  const url = new URL(process.env.TEST_DATABASE_URL!);
  url.pathname = `/${name}`;
  db = await openDatabase({ url: url.toString(), maxConnections: 2 });
  await migrate(db);
  app = await buildApp(createServices({ config: parseConfig({}), db }));
  await app.ready();
});

afterAll(async () => {
  if (!onPostgres) return;
  await app.close();
  await db.close();
  await admin.query(`drop database if exists ${name} with (force)`);
  await admin.end();
});

describe.runIf(onPostgres)("a database that refuses connections", () => {
  it("answers 503 with Retry-After, not 500, and the OAuth endpoints temporarily_unavailable", async () => {
    await admin.query(`alter database ${name} allow_connections false`);
    await admin.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", [
      name,
    ]);
    const list = await app.inject({
      url: "/data/machines/",
      headers: { authorization: `Bearer spa_${"x".repeat(43)}` },
    });
    expect(list.statusCode, list.body).toBe(503);
    expect(list.headers["retry-after"]).toBe("1");
    expect(list.json()).toEqual({ detail: "The database is unavailable; retry later." });
    const token = await app.inject({
      method: "POST",
      url: "/o/token/",
      payload: { grant_type: "password", username: "u", password: "p", client_id: "c" },
    });
    expect(token.statusCode, token.body).toBe(503);
    expect(token.json()).toMatchObject({ error: "temporarily_unavailable" });

    // Dropped outright (its name no longer exists): the same.
    await admin.query(`drop database ${name} with (force)`);
    const gone = await app.inject({
      url: "/data/machines/",
      headers: { authorization: `Bearer spa_${"x".repeat(43)}` },
    });
    expect(gone.statusCode, gone.body).toBe(503);
  });
});
