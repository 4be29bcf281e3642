import { performance } from "node:perf_hooks";
import type { WebSocket } from "ws";
import type { ChangeFeed } from "../../platform/change-feed.ts";
import type { Clock, Principal } from "../../platform/context.ts";
import type { Queryable } from "../../platform/database.ts";
import { DomainError, isTransientDatabaseError } from "../../platform/errors.ts";
import { authTables, type OAuthService } from "../auth/oauth-service.ts";
import type { AxisSampleRow, ToolRow, ToolUsageRow, ValidBatch } from "../ingest/ingest-batch.ts";
import type { IngestPipeline } from "../ingest/ingest-pipeline.ts";
import { type LatestValues, readStored, type StoredKeys } from "../ingest/latest-values.ts";
import type { Fleet, FleetCatalog } from "../machines/fleet-catalog.ts";
import { closeCodes, LiveConnection } from "./live-connection.ts";
import { encodeRows, type Frame, type LiveEncoding } from "./live-encoding.ts";
import {
  axisMatches,
  axisRow,
  filterKey,
  filterOf,
  type LiveFilter,
  machineMatches,
  machineRows,
  type SubscribeMessage,
  toolFields,
  toolRow,
  toolUsageFields,
  toolUsageRow,
} from "./live-messages.ts";

export interface LiveOptions {
  /** A socket that has not authenticated by then is closed. */
  authTimeoutMs: number;
  /** Pings this often; a peer that has not answered the previous ping is dropped. */
  heartbeatMs: number;
  /** Committed batches are gathered this long into one push; 0 = those of one commit. */
  tickMs: number;
  /** Above this many unsent bytes a socket gets conflated pushes instead of every one. */
  highWaterBytes: number;
  /** A socket holding more unsent bytes than this is dropped at once. */
  maxBufferedBytes: number;
  /** A socket above the high-water mark this long has stopped reading and is dropped. */
  stalledDropMs: number;
  /** How often held-back rows are checked for sending. */
  sweepMs: number;
  /** The resume buffer keeps at most this many ticks… */
  ringTicks: number;
  /** …and at most this many rows across them. */
  ringRows: number;
  /** A resume that would replay more rows than this gets a reset snapshot instead. */
  maxReplayRows: number;
  /** Largest frame a client may send; larger ones close the socket with 1009. */
  maxPayloadBytes: number;
  messagesPerSecond: number;
  messageBurst: number;
  /** Bytes of messages one socket may have waiting to be handled; more are refused with an error. */
  maxQueuedBytes: number;
  subscribesPerSecond: number;
  subscribeBurst: number;
  /**
   * Authenticated sockets one user (or one client, for a token without a user) may hold: what
   * keeps one account's sockets, each within its own bounds, from adding up without end.
   */
  maxSocketsPerUser: number;
}

export const defaultLiveOptions: LiveOptions = {
  authTimeoutMs: 10_000,
  heartbeatMs: 30_000,
  tickMs: 0,
  highWaterBytes: 256 * 1024,
  maxBufferedBytes: 4 * 1024 * 1024,
  stalledDropMs: 30_000,
  sweepMs: 25,
  ringTicks: 1024,
  ringRows: 100_000,
  maxReplayRows: 10_000,
  maxPayloadBytes: 64 * 1024,
  messagesPerSecond: 50,
  messageBurst: 100,
  maxQueuedBytes: 1024 * 1024,
  subscribesPerSecond: 2,
  subscribeBurst: 10,
  maxSocketsPerUser: 100,
};

export interface LiveDeps {
  /** Reads what the CRUD endpoints wrote (`storedChanged`). */
  db: Queryable;
  ingest: IngestPipeline;
  catalog: FleetCatalog;
  latest: LatestValues;
  oauth: OAuthService;
  changes: ChangeFeed;
  clock: Clock;
  options?: Partial<LiveOptions>;
  onError?: (error: unknown) => void;
}

/** Rows of one kind or more, as filtered for a subscriber. */
interface Rows {
  axis: AxisSampleRow[];
  tools: ToolRow[];
  toolUsage: ToolUsageRow[];
}

/**
 * What changed: the newest row of each series that has a new one, and the last row of each series
 * that no longer has one on its machine (a tool deleted or moved to another machine, an axis's
 * samples deleted, an axis or machine deleted), which subscribers get as its key in `deleted`.
 */
interface Changes {
  rows: Rows;
  removed: Rows;
}

/** One tick: the changes committed in it, the newest per series. */
interface Tick extends Changes {
  seq: number;
}

/** Rows by series, of each kind. */
interface Series {
  axis: Map<number, AxisSampleRow>;
  tools: Map<number, ToolRow>;
  toolUsage: Map<number, ToolUsageRow>;
}

/** A row and the tick that brought it (for a removal: the tick that said it was gone). */
interface Stamped<Row> {
  row: Row;
  seq: number;
}

/** The newest committed row of each series, of each kind. */
interface CommittedSeries {
  axis: Map<number, Stamped<AxisSampleRow>>;
  tools: Map<number, Stamped<ToolRow>>;
  toolUsage: Map<number, Stamped<ToolUsageRow>>;
}

/**
 * Removed rows of each kind by place (`placeOf`: the series and the machine it was on), so a tool
 * moved from one machine and then deleted on another is gone from both.
 */
interface Removals {
  axis: Map<string, AxisSampleRow>;
  tools: Map<string, ToolRow>;
  toolUsage: Map<string, ToolUsageRow>;
}

interface StampedRemovals {
  axis: Map<string, Stamped<AxisSampleRow>>;
  tools: Map<string, Stamped<ToolRow>>;
  toolUsage: Map<string, Stamped<ToolUsageRow>>;
}

interface Group {
  filter: LiveFilter;
  encoding: LiveEncoding;
  members: Set<LiveConnection>;
}

/**
 * The live feed: hears every committed batch, gathers it into ticks, and fans each tick out to
 * the sockets that asked for it. Subscribers with equal filters form a group that shares one
 * serialized message per tick; a socket that cannot keep up holds only the newest row per series.
 */
