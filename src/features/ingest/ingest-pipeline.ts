import { EventEmitter } from "node:events";
import type { Clock } from "../../platform/context.ts";
import type { Database, Queryable } from "../../platform/database.ts";
import { DomainError, pgErrorCode, pgErrorCodes } from "../../platform/errors.ts";
import type { AxisDataPartitions } from "../axis-data/partitions.ts";
import type { FleetCatalog } from "../machines/fleet-catalog.ts";
import {
  type AxisSampleRow,
  type IngestResult,
  type RawBatch,
  type RowProblem,
  rowCount,
  type ToolRow,
  type ToolUsageRow,
  type ValidBatch,
} from "./ingest-batch.ts";
import { namedToolIds, type Refusal, validateBatch } from "./ingest-validation.ts";
import type { LatestValues } from "./latest-values.ts";

export interface IngestOptions {
  /** Most rows one flush (one transaction) takes; more wait for the next. */
  flushRows: number;
  /**
   * How long rows reaching an idle pipeline wait for others to join them. Group commit makes 0
   * the right default: a flush starts as soon as none is running, and whatever arrives while it
   * runs forms the next, so a lone producer waits one commit and load grows batches by itself.
   */
  flushDelayMs: number;
  /** Rows waiting beyond this are refused (503): memory stays bounded when the database is slow. */
  maxQueuedRows: number;
  /** How often an unavailable database is tried again. */
  probeIntervalMs: number;
  /**
   * Flushes that may be in flight at once. On PostgreSQL several (3 unless set) let Node encode
   * the next flush while the server inserts the last one; PGlite runs one statement at a time,
   * so 1 there.
   * Producers are still acknowledged, and batches published, in the order they were taken.
   */
  flushesInFlight: number;
}

export const defaultIngestOptions: IngestOptions = {
  flushRows: 5000,
  flushDelayMs: 0,
  maxQueuedRows: 200_000,
  probeIntervalMs: 1000,
  flushesInFlight: 1,
};

export class IngestRefused extends DomainError {
  constructor(
    readonly problems: RowProblem[],
    { badRows, problems: count }: Refusal,
  ) {
    // A row may have several problems: each is listed, the row counted once.
    const cut =
      count > problems.length
        ? ` The first ${problems.length} of ${count} problems are listed.`
        : "";
    super(
      "validation",
      badRows === 0
        ? `The batch is malformed; nothing of it was stored.${cut}`
        : `The batch has ${badRows} bad row${badRows === 1 ? "" : "s"}; nothing of it was stored.${cut}`,
    );
  }
}

export class IngestUnavailable extends DomainError {
  constructor(
    reason: string,
    readonly retryAfterSeconds = 1,
  ) {
    super("unavailable", reason);
  }
}

/** A submission written: its answer, and its rows as stored (what the latest values and the feed get). */
interface Written {
  result: IngestResult;
  stored: ValidBatch;
}

type WriteOutcome = { written: Written[] } | { error: unknown };

interface Submission {
  batch: ValidBatch;
  rows: number;
  resolve: (result: IngestResult) => void;
  reject: (error: unknown) => void;
}

export interface IngestDeps {
  db: Database;
  clock: Clock;
  catalog: FleetCatalog;
  partitions: AxisDataPartitions;
  latest: LatestValues;
  retentionDays: number;
  options?: Partial<IngestOptions>;
  onError?: (error: unknown) => void;
}

/**
 * The one way machine data enters Spindle, whatever its source (HTTP, the simulator, later MQTT
 * and MTConnect): validate → batch → commit → acknowledge → update the latest values → publish.
 * A producer's promise resolves only once its rows are committed, so an acknowledged row is
 * never lost; rows are unique per series and instant, so a retried batch never duplicates.
 */
