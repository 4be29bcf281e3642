import { PGlite } from "@electric-sql/pglite";
import { Semaphore, withTimeout } from "async-mutex";
import pg from "pg";

/** to_char format of a timestamptz as ISO 8601 UTC with microseconds (exact, unlike a JS Date). */
export const isoMicrosFormat = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

/**
 * SQL reading a timestamptz `column` as ISO 8601 UTC text, exact: milliseconds always, the
 * microseconds past them when it has any, the form ingest stores and the live feed sends. A
 * JS Date (what the drivers give) would cut them off.
 */
export const exactIsoSql = (column: string) =>
  `regexp_replace(to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US'), '000$', '') || 'Z'`;

/** What every data-access function needs: run one statement. A transaction is also one. */
export interface Queryable {
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<Row>>;
}

export interface QueryResult<Row> {
  rows: Row[];
  rowCount: number;
}

export interface Database extends Queryable {
  readonly kind: "embedded" | "postgres";
  /** Statements that can run at once: the pool's size (the embedded database runs one). */
  readonly connections: number;
  /** Runs `work` in one transaction; it commits when `work` resolves and rolls back when it throws. */
  transaction<T>(work: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Runs a script of several statements (migrations), without parameters. */
  exec(sql: string): Promise<void>;
  /**
   * Calls `handler` with the payload of each NOTIFY on `channel`. `onReconnect` runs after the
   * listening connection was lost and restored, when notifications may have been missed.
   */
  listen(
    channel: string,
    handler: (payload: string) => void,
    onReconnect?: () => void,
  ): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  /** `postgres://…`; absent means the embedded database. */
  url?: string | undefined;
  /** Where the embedded database keeps its files; absent means in memory. */
  dataDir?: string | undefined;
  /** PostgreSQL only: the schema every connection works in (tests use one per file). */
  schema?: string | undefined;
  /** PostgreSQL only: pool size. */
  maxConnections?: number;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  return options.url ? openPostgres(options.url, options) : openEmbedded(options.dataDir);
}

async function openEmbedded(dataDir: string | undefined): Promise<Database> {
  const db = await PGlite.create(dataDir ? { dataDir } : {});
  await db.exec("set time zone 'UTC'");
  const run = async <Row>(
    target: Pick<PGlite, "query">,
    sql: string,
    params?: unknown[],
  ): Promise<QueryResult<Row>> => {
    const result = await target.query<Row>(sql, params);
    return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
  };
  return {
    kind: "embedded",
    connections: 1,
    query: (sql, params) => run(db, sql, params),
    transaction: (work) =>
      db.transaction((tx) => work({ query: (sql, params) => run(tx, sql, params) })),
    exec: async (sql) => {
      await db.exec(sql);
    },
    listen: (channel, handler) => db.listen(channel, handler),
    close: () => db.close(),
  };
}

// node-postgres returns int8 and numeric as strings to be safe for huge values; our ids and
// counts stay far below 2^53, and callers expect JSON numbers, so parse them here once.
const types = {
  getTypeParser(oid: number, format?: string) {
    if (oid === pg.types.builtins.INT8) return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format as "text");
  },
};

/**
 * The URL with the session settings every connection starts with, after any the URL names: the
 * schema, if given, and UTC, whatever the server's or the URL's zone, so that SQL turning a day
 * into times (partition bounds, day names) means the same day everywhere.
 */
function sessionUrl(url: string, schema: string | undefined): string {
  const parsed = new URL(url);
  const settings = [parsed.searchParams.get("options"), "-c TimeZone=UTC"];
  if (schema) settings.push(`-c search_path=${schema}`);
  parsed.searchParams.set("options", settings.filter(Boolean).join(" "));
  return parsed.toString();
}

