import type { Database, Queryable } from "../../platform/database.ts";
import { axisMeasurements } from "../axis-data/axis-sample-fields.ts";
import { type AxisDataPartitions, partitionDays } from "../axis-data/partitions.ts";
import type { ValidBatch } from "../ingest/ingest-batch.ts";
import { rollupChannel } from "./bucket-cache.ts";

const measurements = axisMeasurements;

const minuteMs = 60_000;
const hourMs = 60 * minuteMs;

/** `pg_advisory_xact_lock` key every process's recomputes (and retention's marks) take turns on. */
const recomputeLock = 7347111;

/** `work` in a transaction that waits its turn with every process's recomputes. */
export function inTurn<T>(db: Database, work: (tx: Queryable) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await tx.query("select pg_advisory_xact_lock($1)", [recomputeLock]);
    return work(tx);
  });
}

/**
 * How far back of a restart's now, and of the newest sample before it, the rollups are
 * recomputed: live samples are not marked in the database (migration 0008 marks those more than
 * five minutes late), so this is what finds the ones a crash kept from being rolled up.
 */
const restartWindowMs = 15 * minuteMs;

/** Sample times [from, to], both ends included. */
interface Span {
  from: number;
  to: number;
}

/**
 * Per axis, per minute it touched (the minute's start), the span of sample times in that minute
 * committed since the rollups were last brought up to date. Minute by minute, so one late sample
 * (an adapter sending what it buffered while offline, beside its live data) costs its own
 * minute's recompute, not every minute between it and now.
 */
type Dirty = Map<number, Map<number, Span>>;

/** Axes whose rollups are recomputed over one span of sample times [from, to). */
interface Recompute {
  from: number;
  to: number;
  axisIds: number[];
}

function aggregateColumns(from: "raw" | "seconds"): string {
  const parts: string[] = [];
  for (const field of measurements) {
    if (from === "raw") {
      parts.push(
        `min(${field})`,
        `max(${field})`,
        `sum(${field})`,
        `(array_agg(${field} order by update_timestamp desc))[1]`,
      );
    } else {
      parts.push(
        `min(${field}_min)`,
        `max(${field}_max)`,
        `sum(${field}_sum)`,
        `(array_agg(${field}_last order by last_timestamp desc))[1]`,
      );
    }
  }
  if (from === "raw") {
    parts.push(
      "bool_and(homed)",
      "bool_or(homed)",
      "(array_agg(homed order by update_timestamp desc))[1]",
    );
  } else {
    parts.push(
      "bool_and(homed_all)",
      "bool_or(homed_any)",
      "(array_agg(homed_last order by last_timestamp desc))[1]",
    );
  }
  return parts.join(", ");
}

const rollupColumns = [
  "axis_id",
  "update_timestamp",
  "samples",
  "last_timestamp",
  ...measurements.flatMap((field) => [
    `${field}_min`,
    `${field}_max`,
    `${field}_sum`,
    `${field}_last`,
  ]),
  "homed_all",
  "homed_any",
  "homed_last",
];

/**
 * The tiers made from the 1 s rollups, each with its bucket width and the start of the bucket a
 * 1 s row falls in (buckets start on multiples of their width since the epoch).
 */
const coarserTiers = [
  {
    table: "axis_data_5s",
    resolutionMs: 5000,
    bucketStart: "date_bin('5 seconds', update_timestamp, timestamptz '1970-01-01Z')",
  },
  {
    table: "axis_data_10s",
    resolutionMs: 10_000,
    bucketStart: "date_bin('10 seconds', update_timestamp, timestamptz '1970-01-01Z')",
  },
  {
    table: "axis_data_1m",
    resolutionMs: minuteMs,
    bucketStart: "date_trunc('minute', update_timestamp)",
  },
] as const;

/** The earliest sample time marked dirty, of these axes (all when absent), if any. */
function earliest(dirty: Dirty, axisIds?: Iterable<number>): number | undefined {
  let since: number | undefined;
  const marked = axisIds === undefined ? dirty.values() : [...axisIds].map((id) => dirty.get(id));
  for (const minutes of marked)
    for (const span of minutes?.values() ?? [])
      if (since === undefined || span.from < since) since = span.from;
  return since;
}

/**
 * What to recompute for what was marked dirty. The axes that touched a minute share its
 * statements (in steady state, all of them), over the seconds they touched in it: recomputing
 * whole minutes from raw samples read 60 times the samples that changed, every second. Adjacent
 * minutes touched by the same axes (a second that crosses a minute) are one span.
 */