export class IngestPipeline {
  private readonly options: IngestOptions;
  private readonly events = new EventEmitter();
  private queue: Submission[] = [];
  private queuedRows = 0;
  private timer: NodeJS.Timeout | undefined;
  private pumping: NodeJS.Immediate | undefined;
  private inFlight = 0;
  /** Settles once every flush taken so far has acknowledged and published its rows. */
  private settled: Promise<void> = Promise.resolve();
  private unavailableSince: number | undefined;
  private probe: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly deps: IngestDeps) {
    this.options = {
      ...defaultIngestOptions,
      flushesInFlight: deps.db.kind === "postgres" ? 3 : 1,
      ...deps.options,
    };
    this.events.setMaxListeners(0);
  }

  /** Validates a raw batch and commits it; throws IngestRefused or IngestUnavailable. */
  async ingest(raw: RawBatch): Promise<IngestResult> {
    this.admit(0);
    const toolIds = namedToolIds(raw);
    // Validation reads the catalog and the tools named: a database that does not answer is a
    // 503 here too, and the probe tells when it is back.
    const [fleet, toolOwners] = await Promise.all([
      this.deps.catalog.fleet(),
      this.toolOwners(toolIds),
    ]).catch((error: unknown) => {
      this.deps.onError?.(error);
      this.markUnavailable();
      throw new IngestUnavailable(
        "The database is unavailable; retry later.",
        Math.ceil(this.options.probeIntervalMs / 1000),
      );
    });
    const { batch, problems, refused } = validateBatch(raw, {
      fleet,
      toolOwners,
      clock: this.deps.clock,
      retentionDays: this.deps.retentionDays,
    });
    if (problems.length > 0) throw new IngestRefused(problems, refused);
    return this.submit(batch);
  }

  /** Queues a validated batch; resolves once it is committed. */
  submit(batch: ValidBatch): Promise<IngestResult> {
    const rows = rowCount(batch);
    if (rows === 0) return Promise.resolve({ accepted: 0, duplicates: 0 });
    this.admit(rows);
    return new Promise<IngestResult>((resolve, reject) => {
      this.queue.push({ batch, rows, resolve, reject });
      this.queuedRows += rows;
      // An idle pipeline may wait flushDelayMs for company; otherwise rows go with the next
      // flush that starts, at once if one may, or when a running one ends.
      const idle = this.inFlight === 0;
      if (idle && this.options.flushDelayMs > 0 && this.queuedRows < this.options.flushRows) {
        this.timer ??= setTimeout(() => {
          this.timer = undefined;
          this.pump();
        }, this.options.flushDelayMs);
      } else {
        this.pumpSoon();
      }
    });
  }

  /**
   * Committed batches, as stored, in the order their flushes were taken: the live feed subscribes
   * here. With each, the rows the latest values held of tools the batch found on another machine
   * (see `LatestValues.apply`).
   */
  onCommitted(listener: (batch: ValidBatch, left: ToolRow[]) => void): () => void {
    this.events.on("committed", listener);
    return () => this.events.off("committed", listener);
  }

  /** Settles once every flush taken so far has acknowledged and published its rows, or failed. */
  published(): Promise<void> {
    return this.settled.catch(() => {});
  }

  status() {
    return { available: this.unavailableSince === undefined, queuedRows: this.queuedRows };
  }

  /** Stops taking rows and commits every row already accepted (SIGTERM). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.probe) clearTimeout(this.probe);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pumping) clearImmediate(this.pumping);
    this.pumping = undefined;
    while (this.queue.length > 0 || this.inFlight > 0) {
      this.pump();
      await this.settled;
    }
  }

  private admit(rows: number): void {
    if (this.closed) throw new IngestUnavailable("Spindle is shutting down.");
    if (this.unavailableSince !== undefined) {
      throw new IngestUnavailable(
        "The database is unavailable; retry later.",
        Math.ceil(this.options.probeIntervalMs / 1000),
      );
    }
    if (rows > 0 && this.queuedRows + rows > this.options.maxQueuedRows && this.queuedRows > 0) {
      throw new IngestUnavailable("Ingest is saturated; retry later.");
    }
  }

  /**
   * Starts flushes once this turn of the event loop is over, so submissions made in one turn
   * share a flush, and what listens to commits (the live feed's tick) sees each turn's apart.
   */
  private pumpSoon(): void {
    this.pumping ??= setImmediate(() => {
      this.pumping = undefined;
      this.pump();
    });
  }

  /** Starts as many flushes as may run, while rows wait. */
  private pump(): void {
    if (this.timer) return;
    while (this.inFlight < this.options.flushesInFlight && this.queue.length > 0) {
      void this.flush(this.takeFlush());
    }
  }

  private async flush(submissions: Submission[]): Promise<void> {
    this.inFlight++;
    const written = this.attempt(submissions);
    // Flushes may overlap on the server, but acknowledge and publish in the order they were
    // taken, so the live feed sees each series in time order and a later batch never
    // overtakes an earlier one.
    const previous = this.settled;
    const done = (async () => {
      const outcome = await written;
      await previous;
      await this.settle(submissions, outcome);
    })();
    this.settled = done;
    try {
      await done;
    } finally {
      this.inFlight--;
      this.pumpSoon();
    }
  }

  /** The oldest submissions up to flushRows rows (at least one, however large). */
  private takeFlush(): Submission[] {
    let rows = 0;
    let count = 0;
    while (
      count < this.queue.length &&
      (count === 0 || rows + this.queue[count]!.rows <= this.options.flushRows)
    ) {
      rows += this.queue[count]!.rows;
      count++;
    }
    const taken = this.queue.splice(0, count);
    this.queuedRows -= rows;
    return taken;
  }

  /** Acknowledges and publishes a written flush, or deals with its failure. */
  private async settle(
    submissions: Submission[],
    outcome: WriteOutcome,
    attempt = 1,
  ): Promise<void> {
    if ("written" in outcome) {
      for (const [i, submission] of submissions.entries())
        submission.resolve(outcome.written[i]!.result);
      this.publish(outcome.written);
      return;
    }
    const { error } = outcome;
    if (isConflictError(error)) {
      // Two overlapping flushes held the same new keys (a batch retried while its first
      // attempt was still in flight) and the server aborted this one; the other has committed
      // or is about to, and this one, run again, finds those keys stored.
      if (attempt < conflictAttempts)
        return this.settle(submissions, await this.attempt(submissions), attempt + 1);
      // Aborted every time: contention over these rows, not a database that is away. Only
      // they are refused; the next flush is taken as usual.
      this.deps.onError?.(error);
      for (const submission of submissions)
        submission.reject(
          new IngestUnavailable("The batch kept conflicting with other writes; retry later."),
        );
      return;
    }
    if (isDataError(error) && submissions.length > 1) {
      // One producer's rows broke the shared transaction (say, its axis was deleted since it
      // was validated); commit each on its own so only that one is refused.
      for (const submission of submissions)
        await this.settle([submission], await this.attempt([submission]));
      return;
    }
    if (isDataError(error)) {
      submissions[0]!.reject(
        new DomainError(
          "validation",
          "The batch refers to something deleted meanwhile; nothing of it was stored.",
        ),
      );
      return;
    }
    this.deps.onError?.(error);
    this.markUnavailable();
    for (const submission of submissions)
      submission.reject(new IngestUnavailable("The database is unavailable; retry later."));
  }

  private attempt(submissions: Submission[]): Promise<WriteOutcome> {
    return this.write(submissions).then(
      (written) => ({ written }),
      (error: unknown) => ({ error }),
    );
  }

  private async write(submissions: Submission[]): Promise<Written[]> {
    const times: number[] = [];
    for (const { batch } of submissions) for (const row of batch.axis) times.push(row.timeMs);
    await this.deps.partitions.ensure(times);
    const store = async (db: Queryable, { batch, rows }: Submission): Promise<Written> => {
      const samples = await insertAxisSamples(db, batch);
      const usage = await insertToolUsage(db, batch);
      const tools = await updateTools(db, batch);
      return {
        result: {
          accepted: rows,
          duplicates: rows - samples.inserted - usage.inserted - tools.length,
        },
        stored: { axis: samples.stored, toolUsage: usage.stored, tools },
      };
    };
    const [sole] = submissions;
    if (submissions.length === 1 && statementsOf(sole!.batch) <= 1) {
      // One statement is a transaction by itself. BEGIN and COMMIT would add two round trips to
      // the acknowledgement of the commonest flush: one producer's batch of samples.
      return [await store(this.deps.db, sole!)];
    }
    return this.deps.db.transaction(async (tx) => {
      const written: Written[] = [];
      for (const submission of submissions) written.push(await store(tx, submission));
      return written;
    });
  }

  /**
   * Committed rows become the latest values and go to the live feed together, in the order the
   * flushes were taken: a snapshot never shows a row that a refused or failed flush did not
   * store, nor one that a flush still in flight may yet overtake.
   */
  private publish(written: Written[]): void {
    for (const { stored } of written) {
      const left = this.deps.latest.apply(stored);
      try {
        this.events.emit("committed", stored, left);
      } catch (error) {
        this.deps.onError?.(error);
      }
    }
  }

  private markUnavailable(): void {
    if (this.unavailableSince !== undefined) return;
    this.unavailableSince = this.deps.clock.now().getTime();
    const check = () => {
      this.probe = setTimeout(async () => {
        try {
          await this.deps.db.query("select 1");
          this.unavailableSince = undefined;
        } catch {
          if (!this.closed) check();
        }
      }, this.options.probeIntervalMs);
      this.probe.unref();
    };
    check();
  }

  private async toolOwners(toolIds: number[]): Promise<Map<number, number>> {
    if (toolIds.length === 0) return new Map();
    const { rows } = await this.deps.db.query<{ tool_id: number; machine_id: number }>(
      "select tool_id, machine_id from tool where tool_id = any($1::bigint[])",
      [toolIds],
    );
    return new Map(rows.map((row) => [row.tool_id, row.machine_id]));
  }
}