async function openPostgres(url: string, options: DatabaseOptions): Promise<Database> {
  const connections = options.maxConnections ?? 10;
  const pool = new pg.Pool({
    connectionString: sessionUrl(url, options.schema),
    max: connections,
    // A server that accepts but never answers must not hold requests forever.
    connectionTimeoutMillis: 5000,
    types: types as pg.CustomTypesConfig,
    keepAlive: true,
  });
  // An idle client that loses its server emits 'error' on the pool; without a listener that
  // would crash the process. The next query reconnects, so a log line is enough.
  pool.on("error", () => {});
  const run = async <Row>(
    target: pg.Pool | pg.PoolClient,
    sql: string,
    params?: unknown[],
  ): Promise<QueryResult<Row>> => {
    const result = await target.query(sql, params as unknown[]);
    return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
  };
  // Fail at start with the server's reason, not at the first request.
  await pool.query("select 1");
  return {
    kind: "postgres",
    connections,
    query: (sql, params) => run(pool, sql, params),
    async transaction(work) {
      const client = await pool.connect();
      // A checked-out client has no pool listener: a connection lost between two statements
      // would emit an unhandled 'error' and crash the process. Note it; the next query fails.
      let lost: Error | undefined;
      const onError = (error: Error) => {
        lost = error;
      };
      client.on("error", onError);
      try {
        await client.query("begin");
        const result = await work({ query: (sql, params) => run(client, sql, params) });
        await client.query("commit");
        return result;
      } catch (error) {
        await client.query("rollback").catch(() => {});
        lost ??=
          error instanceof Error && /terminated|ECONN|closed/i.test(error.message)
            ? error
            : undefined;
        throw error;
      } finally {
        client.off("error", onError);
        // A broken connection is destroyed rather than handed to the next caller.
        client.release(lost);
      }
    },
    exec: async (sql) => {
      await pool.query(sql);
    },
    listen: (channel, handler, onReconnect) =>
      listenPostgres(url, options, channel, handler, onReconnect),
    close: () => pool.end(),
  };
}

/** LISTEN needs a connection of its own that stays open; it reconnects when the server goes away. */
async function listenPostgres(
  url: string,
  options: DatabaseOptions,
  channel: string,
  handler: (payload: string) => void,
  onReconnect?: () => void,
): Promise<() => Promise<void>> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  const connect = async (): Promise<void> => {
    const next = new pg.Client({
      connectionString: sessionUrl(url, options.schema),
      // A half-open connection (a NAT that forgot it, a failover) raises no error by itself:
      // keepalive probes find it, and the 'error' below reconnects.
      keepAlive: true,
      keepAliveInitialDelayMillis: 30_000,
    });
    next.on("notification", (message) => {
      if (message.channel === channel) handler(message.payload ?? "");
    });
    next.on("error", () => {
      if (stopped) return;
      next.end().catch(() => {});
      scheduleReconnect();
    });
    await next.connect();
    await next.query(`listen ${pg.Client.prototype.escapeIdentifier(channel)}`);
    client = next;
  };
  const scheduleReconnect = () => {
    if (stopped || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      connect().then(
        () => onReconnect?.(),
        () => scheduleReconnect(),
      );
    }, 1000);
    retry.unref();
  };
  await connect();
  return async () => {
    stopped = true;
    if (retry) clearTimeout(retry);
    await client?.end().catch(() => {});
  };
}

/**
 * `db` as one kind of work sees it: at most `permits` of its statements and transactions run at
 * once, and the rest wait their turn. A share of the pool for work that can be heavy (history),
 * so the rest of the pool stays free for work that must not wait (ingest's commits).
 */
export interface Limited {
  /** Waits at most `waitMs` for its turn, then fails with `busy`: before an answer has begun. */
  db: Database;
  /** Waits for its turn however long: once an answer has begun, a late page beats a cut one. */
  patient: Database;
}

export function limited(
  db: Database,
  { permits, waitMs, busy }: { permits: number; waitMs: number; busy: Error },
): Limited {
  const turns = new Semaphore(permits);
  const through = (semaphore: Pick<Semaphore, "runExclusive">): Database => ({
    ...db,
    connections: permits,
    query: (sql, params) => semaphore.runExclusive(() => db.query(sql, params)),
    transaction: (work) => semaphore.runExclusive(() => db.transaction(work)),
  });
  return { db: through(withTimeout(turns, waitMs, busy)), patient: through(turns) };
}
