import type { Api } from "../api/client.ts";
import type { AxisSample } from "../api/types.ts";
import type { LiveSource } from "./live.ts";
import { Store } from "./store.ts";

export type LiveStatus = "idle" | "connecting" | "open" | "reconnecting" | "polling";

interface Subscriber {
  machines: Set<number>;
  deliver: (rows: AxisSample[]) => void;
  /** Stops the polling stand-in, when the socket gave way to polling. */
  stopFallback?: () => void;
  /** The feed skipped ticks (a resume too far behind came back as a reset snapshot). */
  gap?: () => void;
  start: (fallback: LiveSource) => () => void;
}

interface ServerMessage {
  type: string;
  seq?: number;
  snapshot?: boolean;
  reset?: boolean;
  data?: unknown;
  message?: string;
}

/**
 * Pushes the server may send before the tab acknowledges them: a tab too busy to keep up (a
 * heavy page, a slow machine) gets the newest values instead of a queue of old ones.
 */
const pushWindow = 8;
/**
 * Subscribes are at least this far apart: Spindle takes 2 a second (bursts of 10) and refuses
 * the rest, and scrolling a large fleet changes the machines on screen many times a second.
 */
const subscribeSpacingMs = 600;
/**
 * Acknowledgements are cumulative, so one per this interval says as much as one per push: a
 * burst of pushes (a replay after a reconnect) must not spend the 50 messages a second Spindle
 * takes from a socket, and leave none for a subscribe.
 */
const ackSpacingMs = 50;

/**
 * Live data over `/ws/machine_data/`: one socket for the tab, subscribed to the union of the
 * machines the pages watch; a snapshot, then pushes per tick. A dropped socket reconnects with
 * `since_seq`, so the server replays what was missed (or sends a fresh snapshot); one closed
 * because no page watched any more starts afresh. If the socket
 * never opens (a proxy without WebSocket, a server without the feed), it gives way to polling.
 */
