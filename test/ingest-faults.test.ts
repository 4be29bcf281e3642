import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { type IncomingMessage, request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { buildApp } from "../src/app.ts";
import { parseConfig } from "../src/config.ts";
import { openDatabase } from "../src/platform/database.ts";
import { createServices } from "../src/services.ts";
import { openTestDatabase, type TestDatabase, testDatabaseKind } from "./helpers/database.ts";
import { exited, spindleBin } from "./helpers/spindle-process.ts";
import { TcpProxy } from "./helpers/tcp-proxy.ts";

const bin = spindleBin;
const client = { id: "fault-client", secret: "fault-client-secret-0123456789" };

interface Sample {
  machine_id: number;
  axis_name: string;
  actual_position: number;
  target_position: number;
  velocity: number;
  acceleration: number;
  homed: boolean;
  timestamp: string;
}

/** Batches of samples with distinct instants, so which ones were stored can be checked exactly. */
function makeBatch(machineId: number, start: number, size: number): Sample[] {
  return Array.from({ length: size }, (_, i) => ({
    machine_id: machineId,
    axis_name: "X",
    actual_position: start + i,
    target_position: start + i + 1,
    velocity: 1,
    acceleration: 0,
    homed: true,
    timestamp: new Date(Date.now() - 3_600_000 + start + i).toISOString(),
  }));
}

async function storedTimestamps(database: {
  query: TestDatabase["db"]["query"];
}): Promise<Set<number>> {
  const { rows } = await database.query<{ t: Date }>("select update_timestamp as t from axis_data");
  return new Set(rows.map((row) => row.t.getTime()));
}

describe("acknowledged means durable", () => {
  it.each(["SIGKILL", "SIGTERM"] as const)(
    "every row answered 202 is there after the server gets %s and restarts",
    async (signal) => {
      let server: ChildProcess | undefined;
      let dataDir: string | undefined;
      let database: TestDatabase | undefined;
      try {
        const env: Record<string, string> = {
          SIMULATOR: "off",
          LOG_LEVEL: "info",
          PORT: "0",
          DATABASE_URL: "",
        };
        if (testDatabaseKind() === "postgres") {
          database = await openTestDatabase();
          const url = new URL(database.url!);
          url.searchParams.set("options", `-c search_path=${database.schema}`);
          env.DATABASE_URL = url.toString();
        } else {
          dataDir = await mkdtemp(join(tmpdir(), "spindle-durable-"));
          env.DATA_DIR = dataDir;
        }
        const start = async () => {
          const child = spawn(bin, ["serve"], { env: { ...process.env, ...env } });
          let log = "";
          const url = await new Promise<string>((resolve, reject) => {
            child.stderr!.on("data", (chunk) => {
              log += chunk;
            });
            child.stdout!.on("data", (chunk) => {
              log += chunk;
              const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
              if (match) resolve(match[1]!);
            });
            child.on("exit", (code) => reject(new Error(`serve exited ${code}: ${log}`)));
          });
          /** Resolves once the server's log, from `offset` on, contains `text`. */
          const logged = (text: string, offset: number) =>
            new Promise<void>((resolve) => {
              const check = () => {
                if (!log.includes(text, offset)) return;
                child.stdout!.off("data", check);
                resolve();
              };
              child.stdout!.on("data", check);
              check();
            });
          return { child, url, logged, logLength: () => log.length };
        };
        // Arrange before the server starts (it owns the embedded database once running).
        const { openRuntime } = await import("../src/runtime.ts");
        const runtime = await openRuntime(parseConfig(env));
        try {
          await runtime.services.oauth.createClient({
            clientId: client.id,
            secret: client.secret,
            grantTypes: ["password"],
          });
          await runtime.services.users.createUser(
            { username: "durable-admin", password: "Durable-Pass-2026" },
            ["Admin"],
          );
        } finally {
          await runtime.close();
        }

        const running = await start();
        server = running.child;
        const token = await signIn(running.url);
        const headers = { authorization: `Bearer ${token}`, "content-type": "application/json" };
        await fetch(`${running.url}/data/machines/`, {
          method: "POST",
          headers,
          body: JSON.stringify({ machine_id: 7, machine_name: "Durable", tool_capacity: 8 }),
        });
        await fetch(`${running.url}/data/axes/`, {
          method: "POST",
          headers,
          body: JSON.stringify({
            machine: 7,
            axis_name: "X",
            max_acceleration: 1,
            max_velocity: 1,
          }),
        });

        const acknowledged: Sample[] = [];
        let next = 0;
        let killed = false;
        const producer = async () => {
          while (!killed) {
            const batch = makeBatch(7, next, 200);
            next += 200;
            try {
              const answer = await fetch(`${running.url}/api/ingest/`, {
                method: "POST",
                headers,
                body: JSON.stringify({ axis_data: batch }),
              });
              if (answer.status === 202) {
                acknowledged.push(...batch);
              }
            } catch {
              return; // the server is gone
            }
          }
        };
        const producers = Array.from({ length: 4 }, producer);
        await new Promise((resolve) => setTimeout(resolve, 1500));
        // A request under way when the signal comes, for certain: the server has read its
        // headers (it logged it) but not its body, which is sent only after the signal.
        const late = makeBatch(7, 1_000_000, 200);
        const lateBody = JSON.stringify({ axis_data: late });
        const offset = running.logLength();
        const lateRequest = request(`${running.url}/api/ingest/?request=late`, {
          method: "POST",
          headers: { ...headers, "content-length": Buffer.byteLength(lateBody) },
        });
        const lateStatus = new Promise<IncomingMessage | undefined>((resolve) => {
          lateRequest.on("response", (answer) => {
            answer.resume();
            resolve(answer);
          });
          lateRequest.on("error", () => resolve(undefined));
        });
        lateRequest.write(lateBody.slice(0, 10));
        await running.logged('"url":"/api/ingest/?request=late"', offset);
        killed = true;
        server.kill(signal);
        // Under SIGTERM the rest of the body goes once the server has taken the signal: sent at
        // once, it could be read, committed and answered before the signal was handled.
        if (signal === "SIGTERM") await running.logged('"msg":"shutting down"', offset);
        lateRequest.end(lateBody.slice(10));
        await Promise.all(producers);
        const lateAnswer = await lateStatus;
        if (lateAnswer?.statusCode === 202) acknowledged.push(...late);
        await exited(server);
        expect(acknowledged.length).toBeGreaterThan(1000);
        if (signal === "SIGTERM") {
          // A clean stop: the request under way when the signal came was answered, then it exited 0.
          expect(lateAnswer?.statusCode).toBe(202);
          // Its connection ends with the answer: an idle keep-alive socket would otherwise hold
          // the exit for Fastify's keepAliveTimeout (72 s).
          expect(lateAnswer?.headers.connection).toBe("close");
          expect(server.exitCode).toBe(0);
        }

        // Restart on the same data: it must come up, and every acknowledged row must be there.
        const restarted = await start();
        server = restarted.child;
        server.kill("SIGTERM");
        await exited(server);
        const data = await openDatabase(
          database
            ? { url: database.url, schema: database.schema }
            : { dataDir: join(dataDir!, "pglite") },
        );
        try {
          const stored = await storedTimestamps(data);
          const missing = acknowledged.filter((row) => !stored.has(Date.parse(row.timestamp)));
          expect(missing).toEqual([]);
        } finally {
          await data.close();
        }
      } finally {
        server?.kill("SIGKILL");
        if (dataDir) await rm(dataDir, { recursive: true, force: true });
        await database?.drop();
      }
    },
    180_000,
  );
});

async function signIn(url: string): Promise<string> {
  const answer = await fetch(`${url}/o/token/`, {
    method: "POST",
    headers: {
      authorization: `Basic ${Buffer.from(`${client.id}:${client.secret}`).toString("base64")}`,
      "content-type": "application/x-www-form-urlencoded",
    },
    body: new URLSearchParams({
      grant_type: "password",
      username: "durable-admin",
      password: "Durable-Pass-2026",
    }),
  });
  return (await answer.json()).access_token;
}

/** Spindle on a test database reached through a proxy the test can cut; `close` undoes it all. */
async function behindProxy() {
  const database = await openTestDatabase();
  const target = new URL(database.url!);
  const proxy = new TcpProxy(target.hostname, Number(target.port || 5432));
  await proxy.start();
  const proxied = new URL(database.url!);
  proxied.port = String(proxy.port);
  const db = await openDatabase({
    url: proxied.toString(),
    schema: database.schema,
    maxConnections: 4,
  });
  const services = createServices({
    config: parseConfig({}),
    db,
    ingest: { probeIntervalMs: 200 },
  });
  const app = await buildApp(services);
  return {
    database,
    proxy,
    db,
    services,
    app,
    async close() {
      await app.close();
      await services.ingest.close();
      await db.close();
      await proxy.stop();
      await database.drop();
    },
  };
}

describe.runIf(testDatabaseKind() === "postgres")("the database going away mid-ingest", () => {
  it("answers 503 with Retry-After while it is away, then takes rows again, losing and duplicating nothing", async () => {
    const faulty = await behindProxy();
    const { database, proxy, db, services, app } = faulty;
    try {
      await db.query("insert into machine values (9, 'Faulty', 4)");
      await db.query(
        "insert into axis (machine_id, axis_name, max_acceleration, max_velocity) values (9, 'X', 1, 1)",
      );
      const { rows } = await db.query<{ tool_id: number }>(
        "insert into tool (machine_id, tool_offset, feedrate) values (9, 0, 0) returning tool_id",
      );
      const tool = rows[0]!.tool_id;
      await services.oauth.createClient({
        clientId: client.id,
        secret: client.secret,
        grantTypes: ["client_credentials"],
        scopes: ["ingest"],
      });
      const token = await app.inject({
        method: "POST",
        url: "/o/token/",
        payload: {
          grant_type: "client_credentials",
          client_id: client.id,
          client_secret: client.secret,
        },
      });
      const headers = { authorization: `Bearer ${token.json().access_token}` };
      const send = (batch: Sample[]) =>
        app.inject({ method: "POST", url: "/api/ingest/", headers, payload: { axis_data: batch } });

      const acknowledged: Sample[] = [];
      const refused: Sample[][] = [];
      const first = makeBatch(9, 0, 100);
      expect((await send(first)).statusCode).toBe(202);
      acknowledged.push(...first);

      proxy.disconnect();
      // Naming a tool makes validation read the database: that is a 503 too.
      const tools = await app.inject({
        method: "POST",
        url: "/api/ingest/",
        headers,
        payload: { tool_usage: [{ machine_id: 9, tool_in_use: tool }] },
      });
      expect(tools.statusCode, tools.body).toBe(503);
      expect(Number(tools.headers["retry-after"])).toBeGreaterThan(0);
      const during = makeBatch(9, 100, 100);
      const away = await send(during);
      expect(away.statusCode).toBe(503);
      expect(Number(away.headers["retry-after"])).toBeGreaterThan(0);
      refused.push(during);
      // While it is away, producers are told at once rather than queued without bound.
      const again = await send(makeBatch(9, 200, 100));
      expect(again.statusCode).toBe(503);
      expect(services.ingest.status().queuedRows).toBe(0);

      proxy.reconnect();
      let retried = 0;
      for (const batch of [...refused, first, makeBatch(9, 300, 100)]) {
        // A producer retries what was refused (and, here, also what was already acknowledged).
        for (let attempt = 0; attempt < 50; attempt++) {
          const answer = await send(batch);
          if (answer.statusCode === 202) {
            acknowledged.push(...batch);
            if (batch === first) expect(answer.json()).toEqual({ accepted: 100, duplicates: 100 });
            break;
          }
          retried++;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
      const direct = await storedTimestamps(database.db);
      const unique = new Set(acknowledged.map((row) => Date.parse(row.timestamp)));
      expect(direct).toEqual(unique);
      expect(direct.size).toBe(300);
      expect(retried).toBeGreaterThanOrEqual(0);
    } finally {
      await faulty.close();
    }
  }, 60_000);

  it("answers reads, writes, sign-in and history with 503 and Retry-After while it is away, never 500", async () => {
    const faulty = await behindProxy();
    const { proxy, services, app } = faulty;
    try {
      await services.oauth.createClient({
        clientId: client.id,
        secret: client.secret,
        grantTypes: ["password"],
        scopes: ["read", "write"],
      });
      await services.users.createUser({ username: "away", password: "Correct-Horse-Battery-9" }, [
        "Admin",
      ]);
      const signIn = () =>
        app.inject({
          method: "POST",
          url: "/o/token/",
          payload: {
            grant_type: "password",
            username: "away",
            password: "Correct-Horse-Battery-9",
            client_id: client.id,
            client_secret: client.secret,
          },
        });
      const token = (await signIn()).json().access_token as string;
      const headers = { authorization: `Bearer ${token}` };
      const requests = [
        { method: "GET" as const, url: "/data/axises/?limit=5" },
        { method: "GET" as const, url: "/api/axis-data/?minutes=5" },
        {
          method: "POST" as const,
          url: "/data/machines/",
          payload: { machine_id: 77, machine_name: "Away", tool_capacity: 4 },
        },
      ];
      // Signed in (the token is cached), then the database goes.
      expect((await app.inject({ ...requests[0]!, headers })).statusCode).toBe(200);
      proxy.disconnect();
      for (const request of requests) {
        const answer = await app.inject({ ...request, headers });
        expect(answer.statusCode, `${request.method} ${request.url}: ${answer.body}`).toBe(503);
        expect(answer.headers["retry-after"]).toBe("1");
        expect(answer.json()).toEqual({ detail: "The database is unavailable; retry later." });
      }
      const away = await signIn();
      expect(away.statusCode, away.body).toBe(503);
      expect(away.json().error).toBe("temporarily_unavailable");

      proxy.reconnect();
      let back = 0;
      for (let attempt = 0; attempt < 50 && back !== 201; attempt++) {
        back = (await app.inject({ ...requests[2]!, headers })).statusCode;
        if (back !== 201) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(back).toBe(201);
    } finally {
      await faulty.close();
    }
  }, 60_000);
});
