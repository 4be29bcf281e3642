import { performance } from "node:perf_hooks";
import type { WebSocket } from "ws";
import type { Principal } from "../../platform/context.ts";
import type { Frame, LiveEncoding } from "./live-encoding.ts";
import type { LiveHub } from "./live-hub.ts";
import { type ClientMessage, type LiveFilter, parseClientMessage } from "./live-messages.ts";

/** Close codes: 4401 the token is missing, invalid, revoked or expired; 4403 it may view nothing. */
export const closeCodes = { unauthorized: 4401, forbidden: 4403, tooMany: 4429 } as const;

class TokenBucket {
  private tokens: number;
  private at = performance.now();
  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }
  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) / 1000) * this.perSecond);
    this.at = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** One WebSocket: its authentication, subscription, rate limits and conflation state. */
export class LiveConnection {
  principal: Principal | null = null;
  token: string | null = null;
  filter: LiveFilter | null = null;
  encoding: LiveEncoding = "json";
  groupKey: string | null = null;
  /** Milliseconds between pushes (`max_rate_hz`); 0 = as data arrives. */
  minIntervalMs = 0;
  /** Under `max_rate_hz`, when (`performance.now()`) the next push is due. */
  nextPushAt = 0;
  /**
   * Non-null while pushes are held back (slow reader or rate limit): the seq up to which the
   * socket has been sent everything. What it is owed is worked out when it is sent, from the
   * hub's newest committed rows, so holding costs nothing per tick.
   */
  heldSince: number | null = null;
  /** The `seq` its subscription's snapshot or replay reached: later ticks only are pushed. */
  subscribedAt = 0;
  /** Most pushes sent and not yet acknowledged (`window`); 0 = no acknowledgements asked. */
  private window = 0;
  /** The seqs of pushes sent and not yet acknowledged, oldest first. */
  private unacked: number[] = [];
  stalledSince: number | undefined;
  alive = true;
  private closed = false;
  private authenticating: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();
  /** Bytes of the messages received and not yet handled (each held whole until its turn). */
  private queuedBytes = 0;
  private readonly authTimer: NodeJS.Timeout;
  private readonly messages: TokenBucket;
  private readonly subscribes: TokenBucket;

  constructor(
    readonly socket: WebSocket,
    private readonly hub: LiveHub,
    initialToken: string | undefined,
  ) {
    const options = hub.options;
    this.messages = new TokenBucket(options.messagesPerSecond, options.messageBurst);
    this.subscribes = new TokenBucket(options.subscribesPerSecond, options.subscribeBurst);
    this.authTimer = setTimeout(() => {
      if (!this.principal) this.close(closeCodes.unauthorized, "Not authenticated in time");
    }, options.authTimeoutMs);
    this.authTimer.unref();
    socket.on("message", (data, isBinary) => this.received(data as Buffer, isBinary));
    socket.on("pong", () => {
      this.alive = true;
    });
    socket.on("close", () => this.dispose());
    socket.on("error", () => this.dispose());
    if (initialToken !== undefined) this.authenticating = this.authenticate(initialToken);
  }

  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  get isOpen(): boolean {
    return !this.closed && this.socket.readyState === this.socket.OPEN;
  }

  send(data: string | Buffer, binary = false): void {
    if (!this.isOpen) return;
    this.socket.send(data, { binary });
    // Replies are sent whatever the backlog; a client that asks but never reads is cut off.
    if (this.socket.bufferedAmount > this.hub.options.maxBufferedBytes) this.terminate();
  }

  sendFrame(frame: Frame): void {
    this.send(frame.data, frame.binary);
  }

  /** Sends one push's frames (a tick's, or rows owed to a held socket) and counts it. */
  sendPush(seq: number, frames: readonly Frame[]): void {
    if (frames.length === 0) return;
    for (const frame of frames) this.sendFrame(frame);
    if (this.window > 0) this.unacked.push(seq);
  }

  /** As many pushes are unacknowledged as the window allows: send nothing until an `ack`. */
  get windowFull(): boolean {
    return this.window > 0 && this.unacked.length >= this.window;
  }

  /** The client has handled every push up to `seq`: their places in the window are free. */
  private acknowledge(seq: number): void {
    let handled = 0;
    while (handled < this.unacked.length && this.unacked[handled]! <= seq) handled++;
    this.unacked.splice(0, handled);
  }