/** How often a flush the database aborts as a conflict is run before its batches are refused. */
const conflictAttempts = 5;

/** A deadlock or serialization failure: the transaction did nothing and may simply run again. */
function isConflictError(error: unknown): boolean {
  const code = pgErrorCode(error);
  return code === pgErrorCodes.deadlockDetected || code === pgErrorCodes.serializationFailure;
}

/** Errors about the rows themselves (constraint, value), as opposed to the database being away. */
function isDataError(error: unknown): boolean {
  const code = pgErrorCode(error);
  return code !== undefined && (code.startsWith("22") || code.startsWith("23"));
}

/** The statements a batch takes: one per kind of row it holds. */
function statementsOf(batch: ValidBatch): number {
  return [batch.axis, batch.toolUsage, batch.tools].filter((rows) => rows.length > 0).length;
}

/**
 * One parameter of an `unnest`: a PostgreSQL array literal of validated numbers, booleans or ISO
 * 8601 timestamps, none of which needs quoting. One join; node-postgres's conversion of a
 * JavaScript array quotes and escapes every element, ~1.8 KB of garbage per row inserted.
 */
function column<Row>(rows: readonly Row[], value: (row: Row) => number | boolean | string): string {
  return `{${rows.map(value).join(",")}}`;
}

/**
 * What an insert that skips keys already stored (`on conflict do nothing`) leaves in the
 * database: how many rows it added, and the batch's rows as stored. A row whose key was there
 * before (a retried batch, another server's, or the same instant sent twice with different
 * values) stands for the stored row, not for what this batch said, so the latest values and the
 * live feed never show a value the database refused.
 */
