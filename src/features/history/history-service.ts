import type { Clock } from "../../platform/context.ts";
import { type Database, isoMicrosFormat, limited } from "../../platform/database.ts";
import { DomainError, invalid } from "../../platform/errors.ts";
import { withMicros } from "../ingest/ingest-batch.ts";
import type { BucketCache } from "./bucket-cache.ts";
import {
  emptyFields,
  type HistoryField,
  type HistoryFormat,
  type HistoryInput,
  historyFields,
  historyLimits,
} from "./history-schemas.ts";
import { type RetentionPolicy, type RetentionSettings, retentionPolicy } from "./retention.ts";

/**
 * The first and last instants with a four-digit year: what ISO 8601 and PostgreSQL both read.
 * The first is a whole day, so a multiple of every rollup resolution.
 */
const firstInstant = Date.parse("0001-01-01T00:00:00Z");
const lastInstant = Date.parse("9999-12-31T23:59:59.999Z");

/** One series: the samples of one axis of one machine. */
export interface HistorySeries {
  axisId: number;
  machineId: number;
  machineName: string;
  axisName: string;
}

/**
 * A page of one series, as the database returns it, with `t`, the time as ISO 8601 with
 * microseconds (exact, so it can be a keyset cursor). Raw rows: `axis_data_id` and the requested
 * field columns as PostgreSQL prints them (`12.5`, `true`: an answer is text in the end, and a
 * double parsed and printed again costs more than the query). Bucket rows: `text`, the row's own
 * columns (see `bucketText`) already written in the answer's format.
 */
export interface HistoryPage {
  series: HistorySeries;
  rows: Record<string, unknown>[];
}

export interface HistoryAnswer {
  from: Date;
  to: Date;
  fields: HistoryField[];
  /** Set when the series are downsampled: the bucket width in milliseconds. */
  bucketMs: number | undefined;
  series: HistorySeries[];
  /** The rows, fetched as they are consumed: at most a few pages are in memory at once. */
  pages(): AsyncGenerator<HistoryPage>;
}

export interface HistoryServiceOptions {
  db: Database;
  clock: Clock;
  /** Where rollups may lag: from this sample time on, raw samples are read instead. */
  rollups?: { pendingSince(axisIds?: Iterable<number>): number | undefined };
  /** Rows per query for raw windows (keyset pagination). */
  pageSize?: number;
  /** At most this many buckets (result rows) per downsampling query. */
  bucketsPerQuery?: number;
  /** Downsampling queries in flight at once, per request. */
  concurrency?: number;
  /**
   * How long a request waits for its first turn (finding its series) when history already has
   * half the database's connections (the other half stays free for ingest and the rest); then
   * 503. Its pages, once the answer has begun, wait however long it takes.
   */
  busyWaitMs?: number;
  /** Finished buckets of the rollup tiers, kept between requests. */
  bucketCache?: BucketCache;
  /**
   * How long raw samples and each rollup tier are kept: a downsampled window reads a tier only
   * where retention has left its rows. Absent, every tier keeps everything.
   */
  config?: RetentionSettings;
}

const dayMs = 86_400_000;

/** The first time slice of a raw page: a minute holds 6,000 samples at 100 Hz. */
const initialSliceMs = 60_000;

/** Rollup tables (migrations 0004-0006), coarsest first, with the retention setting of each. */
const rollupResolutions = [
  { table: "axis_data_1m", resolutionMs: 60_000, keptFor: "minuteDays" },
  { table: "axis_data_10s", resolutionMs: 10_000, keptFor: "tenSecondDays" },
  { table: "axis_data_5s", resolutionMs: 5000, keptFor: "fiveSecondDays" },
  { table: "axis_data_1s", resolutionMs: 1000, keptFor: "secondDays" },
] as const;

type RollupTier = (typeof rollupResolutions)[number];

/** Per tier (raw samples, then each rollup table), the oldest time whose rows retention keeps. */
export type TierHorizons = Record<"axis_data" | RollupTier["table"], number>;

export function tierHorizons(policy: RetentionPolicy, nowMs: number): TierHorizons {
  const since = (days: number) => nowMs - days * dayMs;
  const horizons = { axis_data: since(policy.rawDays) } as TierHorizons;
  for (const { table, keptFor } of rollupResolutions) horizons[table] = since(policy[keptFor]);
  return horizons;
}

