// WebSocket clients for the live benchmark, in a process of their own. Configured by one JSON
// argument; prints "ready" once every client is subscribed, records from the "go" line on stdin
// for `seconds`, then prints one JSON line: delay percentiles (ms) from each push's
// update_timestamp (set at the ingest call) to its receipt here.
import { createInterface } from "node:readline";
import { WebSocket } from "ws";

interface ClientsConfig {
  url: string;
  count: number;
  /** "one": client i watches machine i mod n; "all": every machine. */
  mode: "one" | "all";
  machines: number[];
  /** Extra clients that subscribe to everything and never read. */
  nonReading: number;
  seconds: number;
}

const config = JSON.parse(process.argv[2]!) as ClientsConfig;
const delays: number[] = [];
let recording = false;
let received = 0;
let closed = 0;
const timestamp = /"update_timestamp":"([^"]+)"/;

function open(subscribe: object, reading: boolean): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(config.url);
    ws.on("open", () => {
      ws.send(JSON.stringify({ type: "subscribe", ...subscribe }));
      if (!reading) (ws as unknown as { _socket: { pause(): void } })._socket.pause();
      resolve(ws);
    });
    ws.on("error", reject);
    ws.on("close", () => {
      closed += 1;
    });
    if (!reading) return;
    ws.on("message", (data) => {
      if (!recording) return;
      const text = String(data);
      // Pushes only: snapshots and answers are not deliveries of new samples.
      if (!text.startsWith('{"type":"axis_data","seq"')) return;
      const match = timestamp.exec(text);
      if (!match) return;
      received += 1;
      delays.push(Date.now() - Date.parse(match[1]!));
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

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (line.trim() !== "go") continue;
  recording = true;
  await new Promise((resolve) => setTimeout(resolve, config.seconds * 1000));
  recording = false;
  break;
}
delays.sort((a, b) => a - b);
const at = (q: number) => delays[Math.min(delays.length - 1, Math.floor(q * delays.length))] ?? 0;
process.stdout.write(
  `${JSON.stringify({ p50: at(0.5), p99: at(0.99), max: at(1), received, closed })}\n`,
);
for (const ws of sockets) ws.terminate();
process.exit(0);
