import { randomBytes } from "node:crypto";
import pg from "pg";
import { type Database, openDatabase } from "../../src/platform/database.ts";
import { migrate } from "../../src/platform/migrations.ts";

export type TestDatabaseKind = "embedded" | "postgres";

/** Which database this run of the suite targets (see vitest.config.ts). */
export function testDatabaseKind(): TestDatabaseKind {
  return process.env.TEST_DB_KIND === "postgres" ? "postgres" : "embedded";
}

export interface TestDatabase {
  db: Database;
  /** Connection settings a child process (the CLI) can use to reach the same data. */
  url: string | undefined;
  schema: string | undefined;
  drop(): Promise<void>;
}

/**
 * A new, migrated, empty database for one test file: an in-memory PGlite, or a schema of its
 * own on the PostgreSQL server named by TEST_DATABASE_URL, dropped afterwards.
 */
export async function openTestDatabase({ migrated = true } = {}): Promise<TestDatabase> {
  if (testDatabaseKind() === "embedded") {
    const db = await openDatabase({});
    if (migrated) await migrate(db);
    return { db, url: undefined, schema: undefined, drop: () => db.close() };
  }
  const url = process.env.TEST_DATABASE_URL;
  if (!url) throw new Error("TEST_DB_KIND=postgres needs TEST_DATABASE_URL");
  const schema = `test_${randomBytes(6).toString("hex")}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  const db = await openDatabase({ url, schema, maxConnections: 4 });
  if (migrated) await migrate(db);
  return {
    db,
    url,
    schema,
    async drop() {
      await db.close();
      const cleanup = new pg.Client({ connectionString: url });
      await cleanup.connect();
      await cleanup.query(`drop schema ${schema} cascade`);
      await cleanup.end();
    },
  };
}

/**
 * Another session on `database`'s schema (PostgreSQL only): it holds locks a test races the
 * server's statements against.
 */
export async function otherSession(database: TestDatabase): Promise<pg.Client> {
  const url = new URL(database.url!);
  url.searchParams.set("options", `-c search_path=${database.schema}`);
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  return client;
}

/**
 * Resolves once a statement whose text is `like` (an SQL LIKE pattern) waits for a lock
 * `holder` holds; throws after 10 s. Inside a transaction pg_stat_activity is read from a
 * snapshot taken at its first use, so each look clears it.
 */
export async function blockedBy(holder: pg.Client, like: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    await holder.query("select pg_stat_clear_snapshot()");
    const { rows } = await holder.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity
       where pg_backend_pid() = any(pg_blocking_pids(pid)) and query like $1`,
      [like],
    );
    if (rows[0]!.n > 0) return;
    if (Date.now() > deadline) throw new Error(`no statement like ${like} waited for the lock`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