/**
 * A window [from, to) to the microsecond. `from` and `to` are the whole milliseconds around it, what grids
 * and slices work in; a bound computed in them is written for SQL by `startText` (a range's
 * start: the window's own start exactly) or `endText` (a range's end: the window's end exactly).
 */
class Window {
  readonly from: Date;
  readonly to: Date;
  constructor(
    readonly fromExact: number,
    readonly toExact: number,
  ) {
    // Whole milliseconds around the exact window: a bucket or slice holding its last
    // microseconds is counted, and its bounds for SQL are written exactly.
    this.from = new Date(Math.floor(fromExact));
    this.to = new Date(Math.ceil(toExact));
  }

  /** A range's start, at or after the window's. */
  start(ms: number): number {
    return ms === this.from.getTime() ? this.fromExact : ms;
  }

  /** A range's end, at or before the window's. */
  end(ms: number): number {
    return ms === this.to.getTime() ? this.toExact : ms;
  }

  startText(ms: number): string {
    return isoText(this.start(ms));
  }

  endText(ms: number): string {
    return isoText(this.end(ms));
  }
}

/** ISO 8601 UTC of milliseconds with microseconds as a fraction, as ingest writes times. */
function isoText(exact: number): string {
  const whole = Math.floor(exact);
  const micros = Math.round((exact - whole) * 1000);
  const iso = new Date(whole).toISOString();
  return micros === 0 ? iso : iso.replace("Z", `${String(micros).padStart(3, "0")}Z`);
}

export interface BucketGrid {
  /** The rollup table read for whole rollup rows inside the window, if any. */
  rollup: RollupTier | undefined;
  /** Bucket width in ms, and where the grid starts (at or before `from`). */
  widthMs: number;
  originMs: number;
}

/**
 * The buckets of a downsampled window. With a rollup tier, the width rounds up to a multiple of
 * its resolution and the grid starts on a multiple of the width (or, for a few points over a long
 * window when no such grid fits, on a multiple of the resolution: see `rollupGrid`), so every
 * rollup row falls in one bucket; still at most max_points buckets. The tier is the coarsest one whose grid keeps at
 * least 2/3 of the points asked for (reading one row per 5 s, 10 s or minute instead of every
 * second or sample costs far less than the third of the points it may give up); none does
 * (buckets well under a second): raw samples in buckets of ⌈window ÷ max_points⌉ ms from `from`.
 *
 * With `horizons`, a tier retention has emptied at the window's start is passed over for the
 * next coarser one that still holds it (fewer points, rather than none), then for a finer one;
 * when none does, the coarsest tier.
 */
export function bucketGrid(
  fromMs: number,
  toMs: number,
  maxPoints: number,
  horizons?: TierHorizons,
): BucketGrid {
  const rawWidthMs = Math.max(1, Math.ceil((toMs - fromMs) / maxPoints));
  const rawBuckets = Math.ceil((toMs - fromMs) / rawWidthMs);
  const holds = (table: keyof TierHorizons) => horizons === undefined || fromMs >= horizons[table];
  const grids = rollupResolutions.map((rollup) =>
    rollupGrid(rollup, fromMs, toMs, rawWidthMs, maxPoints),
  );
  const enough = grids.findIndex(
    (grid) => 3 * Math.ceil((toMs - grid.originMs) / grid.widthMs) >= 2 * rawBuckets,
  );
  if (enough === -1 && holds("axis_data")) {
    return { rollup: undefined, widthMs: rawWidthMs, originMs: fromMs };
  }
  const preferred = enough === -1 ? grids.length - 1 : enough;
  // The preferred tier, then the coarser ones, then the finer ones.
  const candidates = [...grids.slice(0, preferred + 1).reverse(), ...grids.slice(preferred + 1)];
  return candidates.find((grid) => holds(grid.rollup.table)) ?? grids[0]!;
}

/** How many widths `rollupGrid` tries for a grid that starts on a multiple of its width. */
const alignedGridTries = 1000;

