// Issue 5's live benchmark: 20 machines × 5 axes sampled at 10 Hz and sent through POST
// /api/ingest/ (one batch of 100 rows every 100 ms, each row stamped at the ingest call), with
// WebSocket clients in a process of their own measuring the delay from that stamp to receipt,
// p50/p99, and the server's CPU and memory; each beside a bare `ws` server producing and
// broadcasting the same bytes at the same rate, in the same run. Every scenario gets a fresh
// Spindle on a fresh database, so one scenario's leftovers (sockets closing, garbage, ring and
// table contents) do not weigh on the next.
//   A     1,000 clients, each subscribed to one machine (5 axes)
//   B     200 clients subscribed to all 20 machines
//   A-decode, B-decode
//         A and B with clients that decode every push, as applications do. Their bare servers
//         measure close to the figures issue 5 quotes for a bare broadcast (A: p50 14, p99 33
//         ms; B: p50 11, p99 33). In A and B the clients find the timestamp in the bytes, so
//         the servers' share of the delay weighs more: the stricter view.
//   A10   A again with 10 more clients that subscribe to everything and never read
//   C     1,000 clients subscribed to everything (more bytes than two cores send), in each
//         encoding: C (json), C-json-columns, C-msgpack, C-msgpack-columns
//   2C    C with 2,000 clients: 2C (json) and 2C-msgpack-columns
//   2C-decode, 2C-decode-window, 2C-decode-msgpack-columns
//         2C with clients that decode every push, as applications do: more than their process
//         can read in json, so the servers' sockets back up; with a window, each client
//         acknowledges every push and Spindle sends no more than 2 ahead (the bare server has
//         no such thing and sends all)
// LIVE_SCENARIOS=A,B picks scenarios (default all); BENCH_NODE_ARGS adds node flags to both servers.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import { createInterface } from "node:readline";
import type { LiveEncoding } from "../src/features/live/live-encoding.ts";
import {
  benchNodeArgs,
  type DatabaseTarget,
  fixed,
  freePort,
  freshTarget,
  provision,
  ratio,
  type Server,
  signIn,
  startSpindle,
} from "./lib.ts";

const root = new URL("..", import.meta.url).pathname;
const machineCount = 20;
const axisNames = ["X", "Y", "Z", "A", "C"];
const firstMachine = 81_400_000;
const machines = Array.from({ length: machineCount }, (_, i) => firstMachine + i);

export interface LiveBenchOptions {
  seconds?: number;
  database?: DatabaseTarget;
}

interface Scenario {
  id: string;
  name: string;
  count: number;
  mode: "one" | "all";
  /** Extra clients that subscribe to everything and never read. */
  nonReading: number;
  encoding: LiveEncoding;
  /** The clients decode every push, as applications would (see live-clients.ts). */
  decode: boolean;
  /** Subscribe with this acknowledged window and acknowledge every push (Spindle only; 0: none). */
  window: number;
}

const defineScenario = (
  id: string,
  name: string,
  count: number,
  mode: "one" | "all",
  options: Partial<Pick<Scenario, "nonReading" | "encoding" | "decode" | "window">> = {},
): Scenario => ({
  id,
  name,
  count,
  mode,
  nonReading: 0,
  encoding: "json",
  decode: false,
  window: 0,
  ...options,
});

const scenarios: Scenario[] = [
  defineScenario("A", "A: 1,000 × 1 machine", 1000, "one"),
  defineScenario("B", "B: 200 × all", 200, "all"),
  defineScenario("A-decode", "A, clients decoding", 1000, "one", { decode: true }),
  defineScenario("B-decode", "B, clients decoding", 200, "all", { decode: true }),
  defineScenario("A10", "A + 10 non-reading", 1000, "one", { nonReading: 10 }),
  defineScenario("C", "C: 1,000 × all, json", 1000, "all"),
  ...(["json-columns", "msgpack", "msgpack-columns"] as const).map((encoding) =>
    defineScenario(`C-${encoding}`, `C: 1,000 × all, ${encoding}`, 1000, "all", { encoding }),
  ),
  defineScenario("2C", "2C: 2,000 × all, json", 2000, "all"),
  defineScenario("2C-msgpack-columns", "2C: 2,000 × all, msgpack-columns", 2000, "all", {
    encoding: "msgpack-columns",
  }),
  defineScenario("2C-decode", "2C, clients decoding, json", 2000, "all", { decode: true }),
  defineScenario("2C-decode-window", "2C, clients decoding, json, window 2", 2000, "all", {
    decode: true,
    window: 2,
  }),
  defineScenario(
    "2C-decode-msgpack-columns",
    "2C, clients decoding, msgpack-columns",
    2000,
    "all",
    { decode: true, encoding: "msgpack-columns" },
  ),
];

