import { EventEmitter } from "node:events";
import type { Clock } from "../../platform/context.ts";
import type { Database, Queryable } from "../../platform/database.ts";
import { DomainError, pgErrorCode } from "../../platform/errors.ts";
import type { AxisDataPartitions } from "../axis-data/partitions.ts";
import type { FleetCatalog } from "../machines/fleet-catalog.ts";
import {
  type IngestResult,
  type RawBatch,
  type RowProblem,
  rowCount,
  type ValidBatch,
} from "./ingest-batch.ts";
import { namedToolIds, validateBatch } from "./ingest-validation.ts";
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
}

export const defaultIngestOptions: IngestOptions = {
  flushRows: 5000,
  flushDelayMs: 0,
  maxQueuedRows: 200_000,
  probeIntervalMs: 1000,
};

export class IngestRefused extends DomainError {
  constructor(readonly problems: RowProblem[]) {
    super(
      "validation",
      `The batch has ${problems.length} bad row${problems.length === 1 ? "" : "s"}; nothing of it was stored.`,
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
 * and MTConnect): validate → update the latest values → batch → commit → acknowledge → publish.
 * A producer's promise resolves only once its rows are committed, so an acknowledged row is
 * never lost; rows are unique per series and instant, so a retried batch never duplicates.
 */
export class IngestPipeline {
  private readonly options: IngestOptions;
  private readonly events = new EventEmitter();
  private queue: Submission[] = [];
  private queuedRows = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private unavailableSince: number | undefined;
  private probe: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly deps: IngestDeps) {
    this.options = { ...defaultIngestOptions, ...deps.options };
    this.events.setMaxListeners(0);
  }

  /** Validates a raw batch and commits it; throws IngestRefused or IngestUnavailable. */
  async ingest(raw: RawBatch): Promise<IngestResult> {
    this.admit(0);
    const toolIds = namedToolIds(raw);
    const [fleet, toolOwners] = await Promise.all([
      this.deps.catalog.fleet(),
      this.toolOwners(toolIds),
    ]);
    const { batch, problems } = validateBatch(raw, {
      fleet,
      toolOwners,
      clock: this.deps.clock,
      retentionDays: this.deps.retentionDays,
    });
    if (problems.length > 0) throw new IngestRefused(problems);
    return this.submit(batch);
  }

  /** Queues a validated batch; resolves once it is committed. */
  submit(batch: ValidBatch): Promise<IngestResult> {
    const rows = rowCount(batch);
    if (rows === 0) return Promise.resolve({ accepted: 0, duplicates: 0 });
    this.admit(rows);
    this.deps.latest.apply(batch);
    return new Promise<IngestResult>((resolve, reject) => {
      this.queue.push({ batch, rows, resolve, reject });
      this.queuedRows += rows;
      // While a flush runs, rows simply queue: its end starts the next one.
      if (!this.flushing && !this.timer) {
        this.flushSoon(this.queuedRows >= this.options.flushRows ? 0 : this.options.flushDelayMs);
      }
    });
  }

  /** Committed batches, in commit order: the live feed subscribes here. */
  onCommitted(listener: (batch: ValidBatch) => void): () => void {
    this.events.on("committed", listener);
    return () => this.events.off("committed", listener);
  }

  status() {
    return { available: this.unavailableSince === undefined, queuedRows: this.queuedRows };
  }

  /** Stops taking rows and commits every row already accepted (SIGTERM). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.probe) clearTimeout(this.probe);
    while (this.queue.length > 0 || this.flushing) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      await (this.flushing ?? this.flush());
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

  private flushSoon(delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.flushing) void this.flush();
    }, delayMs);
  }

  private flush(): Promise<void> {
    const run = async () => {
      const submissions = this.takeFlush();
      if (submissions.length > 0) await this.commit(submissions);
    };
    this.flushing = run().finally(() => {
      this.flushing = undefined;
      // Rows that arrived during the flush go next, at once.
      if (this.queue.length > 0) this.flushSoon(0);
    });
    return this.flushing;
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

  private async commit(submissions: Submission[]): Promise<void> {
    try {
      const results = await this.write(submissions);
      for (const [i, submission] of submissions.entries()) submission.resolve(results[i]!);
      this.publish(submissions);
    } catch (error) {
      if (isDataError(error) && submissions.length > 1) {
        // One producer's rows broke the shared transaction (say, its axis was deleted since it
        // was validated); commit each on its own so only that one is refused.
        for (const submission of submissions) await this.commit([submission]);
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
  }

  private async write(submissions: Submission[]): Promise<IngestResult[]> {
    const times: number[] = [];
    for (const { batch } of submissions) for (const row of batch.axis) times.push(row.timeMs);
    await this.deps.partitions.ensure(times);
    return this.deps.db.transaction(async (tx) => {
      const results: IngestResult[] = [];
      for (const { batch, rows } of submissions) {
        const stored =
          (await insertAxisSamples(tx, batch)) +
          (await insertToolUsage(tx, batch)) +
          (await updateTools(tx, batch));
        results.push({ accepted: rows, duplicates: rows - stored });
      }
      return results;
    });
  }

  private publish(submissions: Submission[]): void {
    for (const { batch } of submissions) {
      try {
        this.events.emit("committed", batch);
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

/** Errors about the rows themselves (constraint, value), as opposed to the database being away. */
function isDataError(error: unknown): boolean {
  const code = pgErrorCode(error);
  return code !== undefined && (code.startsWith("22") || code.startsWith("23"));
}

async function insertAxisSamples(tx: Queryable, batch: ValidBatch): Promise<number> {
  if (batch.axis.length === 0) return 0;
  const rows = batch.axis;
  const { rowCount } = await tx.query(
    `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
     select * from unnest($1::bigint[], $2::timestamptz[], $3::float8[], $4::float8[], $5::float8[], $6::float8[], $7::bool[])
     on conflict (axis_id, update_timestamp) do nothing`,
    [
      rows.map((row) => row.axisId),
      rows.map((row) => row.time),
      rows.map((row) => row.actualPosition),
      rows.map((row) => row.targetPosition),
      rows.map((row) => row.velocity),
      rows.map((row) => row.acceleration),
      rows.map((row) => row.homed),
    ],
  );
  return rowCount;
}

async function insertToolUsage(tx: Queryable, batch: ValidBatch): Promise<number> {
  if (batch.toolUsage.length === 0) return 0;
  const rows = batch.toolUsage;
  const { rowCount } = await tx.query(
    `insert into tool_usage (machine_id, tool_in_use, update_timestamp)
     select * from unnest($1::bigint[], $2::bigint[], $3::timestamptz[])
     on conflict (machine_id, update_timestamp) do nothing`,
    [
      rows.map((row) => row.machineId),
      rows.map((row) => row.toolInUse),
      rows.map((row) => row.time),
    ],
  );
  return rowCount;
}

/** A tool row holds the tool's current offset and feedrate; an older report never overwrites a newer one. */
async function updateTools(tx: Queryable, batch: ValidBatch): Promise<number> {
  if (batch.tools.length === 0) return 0;
  const rows = batch.tools;
  const { rowCount } = await tx.query(
    `update tool t set tool_offset = u.tool_offset, feedrate = u.feedrate, update_timestamp = u.at
     from (select distinct on (tool_id) * from unnest($1::bigint[], $2::float8[], $3::float8[], $4::timestamptz[])
           as r (tool_id, tool_offset, feedrate, at) order by tool_id, at desc) u
     where t.tool_id = u.tool_id and t.update_timestamp < u.at`,
    [
      rows.map((row) => row.toolId),
      rows.map((row) => row.toolOffset),
      rows.map((row) => row.feedrate),
      rows.map((row) => row.time),
    ],
  );
  // A report no newer than what is stored is a repeat: accepted, not applied.
  return rowCount;
}