/** The grid of one rollup tier: at most `maxPoints` buckets of a multiple of its resolution. */
function rollupGrid(
  rollup: RollupTier,
  fromMs: number,
  toMs: number,
  rawWidthMs: number,
  maxPoints: number,
): BucketGrid & { rollup: RollupTier } {
  const step = rollup.resolutionMs;
  const steps = (ms: number) => Math.ceil(ms / step) * step;
  // The grid starts on a multiple of the width, so a window that slides (a dashboard asking
  // for the last hours again) keeps the same buckets, and finished ones can be cached; but not
  // before year 1, which PostgreSQL would refuse mid-answer (year 1 starts on the tier's grid).
  const origin = (widthMs: number) =>
    Math.max(firstInstant, Math.floor(fromMs / widthMs) * widthMs);
  const fits = (widthMs: number) => Math.ceil((toMs - origin(widthMs)) / widthMs) <= maxPoints;
  let widthMs = steps(rawWidthMs);
  for (let tries = 0; !fits(widthMs); tries++) {
    if (tries === alignedGridTries) {
      // No such grid near the width asked for: common for a few points over a long window (at
      // max_points 1, about half of windows up to 400 days on the minute tier), and for one
      // point across 1970-01-01, a multiple of every width, there is none at all. A grid that
      // starts on the tier's own grid always fits, and still puts every rollup row in one
      // bucket; only its buckets do not slide with the window: cached under it, they are
      // seldom asked for again.
      const originMs = Math.max(firstInstant, Math.floor(fromMs / step) * step);
      return { rollup, widthMs: steps((toMs - originMs) / maxPoints), originMs };
    }
    widthMs += step;
  }
  return { rollup, widthMs, originMs: origin(widthMs) };
}

/** Per field, what a bucket holds: the average, min and max, from raw rows or rollup rows alike. */
function bucketAggregates(fields: HistoryField[]): [string, string][] {
  return fields.flatMap((field): [string, string][] =>
    field === "homed"
      ? [
          [field, "bool_and(homed_all)"],
          [`${field}_min`, "bool_and(homed_all)"],
          [`${field}_max`, "bool_or(homed_any)"],
        ]
      : [
          // sum/count, not avg(): avg(float8) keeps a sum of squares too, and costs a third more.
          [field, `sum(${field}_sum) / sum(n)`],
          [`${field}_min`, `min(${field}_lo)`],
          [`${field}_max`, `max(${field}_hi)`],
        ],
  );
}

/**
 * A bucket's own columns, after the series ones, as one text in the answer's format: for each
 * field F, F (average), F_min and F_max, then `update_timestamp` (the bucket's start, in ms) and
 * `samples`. JSON: `"F":1.5,…,"samples":12`; CSV: `1.5,…,12`. Two strings a row instead of
 * twenty: parsing and collecting ~300,000 strings was most of the time a 1 h query of 20 series
 * spent in Node. NaN and ±Infinity come as PostgreSQL prints them (see history-encoding.ts).
 */