export class LiveHub {
  readonly options: LiveOptions;
  private readonly connections = new Set<LiveConnection>();
  private readonly groups = new Map<string, Group>();
  private readonly ring: Tick[] = [];
  private ringRowCount = 0;
  /**
   * The last tick's number. A run starts at its start time in microseconds, so its numbers are
   * above any earlier run's (unless that one averaged over 1,000 ticks a millisecond) and a
   * client resuming across a restart gets a reset, never another run's ticks.
   */
  private seq: number;
  /** The last tick fanned out to the groups (ticks may wait for the catalog after `seq` moves). */
  private fanned: number;
  /** Ticks waiting for the catalog to load, fanned out in order once it has. */
  private waiting: Promise<void> | undefined;
  /** The newest committed row per series: what a held-back socket is owed is read from here. */
  private readonly committed: CommittedSeries = {
    axis: new Map(),
    tools: new Map(),
    toolUsage: new Map(),
  };
  /**
   * The last row of each series that lost its value on a machine, and the tick that said so:
   * held-back sockets are owed these too. Kept only while a socket is held from before that tick
   * (see `sweep`).
   */
  private readonly removed: StampedRemovals = {
    axis: new Map(),
    tools: new Map(),
    toolUsage: new Map(),
  };
  /** The changes of the coming tick. */
  private gathering: { rows: Series; removed: Removals } | undefined;
  private tickTimer: NodeJS.Timeout | NodeJS.Immediate | undefined;
  private fleet: Fleet | undefined;
  /** Counts catalog changes: a load that began before one must not be taken as current. */
  private fleetChanges = 0;
  /** Counts changes to tokens, users and permissions (see `LiveConnection.authenticate`). */
  authChanges = 0;
  /** A catalog load after a change is under way; `refreshAgain`: another change came meanwhile. */
  private refreshing = false;
  private refreshAgain = false;
  private refreshRetry: NodeJS.Timeout | undefined;
  /** A look at the tools the latest values hold, after a tool was deleted or moved. */
  private toolCheck: NodeJS.Timeout | undefined;
  private rechecking: Promise<void> | undefined;
  private recheckAgain = false;
  private readonly sweeper: NodeJS.Timeout;
  private readonly heartbeat: NodeJS.Timeout;
  private recheck: NodeJS.Immediate | undefined;
  private recheckRetry: NodeJS.Timeout | undefined;
  private readonly stops: (() => void)[] = [];
  private snapshotCache: { seq: number; fleet: Fleet; text: Buffer } | undefined;
  /** CRUD writes' series being read again, one write after another (`storedChanged`). */
  private storing: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly deps: LiveDeps) {
    this.options = { ...defaultLiveOptions, ...deps.options };
    this.seq = this.fanned = deps.clock.now().getTime() * 1000;
    this.stops.push(deps.ingest.onCommitted((batch, left) => this.gather(batch, left)));
    this.stops.push(
      deps.changes.onChange((table) => {
        if (table === "machine" || table === "axis" || table === "*") {
          this.fleet = undefined;
          this.fleetChanges++;
          this.refreshFleet();
        }
        if (table === "tool_placement" || table === "*") this.checkToolsSoon();
        if (authTables.has(table)) {
          this.authChanges++;
          this.scheduleRecheck();
        }
      }),
    );
    this.sweeper = setInterval(() => this.sweep(), this.options.sweepMs);
    this.sweeper.unref();
    this.heartbeat = setInterval(() => this.beat(), this.options.heartbeatMs);
    this.heartbeat.unref();
  }

  /** A new socket; `token` when its upgrade request carried one. */
  connect(socket: WebSocket, token: string | undefined): void {
    if (this.closed) {
      socket.close(1001, "Server shutting down");
      return;
    }
    this.connections.add(new LiveConnection(socket, this, token));
  }

  stats() {
    let held = 0;
    let backlogged = 0;
    for (const connection of this.connections) {
      if (connection.heldSince !== null) held += 1;
      if (connection.bufferedAmount > this.options.highWaterBytes) backlogged += 1;
    }
    return {
      connections: this.connections.size,
      groups: this.groups.size,
      seq: this.seq,
      ringTicks: this.ring.length,
      ringRows: this.ringRowCount,
      held,
      backlogged,
      /** Removed series kept for held-back sockets. */
      removals: kinds.reduce((sum, kind) => sum + this.removed[kind].size, 0),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const stop of this.stops) stop();
    clearInterval(this.sweeper);
    clearInterval(this.heartbeat);
    if (this.recheck) clearImmediate(this.recheck);
    if (this.recheckRetry) clearTimeout(this.recheckRetry);
    if (this.refreshRetry) clearTimeout(this.refreshRetry);
    if (this.toolCheck) clearTimeout(this.toolCheck);
    this.cancelTick();
    for (const connection of [...this.connections]) connection.close(1001, "Server shutting down");
  }

  // --- used by connections ---

  remove(connection: LiveConnection): void {
    this.connections.delete(connection);
    this.leaveGroup(connection);
  }

  reportError(error: unknown): void {
    this.deps.onError?.(error);
  }

  /**
   * The token's principal; "unavailable" when the database cannot answer now (ask again),
   * "failed" when the lookup failed otherwise (asking again would fail too).
   */
  async resolve(token: string): Promise<Principal | "invalid" | "unavailable" | "failed"> {
    try {
      return await this.deps.oauth.authenticateAccessToken(token);
    } catch (error) {
      if (error instanceof DomainError && error.code === "invalid_token") return "invalid";
      this.reportError(error);
      return isTransientDatabaseError(error) ? "unavailable" : "failed";
    }
  }

  mayView(principal: Principal): boolean {
    return principal.permissions.has("machine.view") || principal.permissions.has("axisdata.view");
  }

  async subscribe(connection: LiveConnection, message: SubscribeMessage): Promise<void> {
    const fleet = await this.currentFleet();
    // The socket may have closed, or its permissions changed, while the catalog loaded.
    if (!connection.isOpen) return;
    const filter = filterOf(message, permittedKinds(connection.principal!));
    if (!filter.axisData && !filter.tools && !filter.toolUsage)
      return connection.error(
        "subscribe: you do not have permission to view axis data, tools or tool usage.",
      );
    this.leaveGroup(connection);
    // Rows committed and not yet ticked are already among the latest values: tick them now, so
    // the snapshot's seq covers everything it shows and no push repeats it.
    if (this.gathering) {
      this.cancelTick();
      this.flushTick();
    }
    const encoding = message.encoding ?? "json";
    connection.filter = filter;
    connection.encoding = encoding;
    connection.minIntervalMs = message.max_rate_hz ? 1000 / message.max_rate_hz : 0;
    // A rate-limited socket always holds; the sweep sends what it is owed when the rate allows.
    connection.heldSince = connection.minIntervalMs > 0 ? this.seq : null;
    connection.nextPushAt = performance.now() + connection.minIntervalMs;
    connection.resetWindow(message.window ?? 0);
    // Everything up to here is in the snapshot or the replay: a tick still waiting for the
    // catalog must not come again.
    connection.subscribedAt = this.seq;
    this.joinGroup(connection);
    const since = message.since_seq;
    const missed = since === undefined ? undefined : this.missed(since, filter);
    if (missed) {
      for (const { seq, ...changes } of missed)
        for (const frame of encodeMessages(seq, changes, filter, encoding, fleet))
          connection.sendFrame(frame);
      connection.sendJson({ type: "subscribed", seq: this.seq, resumed: true });
      return;
    }
    // The newest values the filter matches; `encodeMessages` leaves out what the catalog lacks.
    const { latest } = this.deps;
    const rows = filterRows(
      {
        axis: [...latest.axes.values()],
        tools: [...latest.tools.values()],
        toolUsage: [...latest.toolUsage.values()],
      },
      filter,
    );
    // A snapshot of each kind the principal may see, even an empty one: it marks the start.
    const frames = encodeMessages(this.seq, { rows, removed: noRows }, filter, encoding, fleet, {
      snapshot: true,
      ...(since !== undefined ? { reset: true } : {}),
    });
    for (const frame of frames) connection.sendFrame(frame);
  }

  unsubscribe(connection: LiveConnection): void {
    this.leaveGroup(connection);
    connection.filter = null;
    connection.heldSince = null;
    connection.resetWindow(0);
  }

  // Each answer checks the permission after loading the catalog: a recheck may narrow the socket's
  // principal (or close it) meanwhile.

  async answerMachines(connection: LiveConnection): Promise<void> {
    const fleet = await this.currentFleet();
    if (!connection.isOpen) return;
    if (!connection.principal!.permissions.has("machine.view"))
      return connection.error("You do not have permission to view machines.");
    connection.sendJson({ type: "machine_data", data: machineRows(fleet) });
  }

  async answerTools(connection: LiveConnection): Promise<void> {
    // Loading a changed catalog forgets deleted machines' tools; a load another change overtook
    // does not, so the answer keeps to the machines of the catalog it was read with.
    const fleet = await this.currentFleet();
    if (!connection.isOpen) return;
    if (!connection.principal!.permissions.has("tool.view"))
      return connection.error("You do not have permission to view tools.");
    connection.sendJson({
      type: "tool_data",
      data: [...this.deps.latest.tools.values()]
        .filter((row) => fleet.machines.has(row.machineId))
        .map(toolRow),
    });
  }

  async answerAxes(connection: LiveConnection): Promise<void> {
    const fleet = await this.currentFleet();
    if (!connection.isOpen) return;
    if (!connection.principal!.permissions.has("axisdata.view"))
      return connection.error("You do not have permission to view axis data.");
    // Everyone asking between two changes of the latest values (or of the catalog) gets the
    // same bytes.
    if (this.snapshotCache?.seq !== this.seq || this.snapshotCache.fleet !== fleet) {
      const rows = [...this.deps.latest.axes.values()]
        .filter((row) => fleet.axes.has(row.axisId))
        .map((row) => axisRow(row, fleet.machines.get(row.machineId), allFields));
      this.snapshotCache = {
        seq: this.seq,
        fleet,
        text: Buffer.from(JSON.stringify({ type: "axis_data", data: rows })),
      };
    }
    connection.send(this.snapshotCache.text);
  }

  /**
   * Machine data written through the CRUD endpoints rather than ingest: each series (and tool)
   * it touched is read again, so the latest values, snapshots and `get_*` answers match the
   * database, and one whose stored value changed is pushed in the next tick. Nothing is pushed
   * for a series or tool that is gone: snapshots leave it out. One write's series at a time, so
   * of two writes to one series the later read wins.
   */
  storedChanged(keys: Required<Omit<StoredKeys, "since">>): Promise<void> {
    return this.restoreInTurn(() => keys);
  }

  /**
   * Machines deleted through the CRUD endpoints: everything the latest values hold of them is
   * read again, so their axes' samples, tools and tool in use, which the delete cascaded to, are
   * gone from answers at once and their subscribers told. The catalog cannot be waited for: it is
   * loaded only while someone subscribes, and the same id may be made again before then.
   */
  machinesDeleted(machineIds: number[]): Promise<void> {
    const machines = new Set(machineIds);
    const on = (series: Map<number, Placed>) =>
      [...series].filter(([, row]) => machines.has(row.machineId)).map(([key]) => key);
    // Chosen in turn: a write read again before this one may still add a row of these machines.
    const ofMachines = () => {
      const { latest } = this.deps;
      return { axes: on(latest.axes), tools: on(latest.tools), machines: machineIds };
    };
    // A flush committed before the delete may publish after this read and put its rows back in
    // the latest values (flushes publish in order); with no one subscribed no catalog load
    // catches them. They are read again once every flush taken by then has published.
    const done = this.restoreInTurn(ofMachines);
    void this.deps.ingest.published().then(() => this.restoreInTurn(ofMachines));
    return done;
  }

  private restoreInTurn(keys: () => Required<Omit<StoredKeys, "since">>): Promise<void> {
    // Never rejects: the write it follows is committed, and the next write must still run.
    const done = this.storing
      .then(() => this.restore(keys()))
      .catch((error: unknown) => this.reportError(error));
    this.storing = done;
    return done;
  }

  private async restore(keys: Required<Omit<StoredKeys, "since">>): Promise<void> {
    if (this.closed) return;
    const { latest } = this.deps;
    const held = {
      axes: keys.axes.map((key) => latest.axes.get(key)),
      tools: keys.tools.map((key) => latest.tools.get(key)),
      machines: keys.machines.map((key) => latest.toolUsage.get(key)),
    };
    let stored: ValidBatch;
    try {
      stored = await readStored(this.deps.db, keys);
    } catch (error) {
      // The write is committed either way; these series keep what they held until their next
      // write or ingest (or a restart).
      this.reportError(error);
      return;
    }
    if (this.closed) return;
    // Answers must show the write at once, before the tick that pushes it.
    this.snapshotCache = undefined;
    const maps = this.seriesMaps();
    reconcile(maps.axis, keys.axes, held.axes, stored.axis, (row) => row.axisId);
    reconcile(maps.tools, keys.tools, held.tools, stored.tools, (row) => row.toolId);
    reconcile(
      maps.toolUsage,
      keys.machines,
      held.machines,
      stored.toolUsage,
      (row) => row.machineId,
    );
    this.scheduleTick();
  }

  // --- ticks ---

  /** A committed batch; `left`: where tools it found on another machine were (they moved). */
  private gather(batch: ValidBatch, left: ToolRow[]): void {
    if (this.closed) return;
    // The answers hold what was committed at once, before the tick that pushes it.
    this.snapshotCache = undefined;
    const maps = this.seriesMaps();
    for (const row of left) maps.tools.removed.set(placeOf(row.toolId, row), row);
    gatherNews(batch.axis, (row) => row.axisId, maps.axis);
    gatherNews(batch.tools, (row) => row.toolId, maps.tools);
    gatherNews(batch.toolUsage, (row) => row.machineId, maps.toolUsage);
    // A row of an axis or machine the loaded catalog lacks was committed before its deletion and
    // published after the reload that told of it, or belongs to one another process made, whose
    // notice is still on its way (a tool moved onto a new machine); a row placed where its axis
    // no longer is was validated before a rename or move. The catalog is read again, and
    // decides: the tick waits for it, and forgetDeleted drops what is gone from the latest
    // values, reads moved axes again in their place, and tells subscribers so.
    const { fleet } = this;
    if (fleet && !inCatalog(fleet, batch)) this.deps.changes.changed("machine");
    this.scheduleTick();
  }

  /**
   * Per kind of series, the maps a series lives in: its latest value, the row last pushed, and
   * the coming tick's rows and removals.
   */
  private seriesMaps() {
    const { latest } = this.deps;
    const { committed } = this;
    const { rows, removed } = this.startGathering();
    return {
      axis: {
        latest: latest.axes,
        committed: committed.axis,
        rows: rows.axis,
        removed: removed.axis,
      },
      tools: {
        latest: latest.tools,
        committed: committed.tools,
        rows: rows.tools,
        removed: removed.tools,
      },
      toolUsage: {
        latest: latest.toolUsage,
        committed: committed.toolUsage,
        rows: rows.toolUsage,
        removed: removed.toolUsage,
      },
    };
  }

  private startGathering(): { rows: Series; removed: Removals } {
    this.gathering ??= {
      rows: { axis: new Map(), tools: new Map(), toolUsage: new Map() },
      removed: { axis: new Map(), tools: new Map(), toolUsage: new Map() },
    };
    return this.gathering;
  }

  private scheduleTick(): void {
    if (this.tickTimer || this.closed) return;
    this.tickTimer =
      this.options.tickMs > 0
        ? setTimeout(() => this.flushTick(), this.options.tickMs)
        : setImmediate(() => this.flushTick());
  }

  private cancelTick(): void {
    if (!this.tickTimer) return;
    clearTimeout(this.tickTimer as NodeJS.Timeout);
    clearImmediate(this.tickTimer as NodeJS.Immediate);
    this.tickTimer = undefined;
  }

  private flushTick(): void {
    this.tickTimer = undefined;
    const gathering = this.gathering;
    this.gathering = undefined;
    if (!gathering || this.closed) return;
    const { rows, removed } = gathering;
    // A series that lost its value and then got a new one on the same machine within the tick
    // has that one (a removal after a new row takes the row out of `rows`: `reconcile`, `drop`).
    for (const kind of kinds)
      for (const [key, row] of rows[kind] as Map<number, Placed>)
        removed[kind].delete(placeOf(key, row));
    // Every row was no newer than its series' last: nothing happened.
    if (kinds.every((kind) => rows[kind].size === 0 && removed[kind].size === 0)) return;
    const tick: Tick = { seq: ++this.seq, rows: listed(rows), removed: listed(removed) };
    this.remember(tick);
    if (this.waiting) {
      this.wait(tick);
      return;
    }
    if (this.groups.size === 0) {
      this.fanned = tick.seq;
      return;
    }
    if (this.fleet) this.fanOut(tick, this.fleet);
    else this.wait(tick);
  }

  /**
   * The catalog changed and is loading: `tick` goes out once it has, after the ticks already
   * waiting, so ticks stay in order. If the load fails, every subscriber is held, and the sweep
   * sends what each is owed once the catalog is back.
   */
  private wait(tick: Tick): void {
    const waiting = (this.waiting ?? Promise.resolve())
      .then(() => this.currentFleet())
      .then((fleet) => this.fanOut(tick, fleet))
      .catch((error: unknown) => {
        this.reportError(error);
        this.holdAll(tick.seq);
      });
    this.waiting = waiting;
    void waiting.finally(() => {
      if (this.waiting === waiting) this.waiting = undefined;
    });
  }

  private holdAll(seq: number): void {
    for (const group of this.groups.values())
      for (const connection of group.members)
        connection.heldSince ??= Math.max(this.fanned, connection.subscribedAt);
    this.fanned = Math.max(this.fanned, seq);
  }

  private fanOut(tick: Tick, fleet: Fleet): void {
    for (const group of this.groups.values()) {
      let frames: Frame[] | undefined;
      for (const connection of group.members) {
        if (connection.heldSince !== null || tick.seq <= connection.subscribedAt) continue;
        if (connection.bufferedAmount > this.options.highWaterBytes || connection.windowFull) {
          // It has everything fanned out so far; the sweep sends the rest once it drains (or
          // acknowledges).
          connection.heldSince = Math.max(this.fanned, connection.subscribedAt);
          continue;
        }
        frames ??= this.encodeTick(tick, group.filter, group.encoding, fleet);
        connection.sendPush(tick.seq, frames);
      }
    }
    this.fanned = tick.seq;
  }

  /** The push messages of one tick for one filter: one per kind with rows. */
  private encodeTick(
    tick: Tick,
    filter: LiveFilter,
    encoding: LiveEncoding,
    fleet: Fleet,
  ): Frame[] {
    return encodeMessages(tick.seq, filterChanges(tick, filter), filter, encoding, fleet);
  }

  /**
   * The changes `filter` matches that came after tick `after`, up to `fanned`: the newest
   * committed rows, and the series that lost their value.
   */
  private owed(after: number, filter: LiveFilter): Changes {
    const changed = (series: CommittedSeries | StampedRemovals): Rows => {
      const since = <Row>(stamped: Map<unknown, Stamped<Row>>) => {
        const rows: Row[] = [];
        for (const { row, seq } of stamped.values())
          if (seq > after && seq <= this.fanned) rows.push(row);
        return rows;
      };
      return filterRows(
        {
          axis: since(series.axis),
          tools: since(series.tools),
          toolUsage: since(series.toolUsage),
        },
        filter,
      );
    };
    return { rows: changed(this.committed), removed: changed(this.removed) };
  }

  private remember(tick: Tick): void {
    const { committed, removed } = this;
    for (const row of tick.rows.axis) newestCommitted(committed.axis, row.axisId, row, tick.seq);
    for (const row of tick.rows.tools) newestCommitted(committed.tools, row.toolId, row, tick.seq);
    for (const row of tick.rows.toolUsage)
      newestCommitted(committed.toolUsage, row.machineId, row, tick.seq);
    stampRemovals(removed.axis, tick, "axis", (row) => row.axisId);
    stampRemovals(removed.tools, tick, "tools", (row) => row.toolId);
    stampRemovals(removed.toolUsage, tick, "toolUsage", (row) => row.machineId);
    this.ring.push(tick);
    this.ringRowCount += changeCount(tick);
    while (
      this.ring.length > this.options.ringTicks ||
      (this.ringRowCount > this.options.ringRows && this.ring.length > 1)
    ) {
      this.ringRowCount -= changeCount(this.ring.shift()!);
    }
  }

  /**
   * What a client resuming from `since` missed, tick by tick, filtered; undefined when the ring
   * no longer holds every tick after `since`, `since` is ahead (another run's), or replaying it
   * would take more rows than a snapshot is worth (`maxReplayRows`).
   */
  private missed(since: number, filter: LiveFilter): Tick[] | undefined {
    if (since > this.seq) return undefined;
    const oldest = this.ring[0];
    if (since < this.seq && (oldest === undefined || oldest.seq > since + 1)) return undefined;
    const missed: Tick[] = [];
    let count = 0;
    for (const tick of this.ring) {
      if (tick.seq <= since) continue;
      const changes = filterChanges(tick, filter);
      count += changeCount(changes);
      if (count > this.options.maxReplayRows) return undefined;
      missed.push({ seq: tick.seq, ...changes });
    }
    return missed;
  }

  // --- slow sockets, heartbeat, tokens ---

  /**
   * Sends held-back rows to sockets that have drained (or whose rate allows), drops stalled ones
   * and closes those whose token has expired.
   */
  private sweep(): void {
    const now = performance.now();
    const wallClock = this.deps.clock.now();
    const fleet = this.fleet;
    // Sockets of one group held since the same tick are owed the same bytes: encoded once.
    const owedFrames = new Map<string, Frame[]>();
    // Removals are kept for held sockets only: a socket that is not held has been sent every tick
    // fanned out, and one held later is marked at `fanned` or after.
    let oldestHeld = this.fanned;
    for (const connection of this.connections) {
      // A token that expired gets nothing more: its socket is closed within a sweep.
      if (connection.principal && connection.principal.expiresAt <= wallClock) {
        connection.close(closeCodes.unauthorized, "Token expired");
        continue;
      }
      if (connection.heldSince !== null) oldestHeld = Math.min(oldestHeld, connection.heldSince);
      const backlog = connection.bufferedAmount;
      if (backlog > this.options.highWaterBytes) {
        connection.stalledSince ??= now;
        if (
          backlog > this.options.maxBufferedBytes ||
          now - connection.stalledSince > this.options.stalledDropMs
        )
          connection.terminate();
        continue;
      }
      connection.stalledSince = undefined;
      const { heldSince, filter, groupKey } = connection;
      if (heldSince === null || !filter || groupKey === null || !fleet) continue;
      if (now < connection.nextPushAt) continue;
      if (connection.windowFull) continue;
      const rateLimited = connection.minIntervalMs > 0;
      if (heldSince < this.fanned) {
        const key = `${heldSince} ${groupKey}`;
        let frames = owedFrames.get(key);
        if (!frames) {
          const changes = this.owed(heldSince, filter);
          frames = encodeMessages(this.fanned, changes, filter, connection.encoding, fleet);
          owedFrames.set(key, frames);
        }
        connection.sendPush(this.fanned, frames);
        // Due times step by the interval, so the rate asked is met on average although the
        // sweep runs on its own grid; a socket that had nothing to send for a while gets no
        // burst (at most one push more than the interval allows, a sweep early).
        if (frames.length > 0)
          connection.nextPushAt = Math.max(
            connection.nextPushAt + connection.minIntervalMs,
            now + connection.minIntervalMs - this.options.sweepMs,
          );
      }
      // Caught up: a slow reader rejoins the shared pushes; a rate-limited one keeps holding.
      // (Never below its snapshot: ticks may still be waiting for the catalog.)
      connection.heldSince = rateLimited ? Math.max(this.fanned, connection.subscribedAt) : null;
    }
    for (const map of Object.values(this.removed) as Map<string, { seq: number }>[])
      for (const [key, { seq }] of map) if (seq <= oldestHeld) map.delete(key);
  }

  private beat(): void {
    for (const connection of this.connections) {
      if (!connection.alive) {
        connection.terminate();
        continue;
      }
      connection.alive = false;
      connection.socket.ping();
    }
  }

  /**
   * Looks every socket's token up again on the next turn; a change during a recheck runs another
   * after it, so the last one to finish always saw the last change.
   */
  scheduleRecheck(): void {
    if (this.rechecking || this.recheck) {
      this.recheckAgain = true;
      return;
    }
    if (this.connections.size === 0) return;
    this.recheck = setImmediate(() => {
      this.recheck = undefined;
      this.recheckAgain = false;
      const rechecking = this.recheckTokens().catch((error: unknown) => this.reportError(error));
      this.rechecking = rechecking;
      void rechecking.finally(() => {
        this.rechecking = undefined;
        if (this.recheckAgain && !this.closed) this.scheduleRecheck();
      });
    });
  }

  /**
   * Tokens, users or permissions changed: each distinct token is looked up again, once, a few at
   * a time. A token that could not be looked up keeps its socket for now, and the whole recheck
   * runs again a second later, until one gets through: a revocation is never forgotten.
   */
  private async recheckTokens(): Promise<void> {
    const byToken = new Map<string, LiveConnection[]>();
    for (const connection of this.connections) {
      if (!connection.token) continue;
      const list = byToken.get(connection.token) ?? [];
      list.push(connection);
      byToken.set(connection.token, list);
    }
    const tokens = [...byToken];
    let unavailable = false;
    const worker = async () => {
      for (let next = tokens.shift(); next; next = tokens.shift()) {
        const [token, connections] = next;
        const outcome = await this.resolve(token);
        if (outcome === "unavailable") unavailable = true;
        else this.applyRecheck(token, connections, outcome);
      }
    };
    await Promise.all(Array.from({ length: recheckConcurrency }, worker));
    if (unavailable && !this.closed) {
      this.recheckRetry ??= setTimeout(() => {
        this.recheckRetry = undefined;
        this.scheduleRecheck();
      }, recheckRetryMs);
      this.recheckRetry.unref();
    }
  }

  private applyRecheck(
    token: string,
    connections: LiveConnection[],
    outcome: Principal | "invalid" | "failed",
  ): void {
    for (const connection of connections) {
      if (!connection.isOpen || connection.token !== token) continue;
      if (outcome === "invalid") {
        connection.close(closeCodes.unauthorized, "Token revoked or expired");
      } else if (outcome === "failed") {
        // Not known to be valid still: closed, as a token that cannot be checked at the upgrade is.
        connection.close(1011, "The token could not be checked");
      } else if (!this.mayView(outcome)) {
        connection.close(closeCodes.forbidden, "No permission to view machine data");
      } else {
        this.grant(connection, outcome);
      }
    }
  }

  /**
   * Whether `connection` may act for `principal`: it already counts against that user (a
   * renewal), or the user holds fewer sockets than allowed. A renewal with another user's token
   * moves the socket to that user, so it takes a place of theirs.
   */
  hasRoomFor(connection: LiveConnection, principal: Principal): boolean {
    const owner = ownerOf(principal);
    if (connection.principal && ownerOf(connection.principal) === owner) return true;
    let held = 0;
    for (const other of this.connections)
      if (other.principal && ownerOf(other.principal) === owner) held += 1;
    return held < this.options.maxSocketsPerUser;
  }

  /**
   * `principal` now acts on the socket: its subscription keeps only the kinds it may see. It
   * never widens: a kind regained would come without its snapshot, so it takes a new subscribe.
   */
  grant(connection: LiveConnection, principal: Principal): void {
    connection.principal = principal;
    const filter = connection.filter;
    if (!filter) return;
    const permitted = permittedKinds(principal);
    this.leaveGroup(connection);
    connection.filter = {
      ...filter,
      axisData: filter.axisData && permitted.axisData,
      tools: filter.tools && permitted.tools,
      toolUsage: filter.toolUsage && permitted.toolUsage,
    };
    this.joinGroup(connection);
  }

  private async currentFleet(): Promise<Fleet> {
    const changes = this.fleetChanges;
    const fleet = await this.deps.catalog.fleet();
    // A load that began before the last change is what was, not what is: use it, keep nothing.
    if (changes === this.fleetChanges && this.fleet !== fleet) {
      this.fleet = fleet;
      this.forgetDeleted(fleet);
    }
    return fleet;
  }

  /**
   * Drops the newest values of axes, and of machines' tools and tool usage, that are no longer in
   * `fleet`; the next tick tells subscribers they are gone.
   */
  private forgetDeleted(fleet: Fleet): void {
    const maps = this.seriesMaps();
    const gone = (row: Placed) => !fleet.machines.has(row.machineId);
    drop(maps.axis, (row) => !fleet.axes.has(row.axisId));
    drop(maps.tools, gone);
    drop(maps.toolUsage, gone);
    // An axis renamed or moved by another writer (another server, SQL): read again in its new
    // place, as a CRUD write of this server's is, so its old place's subscribers are told.
    const moved: number[] = [];
    for (const [axisId, row] of maps.axis.latest) {
      const axis = fleet.axes.get(axisId);
      if (axis && (axis.machineId !== row.machineId || axis.axisName !== row.axisName))
        moved.push(axisId);
    }
    if (moved.length > 0) void this.restoreInTurn(() => ({ axes: moved, tools: [], machines: [] }));
    this.scheduleTick();
  }

  /**
   * A tool was deleted or moved to another machine (the database announces it as
   * `tool_placement`, migration 0009): one deleted or moved by another writer would otherwise
   * stay where it was in the latest values, since no report of it will commit here. The tools
   * held are looked up a moment later (announcements close together make one look; one during a
   * look makes another), and those gone or moved are read again, so their subscribers are told.
   * A look that fails is tried again at the next announcement.
   */
  private checkToolsSoon(): void {
    if (this.closed || this.toolCheck) return;
    this.toolCheck = setTimeout(() => {
      this.toolCheck = undefined;
      void this.checkTools();
    }, toolCheckMs);
    this.toolCheck.unref();
  }

  private async checkTools(): Promise<void> {
    const held = [...this.deps.latest.tools.values()];
    if (this.closed || held.length === 0) return;
    let stored: Map<number, number>;
    try {
      const { rows } = await this.deps.db.query<{ tool_id: number; machine_id: number }>(
        "select tool_id, machine_id from tool where tool_id = any($1::bigint[])",
        [held.map((row) => row.toolId)],
      );
      stored = new Map(rows.map((row) => [Number(row.tool_id), Number(row.machine_id)]));
    } catch (error) {
      this.reportError(error);
      return;
    }
    const changed = held
      .filter((row) => stored.get(row.toolId) !== row.machineId)
      .map((row) => row.toolId);
    if (changed.length > 0)
      await this.restoreInTurn(() => ({ axes: [], tools: changed, machines: [] }));
  }

  /**
   * The machine catalog changed: loads it, so subscribers hear of deleted machines and axes
   * without waiting for the next data. On the next turn, after every listener of the change (the
   * catalog's own among them) has run; one load at a time, and changes during one make one more.
   * A load that fails is tried again a second later.
   */
  private refreshFleet(): void {
    if (this.refreshing) {
      this.refreshAgain = true;
      return;
    }
    if (this.closed || this.groups.size === 0) return;
    this.refreshing = true;
    this.refreshAgain = false;
    setImmediate(() => {
      if (this.closed) {
        this.refreshing = false;
        return;
      }
      void this.currentFleet()
        .catch((error: unknown) => {
          this.reportError(error);
          if (this.closed) return;
          this.refreshRetry ??= setTimeout(() => {
            this.refreshRetry = undefined;
            this.refreshFleet();
          }, refreshRetryMs);
          this.refreshRetry.unref();
        })
        .finally(() => {
          this.refreshing = false;
          if (this.refreshAgain) this.refreshFleet();
        });
    });
  }

  private joinGroup(connection: LiveConnection): void {
    const key = `${connection.encoding} ${filterKey(connection.filter!)}`;
    let group = this.groups.get(key);
    if (!group) {
      group = { filter: connection.filter!, encoding: connection.encoding, members: new Set() };
      this.groups.set(key, group);
    }
    group.members.add(connection);
    connection.groupKey = key;
  }

  private leaveGroup(connection: LiveConnection): void {
    if (connection.groupKey === null) return;
    const group = this.groups.get(connection.groupKey);
    group?.members.delete(connection);
    if (group && group.members.size === 0) this.groups.delete(connection.groupKey);
    connection.groupKey = null;
  }
}

