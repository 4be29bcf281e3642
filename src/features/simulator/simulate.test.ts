import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp, testClient } from "../../../test/helpers/app.ts";
import {
  openTestDatabase,
  type TestDatabase,
  testDatabaseKind,
} from "../../../test/helpers/database.ts";
import { LiveTestClient } from "../../../test/helpers/live-client.ts";
import { runSpindle, spindleBin } from "../../../test/helpers/spindle-process.ts";
import { openDatabase } from "../../platform/database.ts";
import { httpTarget, retryAfterSeconds } from "./http-target.ts";
import { databaseTarget, startSimulator } from "./simulator-runner.ts";

const bin = spindleBin;

const spindle = (args: string[], env: Record<string, string>) => runSpindle(args, env);

describe("spindle simulate", () => {
  let dataDir: string;
  let database: TestDatabase | undefined;
  let env: Record<string, string>;
  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "spindle-simulate-"));
    env = { DATA_DIR: dataDir, DATABASE_URL: "" };
    if (testDatabaseKind() === "postgres") {
      database = await openTestDatabase({ migrated: false });
      const url = new URL(database.url!);
      url.searchParams.set("options", `-c search_path=${database.schema}`);
      env.DATABASE_URL = url.toString();
    }
  });
  afterAll(async () => {
    await database?.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** The first row's `n` of `sql`, read once `spindle` has let go of the database. */
  const numberOf = async (sql: string) => {
    const db = await openDatabase(
      database
        ? { url: database.url, schema: database.schema }
        : { dataDir: join(dataDir, "pglite") },
    );
    try {
      return Number((await db.query<{ n: number }>(sql)).rows[0]!.n);
    } finally {
      await db.close();
    }
  };
  const count = (table: string) => numberOf(`select count(*)::int as n from ${table}`);

  it("refuses bad flags with usage (exit 2)", async () => {
    for (const args of [
      ["--machines", "0"],
      ["--machines", "10001"],
      ["--machines", "many"],
      ["--axes", "X,Q"],
      ["--speed", "0"],
      ["--speed", "fast"],
      ["--duration", "forever"],
      ["--seed", "-3"],
      ["--target", "ftp://x"],
      ["--target", "http://127.0.0.1:1"],
      ["--target", "http://[::1", "--client-id", "c", "--client-secret", "s"],
      ["--bogus"],
    ]) {
      const run = await spindle(["simulate", ...args], env);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
    }
    // A server that is not there is named, with the reason, not "fetch failed".
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise((resolve) => closed.close(resolve));
    const away = await spindle(
      [
        "simulate",
        "--target",
        `http://127.0.0.1:${port}`,
        "--client-id",
        "c",
        "--client-secret",
        "s",
        "--duration",
        "1s",
      ],
      env,
    );
    expect(away.code).toBe(1);
    expect(away.stderr).toBe(`spindle: cannot reach http://127.0.0.1:${port}: ECONNREFUSED\n`);
  }, 120_000);

  it("stops with the file, row and column of a bad field spec (exit 1)", async () => {
    const spec = join(dataDir, "fields.csv");
    await writeFile(
      spec,
      "entity,field,unit,type,update interval\naxis,actual_position,mm,float,100 ms\naxis,velocity,mm/s,float,fast\n",
    );
    const run = await spindle(["simulate", "--fields", spec, "--duration", "1s"], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `fields.csv: row 3, column "update interval": cannot parse "fast"`,
    );
  });

  it("writes at the spec's rate for 10 s, and reuses the fleet on a second run", async () => {
    const run = await spindle(
      ["simulate", "--machines", "20", "--duration", "10s", "--target", "db"],
      env,
    );
    expect(run.code, run.stderr).toBe(0);
    // 20 machines × 5 axes every 100 ms for 10 s: 10,000 axis samples (one more tick at the start).
    const samples = await count("axis_data");
    expect(samples).toBeGreaterThanOrEqual(10_000 * 0.95);
    expect(samples).toBeLessThanOrEqual(10_100 * 1.05);
    expect(run.stdout).toMatch(/done: \d+ samples in 10\.\d s/);
    const again = await spindle(["simulate", "--machines", "20", "--duration", "1s"], env);
    expect(again.code).toBe(0);
    expect(await count("machine")).toBe(20);
    expect(await count("axis")).toBe(100);
    expect(await count("tool")).toBe(20 * 24);
    // Machines of their own beside those, as a second simulator beside a server's needs.
    const beside = await spindle(
      ["simulate", "--machines", "2", "--first-machine", "81258876", "--duration", "1s"],
      env,
    );
    expect(beside.code, beside.stderr).toBe(0);
    expect(
      await numberOf(
        "select count(*)::int as n from machine where machine_id in (81258876, 81258877) and machine_name in ('Machine 21', 'Machine 22')",
      ),
    ).toBe(2);
    expect(await count("machine")).toBe(22);
    const refused = await spindle(["simulate", "--first-machine", "0"], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--first-machine: expected a whole number from 1");
  }, 120_000);

  it("keeps the rollups of what it writes: every bucket of every tier counts the raw samples in it", async () => {
    const run = await spindle(["simulate", "--machines", "3", "--duration", "3s"], env);
    expect(run.code, run.stderr).toBe(0);
    const samples = await count("axis_data");
    expect(samples).toBeGreaterThan(0);
    // Buckets whose sample count differs from the raw samples' (or that only one side has).
    const mismatches = (table: string, bucketStart: string) =>
      numberOf(
        `with raw as (
           select axis_id, ${bucketStart} as bucket, count(*)::int as samples
           from axis_data group by 1, 2)
         select count(*)::int as n
         from raw full join ${table} r on r.axis_id = raw.axis_id and r.update_timestamp = raw.bucket
         where raw.samples is distinct from r.samples`,
      );
    expect(await mismatches("axis_data_1s", "date_trunc('second', update_timestamp)")).toBe(0);
    expect(
      await mismatches(
        "axis_data_5s",
        "date_bin('5 seconds', update_timestamp, timestamptz '1970-01-01Z')",
      ),
    ).toBe(0);
    expect(
      await mismatches(
        "axis_data_10s",
        "date_bin('10 seconds', update_timestamp, timestamptz '1970-01-01Z')",
      ),
    ).toBe(0);
    expect(await mismatches("axis_data_1m", "date_trunc('minute', update_timestamp)")).toBe(0);
    expect(await numberOf("select sum(samples)::int as n from axis_data_1m")).toBe(samples);
  }, 60_000);

  it("refuses a speed its spec cannot run at before creating any machine (exit 2)", async () => {
    const before = await count("machine");
    const run = await spindle(["simulate", "--machines", "30", "--speed", "1000"], env);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(/below 1 ms; lower the speed/);
    const slow = await spindle(
      ["simulate", "--machines", "1", "--speed", "1e-310", "--duration", "3s"],
      env,
    );
    expect(slow.code, slow.stderr).toBe(2);
    expect(slow.stderr).toMatch(/longer than a year/);
    expect(await count("machine")).toBe(before);
  }, 60_000);
});

describe("the simulator in a server and against a remote one", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp();
  });
  afterAll(() => t.close());

  it("feeds the ingest pipeline with physically consistent rows within the database's axis limits", async () => {
    const { services } = t;
    const simulator = await startSimulator(databaseTarget(services), {
      machines: 3,
      speed: 5,
      durationMs: 3000,
    });
    await simulator.fleet.done;
    await simulator.stop();
    const { rows } = await services.db.query<{
      axis_name: string;
      velocity: number;
      acceleration: number;
      actual_position: number;
      distance_to_go: number;
      target_position: number;
      max_velocity: number;
      max_acceleration: number;
    }>(
      `select x.axis_name, d.velocity, d.acceleration, d.actual_position, d.target_position, d.distance_to_go, x.max_velocity, x.max_acceleration
       from axis_data d join axis x on x.axis_id = d.axis_id`,
    );
    expect(rows.length).toBeGreaterThan(3 * 5 * 100);
    for (const row of rows) {
      expect(Math.abs(row.velocity)).toBeLessThanOrEqual(row.max_velocity + 1e-6);
      expect(Math.abs(row.acceleration)).toBeLessThanOrEqual(row.max_acceleration + 1e-6);
      expect(row.distance_to_go).toBeCloseTo(row.target_position - row.actual_position, 9);
      if (row.axis_name === "C")
        expect(row.actual_position >= 0 && row.actual_position < 360).toBe(true);
    }
    // Tool in use reports name real tools of the machine.
    const usage = await services.db.query<{ ok: boolean }>(
      "select bool_and(exists (select 1 from tool t where t.tool_id = u.tool_in_use and t.machine_id = u.machine_id)) as ok from tool_usage u",
    );
    expect(usage.rows[0]!.ok).toBe(true);
    expect(services.latest.axes.size).toBe(15);
  });

  it("sends to a remote Spindle over HTTP with a user who may create the fleet", async () => {
    const address = await t.app.listen({ port: 0, host: "127.0.0.1" });
    const fleetOwner = await t.userAuth(["Manager", "Operator"]);
    const before = Number(
      (await t.database.db.query<{ n: number }>("select count(*)::int as n from axis_data"))
        .rows[0]!.n,
    );
    const target = httpTarget(address, {
      clientId: testClient.id,
      clientSecret: testClient.secret,
      username: fleetOwner.username,
      password: fleetOwner.password,
    });
    const simulator = await startSimulator(target, {
      machines: 2,
      seed: 7,
      durationMs: 1500,
      axes: ["X", "Y", "Z"],
    });
    const stats = await simulator.fleet.done;
    const after = Number(
      (await t.database.db.query<{ n: number }>("select count(*)::int as n from axis_data"))
        .rows[0]!.n,
    );
    expect(stats.samples.axis).toBeGreaterThan(0);
    expect(after - before).toBe(stats.samples.axis);
    // Every kind went with the user's token: tool reports and usage need their own permissions.
    expect(stats.samples.tool).toBeGreaterThan(0);
    expect(stats.samples.toolUsage).toBeGreaterThan(0);
    // A client without a user can send to an existing fleet but cannot create one.
    const adapter = httpTarget(address, {
      clientId: testClient.id,
      clientSecret: testClient.secret,
    });
    await expect(startSimulator(adapter, { machines: 50, durationMs: 500 })).rejects.toThrow(
      /does not exist/,
    );
    // Nor make a tool its fleet lacks: its ingest scope reports tools, it does not make them.
    await t.database.db.query(
      "delete from tool where tool_id = (select max(tool_id) from tool where machine_id = 81258856)",
    );
    await expect(
      startSimulator(adapter, { machines: 2, seed: 7, durationMs: 500, axes: ["X", "Y", "Z"] }),
    ).rejects.toThrow(/^a tool of machine 81258856 does not exist on .*pass --username/);
    // A user who may not add tool usage (a Manager alone) is told what the rows need.
    const managerOnly = await t.userAuth(["Manager"]);
    const { rows } = await t.database.db.query<{ tool_id: number; machine_id: number }>(
      "select tool_id, machine_id from tool limit 1",
    );
    const [tool] = rows;
    const now = new Date();
    await expect(
      httpTarget(address, {
        clientId: testClient.id,
        clientSecret: testClient.secret,
        username: managerOnly.username,
        password: managerOnly.password,
      }).submit({
        axis: [],
        tools: [],
        toolUsage: [
          {
            machineId: Number(tool!.machine_id),
            toolInUse: Number(tool!.tool_id),
            time: now.toISOString(),
            timeMs: now.getTime(),
          },
        ],
      }),
    ).rejects.toThrow(/403 .*needs axisdata.add, tool.change and toolusage.add/);
  });
});