interface Inserted<Row> {
  inserted: number;
  stored: Row[];
}

async function insertAxisSamples(
  tx: Queryable,
  batch: ValidBatch,
): Promise<Inserted<AxisSampleRow>> {
  const rows = batch.axis;
  if (rows.length === 0) return { inserted: 0, stored: rows };
  const keys = [column(rows, (row) => row.axisId), column(rows, (row) => row.time)];
  const { rowCount } = await tx.query(
    `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
     select * from unnest($1::bigint[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::bool[])
     on conflict (axis_id, update_timestamp) do nothing`,
    [
      ...keys,
      column(rows, (row) => row.actualPosition),
      column(rows, (row) => row.targetPosition),
      column(rows, (row) => row.velocity),
      column(rows, (row) => row.acceleration),
      column(rows, (row) => row.homed),
    ],
  );
  // Every row added: the batch is what is stored. Otherwise (rare) the skipped ones are read.
  if (rowCount === rows.length) return { inserted: rowCount, stored: rows };
  const { rows: found } = await tx.query<{
    n: number;
    actual_position: number;
    target_position: number;
    velocity: number;
    acceleration: number;
    homed: boolean;
  }>(
    `select k.n::int as n, d.actual_position, d.target_position, d.velocity, d.acceleration, d.homed
     from unnest($1::bigint[], $2::timestamptz[]) with ordinality as k (axis_id, at, n)
     join axis_data d on d.axis_id = k.axis_id and d.update_timestamp = k.at
     order by k.n`,
    keys,
  );
  return {
    inserted: rowCount,
    stored: found.map((d) => ({
      ...rows[d.n - 1]!,
      actualPosition: d.actual_position,
      targetPosition: d.target_position,
      velocity: d.velocity,
      acceleration: d.acceleration,
      homed: d.homed,
    })),
  };
}