function bucketText(fields: HistoryField[], format: HistoryFormat): string {
  const stamp = `to_char(greatest(b, $2::timestamptz) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
  const members: [string, string][] = [
    // concat() prints a boolean as t/f: homed's as text, true/false; numbers as they are.
    ...bucketAggregates(fields).map(([name]): [string, string] => [
      name,
      name.startsWith("homed") ? `${name}::text` : name,
    ]),
    ["update_timestamp", format === "json" ? `'"', ${stamp}, '"'` : stamp],
    ["samples", "samples"],
  ];
  // One concat() of every piece: a chain of || builds a new text per piece.
  const parts = members.map(([name, value], i) =>
    format === "json"
      ? `'${i > 0 ? "," : ""}"${name}":', ${value}`
      : i > 0
        ? `',', ${value}`
        : value,
  );
  return `concat(${parts.join(", ")})`;
}

/** The same columns from raw samples and from a rollup table, so one query can mix both. */
function sampleColumns(fields: HistoryField[], from: "raw" | "rollup"): string {
  const columns = ["axis_id", "update_timestamp", from === "raw" ? "1 as n" : "samples as n"];
  for (const field of fields) {
    if (field === "homed") continue;
    columns.push(
      from === "raw"
        ? `${field} as ${field}_lo, ${field} as ${field}_hi, ${field} as ${field}_sum`
        : `${field}_min as ${field}_lo, ${field}_max as ${field}_hi, ${field}_sum as ${field}_sum`,
    );
  }
  columns.push(from === "raw" ? "homed as homed_all, homed as homed_any" : "homed_all, homed_any");
  return columns.join(", ");
}

export function createHistoryService({
  db: database,
  clock,
  rollups,
  pageSize = 5000,
  bucketsPerQuery = 20_000,
  concurrency = 2,
  busyWaitMs = 10_000,
  bucketCache,
  config,
}: HistoryServiceOptions) {
  // A few long windows at once would otherwise hold every pooled connection, and ingest's
  // commits would wait for one until producers were refused. A request that cannot get a turn
  // in time is refused (503) before its answer begins; once it has begun, its pages wait as long
  // as it takes, since a failure then could only cut the answer off. (With one connection, as
  // the embedded database has, there is nothing to keep free: every statement takes its turn.)
  const { db, patient } =
    database.connections > 1
      ? limited(database, {
          permits: Math.floor(database.connections / 2),
          waitMs: busyWaitMs,
          busy: new DomainError("unavailable", "History is busy; retry later."),
        })
      : { db: database, patient: database };
  const retention = config && retentionPolicy(config);
  /** The window asked for: `from`/`to`, or `minutes` ending at `to` (or now), or from `from`. */
  function resolveWindow(input: HistoryInput): Window {
    const { minutes } = input;
    // Exact: milliseconds with the microseconds given as a fraction (a Date has none).
    const from = input.from && withMicros(input.from.getTime(), input.fromFraction ?? "");
    const to = input.to && withMicros(input.to.getTime(), input.toFraction ?? "");
    if (minutes !== undefined && from !== undefined && to !== undefined) {
      throw invalid({ minutes: ["Give minutes, or from and to, not all three."] });
    }
    const length = (minutes ?? historyLimits.defaultMinutes) * 60_000;
    let range: { from: number; to: number };
    if (from !== undefined && to !== undefined) range = { from, to };
    else if (from !== undefined && minutes !== undefined) range = { from, to: from + length };
    else if (from !== undefined) range = { from, to: clock.now().getTime() };
    else {
      const end = to ?? clock.now().getTime();
      range = { from: end - length, to: end };
    }
    if (range.from >= range.to) throw invalid({ to: ["Must be after from."] });
    if (range.to - range.from > historyLimits.maxWindowDays * dayMs) {
      throw invalid({
        from: [`The window may span at most ${historyLimits.maxWindowDays} days.`],
      });
    }
    // A window reaching before year 1 or past 9999 has no ISO 8601 form PostgreSQL reads; it
    // would fail after the answer had begun.
    if (range.from < firstInstant || range.to > lastInstant) {
      throw invalid({ from: ["The window must lie between the years 1 and 9999."] });
    }
    return new Window(range.from, range.to);
  }

  async function findSeries(input: HistoryInput): Promise<HistorySeries[]> {
    const { rows } = await db.query<HistorySeries>(
      `select x.axis_id as "axisId", x.machine_id as "machineId", m.machine_name as "machineName",
              x.axis_name as "axisName"
       from axis x join machine m on m.machine_id = x.machine_id
       where ($1::bigint[] is null or x.machine_id = any($1::bigint[]))
         and ($2::text[] is null or x.axis_name = any($2::text[]))
       order by x.axis_id`,
      [input.machineIds ?? null, input.axisNames ?? null],
    );
    return rows.map((row) => ({
      ...row,
      axisId: Number(row.axisId),
      machineId: Number(row.machineId),
    }));
  }

  /**
   * Checks and resolves a history request. Every refusal happens here, before any row is sent;
   * the rows themselves come from `pages()` as the caller consumes them.
   */
  async function query(
    input: HistoryInput,
    format: HistoryFormat = "json",
  ): Promise<HistoryAnswer> {
    if (input.fields?.length === 0) throw invalid({ fields: [emptyFields] });
    const unknown = (input.fields ?? []).filter(
      (field) => !(historyFields as readonly string[]).includes(field),
    );
    if (unknown.length > 0) {
      throw invalid({
        fields: unknown.map(
          (field) => `Unknown field "${field}". Choose from: ${historyFields.join(", ")}.`,
        ),
      });
    }
    if (
      input.maxPoints !== undefined &&
      !(input.maxPoints >= 1 && input.maxPoints <= historyLimits.maxPoints)
    ) {
      throw invalid({
        max_points: [`Ensure this value is between 1 and ${historyLimits.maxPoints}.`],
      });
    }
    const window = resolveWindow(input);
    const { from, to } = window;
    const requested = new Set(input.fields ?? historyFields);
    const fields = historyFields.filter((field) => requested.has(field));
    const series = await findSeries(input);
    const horizons = retention && tierHorizons(retention, clock.now().getTime());
    const grid =
      input.maxPoints === undefined
        ? undefined
        : bucketGrid(from.getTime(), to.getTime(), input.maxPoints, horizons);
    const bucketMs = grid?.widthMs;
    const rawSince = horizons?.axis_data ?? Number.NEGATIVE_INFINITY;
    const pages =
      grid === undefined
        ? () => rawPages(series, fields, window)
        : () => bucketPages(series, fields, window, grid, rawSince, format);
    return { from, to, fields, bucketMs, series, pages };
  }

  /**
   * Raw samples, one series after another, by keyset pagination on the (axis_id,
   * update_timestamp) key, and the next page is already being fetched while this one is written.
   *
   * Each page is bounded by a time slice as well as by `limit`. The planner estimates a series'
   * rows in a window from statistics that assume them spread evenly; a series dense in only part
   * of the window (a machine sampled at 100 Hz for a quarter of an hour of the day) is then
   * estimated at a few rows, `limit` looks worthless, and every page becomes a bitmap scan of the
   * whole rest of the window plus a sort. The slice caps what any plan can read to about a page:
   * it starts at a minute, follows the span the last full page covered, and grows while pages
   * come back short, so a sparse series still takes few queries. The slice's end is a subquery,
   * so the planner does not see it: seen, it made a page of an evenly dense series look smaller
   * than `limit` too, and that page a bitmap scan and a sort (twice as slow as the index scan).
   */
  async function* rawPages(
    series: HistorySeries[],
    fields: HistoryField[],
    window: Window,
  ): AsyncGenerator<HistoryPage> {
    const columns = ["axis_data_id", ...fields.map((field) => `${field}::text as ${field}`)].join(
      ", ",
    );
    const select = (after: boolean) =>
      `select ${columns}, to_char(update_timestamp at time zone 'UTC', ${isoMicrosFormat}) as t
       from axis_data
       where axis_id = $1 and update_timestamp ${after ? ">" : ">="} $2::timestamptz
         and update_timestamp < (select $3::timestamptz)
       order by update_timestamp
       limit ${pageSize}`;
    const toMs = window.to.getTime();
    /** The page from `cursor` (after it, or at it) to at most `sliceMs` later. */
    const fetchPage = (axisId: number, cursor: string, after: boolean, sliceMs: number) => {
      const startMs = Date.parse(cursor);
      const endMs = Math.min(startMs + sliceMs, toMs);
      const params = [axisId, cursor, window.endText(endMs)];
      return { rows: settled(patient.query(select(after), params)), startMs, endMs, sliceMs };
    };
    for (const one of series) {
      let page = fetchPage(one.axisId, isoText(window.fromExact), false, initialSliceMs);
      for (;;) {
        const { rows } = await page.rows;
        const last = rows.at(-1);
        const current = page;
        let more = true;
        if (rows.length === pageSize && last !== undefined) {
          // Full: on after its last row, in a slice a little wider than this page spanned.
          const spanned = Math.max(1, Date.parse(last.t as string) - current.startMs);
          page = fetchPage(one.axisId, last.t as string, true, Math.ceil(spanned * 1.25));
        } else if (current.endMs < toMs) {
          // Short: the slice held less than a page; the next one is wider by as much (at most 16×).
          const grow = rows.length === 0 ? 16 : Math.min(16, pageSize / rows.length);
          const cursor = new Date(current.endMs).toISOString();
          page = fetchPage(one.axisId, cursor, false, Math.ceil(current.sliceMs * grow));
        } else more = false;
        if (rows.length > 0) yield { series: one, rows };
        if (!more) break;
      }
    }
  }

  /**
   * Each series cut into time buckets of `bucketMs` from `from`, with min, max and average of
   * every field per bucket (empty buckets are left out).
   *
   * Samples arrive time-major (every axis of the fleet in each tick), so one heap page holds
   * samples of many series: querying series together reads each page once, where a query per
   * series would read it once per series. A query covers as many series as fit in
   * `bucketsPerQuery` result rows, and at most a `concurrency`th of them, so the queries run
   * side by side; a series with more buckets than that is cut into time slices.
   */
  async function* bucketPages(
    series: HistorySeries[],
    fields: HistoryField[],
    window: Window,
    grid: BucketGrid,
    /** Raw samples older than this are past their retention. */
    rawSince: number,
    format: HistoryFormat,
  ): AsyncGenerator<HistoryPage> {
    const { from, to } = window;
    const aggregates = bucketAggregates(fields);
    const rawSamples = `select ${sampleColumns(fields, "raw")} from axis_data where axis_id = any($1::bigint[])`;
    // Whole rollup rows for the interior [$6, $7); raw samples for the edges and for whatever the
    // rollups may not hold yet. Without a rollup, $6 = $7 and everything is raw.
    const samples = grid.rollup
      ? `${rawSamples} and update_timestamp >= $2::timestamptz and update_timestamp < $6::timestamptz
         union all
         select ${sampleColumns(fields, "rollup")} from ${grid.rollup.table}
         where axis_id = any($1::bigint[]) and update_timestamp >= $6::timestamptz and update_timestamp < $7::timestamptz
         union all
         ${rawSamples} and update_timestamp >= $7::timestamptz and update_timestamp < $3::timestamptz`
      : `${rawSamples} and update_timestamp >= $2::timestamptz and update_timestamp < $3::timestamptz`;
    // date_bin's buckets start on the grid; group on it, then format the few results. The first
    // bucket is labelled with the window's start when the grid begins before it. The buckets come
    // in the hash table's order: sorting the formatted rows in the database took a quarter of the
    // query, where sorting each series' few hundred in place here costs a few milliseconds.
    const sql = `select axis_id, to_char(greatest(b, $2::timestamptz) at time zone 'UTC', ${isoMicrosFormat}) as t,
             ${bucketText(fields, format)} as text
      from (
        select axis_id, date_bin($4::interval, update_timestamp, $5::timestamptz) as b,
               sum(n)::bigint as samples,
               ${aggregates.map(([name, sql]) => `${sql} as ${name}`).join(", ")}
        from (${samples}) s
        group by 1, 2
      ) g`;
    const bucketMs = grid.widthMs;
    const step = grid.rollup?.resolutionMs ?? 1;
    /** Where the rollups of these series may lag: raw samples are read from there on. */
    const pendingOf = (group: HistorySeries[]) =>
      rollups?.pendingSince(group.map((one) => one.axisId));
    const now = clock.now().getTime();
    const buckets = Math.ceil((to.getTime() - grid.originMs) / bucketMs);
    // Series spread over `concurrency` queries even when they would fit in one: one backend
    // aggregates while the other's rows are parsed here (20 series at 1 h and 24 h: p50 75-77
    // ms in one query, 57-60 in two).
    const perQuery = Math.max(
      1,
      Math.min(Math.floor(bucketsPerQuery / buckets), Math.ceil(series.length / concurrency)),
    );
    const sliceMs = bucketMs * Math.floor(bucketsPerQuery / perQuery);
    /** Where rollup rows serve [start, end): whole ones, before anything not rolled up yet. */
    const interior = (start: number, end: number, pending: number | undefined) => {
      // A window within one rollup row has no interior: all of it is raw, and nothing past `end`.
      // But an edge whose raw samples retention has dropped is served by the whole rollup row
      // it falls in: a little from outside the window rather than a gap inside it.
      const interiorFrom =
        start < rawSince
          ? Math.floor(start / step) * step
          : Math.min(Math.ceil(start / step) * step, end);
      const interiorTo =
        Math.floor(end / step) * step < rawSince
          ? Math.ceil(end / step) * step
          : Math.floor(Math.min(end, pending ?? end) / step) * step;
      // Raw samples after the interior are never read from before `start`.
      if (interiorTo <= start) return { interiorFrom: start, interiorTo: start };
      return { interiorFrom, interiorTo: Math.max(interiorFrom, interiorTo) };
    };
    /** The buckets of `group` in [start, end), one list per series. */
    const fetch = (group: HistorySeries[], start: number, end: number) =>
      patient.transaction(async (tx) => {
        // The planner cannot know how few buckets there are; with the default work_mem
        // it sorts the samples to group them instead of hashing them.
        await tx.query("set local work_mem = '32MB'");
        // A start a few microseconds into a rollup row leaves that row to raw samples.
        const { interiorFrom, interiorTo } = interior(
          window.start(start),
          window.end(end),
          pendingOf(group),
        );
        const { rows } = await tx.query(sql, [
          group.map((one) => one.axisId),
          window.startText(start),
          window.endText(end),
          `${bucketMs} milliseconds`,
          new Date(grid.originMs).toISOString(),
          ...(grid.rollup ? [isoText(interiorFrom), isoText(interiorTo)] : []),
        ]);
        const bySeries = new Map(group.map((one) => [one.axisId, [] as typeof rows]));
        for (const row of rows) bySeries.get(Number(row.axis_id))!.push(row);
        return group.map((one) => bySeries.get(one.axisId)!.sort(byTime));
      });
    /**
     * The whole buckets of [start, end) that only rollup rows make, finished (ended before now
     * and before anything not rolled up yet): these may come from and go to the cache.
     */
    const cacheSpan = (group: HistorySeries[], start: number, end: number) => {
      if (!bucketCache || !grid.rollup) return undefined;
      const origin = grid.originMs;
      // From the exact edges: a bucket the window cuts by microseconds is not whole.
      const exactStart = window.start(start);
      const exactEnd = window.end(end);
      const first = origin + Math.ceil((exactStart - origin) / bucketMs) * bucketMs;
      const limit = Math.min(
        interior(exactStart, exactEnd, pendingOf(group)).interiorTo,
        exactEnd,
        now,
      );
      const last = origin + Math.floor((limit - origin) / bucketMs) * bucketMs;
      return last > first ? { cache: bucketCache, from: first, to: last } : undefined;
    };
    const fieldsKey = fields.join(",");
    const cacheKey = (one: HistorySeries) => ({
      axisId: one.axisId,
      table: grid.rollup?.table ?? "raw",
      widthMs: bucketMs,
      originMs: grid.originMs,
      fields: fieldsKey,
      format,
    });
    const bucketsOf = async (group: HistorySeries[], start: number, end: number) => {
      const span = cacheSpan(group, start, end);
      if (!span) return fetch(group, start, end);
      const { cache } = span;
      const cached = group.map((one) => cache.get(cacheKey(one), span.from, span.to));
      if (cached.every((rows) => rows !== undefined)) {
        // Only the partial buckets at the edges are read.
        const [before, after] = await Promise.all([
          start < span.from ? fetch(group, start, span.from) : group.map(() => []),
          span.to < end ? fetch(group, span.to, end) : group.map(() => []),
        ]);
        return group.map((_, i) => [...before[i]!, ...cached[i]!, ...after[i]!]);
      }
      const mark = cache.mark();
      const fetched = await fetch(group, start, end);
      group.forEach((one, i) => {
        const finished = [];
        for (const row of fetched[i]!) {
          const bucketStart = Date.parse(row.t as string);
          if (bucketStart >= span.from && bucketStart < span.to)
            finished.push({ bucketStart, row });
        }
        cache.put(cacheKey(one), mark, span.from, span.to, finished);
      });
      return fetched;
    };
    const tasks = function* () {
      for (let first = 0; first < series.length; first += perQuery) {
        const group = series.slice(first, first + perQuery);
        for (let sliceStart = grid.originMs; sliceStart < to.getTime(); sliceStart += sliceMs) {
          const start = Math.max(sliceStart, from.getTime());
          const end = Math.min(sliceStart + sliceMs, to.getTime());
          yield async () => ({ group, rows: await bucketsOf(group, start, end) });
        }
      }
    };
    for await (const { group, rows } of inOrder(tasks(), concurrency)) {
      for (const [i, one] of group.entries()) {
        if (rows[i]!.length > 0) yield { series: one, rows: rows[i]! };
      }
    }
  }

  return { query };
}

export type HistoryService = ReturnType<typeof createHistoryService>;

/** Rows in time order: `t` is ISO 8601 in UTC with microseconds, so text order is time order. */
const byTime = (a: Record<string, unknown>, b: Record<string, unknown>) =>
  (a.t as string) < (b.t as string) ? -1 : 1;

/** A promise whose rejection is handled even if nobody awaits it (a client that went away). */
function settled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => {});
  return promise;
}

/** Runs up to `ahead` tasks at once and yields their results in the tasks' order. */
async function* inOrder<T>(tasks: Iterator<() => Promise<T>>, ahead: number): AsyncGenerator<T> {
  const running: Promise<T>[] = [];
  const fill = () => {
    while (running.length < ahead) {
      const next = tasks.next();
      if (next.done) return;
      running.push(settled(next.value()));
    }
  };
  fill();
  while (running.length > 0) {
    const result = await running.shift()!;
    fill();
    yield result;
  }
}