function recomputes(dirty: Dirty): Recompute[] {
  const byMinute = new Map<number, Recompute>();
  for (const [axisId, minutes] of dirty)
    for (const [minute, span] of minutes) {
      const group = byMinute.get(minute);
      if (!group) byMinute.set(minute, { from: span.from, to: span.to + 1, axisIds: [axisId] });
      else {
        group.from = Math.min(group.from, span.from);
        group.to = Math.max(group.to, span.to + 1);
        group.axisIds.push(axisId);
      }
    }
  const merged: (Recompute & { minute: number; axes: string })[] = [];
  for (const [minute, group] of [...byMinute].sort(([a], [b]) => a - b)) {
    const axes = group.axisIds.sort((a, b) => a - b).join(",");
    const last = merged.at(-1);
    if (last && last.minute + minuteMs === minute && last.axes === axes) {
      last.to = group.to;
      last.minute = minute;
    } else merged.push({ ...group, minute, axes });
  }
  return merged.map(({ from, to, axisIds }) => ({ from, to, axisIds }));
}

/** [from, to) widened to whole buckets of `resolutionMs`. */
function wholeBuckets(from: number, to: number, resolutionMs: number) {
  return {
    from: Math.floor(from / resolutionMs) * resolutionMs,
    to: Math.ceil(to / resolutionMs) * resolutionMs,
  };
}

/**
 * Keeps the 1 s, 5 s, 10 s and 1 min rollups (migrations 0004-0006) up to date as data arrives.
 * It hears each committed batch, remembers which axes and times it touched, and every second
 * recomputes those seconds' 1 s buckets from the raw samples, and the 5 s, 10 s and 1 min
 * buckets that enclose them from the 1 s ones. Buckets are recomputed
 * (replaced), never incremented, so a retried batch or a late sample can never count twice, and
 * the work stays off the path that acknowledges producers. What a crash takes from memory is
 * found again from marks the database keeps (migration 0008) and by `recover` at start.
 */