interface Measured {
  p50: number;
  p99: number;
  /** From the 202's arrival at the producer to receipt (Spindle only). */
  ackP50?: number;
  ackP99?: number;
  received: number;
  bytesPerPush: number;
  closed: number;
  cpu: number;
  rssMb: number;
  peakRssMb: number;
  ingestP50?: number;
  ingestP99?: number;
  /** The slowest request: a stall before the push shows here, one after it does not. */
  ingestMax?: number;
}

export async function benchLive({
  seconds = 10,
  database = "postgres",
}: LiveBenchOptions = {}): Promise<string> {
  const wanted = process.env.LIVE_SCENARIOS?.split(",").map((id) => id.trim());
  const selected = wanted ? scenarios.filter((s) => wanted.includes(s.id)) : scenarios;
  if (wanted && selected.length !== wanted.length)
    throw new Error(`LIVE_SCENARIOS: known are ${scenarios.map((s) => s.id).join(", ")}`);
  const rows: string[] = [
    "| scenario | server | delay p50 ms | p99 ms | ingest→202 p50 / p99 / max ms | 202→receipt p50 / p99 ms | pushes received | KB/push | CPU % | RSS end / peak MB | p99 ÷ bare |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const scenario of selected) {
    const ours = await withSpindle(database, (url, pid, ingest) =>
      measure(scenario, url, pid, seconds, ingest),
    );
    const bare = await withBare(async (url, pid) => measure(scenario, url, pid, seconds));
    rows.push(
      row(scenario.name, "Spindle", ours, bare.p99),
      row(scenario.name, "bare ws", bare, bare.p99),
    );
  }
  return [
    `${seconds} s per scenario on ${database}, a fresh server and database for each${benchNodeArgs.length > 0 ? `, node ${benchNodeArgs.join(" ")}` : ""}; delays from the ingest call's timestamp (the bare server's: when it makes the sample) to receipt in the clients' process. Spindle's include the commit: ingest→202 is the producer's request alone, 202→receipt what follows the acknowledgement.`,
    "",
    ...rows,
  ].join("\n");
}

function row(scenario: string, server: string, m: Measured, bareP99: number): string {
  const pair = (a: number | undefined, ...more: (number | undefined)[]) =>
    a === undefined ? "" : [a, ...more].map((x) => fixed(x!, 0)).join(" / ");
  return `| ${scenario} | ${server} | ${fixed(m.p50, 0)} | ${fixed(m.p99, 0)} | ${pair(m.ingestP50, m.ingestP99, m.ingestMax)} | ${pair(m.ackP50, m.ackP99)} | ${m.received}${m.closed > 0 ? ` (${m.closed} closed)` : ""} | ${fixed(m.bytesPerPush / 1024, 1)} | ${fixed(m.cpu, 0)} | ${fixed(m.rssMb, 0)} / ${fixed(m.peakRssMb, 0)} | ${server === "bare ws" ? "1" : fixed(ratio(m.p99, bareP99))} |`;
}

/** A fresh database and Spindle with the bench's fleet, for one scenario. */
async function withSpindle<T>(
  database: DatabaseTarget,
  run: (url: string, pid: number, ingest: Producer) => Promise<T>,
): Promise<T> {
  const target = await freshTarget(database);
  let spindle: Server | undefined;
  try {
    await provision(target);
    // Every client signs in with one token: one user holding thousands of sockets.
    spindle = await startSpindle(target, { LIVE_SOCKETS_PER_USER: "100000" });
    const token = await signIn(spindle);
    await createFleet(spindle, token);
    const wsUrl = `${spindle.url.replace("http", "ws")}/ws/machine_data/?token=${token}`;
    return await run(wsUrl, spindle.process.pid!, producer(spindle, token));
  } finally {
    await spindle?.stop();
    await target.cleanup();
  }
}

async function createFleet(server: Server, token: string): Promise<void> {
  const post = async (path: string, body: object) => {
    const answer = await fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (answer.status !== 201)
      throw new Error(`POST ${path}: ${answer.status} ${await answer.text()}`);
  };
  for (const machine_id of machines) {
    await post("/data/machines/", {
      machine_id,
      machine_name: `Machine ${machine_id}`,
      tool_capacity: 24,
    });
    for (const axis_name of axisNames)
      await post("/data/axes/", {
        machine: machine_id,
        axis_name,
        max_acceleration: 2000,
        max_velocity: 500,
      });
  }
}

interface Producer {
  start(): void;
  /** Stops, lets requests in flight finish, and gives the 202s' timing. */
  stop(): Promise<{ p50: number; p99: number; max: number; acks: Record<number, number> }>;
}

/**
 * 100 rows every 100 ms through POST /api/ingest/, stamped at the call: the batch is built and
 * serialized first, and its timestamp written in last. Requests go through node:http with
 * keep-alive, as a long-running gateway would send them. (With fetch, and the stamp taken before
 * the batch was built, requests reached the server 0.7 ms later at p50.)
 */