describe("the simulator when its fleet or its target changes under it", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await buildTestApp();
  });
  afterAll(() => t.close());

  const count = async (sql: string, params: unknown[]) =>
    Number((await t.database.db.query<{ n: number }>(sql, params)).rows[0]!.n);
  const samplesOf = (machineId: number, axisName = "%") =>
    count(
      "select count(*)::int as n from axis_data d join axis x using (axis_id) where x.machine_id = $1 and x.axis_name like $2",
      [machineId, axisName],
    );

  it("leaves a machine or an axis deleted while it runs alone, and goes on with the rest", async () => {
    const { services } = t;
    const simulator = await startSimulator(databaseTarget(services), {
      machines: 4,
      speed: 5,
      durationMs: 8000,
    });
    const [kept, , axisOwner, gone] = simulator.fleet.machines.map((m) => m.machineId) as [
      number,
      number,
      number,
      number,
    ];
    for (let i = 0; (await samplesOf(gone)) === 0; i++) {
      expect(i).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const remove = (path: string) =>
      t.inject({ method: "DELETE", url: path, headers: t.adminAuth });
    expect((await remove(`/data/machines/${gone}/`)).statusCode).toBe(204);
    const { rows } = await services.db.query<{ axis_id: number }>(
      "select axis_id from axis where machine_id = $1 and axis_name = 'Z'",
      [axisOwner],
    );
    expect((await remove(`/data/axes/${rows[0]!.axis_id}/`)).statusCode).toBe(204);
    const keptBefore = await samplesOf(kept);
    const ownerXBefore = await samplesOf(axisOwner, "X");

    const stats = await simulator.fleet.done;

    expect(stats.samples.axis).toBeGreaterThan(0);
    expect(await samplesOf(kept)).toBeGreaterThan(keptBefore);
    expect(await samplesOf(axisOwner, "X")).toBeGreaterThan(ownerXBefore);
    // Deleted stays deleted: neither the machine nor the axis is created again.
    expect(
      await count("select count(*)::int as n from machine where machine_id = $1", [gone]),
    ).toBe(0);
    expect(
      await count("select count(*)::int as n from axis where machine_id = $1 and axis_name = 'Z'", [
        axisOwner,
      ]),
    ).toBe(0);
  }, 30_000);

  it("stores and shows live an axis renamed or moved while it runs under its new name and machine", async () => {
    const { services } = t;
    const simulator = await startSimulator(databaseTarget(services), {
      machines: 2,
      speed: 5,
      durationMs: 6000,
    });
    const [owner, other] = simulator.fleet.machines.map((m) => m.machineId) as [number, number];
    const axisOf = async (name: string) =>
      (
        await services.db.query<{ axis_id: number }>(
          "select axis_id from axis where machine_id = $1 and axis_name = $2",
          [owner, name],
        )
      ).rows[0]!.axis_id;
    const [renamed, moved] = [await axisOf("Z"), await axisOf("A")];
    for (let i = 0; (await samplesOf(owner)) === 0; i++) {
      expect(i).toBeLessThan(100);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const patch = (id: number, payload: object) =>
      t.inject({ method: "PATCH", url: `/data/axes/${id}/`, headers: t.adminAuth, payload });
    expect((await patch(renamed, { axis_name: "Z2" })).statusCode).toBe(200);
    expect((await patch(moved, { machine: other, axis_name: "A7" })).statusCode).toBe(200);
    const changedAt = Date.now();
    await simulator.fleet.done;

    // The simulator went on moving both axes; what it sent since is where they are now.
    for (const [axis, machineId, axisName] of [
      [renamed, owner, "Z2"],
      [moved, other, "A7"],
    ] as const) {
      const newer = await count(
        "select count(*)::int as n from axis_data where axis_id = $1 and update_timestamp > $2",
        [axis, new Date(changedAt + 500)],
      );
      expect(newer).toBeGreaterThan(0);
      const latest = services.latest.axes.get(axis)!;
      expect([latest.machineId, latest.axisName, latest.timeMs > changedAt]).toEqual([
        machineId,
        axisName,
        true,
      ]);
    }
  }, 30_000);

  it("pauses while the remote answers 502 or 503 or cannot be reached, and stops at once when asked, even mid-request", async () => {
    const address = new URL(await t.app.listen({ port: 0, host: "127.0.0.1" }));
    // A gateway in front of the remote Spindle: it forwards until told to fail.
    let failing: "no" | "502" | "503" | "unreachable" | "hanging" = "no";
    let hanging = 0;
    const gateway = createServer((request, response) => {
      if (failing === "unreachable") return request.socket.destroy();
      if (failing === "502") {
        response.writeHead(502).end("Bad gateway");
        return;
      }
      if (failing === "503" && request.url?.startsWith("/api/ingest/")) {
        response.writeHead(503, { "retry-after": "3600" }).end();
        return;
      }
      // Taken in and never answered.
      if (failing === "hanging") return void hanging++;
      const forwarded = httpRequest(
        {
          host: address.hostname,
          port: address.port,
          path: request.url,
          method: request.method,
          headers: request.headers,
        },
        (answer) => {
          response.writeHead(answer.statusCode!, answer.headers);
          answer.pipe(response);
        },
      );
      request.pipe(forwarded);
    });
    await new Promise<void>((resolve) => gateway.listen(0, "127.0.0.1", resolve));
    const fleetOwner = await t.userAuth(["Manager", "Operator"]);
    try {
      for (const mode of ["502", "503", "unreachable", "hanging"] as const) {
        failing = "no";
        hanging = 0;
        const pauses: string[] = [];
        const simulator = await startSimulator(
          httpTarget(`http://127.0.0.1:${(gateway.address() as AddressInfo).port}`, {
            clientId: testClient.id,
            clientSecret: testClient.secret,
            username: fleetOwner.username,
            password: fleetOwner.password,
          }),
          { machines: 2, axes: ["X"] },
          { onPause: (reason) => pauses.push(reason) },
        );
        failing = mode;
        for (let i = 0; mode === "hanging" ? hanging === 0 : pauses.length === 0; i++) {
          expect(i).toBeLessThan(100);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        if (mode !== "hanging")
          expect(pauses[0]).toMatch(mode === "unreachable" ? /cannot reach/ : `answered ${mode}`);
        // Neither a Retry-After of an hour nor a request left unanswered holds the stop.
        const stopped = Date.now();
        await simulator.stop();
        expect(Date.now() - stopped).toBeLessThan(5_000);
      }
    } finally {
      gateway.closeAllConnections();
      await new Promise((resolve) => gateway.close(resolve));
    }
  }, 30_000);

  it("keeps a remote's Retry-After within 1 s and 5 min", () => {
    expect(
      [null, "", "soon", "-1", "0", "2.5", "86400", "Infinity"].map(retryAfterSeconds),
    ).toEqual([1, 1, 1, 1, 1, 3, 300, 1]);
  });
});

describe("SIMULATOR=on", () => {
  it("spindle serve runs the simulator: machines appear, their data flows in, every tool is live", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "spindle-serve-sim-"));
    const database =
      testDatabaseKind() === "postgres" ? await openTestDatabase({ migrated: false }) : undefined;
    const env: Record<string, string> = {
      ...process.env,
      DATA_DIR: dataDir,
      DATABASE_URL: "",
      PORT: "0",
      SIMULATOR: "on",
      SIMULATOR_MACHINES: "3",
      LOG_LEVEL: "info",
      ADMIN_USERNAME: "sim-admin",
      ADMIN_PASSWORD: "a-long-enough-password-for-the-test",
    } as Record<string, string>;
    if (database) {
      const url = new URL(database.url!);
      url.searchParams.set("options", `-c search_path=${database.schema}`);
      env.DATABASE_URL = url.toString();
    }
    const server = spawn(bin, ["serve"], { env });
    try {
      let log = "";
      await new Promise<void>((resolve, reject) => {
        server.stdout.on("data", (chunk) => {
          log += chunk;
          if (log.includes("simulator running")) resolve();
        });
        server.on("exit", (code) => reject(new Error(`serve exited ${code}: ${log}`)));
      });
      await new Promise((resolve) => setTimeout(resolve, 1500));
      // The live feed has every tool the simulator made (24 a machine), not only those in use.
      const base = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(log)![1]!;
      const token = await fetch(`${base}/o/token/`, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          grant_type: "password",
          client_id: "spindle-console",
          username: env.ADMIN_USERNAME!,
          password: env.ADMIN_PASSWORD!,
        }),
      }).then((answer) => answer.json() as Promise<{ access_token: string }>);
      const live = await LiveTestClient.open(`${base.replace("http", "ws")}/ws/machine_data/`, {
        authorization: `Bearer ${token.access_token}`,
      });
      try {
        await live.next((m) => m.type === "authenticated");
        const tools = await live.ask({ type: "get_tool_data" }, "tool_data");
        expect(tools.data).toHaveLength(3 * 24);
      } finally {
        live.close();
      }
    } finally {
      const exited = new Promise((resolve) => server.once("exit", resolve));
      server.kill("SIGTERM");
      await exited;
    }
    const db = await openDatabase(
      database
        ? { url: database.url, schema: database.schema }
        : { dataDir: join(dataDir, "pglite") },
    );
    try {
      const machines = await db.query<{ n: number }>("select count(*)::int as n from machine");
      const samples = await db.query<{ n: number }>("select count(*)::int as n from axis_data");
      expect(machines.rows[0]!.n).toBe(3);
      expect(samples.rows[0]!.n).toBeGreaterThan(3 * 5);
    } finally {
      await db.close();
      await database?.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