export class WebSocketLiveSource implements LiveSource {
  /** What the connection is doing, for the reconnecting banner. */
  readonly status = new Store<LiveStatus>("idle");
  private socket: WebSocket | undefined;
  private subscribers = new Set<Subscriber>();
  private lastSeq: number | undefined;
  private everOpened = false;
  private failures = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private subscribeTimer: ReturnType<typeof setTimeout> | undefined;
  private subscribedKey: string | undefined;
  private lastSubscribeAt = Number.NEGATIVE_INFINITY;
  private authenticated = false;
  private primed = new Set<number>();
  /** The newest push acknowledged since the last subscribe. */
  private acknowledged: number | undefined;
  /** The newest push handled and not yet acknowledged, waiting for `ackTimer`. */
  private toAcknowledge: number | undefined;
  private ackTimer: ReturnType<typeof setTimeout> | undefined;
  private lastAckAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly api: Api,
    private readonly fallback: LiveSource,
    private readonly url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/machine_data/`,
  ) {
    api.session.subscribe(({ tokens }) => {
      if (!tokens) {
        this.disconnect();
      } else if (this.socket?.readyState === WebSocket.OPEN) {
        // A renewed token replaces the old one on the open socket.
        this.send({ type: "authenticate", token: tokens.access });
      }
    });
  }

  get description(): string {
    return this.status.get() === "polling" ? this.fallback.description : "pushed as it arrives";
  }

  watch(
    machines: readonly number[],
    onSamples: (samples: AxisSample[]) => void,
    onAnswered?: (machine: number) => void,
  ): () => void {
    if (this.status.get() !== "polling") void this.prime(machines, onSamples, onAnswered);
    return this.add({
      machines: new Set(machines),
      deliver: onSamples,
      start: (fallback) => fallback.watch(machines, onSamples, onAnswered),
    });
  }

  follow(
    machine: number,
    since: string,
    onSamples: (samples: AxisSample[]) => void,
    onGap?: () => void,
  ): () => void {
    // Only samples newer than what the page already holds, per axis.
    const newest = new Map<string, number>();
    const after = Date.parse(since);
    return this.add({
      machines: new Set([machine]),
      deliver: (rows) => {
        const fresh = rows.filter((row) => {
          const at = Date.parse(row.update_timestamp);
          if (at <= Math.max(after, newest.get(row.axis_name) ?? 0)) return false;
          newest.set(row.axis_name, at);
          return true;
        });
        if (fresh.length > 0) onSamples(fresh);
      },
      ...(onGap ? { gap: onGap } : {}),
      start: (fallback) => fallback.follow(machine, since, onSamples),
    });
  }

  /**
   * The socket sends each series' newest value; a tile's feed trend wants the recent past too,
   * so each machine's last rows are read once over REST, a few machines at a time. That answer
   * also tells a machine with no data (the socket sends nothing for it) from one still loading.
   */
  private async prime(
    machines: readonly number[],
    onSamples: (samples: AxisSample[]) => void,
    onAnswered: ((machine: number) => void) | undefined,
  ): Promise<void> {
    const queue = machines.filter((machine) => !this.primed.has(machine));
    for (const machine of queue) this.primed.add(machine);
    const worker = async () => {
      for (let machine = queue.shift(); machine !== undefined; machine = queue.shift()) {
        try {
          onSamples(
            await this.api.get<AxisSample[]>("/data/axises/", {
              machine,
              ordering: "-update_timestamp",
              limit: 200,
            }),
          );
          onAnswered?.(machine);
        } catch {
          this.primed.delete(machine);
        }
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
  }

  private add(subscriber: Subscriber): () => void {
    this.subscribers.add(subscriber);
    clearTimeout(this.idleTimer);
    if (this.status.get() === "polling") {
      subscriber.stopFallback = subscriber.start(this.fallback);
    } else {
      this.ensureSocket();
      this.scheduleSubscribe();
    }
    return () => {
      if (!this.subscribers.delete(subscriber)) return;
      subscriber.stopFallback?.();
      if (this.subscribers.size === 0) {
        // Moving between pages unsubscribes and subscribes at once: keep the socket a moment.
        this.idleTimer = setTimeout(() => this.disconnect(), 5000);
      } else {
        this.scheduleSubscribe();
      }
    };
  }

  private ensureSocket(): void {
    if (this.socket || this.retryTimer !== undefined) return;
    const tokens = this.api.session.get().tokens;
    if (!tokens) return;
    this.status.set(this.everOpened ? "reconnecting" : "connecting");
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url);
    } catch {
      this.failed();
      return;
    }
    this.socket = socket;
    this.authenticated = false;
    this.subscribedKey = undefined;
    let sentToken: string | undefined;
    socket.onopen = () => {
      const current = this.api.session.get().tokens;
      sentToken = current?.access;
      if (current) this.send({ type: "authenticate", token: current.access });
      // A socket that opens but never answers (a stalled proxy) is as good as closed.
      setTimeout(() => {
        if (this.socket === socket && !this.authenticated) socket.close(4000, "no answer");
      }, 10_000);
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = undefined;
      this.authenticated = false;
      this.cancelAck();
      if (event.code === 4401) {
        // Renewing the tokens revokes the access token this socket used: come back with the new one.
        if (this.api.session.get().tokens?.access !== sentToken) {
          this.ensureSocket();
          return;
        }
        // An expired token: renew it (a refused renewal ends the session), then come back. If
        // the renewal could not be made now, reconnecting tries it again, and says so meanwhile.
        void this.api.refresh().then(() => this.failed());
        return;
      }
      if (event.code === 4403) {
        this.toPolling();
        return;
      }
      this.failed();
    };
  }

  private failed(): void {
    this.failures++;
    if (this.subscribers.size === 0 || !this.api.session.get().tokens) {
      this.status.set("idle");
      return;
    }
    // Never opened twice in a row: this server or network has no WebSocket for us.
    if (!this.everOpened && this.failures >= 2) {
      this.toPolling();
      return;
    }
    this.status.set(this.everOpened ? "reconnecting" : "connecting");
    const delay = Math.min(5000, 250 * 2 ** this.failures) * (0.75 + Math.random() / 2);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.ensureSocket();
    }, delay);
  }

  private toPolling(): void {
    this.disconnect();
    this.status.set("polling");
    for (const subscriber of this.subscribers) {
      subscriber.stopFallback = subscriber.start(this.fallback);
    }
  }

  private disconnect(): void {
    clearTimeout(this.retryTimer);
    clearTimeout(this.subscribeTimer);
    this.retryTimer = undefined;
    this.cancelAck();
    // Closed on purpose (no page watching, or signed out): whoever watches next reads its own
    // window and wants a snapshot, not a replay of everything pushed while no one watched.
    this.lastSeq = undefined;
    const socket = this.socket;
    this.socket = undefined;
    socket?.close(1000, "done");
    if (this.status.get() !== "polling") this.status.set("idle");
  }

  /** Subscribes once for a burst of page changes, and no sooner than the server allows. */
  private scheduleSubscribe(delayMs = 30): void {
    clearTimeout(this.subscribeTimer);
    const wait = Math.max(delayMs, this.lastSubscribeAt + subscribeSpacingMs - Date.now());
    this.subscribeTimer = setTimeout(() => this.subscribe(), wait);
  }

  private subscribe(): void {
    if (!this.authenticated || this.subscribers.size === 0) return;
    const machines = [...new Set([...this.subscribers].flatMap((s) => [...s.machines]))].sort(
      (a, b) => a - b,
    );
    const key = machines.join(",");
    if (key === this.subscribedKey) return;
    this.subscribedKey = key;
    this.lastSubscribeAt = Date.now();
    this.acknowledged = undefined;
    this.cancelAck();
    this.send({
      type: "subscribe",
      machines,
      window: pushWindow,
      ...(this.lastSeq === undefined ? {} : { since_seq: this.lastSeq }),
    });
  }

  private send(message: unknown): void {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  private receive(text: unknown): void {
    let message: ServerMessage;
    try {
      message = JSON.parse(String(text)) as ServerMessage;
    } catch {
      return;
    }
    if (typeof message.seq === "number") this.lastSeq = Math.max(this.lastSeq ?? 0, message.seq);
    this.handle(message);
    // Handled: its place in the window is free. One ack covers every push up to its seq, so
    // the pushes handled within an interval share one.
    const { seq } = message;
    if (typeof seq === "number" && !message.snapshot && seq > (this.acknowledged ?? -1)) {
      this.toAcknowledge = Math.max(this.toAcknowledge ?? seq, seq);
      this.ackTimer ??= setTimeout(
        () => this.flushAck(),
        Math.max(0, this.lastAckAt + ackSpacingMs - Date.now()),
      );
    }
  }

  private flushAck(): void {
    this.ackTimer = undefined;
    const seq = this.toAcknowledge;
    this.toAcknowledge = undefined;
    if (seq === undefined || seq <= (this.acknowledged ?? -1)) return;
    this.acknowledged = seq;
    this.lastAckAt = Date.now();
    this.send({ type: "ack", seq });
  }

  private cancelAck(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.toAcknowledge = undefined;
  }

  private handle(message: ServerMessage): void {
    switch (message.type) {
      case "authenticated":
        this.authenticated = true;
        this.everOpened = true;
        this.failures = 0;
        this.status.set("open");
        this.subscribe();
        return;
      case "axis_data": {
        // Too far behind to replay: what came between is not in the feed.
        if (message.reset) for (const subscriber of this.subscribers) subscriber.gap?.();
        if (!Array.isArray(message.data) || message.data.length === 0) return;
        const rows = message.data as AxisSample[];
        for (const subscriber of this.subscribers) {
          const mine = rows.filter((row) => subscriber.machines.has(row.machine_id));
          if (mine.length > 0) subscriber.deliver(mine);
        }
        return;
      }
      case "error":
        console.warn("live feed:", message.message);
        // Refused for its pace (another tab's, or a burst before this one): ask again shortly.
        if (/^Too many subscribe/.test(String(message.message))) {
          this.subscribedKey = undefined;
          this.scheduleSubscribe(1000);
        }
        return;
      default:
        // tool_data, tool_usage: the pages read tools over REST for now.
        return;
    }
  }
}