function producer(server: Server, token: string): Producer {
  let timer: NodeJS.Timeout | undefined;
  let n = 0;
  const latencies: number[] = [];
  /** The batch's timestamp (ms) → when its 202 arrived (ms). */
  const acks: Record<number, number> = {};
  const inFlight = new Set<Promise<void>>();
  const agent = new http.Agent({ keepAlive: true });
  const { hostname, port } = new URL(server.url);
  const post = (body: string) =>
    new Promise<number>((resolve, reject) => {
      const request = http.request(
        {
          agent,
          hostname,
          port,
          method: "POST",
          path: "/api/ingest/",
          headers: {
            authorization: `Bearer ${token}`,
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
          },
        },
        (response) => {
          response.resume();
          response.on("end", () => resolve(response.statusCode ?? 0));
          response.on("error", reject);
        },
      );
      request.on("error", reject);
      request.end(body);
    });
  const stampHere = "@stamp@";
  const send = async () => {
    n += 1;
    const axis_data = machines.flatMap((machine_id) =>
      axisNames.map((axis_name, a) => {
        const position = Math.sin(n / 10 + a) * 100;
        return {
          machine_id,
          axis_name,
          actual_position: position,
          target_position: position + 1,
          velocity: 10,
          acceleration: 1,
          homed: true,
          timestamp: stampHere,
        };
      }),
    );
    const body = JSON.stringify({ axis_data });
    const stamp = Date.now();
    const status = await post(body.replaceAll(stampHere, new Date(stamp).toISOString()));
    const acknowledged = Date.now();
    if (status !== 202) throw new Error(`POST /api/ingest/: ${status}`);
    latencies.push(acknowledged - stamp);
    acks[stamp] = acknowledged;
  };
  return {
    start() {
      timer = setInterval(() => {
        const sending = send().catch((error: unknown) => console.error(String(error)));
        inFlight.add(sending);
        void sending.finally(() => inFlight.delete(sending));
      }, 100);
    },
    async stop() {
      clearInterval(timer);
      await Promise.all(inFlight);
      agent.destroy();
      latencies.sort((a, b) => a - b);
      const at = (q: number) => latencies[Math.floor(q * (latencies.length - 1))] ?? 0;
      return { p50: at(0.5), p99: at(0.99), max: at(1), acks };
    },
  };
}

async function withBare<T>(run: (url: string, pid: number) => Promise<T>): Promise<T> {
  const port = await freePort();
  const child = spawn(
    "node",
    [
      ...benchNodeArgs,
      "--import",
      "tsx",
      "bench/live-bare.ts",
      String(port),
      JSON.stringify(machines),
    ],
    { cwd: root, stdio: ["ignore", "pipe", "inherit"] },
  );
  await firstLine(child, "listening");
  try {
    return await run(`ws://127.0.0.1:${port}/`, child.pid!);
  } finally {
    child.kill("SIGTERM");
  }
}

async function measure(
  scenario: Scenario,
  url: string,
  serverPid: number,
  seconds: number,
  ingest?: Producer,
): Promise<Measured> {
  // Windows are Spindle's: the bare server's clients decode everything it sends.
  const config = { url, machines, seconds, ...scenario, window: ingest ? scenario.window : 0 };
  const clients = spawn(
    "node",
    ["--import", "tsx", "bench/live-clients.ts", JSON.stringify(config)],
    {
      cwd: root,
      stdio: ["pipe", "pipe", "inherit"],
    },
  );
  const lines = createInterface({ input: clients.stdout! });
  const iterator = lines[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await iterator.next();
    if (done) throw new Error("the clients' process ended early");
    return value as string;
  };
  if ((await next()).trim() !== "ready") throw new Error("clients not ready");
  ingest?.start();
  // A second of warm-up before recording.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const cpuBefore = cpuTicks(serverPid);
  const started = Date.now();
  clients.stdin!.write("go\n");
  if ((await next()).trim() !== "recorded") throw new Error("clients did not record");
  // Ticks are 1/100 s, so ticks per second is the percentage of one core.
  const cpu = (cpuTicks(serverPid) - cpuBefore) / ((Date.now() - started) / 1000);
  const memory = rss(serverPid);
  const produced = await ingest?.stop();
  clients.stdin!.write(`${JSON.stringify(produced?.acks ?? {})}\n`);
  const result = JSON.parse(await next());
  await new Promise((resolve) => clients.on("exit", resolve));
  return {
    ...result,
    cpu,
    ...memory,
    ...(produced
      ? { ingestP50: produced.p50, ingestP99: produced.p99, ingestMax: produced.max }
      : {}),
  };
}

function firstLine(child: ChildProcess, expected: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      if (line.trim() === expected) resolve();
    });
    child.on("exit", (code) => reject(new Error(`exited ${code}`)));
  });
}

/** utime + stime of a process, in clock ticks (1/100 s). */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

/** Resident memory now and at its peak since the process started, MB. */
function rss(pid: number): { rssMb: number; peakRssMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rssMb: kb("VmRSS") / 1024, peakRssMb: kb("VmHWM") / 1024 };
}
