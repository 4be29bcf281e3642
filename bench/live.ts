// Issue 5's live benchmark: 20 machines × 5 axes sampled at 10 Hz and sent through POST
// /api/ingest/ (one batch of 100 rows every 100 ms, each row stamped at the ingest call), with
// WebSocket clients in a process of their own measuring the delay from that stamp to receipt,
// p50/p99, and the server's CPU and RSS; each beside a bare `ws` server producing and
// broadcasting the same bytes at the same rate, in the same run.
//   A   1,000 clients, each subscribed to one machine (5 axes)
//   B   200 clients subscribed to all 20 machines
//   A'  A again with 10 more clients that subscribe to everything and never read
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import {
  type DatabaseTarget,
  fixed,
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
  name: string;
  count: number;
  mode: "one" | "all";
  nonReading: number;
}

const scenarios: Scenario[] = [
  { name: "A: 1,000 × 1 machine", count: 1000, mode: "one", nonReading: 0 },
  { name: "B: 200 × all", count: 200, mode: "all", nonReading: 0 },
  { name: "A + 10 non-reading", count: 1000, mode: "one", nonReading: 10 },
];

interface Measured {
  p50: number;
  p99: number;
  received: number;
  closed: number;
  cpu: number;
  rssMb: number;
  ingestP50?: number;
  ingestP99?: number;
}

export async function benchLive({
  seconds = 10,
  database = "postgres",
}: LiveBenchOptions = {}): Promise<string> {
  const target = await freshTarget(database);
  const rows: string[] = [
    "| scenario | server | delay p50 ms | p99 ms | ingest→202 p50/p99 ms | pushes received | CPU % | RSS MB | p99 ÷ bare |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|",
  ];
  let spindle: Server | undefined;
  try {
    await provision(target);
    spindle = await startSpindle(target);
    const token = await signIn(spindle);
    await createFleet(spindle, token);
    const wsUrl = `${spindle.url.replace("http", "ws")}/ws/machine_data/?token=${token}`;
    for (const scenario of scenarios) {
      const ingest = producer(spindle, token);
      const ours = await measure(scenario, wsUrl, spindle.process.pid!, seconds, ingest);
      const bare = await withBare(async (url, pid) => measure(scenario, url, pid, seconds));
      rows.push(
        row(scenario.name, "Spindle", ours, bare.p99),
        row(scenario.name, "bare ws", bare, bare.p99),
      );
    }
  } finally {
    await spindle?.stop();
    await target.cleanup();
  }
  return [
    `${seconds} s per scenario on ${database}; delays from the ingest call's timestamp to receipt in the clients' process. Spindle's include the ingest pipeline's commit (group commit: no batching wait): the ingest→202 column is that part alone.`,
    "",
    ...rows,
  ].join("\n");
}

function row(scenario: string, server: string, m: Measured, bareP99: number): string {
  const ingest =
    m.ingestP50 === undefined ? "" : `${fixed(m.ingestP50, 0)} / ${fixed(m.ingestP99!, 0)}`;
  return `| ${scenario} | ${server} | ${fixed(m.p50, 0)} | ${fixed(m.p99, 0)} | ${ingest} | ${m.received} | ${fixed(m.cpu, 0)} | ${fixed(m.rssMb, 0)} | ${server === "bare ws" ? "1" : fixed(ratio(m.p99, bareP99))} |`;
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
  stop(): { p50: number; p99: number };
}

/** 100 rows every 100 ms through POST /api/ingest/, stamped at the call. */
function producer(server: Server, token: string): Producer {
  let timer: NodeJS.Timeout | undefined;
  let n = 0;
  const latencies: number[] = [];
  const send = async () => {
    n += 1;
    const timestamp = new Date().toISOString();
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
          timestamp,
        };
      }),
    );
    const started = Date.now();
    const answer = await fetch(`${server.url}/api/ingest/`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ axis_data }),
    });
    await answer.arrayBuffer();
    latencies.push(Date.now() - started);
  };
  return {
    start() {
      timer = setInterval(() => void send().catch(() => {}), 100);
    },
    stop() {
      clearInterval(timer);
      latencies.sort((a, b) => a - b);
      const at = (q: number) => latencies[Math.floor(q * (latencies.length - 1))] ?? 0;
      return { p50: at(0.5), p99: at(0.99) };
    },
  };
}

async function withBare<T>(run: (url: string, pid: number) => Promise<T>): Promise<T> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(
    "node",
    ["--import", "tsx", "bench/live-bare.ts", String(port), JSON.stringify(machines)],
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
  const config = { url, machines, seconds, ...scenario };
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
  const result = JSON.parse(await next());
  // Ticks are 1/100 s, so ticks per second is the percentage of one core.
  const cpu = (cpuTicks(serverPid) - cpuBefore) / ((Date.now() - started) / 1000);
  const rssMb = rss(serverPid);
  const produced = ingest?.stop();
  await new Promise((resolve) => clients.on("exit", resolve));
  return {
    ...result,
    cpu,
    rssMb,
    ...(produced ? { ingestP50: produced.p50, ingestP99: produced.p99 } : {}),
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

function rss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}