export class RollupMaintainer {
  private dirty: Dirty = new Map();
  private timer: NodeJS.Timeout | undefined;
  private sweep: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private closed = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly db: Database,
    private readonly secondPartitions: AxisDataPartitions,
    /** Day partitions of the coarser tiers that have them: 5 s, 10 s (1 min is unpartitioned). */
    private readonly coarserPartitions: readonly AxisDataPartitions[],
    private readonly onError: (error: unknown) => void = () => {},
    /** After each recompute commits: these axes' rollups in [fromMs, toMs) may have changed. */
    private readonly onRecomputed: (
      axisIds: number[],
      fromMs: number,
      toMs: number,
    ) => void = () => {},
  ) {}

  /** What the recompute under way was given. */
  private inFlight: Dirty | undefined;

  /** Call with each committed batch (IngestPipeline.onCommitted). */
  note(batch: ValidBatch): void {
    for (const row of batch.axis) this.noteSample(row.axisId, row.timeMs);
  }

  /** A sample written, changed or deleted some other way (the CRUD endpoints). */
  noteSample(axisId: number, timeMs: number): void {
    let minutes = this.dirty.get(axisId);
    if (!minutes) {
      minutes = new Map();
      this.dirty.set(axisId, minutes);
    }
    const minute = Math.floor(timeMs / minuteMs) * minuteMs;
    const span = minutes.get(minute);
    if (!span) minutes.set(minute, { from: timeMs, to: timeMs });
    else {
      if (timeMs < span.from) span.from = timeMs;
      if (timeMs > span.to) span.to = timeMs;
    }
  }

  /**
   * The earliest sample time, of these axes (all when absent), whose rollups may not be up to
   * date yet (undefined: all are). Readers take raw samples of them from there on, so an answer
   * never misses a fresh sample; one machine's backfill does not send every other machine's
   * series to raw samples.
   */
  pendingSince(axisIds?: Iterable<number>): number | undefined {
    const ids = axisIds === undefined ? undefined : [...axisIds];
    const times = [earliest(this.dirty, ids), this.inFlight && earliest(this.inFlight, ids)];
    const known = times.filter((time): time is number => time !== undefined);
    return known.length === 0 ? undefined : Math.min(...known);
  }

  /**
   * Every second, recomputes what this process committed. At once and then every minute, also
   * what the database marks as waiting (`sweepMarked`), which a process that stopped before its
   * recompute leaves there (a crash; a crashed `spindle simulate` beside this server).
   */
  start(intervalMs = 1000, sweepIntervalMs = 60_000): void {
    this.timer = setInterval(() => {
      void this.flush().catch(this.onError);
    }, intervalMs);
    this.timer.unref();
    const sweep = () => void this.sweepMarked().catch(this.onError);
    this.sweep = setInterval(sweep, sweepIntervalMs);
    this.sweep.unref();
    sweep();
  }

  /**
   * After a restart: recomputes every axis over the last minutes before `nowMs` and before its
   * newest sample at or before it (a server restarted an hour after a crash finds the live
   * samples of its last second there). Per axis: one producer's clock ahead of the others must
   * not move the window away from theirs. Marked samples are the sweep's (`start`), which runs
   * beside serving: a backlog of them must not hold the server from listening.
   */
  async recover(nowMs: number): Promise<void> {
    const { rows } = await this.db.query<{ axis_id: number; newest: number }>(
      `select axis.axis_id, extract(epoch from latest.update_timestamp) * 1000 as newest
       from axis cross join lateral (
         select update_timestamp from axis_data
         where axis_data.axis_id = axis.axis_id and update_timestamp <= $1
         order by update_timestamp desc limit 1
       ) latest
       where latest.update_timestamp < $2`,
      [new Date(nowMs), new Date(nowMs - restartWindowMs)],
    );
    const byMinute = new Map<number, number[]>();
    for (const row of rows) {
      const minute = Math.floor(Number(row.newest) / minuteMs) * minuteMs;
      const axes = byMinute.get(minute);
      if (axes) axes.push(Number(row.axis_id));
      else byMinute.set(minute, [Number(row.axis_id)]);
    }
    await this.recompute(
      [...byMinute].map(([minute, axisIds]) => ({
        from: minute - restartWindowMs,
        to: minute + minuteMs,
        axisIds,
      })),
    );
    await this.rebuild(new Date(nowMs - restartWindowMs), new Date(nowMs + minuteMs));
  }

  /**
   * Rolls up what the database marks as waiting (migration 0008), an hour of sample times at a
   * time, oldest first: each hour's marks are read in the transaction that recomputes them,
   * after the lock, so another process's sweep that got there first leaves nothing to redo, and
   * a month loaded by COPY is never in memory or in one transaction at once.
   */
  sweepMarked(): Promise<void> {
    this.sweeping ??= this.sweepHours().finally(() => {
      this.sweeping = undefined;
    });
    return this.sweeping;
  }

  private async sweepHours(): Promise<void> {
    let from: Date | null = null;
    while (!this.closed) {
      const found: { rows: { next: number | null }[] } = await this.db.query(
        `select floor(extract(epoch from min(minute)) * 1000) as next from rollup_pending
         where $1::timestamptz is null or minute >= $1`,
        [from],
      );
      const next = found.rows[0]?.next;
      if (next == null) return;
      const hour: number = Math.floor(Number(next) / hourMs) * hourMs;
      await this.ensureDays({ from: hour, to: hour + hourMs, axisIds: [] });
      const swept = await inTurn(this.db, async (tx) => {
        const { rows } = await tx.query<{
          axis_ids: number[] | null;
          first: number | null;
          last: number | null;
        }>(
          `select array_agg(distinct axis_id) as axis_ids,
                  floor(extract(epoch from min(first_time)) * 1000) as first,
                  floor(extract(epoch from max(last_time)) * 1000) as last
           from rollup_pending where minute >= $1 and minute < $2`,
          [new Date(hour), new Date(hour + hourMs)],
        );
        const marked = rows[0];
        if (!marked?.axis_ids || marked.first == null || marked.last == null) return undefined;
        const group: Recompute = {
          from: Number(marked.first),
          to: Number(marked.last) + 1,
          axisIds: marked.axis_ids.map(Number),
        };
        await this.recomputeIn(tx, group);
        return group;
      });
      if (swept) this.recomputed(swept);
      from = new Date(hour + hourMs);
    }
  }

  /** Brings every touched bucket up to date; concurrent calls share one run. */
  flush(): Promise<void> {
    if (this.running) return this.running.then(() => this.flush());
    const dirty = this.dirty;
    this.dirty = new Map();
    if (dirty.size === 0) return Promise.resolve();
    this.inFlight = dirty;
    this.running = this.recompute(recomputes(dirty))
      .catch((error: unknown) => {
        // Keep what failed for the next run, so no bucket stays stale.
        for (const [axisId, minutes] of dirty)
          for (const span of minutes.values()) {
            this.noteSample(axisId, span.from);
            this.noteSample(axisId, span.to);
          }
        throw error;
      })
      .finally(() => {
        this.running = undefined;
        this.inFlight = undefined;
      });
    return this.running;
  }

  /** Recomputes every bucket of these axes (all when absent) in [from, to): after a restart, or to repair. */
  async rebuild(from: Date, to: Date, axisIds?: number[]): Promise<void> {
    const ids =
      axisIds ??
      (await this.db.query<{ axis_id: number }>("select axis_id from axis")).rows.map(
        (row) => row.axis_id,
      );
    await this.recompute([{ from: from.getTime(), to: to.getTime(), axisIds: ids }]);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.sweep) clearInterval(this.sweep);
    await this.sweeping?.catch(() => {});
    await this.flush();
  }

  /**
   * Recomputes each group an hour at a time, one transaction each: every process's recomputes
   * take turns (an advisory lock), so a day's backfill must not hold the live ones for minutes.
   */
  private async recompute(groups: Recompute[]): Promise<void> {
    for (const group of groups)
      for (let start = group.from; start < group.to; ) {
        const end = Math.min(group.to, Math.floor(start / hourMs) * hourMs + hourMs);
        const chunk = { from: start, to: end, axisIds: group.axisIds };
        await this.ensureDays(chunk);
        await inTurn(this.db, (tx) => this.recomputeIn(tx, chunk));
        this.recomputed(chunk);
        start = end;
      }
  }

  private async ensureDays(group: Recompute): Promise<void> {
    const minutes = wholeBuckets(group.from, group.to, minuteMs);
    const days: number[] = [];
    for (let day = minutes.from; day < minutes.to; day += 86_400_000) days.push(day);
    days.push(minutes.to - 1);
    await this.secondPartitions.ensure(days);
    for (const tier of this.coarserPartitions) await tier.ensure(days);
  }

  private recomputed(group: Recompute): void {
    const minutes = wholeBuckets(group.from, group.to, minuteMs);
    this.onRecomputed(group.axisIds, minutes.from, minutes.to);
  }

  /**
   * One group's buckets, in a transaction `inTurn`. Rollups outlive raw samples: before the
   * oldest raw day kept, recomputing would replace them with nothing, so that part of the group
   * is left as it is (a restart's window, or a rebuild that retention overtook). Retention drops
   * raw days in turn too, so the day found here stays until this commits.
   */
  private async recomputeIn(tx: Queryable, span: Recompute): Promise<void> {
    const { axisIds } = span;
    // The marks this covers go first, so that a commit holding one (migration 0008) is waited
    // for and its samples read below; one made after is not seen, and stays. Those of days
    // without raw samples go too: there is nothing of them to roll up.
    const markedSeconds = wholeBuckets(span.from, span.to, 1000);
    const markedMinutes = wholeBuckets(span.from, span.to, minuteMs);
    await tx.query(
      `delete from rollup_pending
       where axis_id = any($1::bigint[]) and minute >= $2 and minute < $3
         and first_time >= $4 and last_time < $5`,
      [
        axisIds,
        new Date(markedMinutes.from),
        new Date(markedMinutes.to),
        new Date(markedSeconds.from),
        new Date(markedSeconds.to),
      ],
    );
    const [oldest] = await partitionDays(tx, "axis_data");
    if (!oldest || oldest.day >= span.to) return;
    const group = { ...span, from: Math.max(span.from, oldest.day) };
    const seconds = wholeBuckets(group.from, group.to, 1000);
    const minutes = wholeBuckets(group.from, group.to, minuteMs);
    // Replace, not upsert: a bucket whose samples were all deleted must disappear too.
    const replace = async (table: string, span: { from: number; to: number }, insert: string) => {
      const range = [axisIds, new Date(span.from), new Date(span.to)];
      await tx.query(
        `delete from ${table} where axis_id = any($1::bigint[]) and update_timestamp >= $2 and update_timestamp < $3`,
        range,
      );
      await tx.query(`insert into ${table} (${rollupColumns.join(", ")}) ${insert}`, range);
    };
    await replace(
      "axis_data_1s",
      seconds,
      `select axis_id, date_trunc('second', update_timestamp), count(*)::int, max(update_timestamp), ${aggregateColumns("raw")}
       from axis_data
       where axis_id = any($1::bigint[]) and update_timestamp >= $2 and update_timestamp < $3
       group by 1, 2`,
    );
    // Each coarser bucket that holds a recomputed second, from its 1 s rows.
    for (const { table, resolutionMs, bucketStart } of coarserTiers) {
      await replace(
        table,
        wholeBuckets(seconds.from, seconds.to, resolutionMs),
        `select axis_id, ${bucketStart}, sum(samples)::int, max(last_timestamp), ${aggregateColumns("seconds")}
         from axis_data_1s
         where axis_id = any($1::bigint[]) and update_timestamp >= $2 and update_timestamp < $3
         group by 1, 2`,
      );
    }
    // Other processes' caches of finished buckets hear it at commit (bucket-cache.ts).
    await tx.query("select pg_notify($1, $2)", [rollupChannel, `${minutes.from}:${minutes.to}`]);
  }
}
