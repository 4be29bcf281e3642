import type { Database, Queryable } from "../../platform/database.ts";
import { pgErrorCode } from "../../platform/errors.ts";

const dayMs = 86_400_000;

/** `axis_data_20261124` holds [2026-11-24T00:00Z, 2026-11-25T00:00Z). */
export const partitionName = (dayStart: number, table = "axis_data"): string =>
  `${table}_${new Date(dayStart).toISOString().slice(0, 10).replaceAll("-", "")}`;

export const dayOf = (time: Date | number): number =>
  Math.floor(new Date(time).getTime() / dayMs) * dayMs;

/** The day of `now` and the `ahead` days after it. */
export const daysFrom = (now: Date, ahead: number): number[] =>
  Array.from({ length: ahead + 1 }, (_, index) => dayOf(now) + index * dayMs);

/**
 * How long maintenance DDL waits for its table's lock. Dropping a partition locks the whole table
 * (ACCESS EXCLUSIVE): waiting behind a long history query, it would hold every later insert and
 * read in the queue behind it. Making one waits only for other DDL (`create`). Maintenance runs
 * hourly, days before it is needed, so giving up costs nothing: the next run tries again.
 */
export const maintenanceLockTimeoutMs = 2000;

/**
 * Daily partitions of axis_data (or of another table partitioned the same way, such as the 1 s
 * rollups). Maintenance makes them days ahead (`prepare`); a write whose day has none yet makes
 * it first (`ensure`). Which days exist is remembered, so the hot path costs one Set lookup per
 * distinct day in a batch.
 */
export class AxisDataPartitions {
  private readonly known = new Set<number>();

  constructor(
    private readonly db: Database,
    readonly table = "axis_data",
  ) {}

  /** Before a write: makes the partitions of these times' days that do not exist yet. */
  ensure(times: Iterable<Date | number>): Promise<void> {
    return this.createMissing(times);
  }

  /**
   * Maintenance, ahead of the writes: the same, waiting at most `maintenanceLockTimeoutMs` for
   * the table (then it throws lock_not_available, 55P03).
   */
  prepare(times: Iterable<Date | number>): Promise<void> {
    return this.createMissing(times, maintenanceLockTimeoutMs);
  }

  private async createMissing(
    times: Iterable<Date | number>,
    lockTimeoutMs?: number,
  ): Promise<void> {
    const days = new Set<number>();
    for (const time of times) days.add(dayOf(time));
    for (const day of days) {
      if (this.known.has(day)) continue;
      await this.create(day, lockTimeoutMs);
      this.known.add(day);
    }
  }

  /**
   * Makes the day's table apart, then attaches it. ATTACH locks the parent only against other
   * DDL (SHARE UPDATE EXCLUSIVE), where CREATE TABLE … PARTITION OF locks it against every read
   * and write (ACCESS EXCLUSIVE): a day made while a long history query reads, whether by
   * maintenance or by the first late sample of a day that has none, neither waits for the
   * query nor holds every insert in the queue behind it.
   */
  private async create(day: number, lockTimeoutMs: number | undefined): Promise<void> {
    const name = partitionName(day, this.table);
    const from = new Date(day).toISOString();
    const to = new Date(day + dayMs).toISOString();
    try {
      await this.withLockTimeout(lockTimeoutMs, async (tx) => {
        // One that exists already is skipped without locking anything.
        await tx.query(
          `create table if not exists ${name}
           (like ${this.table} including defaults including generated including constraints)`,
        );
        const { rows } = await tx.query("select 1 from pg_inherits where inhrelid = $1::regclass", [
          name,
        ]);
        if (rows.length > 0) return;
        await tx.query(
          `alter table ${this.table} attach partition ${name} for values from ('${from}') to ('${to}')`,
        );
      });
    } catch (error) {
      // Another flush or process made it first: which error the loser gets depends on where it
      // was when the winner committed (42P07 duplicate table, 42710 its row type, 23505 a
      // catalog row it was inserting). Refusing ingest for it marked the database unavailable.
      // The winner attached it in the same transaction; anything else holding the name (a stray
      // type or table) is a fault to report, not a day to take as made.
      const code = pgErrorCode(error);
      if (code !== "42P07" && code !== "42710" && code !== "23505") throw error;
      if (!(await this.attached(name))) throw error;
    }
  }

  private async attached(name: string): Promise<boolean> {
    const { rows } = await this.db.query(
      `select 1 from pg_inherits i join pg_class p on p.oid = i.inhparent
       where i.inhrelid = to_regclass($1) and p.relname = $2`,
      [name, this.table],
    );
    return rows.length > 0;
  }

  /** The days that have a partition, oldest first; `db` may be a transaction. */
  list(db: Queryable = this.db): Promise<{ name: string; day: number }[]> {
    return partitionDays(db, this.table);
  }

  /**
   * Drops every partition that lies wholly before `cutoff`, each waiting at most
   * `maintenanceLockTimeoutMs` for the table; returns the names dropped. Each in a transaction of
   * its own, or all in `tx` when given (they go, or stay, together).
   */
  async dropBefore(cutoff: Date, tx?: Queryable): Promise<string[]> {
    const dropped: string[] = [];
    if (tx) await tx.query(`set local lock_timeout = ${maintenanceLockTimeoutMs}`);
    for (const { name, day } of await this.list(tx)) {
      if (day + dayMs > cutoff.getTime()) continue;
      const drop = `drop table if exists ${name}`;
      if (tx) await tx.query(drop);
      else
        await this.withLockTimeout(maintenanceLockTimeoutMs, async (own) => {
          await own.query(drop);
        });
      // Forgotten even if `tx` rolls back: a day thought missing is only made again, if need be.
      this.known.delete(day);
      dropped.push(name);
    }
    return dropped;
  }

  /** `work` in a transaction of its own, waiting at most `lockTimeoutMs` for any lock it takes. */
  private withLockTimeout(
    lockTimeoutMs: number | undefined,
    work: (tx: Queryable) => Promise<void>,
  ): Promise<void> {
    return this.db.transaction(async (tx) => {
      if (lockTimeoutMs !== undefined)
        await tx.query(`set local lock_timeout = ${Math.round(lockTimeoutMs)}`);
      await work(tx);
    });
  }
}

/** The days `table` has a partition for, oldest first. */
export async function partitionDays(
  db: Queryable,
  table: string,
): Promise<{ name: string; day: number }[]> {
  const { rows } = await db.query<{ name: string }>(
    `select c.relname as name from pg_inherits i
     join pg_class c on c.oid = i.inhrelid
     join pg_class p on p.oid = i.inhparent
     where p.relname = $1 and p.relnamespace = to_regnamespace(current_schema())::oid
     order by c.relname`,
    [table],
  );
  const pattern = new RegExp(`^${table}_(\\d{4})(\\d\\d)(\\d\\d)$`);
  return rows
    .map((row) => ({ name: row.name, match: pattern.exec(row.name) }))
    .filter((row) => row.match)
    .map(({ name, match }) => ({
      name,
      // Not Date.UTC, which reads years 0–99 as 1900–1999.
      day: Date.parse(`${match![1]}-${match![2]}-${match![3]}T00:00:00Z`),
    }));
}
