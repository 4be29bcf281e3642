import { type ChildProcess, spawn } from "node:child_process";
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { AxisDataPartitions } from "../src/features/axis-data/partitions.ts";
import { openDatabase } from "../src/platform/database.ts";
import { loadMigrations, migrate } from "../src/platform/migrations.ts";
import { openTestDatabase, type TestDatabase, testDatabaseKind } from "./helpers/database.ts";
import { runSpindle, spindleBin } from "./helpers/spindle-process.ts";

const bin = spindleBin;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

let dataDir: string;
let database: TestDatabase | undefined;
let env: Record<string, string>;

function spindle(
  args: string[],
  extraEnv: Record<string, string> = {},
  input?: string,
): Promise<Run> {
  return runSpindle(args, { ...env, ...extraEnv }, input);
}

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), "spindle-cli-"));
  env = { DATA_DIR: dataDir, LOG_LEVEL: "info", DATABASE_URL: "", SIMULATOR: "off" };
  if (testDatabaseKind() === "postgres") {
    // The CLI works in this file's own schema, named through the URL's connection options.
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

describe("bin/spindle", { timeout: 180_000 }, () => {
  it("exits 2 with usage for no command, an unknown one, or missing and bad flags", async () => {
    for (const args of [
      [],
      ["bogus"],
      ["createuser"],
      ["createuser", "--username", "x"],
      ["migrate", "--frobnicate"],
    ]) {
      const run = await spindle(args);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr).toMatch(/Usage: spindle/);
    }
    const badGrant = await spindle(["createclient", "--client-id", "c", "--grant", "implicit"]);
    expect(badGrant.code).toBe(2);
    expect(badGrant.stderr).toContain("--grant: unknown grant type implicit");
    // The usage shown is the command's own, whether the flag failed its parser or its action.
    expect(badGrant.stderr).toContain("Usage: spindle createclient [options]");
    for (const [args, message] of [
      [["--scope", "read bogus"], "--scope: unknown scope bogus"],
      [["--scope", "root"], "--scope: unknown scope root"],
      [["--scope", ""], "--scope: at least one scope, each once"],
      [["--grant", ""], "--grant: at least one grant type, each once"],
      [["--grant", "password,password"], "--grant: at least one grant type, each once"],
      [["--client-secret", "short"], "--client-secret: 16 to 256 characters, got 5"],
    ] as const) {
      const run = await spindle(["createclient", "--client-id", "c", ...args]);
      expect({ args, code: run.code }).toEqual({ args, code: 2 });
      expect(run.stderr).toContain(message);
      expect(run.stderr).toContain("Usage: spindle createclient [options]");
    }
    const badMachines = await spindle(["simulate", "--machines", "abc"]);
    expect(badMachines.code).toBe(2);
    expect(badMachines.stderr).toContain("Usage: spindle simulate [options]");
    const both = await spindle([
      "createclient",
      "--client-id",
      "c",
      "--public",
      "--client-secret",
      "abcdefghijklmnopqrstu",
    ]);
    expect(both.code).toBe(2);
  });

  it("stops on bad configuration with one line naming the variable", async () => {
    const aFile = join(dataDir, "a-file");
    await writeFile(aFile, "");
    const cases: [Record<string, string>, RegExp][] = [
      [{ PORT: "eighty" }, /^spindle: PORT: expected a whole number, got "eighty"\n$/],
      [{ PORT: "70000" }, /^spindle: PORT: expected a number from 0 to 65535, got 70000\n$/],
      [
        { DATABASE_URL: "mysql://root@localhost/x" },
        /^spindle: DATABASE_URL: expected a postgres:\/\/ URL/,
      ],
      [
        { DATABASE_URL: "postgres://nobody:secret@127.0.0.1:1/none" },
        /^spindle: DATABASE_URL: cannot connect to postgres:\/\/nobody:\*\*\*@127\.0\.0\.1:1\/none/,
      ],
      // libpq's secrets as query parameters.
      [
        { DATABASE_URL: "postgres://nobody@127.0.0.1:1/none?password=secret&sslpassword=secret" },
        /^spindle: DATABASE_URL: cannot connect to postgres:\/\/nobody@127\.0\.0\.1:1\/none\?password=\*\*\*&sslpassword=\*\*\*:/,
      ],
      [{ LOG_LEVEL: "loud" }, /^spindle: LOG_LEVEL: expected one of/],
      [{ SIMULATOR: "maybe" }, /^spindle: SIMULATOR: expected on or off/],
      [{ TRUST_PROXY: "1" }, /^spindle: TRUST_PROXY: a hop count \(1\) is not supported/],
      [
        { TRUST_PROXY: "10.0.0.1,nginx" },
        /^spindle: TRUST_PROXY: expected false, true, or a comma-separated list of proxy addresses and CIDR ranges .*, got "nginx"\n$/,
      ],
      [{ ADMIN_USERNAME: "boss" }, /^spindle: ADMIN_PASSWORD: required when ADMIN_USERNAME is set/],
      // Node's own recursive mkdir retried this for ever.
      [
        { DATA_DIR: "/proc/spindle-nowhere", DATABASE_URL: "" },
        /^spindle: DATA_DIR: cannot make \/proc\/spindle-nowhere \(ENOENT\)\n$/,
      ],
      [
        { DATA_DIR: join(aFile, "data"), DATABASE_URL: "" },
        /^spindle: DATA_DIR: .*spindle-cli-.*\/a-file is not a directory\n$/,
      ],
    ];
    for (const [extra, message] of cases) {
      const run = await spindle(["migrate"], extra);
      expect(run.code, JSON.stringify(extra)).toBe(1);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toContain("secret");
      expect(run.stderr.trim().split("\n")).toHaveLength(1);
    }
  });

  it("keeps the embedded database's files private to its user, even in a directory made open", async () => {
    const fresh = join(dataDir, "private-fresh");
    const opened = join(dataDir, "private-opened");
    await mkdir(join(opened, "pglite"), { recursive: true, mode: 0o777 });
    await chmod(join(opened, "pglite"), 0o777);
    for (const dir of [fresh, opened]) {
      const run = await spindle(["migrate"], { DATA_DIR: dir, DATABASE_URL: "" });
      expect(run.code, run.stderr).toBe(0);
      expect((await stat(join(dir, "pglite"))).mode & 0o777).toBe(0o700);
    }
  });

  it("migrates once, then says it is up to date", async () => {
    const first = await spindle(["migrate"]);
    expect(first.code).toBe(0);
    const names = (await loadMigrations()).map((migration) => migration.name);
    expect(first.stdout).toBe(`applied: ${names.join(", ")}\n`);
    const second = await spindle(["migrate"]);
    expect(second.stdout).toBe("up to date\n");
  });

  it("stops serving with one line naming HOST or ADMIN_USERNAME when either is unusable, and exits", async () => {
    const badAdmin = await spindle(["serve"], {
      ADMIN_USERNAME: "bad name",
      ADMIN_PASSWORD: "Granite-Owl-5521",
      PORT: "0",
    });
    expect(badAdmin.code).toBe(1);
    expect(badAdmin.stderr).toBe(
      "spindle: ADMIN_USERNAME: Enter a valid username of at most 150 characters: letters, numbers and @/./+/-/_ only.\n",
    );
    const unlistenable = await spindle(["serve"], { HOST: "999.1.1.1", PORT: "0" });
    expect(unlistenable.code).toBe(1);
    expect(unlistenable.stderr).toMatch(
      /^spindle: HOST: cannot listen on 999\.1\.1\.1:0: no such address here \((ENOTFOUND|EAI_AGAIN)\)\n$/,
    );
  });

  it("creates users and clients, and explains refusals in one line", async () => {
    const createuser = (username: string, password: string, ...more: string[]) =>
      spindle(["createuser", "--username", username, "--password", password, ...more]);
    const created = await spindle(
      ["createuser", "--username", "foreman", "--password", "-", "--group", "Admin"],
      {},
      "Spindle-Chief-2026\n",
    );
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^created user foreman \(id \d+\) in Admin\n$/);
    const duplicate = await createuser("FOREMAN", "Another-Pass-99");
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toBe("spindle: username: A user with that username already exists.\n");
    const weak = await createuser("weak", "123");
    expect(weak.code).toBe(1);
    expect(weak.stderr).toMatch(/^spindle: password: This password is too short/);
    // The API's rules, which a CLI account skipped: a name no Admin could then manage, or an
    // invisible character making a twin of another.
    for (const username of ["a b;drop", "admin\u200b", "", "x".repeat(151)]) {
      const refused = await createuser(username, "Marble-Kite-4410");
      expect({ username, code: refused.code }).toEqual({ username, code: 1 });
      expect(refused.stderr).toBe(
        "spindle: username: Enter a valid username of at most 150 characters: letters, numbers and @/./+/-/_ only.\n",
      );
    }
    const badEmail = await createuser("mailer", "Marble-Kite-4410", "--email", "notanemail");
    expect(badEmail.stderr).toBe("spindle: email: Enter a valid email address.\n");
    const longPassword = await spindle(
      ["createuser", "--username", "verbose", "--password", "-"],
      {},
      `${"Marble-Kite-4410".repeat(100)}\n`,
    );
    expect(longPassword.stderr).toBe(
      "spindle: password: This password is too long. It must contain at most 1024 characters.\n",
    );
    const noGroup = await createuser("wanderer", "Lost-in-Space-1", "--group", "Wizards");
    expect(noGroup.stderr).toBe('spindle: group: Group "Wizards" does not exist.\n');
    // A group named twice is joined once, not a clash reported as a taken username.
    const twice = await createuser(
      "doubler",
      "Marble-Kite-4410",
      "--group",
      "Operator",
      "--group",
      "Operator",
    );
    expect(twice.stderr).toBe("");
    expect(twice.code).toBe(0);

    const client = await spindle([
      "createclient",
      "--client-id",
      "adapter",
      "--grant",
      "client_credentials",
      "--scope",
      "ingest",
    ]);
    expect(client.code).toBe(0);
    expect(client.stdout).toMatch(
      /^created client adapter \(grants: client_credentials; scopes: ingest\)\nclient secret \(shown once\): sps_[\w-]{43}\n$/,
    );
    const again = await spindle([
      "createclient",
      "--client-id",
      "adapter",
      "--client-secret",
      "abcdefghijklmnopqrstu",
    ]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(
      "spindle: client_id: oauth client with this client id already exists.\n",
    );
    // Repeated, a list option adds to its list rather than keeping the last.
    const repeated = await spindle([
      "createclient",
      "--client-id",
      "both-ways",
      "--grant",
      "password",
      "--grant",
      "client_credentials,refresh_token",
      "--scope",
      "read",
      "--scope",
      "ingest",
    ]);
    expect(repeated.stderr).toBe("");
    expect(repeated.stdout).toMatch(
      /^created client both-ways \(grants: password, client_credentials, refresh_token; scopes: read ingest\)\n/,
    );
    // Clients no one could send as typed, or one the server keeps for itself (bad flags: above).
    const unsendable = await spindle(["createclient", "--client-id", "a:b c/../"]);
    expect(unsendable.stderr).toBe(
      "spindle: client_id: 1 to 100 letters, digits or . _ ~ - only.\n",
    );
    const console = await spindle([
      "createclient",
      "--client-id",
      "spindle-console",
      "--client-secret",
      "abcdefghijklmnopqrstu",
    ]);
    expect(console.stderr).toBe(
      "spindle: client_id: Reserved: the server registers this client itself.\n",
    );
  });
});