/** Token lookups a recheck runs at once: a fraction of the database pool. */
const recheckConcurrency = 4;
/** How soon a recheck that could not reach the database runs again. */
const recheckRetryMs = 1000;
/** How soon a catalog load after a change that failed runs again. */
const refreshRetryMs = 1000;
/** How soon the tools held are looked up after a tool was deleted or moved. */
const toolCheckMs = 100;

const allFields = filterOf(
  { type: "subscribe" },
  { axisData: true, tools: true, toolUsage: true },
).fields;

/** Whose sockets count together: the user's, or for a token without one, its client's. */
const ownerOf = (principal: Principal): string =>
  principal.userId === null ? `client:${principal.clientId}` : `user:${principal.userId}`;

const permittedKinds = (principal: Principal) => ({
  axisData: principal.permissions.has("axisdata.view"),
  tools: principal.permissions.has("tool.view"),
  toolUsage: principal.permissions.has("toolusage.view"),
});

const kinds = ["axis", "tools", "toolUsage"] as const;

/**
 * Every row belongs to a machine, which decides who is sent it; an axis's sample also has the
 * axis's name, which subscribers may filter on.
 */
type Placed = { machineId: number; axisName?: string };

/**
 * Where a removal applies: the series `key`, on the machine the row was on, under the name its
 * axis had. A series whose place changed (a tool or axis moved, an axis renamed) is removed from
 * the old place, for the subscribers who chose it by its old machine or name, and is new in the
 * other.
 */
