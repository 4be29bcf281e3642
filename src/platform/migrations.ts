import { readdir, readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Database } from "./database.ts";

const migrationsDir = fileURLToPath(new URL("../db/migrations/", import.meta.url));

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export async function loadMigrations(dir = migrationsDir): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((file) => /^\d{4}_[\w-]+\.sql$/.test(file)).sort();
  return Promise.all(
    files.map(async (file) => ({
      version: Number(file.slice(0, 4)),
      name: file.replace(/\.sql$/, ""),
      sql: await readFile(`${dir}${file}`, "utf8"),
    })),
  );
}

/**
 * Applies the migrations not yet recorded, each in its own transaction, and returns their names.
 * An advisory lock makes servers that start together on one PostgreSQL take turns.
 */
export async function migrate(db: Database): Promise<string[]> {
  await db.exec(`create table if not exists schema_migration (
    version integer primary key,
    name text not null,
    applied_at timestamptz not null default now()
  )`);
  const applied: string[] = [];
  for (const migration of await loadMigrations()) {
    const ran = await db.transaction(async (tx) => {
      await tx.query("select pg_advisory_xact_lock(7347110)");
      const done = await tx.query("select 1 from schema_migration where version = $1", [
        migration.version,
      ]);
      if (done.rows.length > 0) return false;
      for (const statement of splitStatements(migration.sql)) await tx.query(statement);
      await tx.query("insert into schema_migration (version, name) values ($1, $2)", [
        migration.version,
        migration.name,
      ]);
      return true;
    });
    if (ran) applied.push(migration.name);
  }
  return applied;
}

/**
 * Splits a migration into statements so that each runs through the same parameterless
 * query path on both drivers. Handles comments, quoted strings and $$-bodies.
 */
export function splitStatements(sql: string): string[] {
  const statements: string[] = [];
  let current = "";
  let i = 0;
  while (i < sql.length) {
    const rest = sql.slice(i);
    const dollar = /^\$[A-Za-z_]*\$/.exec(rest);
    if (rest.startsWith("--")) {
      const end = sql.indexOf("\n", i);
      i = end === -1 ? sql.length : end;
    } else if (dollar) {
      const end = sql.indexOf(dollar[0], i + dollar[0].length);
      const stop = end === -1 ? sql.length : end + dollar[0].length;
      current += sql.slice(i, stop);
      i = stop;
    } else if (rest[0] === "'") {
      let j = i + 1;
      while (j < sql.length && !(sql[j] === "'" && sql[j + 1] !== "'")) j += sql[j] === "'" ? 2 : 1;
      current += sql.slice(i, j + 1);
      i = j + 1;
    } else if (rest[0] === ";") {
      if (current.trim()) statements.push(current.trim());
      current = "";
      i++;
    } else {
      current += rest[0];
      i++;
    }
  }
  if (current.trim()) statements.push(current.trim());
  return statements;
}