  /** A new subscription: `window` pushes may go unacknowledged (0: no acknowledgements). */
  resetWindow(window: number): void {
    this.window = window;
    this.unacked = [];
  }

  sendJson(message: unknown): void {
    this.send(JSON.stringify(message));
  }

  error(message: string): void {
    this.sendJson({ type: "error", message });
  }

  close(code: number, reason: string): void {
    if (this.closed) return;
    this.dispose();
    this.socket.close(code, reason);
  }

  terminate(): void {
    this.dispose();
    this.socket.terminate();
  }

  private dispose(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.authTimer);
    this.hub.remove(this);
  }

  private received(data: Buffer, isBinary: boolean): void {
    if (this.closed) return;
    // The rate bounds how fast messages come, and this how much waits while one is handled (a
    // token check or a catalog load that takes its time): what a socket holds stays bounded,
    // while a burst of small requests sent back to back is still taken whole.
    const size = data.length;
    if (!this.messages.take() || this.queuedBytes + size > this.hub.options.maxQueuedBytes) {
      // Before authenticating, a client hears nothing but that it has not.
      this.error(this.principal ? "Too many messages; slow down." : "Not authenticated");
      return;
    }
    // Messages are handled one at a time, in order, even those arriving during a token check.
    this.queuedBytes += size;
    this.chain = this.chain
      .then(() => this.authenticating)
      .then(() => this.handle(data, isBinary))
      .catch((error: unknown) => {
        this.hub.reportError(error);
        this.error("The message could not be handled.");
      })
      .finally(() => {
        this.queuedBytes -= size;
      });
  }

  private async handle(data: Buffer, isBinary: boolean): Promise<void> {
    if (this.closed) return;
    const message = isBinary ? undefined : parseClientMessage(data.toString("utf8"));
    if (!this.principal) {
      if (message && "type" in message && message.type === "authenticate")
        return this.authenticate(message.token);
      return this.error("Not authenticated");
    }
    if (!message) return this.error("Only text frames carry messages.");
    if ("error" in message) return this.error(message.error);
    await this.dispatch(message);
  }

  private async dispatch(message: ClientMessage): Promise<void> {
    switch (message.type) {
      case "authenticate":
        return this.authenticate(message.token);
      case "subscribe":
        if (!this.subscribes.take()) return this.error("Too many subscribe messages; slow down.");
        return this.hub.subscribe(this, message);
      case "ack":
        if (this.window === 0)
          return this.error("ack: only a subscription with a window is acknowledged.");
        return this.acknowledge(message.seq);
      case "unsubscribe":
        this.hub.unsubscribe(this);
        return this.sendJson({ type: "unsubscribed" });
      case "get_machine_data":
        return this.hub.answerMachines(this);
      case "get_tool_data":
        return this.hub.answerTools(this);
      case "get_axis_data":
        return this.hub.answerAxes(this);
      default:
        return exhaustive(message);
    }
  }

  private async authenticate(token: string): Promise<void> {
    const authChanges = this.hub.authChanges;
    const outcome = await this.hub.resolve(token);
    if (this.closed) return;
    if (outcome === "invalid") return this.close(closeCodes.unauthorized, "Invalid token");
    if (outcome === "unavailable") {
      this.error("Authentication is unavailable; retry later.");
      return this.close(1013, "Try again later");
    }
    if (outcome === "failed") return this.close(1011, "The token could not be checked");
    if (!this.hub.mayView(outcome))
      return this.close(closeCodes.forbidden, "No permission to view machine data");
    if (!this.hub.hasRoomFor(this, outcome))
      return this.close(closeCodes.tooMany, "Too many live connections for this user");
    // A renewal may carry fewer permissions: the subscription narrows to what this one sees.
    this.hub.grant(this, outcome);
    this.token = token;
    clearTimeout(this.authTimer);
    this.sendJson({ type: "authenticated", username: outcome.username });
    // The token may have been revoked while it was looked up: look again, as for every socket.
    if (this.hub.authChanges !== authChanges) this.hub.scheduleRecheck();
  }
}

function exhaustive(value: never): never {
  throw new Error(`unhandled message ${JSON.stringify(value)}`);
}
