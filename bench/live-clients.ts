// WebSocket clients for the live benchmark, in a process of their own. Configured by one JSON
// argument; prints "ready" once every client is subscribed, records from the "go" line on stdin
// for `seconds` and prints "recorded"; then reads one line of acknowledgement times (JSON: the
// ingest call's timestamp in ms → when its 202 arrived, ms; `{}` for a server without one) and
// prints one JSON line: delay percentiles (ms) from each push's update_timestamp (set at the
// ingest call) to its receipt here, and from the 202 to receipt. With `decode`, each client
// decodes every push (JSON.parse or MessagePack) and reads the timestamp from the message, as an
// application would; otherwise it finds the timestamp in the bytes, so the measuring side costs
// little and the servers are what is measured.
import { createInterface } from "node:readline";
import { unpack } from "msgpackr";
import { WebSocket } from "ws";
import type { LiveEncoding } from "../src/features/live/live-encoding.ts";

interface ClientsConfig {
  url: string;
  count: number;
  /** "one": client i watches machine i mod n; "all": every machine. */
  mode: "one" | "all";
  machines: number[];
  encoding: LiveEncoding;
  /** Each client decodes every push, as an application would. */
  decode: boolean;
  /** With `decode`: subscribe with this window and acknowledge every push (0: none). */
  window: number;
  /** Extra clients that subscribe to everything and never read. */
  nonReading: number;
  seconds: number;
}

const config = JSON.parse(process.argv[2]!) as ClientsConfig;
let recording = false;
/** Per push received while recording: its samples' timestamp and when it arrived (ms). */
const stamped: number[] = [];
const arrived: number[] = [];
let bytes = 0;
let closed = 0;
// The same cheap look for every encoding: an ISO timestamp is the same ASCII in JSON text and in
// a MessagePack string, and the first one in a push is its first row's update_timestamp.
const isoTimestamp = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/;

/** A push's first timestamp, found in its bytes; undefined for anything but a push. */
function foundStamp(data: Buffer): number | undefined {
  const text = data.toString("latin1");
  // Pushes only: snapshots and answers are not deliveries of new samples.
  if (!text.includes("axis_data") || text.includes("snapshot")) return undefined;
  const match = isoTimestamp.exec(text);
  return match ? Date.parse(match[0]) : undefined;
}

interface Message {
  type: string;
  seq?: number;
  snapshot?: true;
  data?: { update_timestamp: string }[];
  columns?: { update_timestamp: string[] };
}

/** A decoded push's first timestamp; undefined for anything but a push. */
function decodedStamp(message: Message): number | undefined {
  if (message.type !== "axis_data" || message.snapshot) return undefined;
  const stamp = message.data?.[0]?.update_timestamp ?? message.columns?.update_timestamp[0];
  return stamp === undefined ? undefined : Date.parse(stamp);
}

function open(subscribe: object, reading: boolean): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(config.url);
    ws.on("open", () => {
      const window = config.window > 0 ? { window: config.window } : {};
      ws.send(
        JSON.stringify({ type: "subscribe", encoding: config.encoding, ...window, ...subscribe }),
      );
      if (!reading) (ws as unknown as { _socket: { pause(): void } })._socket.pause();
      resolve(ws);
    });
    ws.on("error", reject);
    ws.on("close", () => {
      closed += 1;
    });
    if (!reading) return;
    ws.on("message", (data: Buffer, isBinary: boolean) => {
      const at = Date.now();
      let stamp: number | undefined;
      // Windowed clients decode and acknowledge everything, or they would get nothing more;
      // the others decode only what they record (connecting 2,000 clients to a server that
      // floods them would time out).
      if (config.decode && (recording || config.window > 0)) {
        const message = (isBinary ? unpack(data) : JSON.parse(data.toString("utf8"))) as Message;
        if (config.window > 0 && message.seq !== undefined)
          ws.send(`{"type":"ack","seq":${message.seq}}`);
        stamp = decodedStamp(message);
      } else if (recording && !config.decode) {
        stamp = foundStamp(data);
      }
      if (!recording || stamp === undefined) return;
      bytes += data.length;
      stamped.push(stamp);
      arrived.push(at);
    });
  });
}

const sockets: WebSocket[] = [];
const batch = 50;
for (let i = 0; i < config.count; i += batch) {
  const opening: Promise<WebSocket>[] = [];
  for (let j = i; j < Math.min(i + batch, config.count); j++) {
    const subscribe =
      config.mode === "one" ? { machines: [config.machines[j % config.machines.length]] } : {};
    opening.push(open(subscribe, true));
  }
  sockets.push(...(await Promise.all(opening)));
}
for (let i = 0; i < config.nonReading; i++) sockets.push(await open({}, false));
process.stdout.write("ready\n");

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
while ((await lines.next()).value?.trim() !== "go");
recording = true;
await new Promise((resolve) => setTimeout(resolve, config.seconds * 1000));
recording = false;
process.stdout.write("recorded\n");
const acks = JSON.parse((await lines.next()).value ?? "{}") as Record<string, number>;

const percentiles = (values: number[]) => {
  values.sort((a, b) => a - b);
  const at = (q: number) => values[Math.min(values.length - 1, Math.floor(q * values.length))] ?? 0;
  return { p50: at(0.5), p99: at(0.99), max: at(1) };
};
const delays = percentiles(arrived.map((at, i) => at - stamped[i]!));
const afterAck: number[] = [];
for (let i = 0; i < arrived.length; i++) {
  const ack = acks[stamped[i]!];
  if (ack !== undefined) afterAck.push(arrived[i]! - ack);
}
const ackDelays = afterAck.length > 0 ? percentiles(afterAck) : undefined;
process.stdout.write(
  `${JSON.stringify({
    ...delays,
    ...(ackDelays ? { ackP50: ackDelays.p50, ackP99: ackDelays.p99 } : {}),
    received: arrived.length,
    bytesPerPush: arrived.length > 0 ? bytes / arrived.length : 0,
    closed,
  })}\n`,
);
for (const ws of sockets) ws.terminate();
process.exit(0);