const placeOf = (key: number, row: Placed) =>
  row.axisName === undefined
    ? `${key}@${row.machineId}`
    : `${key}@${row.machineId}/${row.axisName}`;

/**
 * Keeps `tick`'s removals of one kind, stamped with its seq, for held-back sockets; a series with
 * a value again on the same machine is owed that value, not its removal.
 */
function stampRemovals<Kind extends (typeof kinds)[number], Row extends Rows[Kind][number]>(
  removed: Map<string, Stamped<Row>>,
  tick: Tick,
  kind: Kind,
  keyOf: (row: Row) => number,
): void {
  for (const row of tick.removed[kind] as Row[])
    removed.set(placeOf(keyOf(row), row), { row, seq: tick.seq });
  for (const row of tick.rows[kind] as Row[]) removed.delete(placeOf(keyOf(row), row));
}

const noRows: Rows = { axis: [], tools: [], toolUsage: [] };

const listed = (series: Series | Removals): Rows => ({
  axis: [...series.axis.values()],
  tools: [...series.tools.values()],
  toolUsage: [...series.toolUsage.values()],
});

/** Rows and removals together: what a tick weighs in the ring, or a replay. */
const changeCount = ({ rows, removed }: Changes) =>
  kinds.reduce((sum, kind) => sum + rows[kind].length + removed[kind].length, 0);