describe("spindle rebuild-rollups", { timeout: 180_000 }, () => {
  it("recomputes the rollups where raw samples are kept, leaves older ones, and refuses a bad window", async () => {
    const rebuild = (from: string, to: string) =>
      spindle(["rebuild-rollups", "--from", from, "--to", to]);
    // Rollups outlive raw samples: where none are kept, a rebuild would erase them.
    const untouched = await rebuild("2020-01-01T00:00:00Z", "2020-01-02T00:00:00Z");
    expect(untouched.code).toBe(0);
    expect(untouched.stdout).toBe(
      "no raw samples are kept in that window: its rollups are left as they are\n",
    );
    // Raw samples kept from a day (the partition a sample of it would have).
    const day = Date.UTC(2026, 10, 1);
    const db = database?.db ?? (await openDatabase({ dataDir: join(dataDir, "pglite") }));
    try {
      await migrate(db);
      await new AxisDataPartitions(db).ensure([day]);
    } finally {
      if (!database) await db.close();
    }
    const done = await rebuild("2026-10-01T00:00:00Z", "2026-11-02T00:00:00Z");
    expect(done.code).toBe(0);
    expect(done.stdout).toMatch(
      /^raw samples are kept from 2026-11-01T00:00:00\.000Z: the rollups before it are left as they are\nrebuilt rollups from 2026-11-01T00:00:00\.000Z to 2026-11-02T00:00:00\.000Z in \d+\.\d s\n$/,
    );
    for (const [args, reason] of [
      [["--from", "yesterday"], "--from: expected an ISO 8601 time"],
      // What `new Date` would read as 2001-01-01, 2001-03-07 and 2026-03-02.
      [["--from", "1"], "--from: expected an ISO 8601 time"],
      [["--from", "March 7"], "--from: expected an ISO 8601 time"],
      [["--from", "2026-02-30T00:00:00Z"], "--from: expected an ISO 8601 time"],
      [["--to", "2026-11-02"], "--to: expected an ISO 8601 time"],
      [["--from", "2026-11-02T00:00:00Z", "--to", "2026-11-01T00:00:00Z"], "--from must be before"],
      [["--to", "'; drop table axis_data; --"], "--to: expected an ISO 8601 time"],
    ] as const) {
      const refused = await spindle(["rebuild-rollups", ...args]);
      expect({ args, code: refused.code }).toEqual({ args, code: 2 });
      expect(refused.stderr).toContain(reason);
    }
  }, 120_000);
});

