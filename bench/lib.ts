import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { parseConfig } from "../src/config.ts";
import { openRuntime } from "../src/runtime.ts";

const root = new URL("..", import.meta.url).pathname;
export const benchClient = { id: "bench", secret: "bench-client-secret-0123456789" };
export const benchAdmin = { username: "bench-admin", password: "Quick-Brown-Fox-Jumps-9" };

export type DatabaseTarget = "embedded" | "postgres";

export interface Target {
  database: DatabaseTarget;
  /** Environment for a Spindle process working on this target's data. */
  env: Record<string, string>;
  cleanup(): Promise<void>;
}

/** A fresh, empty database: a temporary data directory, or a new schema on PostgreSQL. */
export async function freshTarget(database: DatabaseTarget): Promise<Target> {
  if (database === "embedded") {
    const dataDir = await mkdtemp(join(tmpdir(), "spindle-bench-"));
    return {
      database,
      env: { DATA_DIR: dataDir, DATABASE_URL: "" },
      cleanup: () => rm(dataDir, { recursive: true, force: true }),
    };
  }
  const base = process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
  const schema = `bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  const url = new URL(base);
  url.searchParams.set("options", `-c search_path=${schema}`);
  return {
    database,
    env: { DATABASE_URL: url.toString() },
    async cleanup() {
      const client = new pg.Client({ connectionString: base });
      await client.connect();
      await client.query(`drop schema ${schema} cascade`);
      await client.end();
    },
  };
}

/** Migrates the target and registers the bench's client and Admin, through the services. */
export async function provision(target: Target): Promise<void> {
  const runtime = await openRuntime(parseConfig(target.env));
  try {
    await runtime.services.oauth.createClient({
      clientId: benchClient.id,
      secret: benchClient.secret,
      grantTypes: ["password", "refresh_token", "client_credentials"],
      scopes: ["read", "write", "groups", "ingest"],
    });
    await runtime.services.users.createUser(benchAdmin, ["Admin"]);
  } finally {
    await runtime.close();
  }
}

export interface Server {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

async function startProcess(
  command: string,
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
): Promise<{ child: ChildProcess; match: RegExpExecArray }> {
  const child = spawn(command, args, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk;
      const found = ready.exec(output);
      if (found) resolve(found);
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => reject(new Error(`${command} exited ${code}: ${output}`)));
  });
  return { child, match };
}

const stopper = (child: ChildProcess) => () =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.on("exit", () => resolve());
    child.kill("SIGTERM");
  });

/** A port free right now on the loopback interface. */
export async function freePort(): Promise<number> {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Extra arguments for the node of every server a benchmark measures (Spindle and its bare
 * baseline alike), e.g. BENCH_NODE_ARGS="--max-semi-space-size=64".
 */
export const benchNodeArgs = (process.env.BENCH_NODE_ARGS ?? "").split(/\s+/).filter(Boolean);

/**
 * Spindle as a person runs it, at LOG_LEVEL=warn: per-request log lines at info cost more than
 * the cached requests being measured, and the bare server logs nothing either.
 */
export async function startSpindle(
  target: Target,
  env: Record<string, string> = {},
): Promise<Server> {
  const port = await freePort();
  const child = spawn("node", [...benchNodeArgs, "bin/spindle", "serve"], {
    cwd: root,
    env: {
      ...process.env,
      ...target.env,
      PORT: String(port),
      LOG_LEVEL: "warn",
      SIMULATOR: "off",
      ...env,
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let errors = "";
  child.stderr!.on("data", (chunk) => {
    errors += chunk;
  });
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null)
      throw new Error(`spindle serve exited ${child.exitCode}: ${errors}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    if (attempt > 600) throw new Error(`spindle serve did not become ready: ${errors}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { url, process: child, stop: stopper(child) };
}

/** Bare Fastify serving `body` at every path: the ceiling for an endpoint answering those bytes. */
export async function startBareServer(body: string): Promise<Server> {
  const file = join(await mkdtemp(join(tmpdir(), "spindle-bare-")), "body.json");
  await writeFile(file, body);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const { child } = await startProcess(
    "node",
    ["--import", "tsx", "bench/bare-server.ts", String(port), file],
    {},
    /listening/,
  );
  return { url: `http://127.0.0.1:${port}`, process: child, stop: stopper(child) };
}

export async function signIn(server: Server): Promise<string> {
  const answer = await fetch(`${server.url}/o/token/`, {
    method: "POST",
    headers: {
      authorization: `Basic ${Buffer.from(`${benchClient.id}:${benchClient.secret}`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({ grant_type: "password", ...benchAdmin }),
  });
  if (!answer.ok) throw new Error(`sign-in failed: ${answer.status} ${await answer.text()}`);
  return (await answer.json()).access_token;
}

export interface LoadResult {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

/** autocannon in a process of its own, so the load generator never shares the server's event loop. */
export function autocannon(
  url: string,
  options: { connections: number; seconds: number; headers?: Record<string, string> },
): Promise<LoadResult> {
  const args = [
    "node_modules/autocannon/autocannon.js",
    "--json",
    "-c",
    String(options.connections),
    "-d",
    String(options.seconds),
  ];
  for (const [name, value] of Object.entries(options.headers ?? {}))
    args.push("-H", `${name}=${value}`);
  args.push(url);
  return new Promise((resolve, reject) => {
    const child = spawn("node", args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk) => {
      output += chunk;
    });
    child.on("exit", (code) => {
      if (code !== 0) return reject(new Error(`autocannon exited ${code}`));
      const result = JSON.parse(output);
      resolve({
        requestsPerSecond: result.requests.average,
        p50: result.latency.p50,
        p99: result.latency.p99,
        errors: result.errors,
        non2xx: result.non2xx,
      });
    });
  });
}

export const ratio = (value: number, baseline: number) => (baseline > 0 ? value / baseline : 0);
export const fixed = (value: number, digits = 2) => value.toFixed(digits);