function filterRows(rows: Rows, filter: LiveFilter): Rows {
  return {
    axis: filter.axisData ? rows.axis.filter((row) => axisMatches(filter, row)) : [],
    tools: filter.tools ? rows.tools.filter((row) => machineMatches(filter, row.machineId)) : [],
    toolUsage: filter.toolUsage
      ? rows.toolUsage.filter((row) => machineMatches(filter, row.machineId))
      : [],
  };
}

const filterChanges = (changes: Changes, filter: LiveFilter): Changes => ({
  rows: filterRows(changes.rows, filter),
  removed: filterRows(changes.removed, filter),
});

/**
 * The messages carrying `changes` for one filter in one encoding: one per kind with rows or
 * removals, or per kind the filter has at all when `flags` marks a snapshot. A removed series is
 * named by its key in `deleted`: an axis by `axis`, a tool by `tool_id`, a machine's tool in use
 * by `machine`.
 */
function encodeMessages(
  seq: number,
  { rows: committed, removed }: Changes,
  filter: LiveFilter,
  encoding: LiveEncoding,
  fleet: Fleet,
  flags: { snapshot?: true; reset?: true } = {},
): Frame[] {
  // Only what the catalog has: a row committed before its axis or machine was deleted may be
  // published after the deletion was told, and the latest values keep it until the next reload.
  const rows: Rows = {
    axis: committed.axis.filter((row) => fleet.axes.has(row.axisId)),
    tools: committed.tools.filter((row) => fleet.machines.has(row.machineId)),
    toolUsage: committed.toolUsage.filter((row) => fleet.machines.has(row.machineId)),
  };
  const all = flags.snapshot === true;
  const frames: Frame[] = [];
  // A series may have left two machines a subscriber watches (a tool moved, then deleted).
  const deleted = (keys: number[]) => (keys.length > 0 ? { deleted: [...new Set(keys)] } : {});
  if (rows.axis.length > 0 || removed.axis.length > 0 || (all && filter.axisData)) {
    const data = rows.axis.map((row) =>
      axisRow(row, fleet.machines.get(row.machineId), filter.fields),
    );
    frames.push(
      encodeRows(
        {
          type: "axis_data",
          seq,
          ...flags,
          ...deleted(removed.axis.map((row) => row.axisId)),
          rows: data,
          fields: filter.fields,
        },
        encoding,
      ),
    );
  }
  if (rows.tools.length > 0 || removed.tools.length > 0 || (all && filter.tools)) {
    frames.push(
      encodeRows(
        {
          type: "tool_data",
          seq,
          ...flags,
          ...deleted(removed.tools.map((row) => row.toolId)),
          rows: rows.tools.map(toolRow),
          fields: toolFields,
        },
        encoding,
      ),
    );
  }
  if (rows.toolUsage.length > 0 || removed.toolUsage.length > 0 || (all && filter.toolUsage)) {
    frames.push(
      encodeRows(
        {
          type: "tool_usage",
          seq,
          ...flags,
          ...deleted(removed.toolUsage.map((row) => row.machineId)),
          rows: rows.toolUsage.map(toolUsageRow),
          fields: toolUsageFields,
        },
        encoding,
      ),
    );
  }
  return frames;
}