describe("spindle serve", { timeout: 180_000 }, () => {
  let server: ChildProcess | undefined;
  afterAll(() => {
    server?.kill("SIGKILL");
  });

  it("serves, holds the embedded data directory against a second process, and stops cleanly on SIGTERM", async () => {
    const startedOn = Math.floor(Date.now() / 86_400_000) * 86_400_000;
    server = spawn(bin, ["serve"], { env: { ...process.env, ...env, PORT: "0" } });
    let log = "";
    const address = await new Promise<string>((resolve, reject) => {
      server!.stdout!.on("data", (chunk) => {
        log += chunk;
        const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(log);
        if (match) resolve(match[1]!);
      });
      server!.on("exit", (code) => reject(new Error(`serve exited ${code}: ${log}`)));
    });
    const health = await fetch(`${address}/readyz`);
    expect(await health.json()).toEqual({ status: "ready", database: testDatabaseKind() });
    // A message above the live feed's maximum payload closes its socket with 1009, even while
    // the client is still sending it, and is no error of the server's.
    for (const message of ["x".repeat(100 * 1024), Buffer.alloc(10 * 1024 * 1024)]) {
      const socket = new WebSocket(`${address.replace("http", "ws")}/ws/machine_data/`);
      socket.on("error", () => {});
      const closed = new Promise<number>((resolve) => socket.on("close", resolve));
      socket.on("open", () => socket.send(message));
      expect(await closed).toBe(1009);
    }
    // Credentials in a query string, however spelled, are logged as [redacted].
    for (const query of ["token=spa_1", "token[]=spa_2", "Access_Token=spa_3", "%74oken=spa_4"])
      await (await fetch(`${address}/ws/machine_data/?${query}`)).arrayBuffer();

    if (testDatabaseKind() === "embedded") {
      const second = await spindle(["migrate"]);
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/in use by another Spindle process/);
    }

    const exited = new Promise<number | null>((resolve) => server!.on("exit", resolve));
    server.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(log).not.toMatch(/spa_|spr_|password/i);
    expect(log.match(/\[redacted\]/g)).toHaveLength(4);
    expect(log).not.toMatch(/"level":50/);
    expect(log.match(/websocket client broke the protocol/g)).toHaveLength(2);
    // Once it is gone, the directory is free again.
    expect((await spindle(["migrate"])).code).toBe(0);

    // Its maintenance at start made the next days' partitions, before any sample needs them.
    const db = database?.db ?? (await openDatabase({ dataDir: join(dataDir, "pglite") }));
    try {
      const { rows } = await db.query<{ name: string }>(
        `select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
         join pg_class p on p.oid = i.inhparent
         where p.relname = 'axis_data' and p.relnamespace = to_regnamespace(current_schema())::oid`,
      );
      // Tomorrow and the day after: made whether or not midnight passed since it started.
      for (const dayStart of [startedOn + 86_400_000, startedOn + 2 * 86_400_000])
        expect(rows.map((row) => row.name)).toContain(
          `axis_data_${new Date(dayStart).toISOString().slice(0, 10).replaceAll("-", "")}`,
        );
    } finally {
      if (!database) await db.close();
    }
  });
});
