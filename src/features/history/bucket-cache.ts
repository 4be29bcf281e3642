import type { Database } from "../../platform/database.ts";

/** Rollups were recomputed: `${fromMs}:${toMs}` (any axis), or `*` (anything may have changed). */
export const rollupChannel = "spindle_rollups";

/** One series' cached buckets on one grid: its rollup tier, width, phase, fields and format. */
export interface BucketKey {
  axisId: number;
  table: string;
  widthMs: number;
  originMs: number;
  fields: string;
  /** The answer format the bucket rows are written in (history-service.ts, `bucketText`). */
  format: string;
}

type BucketRow = Record<string, unknown>;

interface Entry {
  axisId: number;
  widthMs: number;
  /** Where the grid's buckets start, modulo the width. */
  phaseMs: number;
  /** Bucket start → its row, or null for a bucket known to be empty. */
  buckets: Map<number, BucketRow | null>;
}

interface Invalidation {
  seq: number;
  /** Undefined: every axis. */
  axisIds: Set<number> | undefined;
  fromMs: number;
  toMs: number;
}

/**
 * Finished downsampled buckets read from the rollups, kept in memory: a past bucket of a rollup
 * tier only changes when the rollup rows under it are recomputed (a late sample, a CRUD write,
 * retention), and the maintainer of every process announces each recompute on `rollupChannel`.
 * A dashboard asking for the same hours again pays only for the buckets it has not seen.
 *
 * Bounded by `maxBuckets`, evicting the series used longest ago. A bucket of all six fields is one
 * row of two strings, ~820 bytes of heap with full-precision numbers (100,000 of them measured with
 * `--expose-gc`), so the default bound is ~80 MB.
 */
export class BucketCache {
  private readonly entries = new Map<string, Entry>();
  private size = 0;
  private seq = 0;
  /** Recent invalidations, so a query that read before one cannot store what it read after. */
  private recent: Invalidation[] = [];
  /** Invalidations up to this one are no longer in `recent`. */
  private forgottenUpTo = 0;
  private stopListening: (() => Promise<void>) | undefined;

  constructor(private readonly maxBuckets = 100_000) {}

  /** A mark to pass to `put`: anything invalidated after it is not stored. */
  mark(): number {
    return this.seq;
  }

  /** The rows of buckets [fromMs, toMs) in order, if every one of them is known. */
  get(key: BucketKey, fromMs: number, toMs: number): BucketRow[] | undefined {
    const name = keyName(key);
    const entry = this.entries.get(name);
    if (!entry) return undefined;
    const rows: BucketRow[] = [];
    for (let start = fromMs; start < toMs; start += key.widthMs) {
      const row = entry.buckets.get(start);
      if (row === undefined) return undefined;
      if (row !== null) rows.push(row);
    }
    // Most recently used last: eviction takes the first.
    this.entries.delete(name);
    this.entries.set(name, entry);
    return rows;
  }

  /**
   * Stores the buckets [fromMs, toMs) of one series (rows: those of them that are not empty,
   * each with `bucketStart`), unless they were invalidated since `mark`.
   */
  put(
    key: BucketKey,
    mark: number,
    fromMs: number,
    toMs: number,
    rows: { bucketStart: number; row: BucketRow }[],
  ): void {
    if (toMs <= fromMs || (toMs - fromMs) / key.widthMs > this.maxBuckets) return;
    // So many invalidations since `mark` that some are forgotten: it cannot be checked.
    if (mark < this.forgottenUpTo) return;
    for (const change of this.recent) {
      if (change.seq <= mark) continue;
      if (change.axisIds && !change.axisIds.has(key.axisId)) continue;
      if (change.fromMs < toMs && change.toMs > fromMs) return;
    }
    const name = keyName(key);
    const entry = this.entries.get(name) ?? {
      axisId: key.axisId,
      widthMs: key.widthMs,
      phaseMs: key.originMs % key.widthMs,
      buckets: new Map(),
    };
    this.entries.delete(name);
    this.entries.set(name, entry);
    const before = entry.buckets.size;
    for (let start = fromMs; start < toMs; start += key.widthMs) entry.buckets.set(start, null);
    for (const { bucketStart, row } of rows) entry.buckets.set(bucketStart, row);
    this.size += entry.buckets.size - before;
    while (this.size > this.maxBuckets) {
      const [oldest, evicted] = this.entries.entries().next().value as [string, Entry];
      this.entries.delete(oldest);
      this.size -= evicted.buckets.size;
    }
  }

  /** Rollups of these axes (all when absent) changed in [fromMs, toMs): forget buckets touching it. */
  invalidate(fromMs: number, toMs: number, axisIds?: Iterable<number>): void {
    const axes = axisIds === undefined ? undefined : new Set(axisIds);
    this.seq++;
    this.recent.push({ seq: this.seq, axisIds: axes, fromMs, toMs });
    if (this.recent.length > 1000) {
      this.forgottenUpTo = this.recent[this.recent.length - 501]!.seq;
      this.recent = this.recent.slice(-500);
    }
    for (const [name, entry] of this.entries) {
      if (axes && !axes.has(entry.axisId)) continue;
      const before = entry.buckets.size;
      const { widthMs, phaseMs } = entry;
      if ((toMs - fromMs) / widthMs < before) {
        // A short span (the maintainer's minute): visit its few buckets, not the whole entry.
        const first = phaseMs + Math.floor((fromMs - phaseMs) / widthMs) * widthMs;
        for (let start = first; start < toMs; start += widthMs) entry.buckets.delete(start);
      } else {
        for (const start of entry.buckets.keys()) {
          if (start < toMs && start + widthMs > fromMs) entry.buckets.delete(start);
        }
      }
      this.size -= before - entry.buckets.size;
      if (entry.buckets.size === 0) this.entries.delete(name);
    }
  }

  clear(): void {
    this.invalidate(Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY);
  }

  /** Hears other processes' recomputes; a lost connection may have missed some, so clears. */
  async listen(db: Database): Promise<void> {
    this.stopListening = await db.listen(
      rollupChannel,
      (payload) => {
        const match = /^(-?\d{1,16}):(-?\d{1,16})$/.exec(payload);
        const [fromMs, toMs] = [Number(match?.[1]), Number(match?.[2])];
        // Anything else than a span the maintainer would send: forget everything, to be safe.
        if (match && fromMs < toMs) this.invalidate(fromMs, toMs);
        else this.clear();
      },
      () => this.clear(),
    );
  }

  async close(): Promise<void> {
    await this.stopListening?.();
  }
}

const keyName = (key: BucketKey) =>
  `${key.axisId}|${key.table}|${key.widthMs}|${key.originMs % key.widthMs}|${key.fields}|${key.format}`;