async function insertToolUsage(tx: Queryable, batch: ValidBatch): Promise<Inserted<ToolUsageRow>> {
  const rows = batch.toolUsage;
  if (rows.length === 0) return { inserted: 0, stored: rows };
  const keys = [column(rows, (row) => row.machineId), column(rows, (row) => row.time)];
  const { rowCount } = await tx.query(
    `insert into tool_usage (machine_id, tool_in_use, update_timestamp)
     select m, t, at from unnest($1::bigint[], $2::timestamptz[], $3::bigint[]) as r (m, at, t)
     on conflict (machine_id, update_timestamp) do nothing`,
    [...keys, column(rows, (row) => row.toolInUse)],
  );
  if (rowCount === rows.length) return { inserted: rowCount, stored: rows };
  const { rows: found } = await tx.query<{ n: number; tool_in_use: number }>(
    `select k.n::int as n, u.tool_in_use
     from unnest($1::bigint[], $2::timestamptz[]) with ordinality as k (machine_id, at, n)
     join tool_usage u on u.machine_id = k.machine_id and u.update_timestamp = k.at
     order by k.n`,
    keys,
  );
  return {
    inserted: rowCount,
    stored: found.map((u) => ({ ...rows[u.n - 1]!, toolInUse: Number(u.tool_in_use) })),
  };
}

/**
 * A tool row holds the tool's current offset and feedrate; an older report never overwrites a
 * newer one. Of one tool's reports in a batch the newest is applied (the last of equal times, to
 * the microsecond). Returns the reports applied, each on the machine its tool is on now: a tool
 * deleted since the batch was validated takes none, and one moved meanwhile is where it went, so
 * the latest values and the live feed never bring back a deleted tool nor put one on its old
 * machine.
 */
async function updateTools(tx: Queryable, batch: ValidBatch): Promise<ToolRow[]> {
  if (batch.tools.length === 0) return [];
  const rows = batch.tools;
  const { rows: applied } = await tx.query<{ tool_id: number; machine_id: number; n: number }>(
    `update tool t set tool_offset = u.tool_offset, feedrate = u.feedrate, update_timestamp = u.at
     from (select distinct on (tool_id) *
           from unnest($1::bigint[], $2::float8[], $3::float8[], $4::timestamptz[])
                with ordinality as r (tool_id, tool_offset, feedrate, at, n)
           order by tool_id, at desc, n desc) u
     where t.tool_id = u.tool_id and t.update_timestamp < u.at
     returning t.tool_id, t.machine_id, u.n::int as n`,
    [
      column(rows, (row) => row.toolId),
      column(rows, (row) => row.toolOffset),
      column(rows, (row) => row.feedrate),
      column(rows, (row) => row.time),
    ],
  );
  // A report no newer than what is stored is a repeat: accepted, not applied.
  return applied.map(({ machine_id, n }) => ({ ...rows[n - 1]!, machineId: machine_id }));
}