/**
 * Makes the latest values of `keys` what the database holds (`stored`), unless ingest published
 * newer ones while it was read, and puts what changed in the coming tick in place of whatever it
 * held for those series: the stored row (`rows`), or, for a series that had a value and has
 * nothing stored now, its removal (`removed`); a series in another place (a tool or axis moved,
 * an axis renamed) has both, so the subscribers of the old place hear it left. Their pushed (committed) rows are dropped,
 * so the tick carries the changed ones even where the stored row is older: after a correction or
 * a deletion the newest stored value is the news.
 */
function reconcile<Row extends Placed & { time: string }>(
  maps: {
    latest: Map<number, Row>;
    committed: Map<number, Stamped<Row>>;
    rows: Map<number, Row>;
    removed: Map<string, Row>;
  },
  keys: number[],
  held: (Row | undefined)[],
  stored: Row[],
  keyOf: (row: Row) => number,
): void {
  const { latest, committed, rows, removed } = maps;
  const byKey = new Map(stored.map((row) => [keyOf(row), row]));
  for (const [i, key] of keys.entries()) {
    const before = held[i];
    if (latest.get(key) !== before) continue;
    const row = byKey.get(key);
    if (!row) {
      latest.delete(key);
      committed.delete(key);
      rows.delete(key);
      if (before) removed.set(placeOf(key, before), before);
    } else if (!before || !sameValues(before, row)) {
      latest.set(key, row);
      committed.delete(key);
      rows.set(key, row);
      if (before && placeOf(key, before) !== placeOf(key, row))
        removed.set(placeOf(key, before), before);
    }
  }
}

