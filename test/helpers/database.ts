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