/**
 * Moves the rows `gone` picks out of `latest` into `removed` (the coming tick's removals), and
 * forgets their pushed rows and any gathered for the coming tick.
 */
function drop<Row extends Placed>(
  maps: {
    latest: Map<number, Row>;
    committed: Map<number, Stamped<Row>>;
    rows: Map<number, Row>;
    removed: Map<string, Row>;
  },
  gone: (row: Row) => boolean,
): void {
  const { latest, committed, rows, removed } = maps;
  for (const [key, row] of latest)
    if (gone(row)) {
      latest.delete(key);
      removed.set(placeOf(key, row), row);
    }
  for (const [key, { row }] of committed) if (gone(row)) committed.delete(key);
  for (const [key, row] of rows) if (gone(row)) rows.delete(key);
}

/** The same values, at the same millisecond (a time's text may differ in its digits). */
function sameValues<Row extends { time: string }>(a: Row, b: Row): boolean {
  const fields = Object.keys(a) as (keyof Row)[];
  return fields.every((field) =>
    field === "time"
      ? Date.parse(a.time) === Date.parse(b.time)
      : field === "timeMs"
        ? Math.floor(a[field] as number) === Math.floor(b[field] as number)
        : a[field] === b[field],
  );
}

function newestCommitted<Row extends { timeMs: number }>(
  map: Map<number, Stamped<Row>>,
  key: number,
  row: Row,
  seq: number,
) {
  const held = map.get(key);
  if (!held || held.row.timeMs <= row.timeMs) map.set(key, { row, seq });
}

/**
 * Gathers a committed batch's rows of one kind that are news. A live push moves a series
 * forward: a row that did not become its series' latest value, or is no newer than the one last
 * pushed (a late or repeated report, or one from before a restart that the latest values were
 * loaded past), is history, not news, and is left to history queries.
 */
function gatherNews<Row extends { timeMs: number }>(
  batch: Row[],
  keyOf: (row: Row) => number,
  {
    latest,
    committed,
    rows,
  }: { latest: Map<number, Row>; committed: Map<number, Stamped<Row>>; rows: Map<number, Row> },
): void {
  for (const row of batch) {
    const key = keyOf(row);
    if (latest.get(key) === row) newer(rows, committed, key, row);
  }
}

/**
 * Whether `fleet` has every machine the batch's rows are of, and every axis where the rows place it
 * (its machine and name).
 */
function inCatalog(fleet: Fleet, batch: ValidBatch): boolean {
  // An axis placed otherwise than the catalog has it was validated before a rename or move and
  // committed after it: the reload finds it moved and reads it again in its place.
  const placed = (row: AxisSampleRow) => {
    const axis = fleet.axes.get(row.axisId);
    return axis !== undefined && axis.machineId === row.machineId && axis.axisName === row.axisName;
  };
  return (
    batch.axis.every(placed) &&
    batch.tools.every((row) => fleet.machines.has(row.machineId)) &&
    batch.toolUsage.every((row) => fleet.machines.has(row.machineId))
  );
}

/**
 * Gathers `row` into a tick if it is newer than its series' last pushed row and than any gathered
 * so far. Equal times lose: the database keeps the first row of a series at a time, too.
 */
function newer<Row extends { timeMs: number }>(
  gathering: Map<number, Row>,
  committed: Map<number, Stamped<Row>>,
  key: number,
  row: Row,
) {
  const pushed = committed.get(key);
  if (pushed && pushed.row.timeMs >= row.timeMs) return;
  const held = gathering.get(key);
  if (!held || held.timeMs < row.timeMs) gathering.set(key, row);
}
