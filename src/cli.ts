import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import dotenv from "dotenv";
import { type Config, ConfigError, parseConfig } from "./config.ts";
import { grantTypes } from "./features/auth/oauth-service.ts";
import { knownScopes } from "./features/auth/scopes.ts";
import { parseUpdateInterval } from "./features/simulator/field-spec.ts";
import { FIRST_MACHINE_ID, parseAxisList } from "./features/simulator/fleet.ts";
import { httpTarget } from "./features/simulator/http-target.ts";
import { databaseTarget, startSimulator } from "./features/simulator/simulator-runner.ts";
import { DataDirError, DataDirLockedError } from "./platform/data-dir-lock.ts";
import { DomainError } from "./platform/errors.ts";
import { isDateTime } from "./platform/validation.ts";
import { openRuntime } from "./runtime.ts";
import { serve } from "./server.ts";

/** Exit statuses the contract promises. */
const exit = { ok: 0, failure: 1, usage: 2 } as const;

class UsageError extends Error {}

function loadConfig(): Config {
  dotenv.config({ quiet: true });
  return parseConfig(process.env);
}

/** `--password -` reads it from standard input, so it does not show in the process list. */
function passwordArgument(value: string): string {
  return value === "-" ? readFileSync(0, "utf8").replace(/\r?\n$/, "") : value;
}

function list(value: string): string[] {
  return value
    .split(/[\s,]+/)
    .map((item) => item.trim())
    .filter(Boolean);
}

/**
 * A list option given more than once adds to its list (`--grant password --grant
 * client_credentials`); the first replaces the default.
 */
function addingTo(defaults: string[]) {
  return (value: string, previous: string[]) => [
    ...(previous === defaults ? [] : previous),
    ...list(value),
  ];
}

const program = new Command()
  .name("spindle")
  .description("Machine-data platform for CNC fleets")
  .showHelpAfterError()
  .exitOverride()
  .configureOutput({ writeErr: (text) => process.stderr.write(text) });

program
  .command("serve")
  .description("migrate, then serve HTTP and WebSocket (and the simulator when SIMULATOR=on)")
  .action(async () => {
    await serve(loadConfig());
  });

program
  .command("migrate")
  .description("apply pending migrations and exit")
  .action(async () => {
    const runtime = await openRuntime(loadConfig());
    await runtime.close();
    console.log(
      runtime.migrated.length > 0 ? `applied: ${runtime.migrated.join(", ")}` : "up to date",
    );
  });

program
  .command("createuser")
  .description("create a user (the seed's createsuperuser when given --group Admin)")
  .requiredOption("--username <username>", "login name")
  .requiredOption(
    "--password <password>",
    'password, or "-" to read it from standard input',
    passwordArgument,
  )
  .option("--email <email>", "email address", "")
  .option(
    "--group <group>",
    "a group to join (repeatable)",
    (value: string, all: string[]) => [...all, value],
    [],
  )
  .action(
    async (options: { username: string; password: string; email: string; group: string[] }) => {
      const runtime = await openRuntime(loadConfig());
      try {
        const user = await runtime.services.users.createUser(
          { username: options.username, password: options.password, email: options.email },
          options.group,
        );
        const groups = user.groups.length > 0 ? ` in ${user.groups.join(", ")}` : "";
        console.log(`created user ${user.username} (id ${user.id})${groups}`);
      } finally {
        await runtime.close();
      }
    },
  );

const defaultGrants = ["password", "refresh_token"];
const defaultScopes = ["read", "write", "groups"];

program
  .command("createclient")
  .description("register an OAuth2 client (the seed's OAuth application)")
  .requiredOption("--client-id <id>", "the client's public identifier")
  .option(
    "--client-secret <secret>",
    "its secret, 16 to 256 characters (generated and printed when omitted)",
  )
  .option("--public", "a public client with no secret (browser apps)")
  .option("--name <name>", "a name people recognise", "")
  .addOption(
    new Option(
      "--grant <grants>",
      `grant types, comma separated or repeated: ${grantTypes.join(", ")}`,
    )
      .default(defaultGrants)
      .argParser(addingTo(defaultGrants)),
  )
  .addOption(
    new Option(
      "--scope <scopes>",
      `scopes it may ask for, separated by spaces or commas, or repeated: ${knownScopes.join(", ")}`,
    )
      .default(defaultScopes)
      .argParser(addingTo(defaultScopes)),
  )
  .action(
    async (options: {
      clientId: string;
      clientSecret?: string;
      public?: boolean;
      name: string;
      grant: string[];
      scope: string[];
    }) => {
      const unknown = options.grant.filter(
        (grant) => !(grantTypes as readonly string[]).includes(grant),
      );
      if (unknown.length > 0)
        throw new UsageError(`--grant: unknown grant type ${unknown.join(", ")}`);
      const once = (list: string[]) => list.length > 0 && new Set(list).size === list.length;
      if (!once(options.grant)) throw new UsageError("--grant: at least one grant type, each once");
      if (!once(options.scope)) throw new UsageError("--scope: at least one scope, each once");
      const unknownScopes = options.scope.filter(
        (scope) => !(knownScopes as readonly string[]).includes(scope),
      );
      if (unknownScopes.length > 0)
        throw new UsageError(`--scope: unknown scope ${unknownScopes.join(", ")}`);
      const secretLength = options.clientSecret?.length;
      if (secretLength !== undefined && (secretLength < 16 || secretLength > 256))
        throw new UsageError(`--client-secret: 16 to 256 characters, got ${secretLength}`);
      if (options.public && options.clientSecret)
        throw new UsageError("--public and --client-secret exclude each other");
      if (options.public && options.grant.includes("client_credentials")) {
        throw new UsageError("--public clients cannot use the client_credentials grant");
      }
      const runtime = await openRuntime(loadConfig());
      try {
        const { client, secret } = await runtime.services.oauth.createClient({
          clientId: options.clientId,
          secret: options.clientSecret,
          public: options.public,
          name: options.name,
          grantTypes: options.grant as (typeof grantTypes)[number][],
          scopes: options.scope,
        });
        console.log(
          `created client ${client.clientId} (grants: ${client.grantTypes.join(", ")}; scopes: ${client.scopes.join(" ")})`,
        );
        if (secret && !options.clientSecret) console.log(`client secret (shown once): ${secret}`);
      } finally {
        await runtime.close();
      }
    },
  );

program
  .command("rebuild-rollups")
  .description(
    "recompute the 1 s, 5 s, 10 s and 1 min rollups from raw samples (after loading data outside Spindle)",
  )
  .option("--from <time>", "ISO 8601 start (default: 24 hours ago)")
  .option("--to <time>", "ISO 8601 end (default: now)")
  .action(async (options: { from?: string; to?: string }) => {
    // Strictly ISO 8601 with a zone: `new Date` reads "1" as 2001 and rolls 2026-02-30 over.
    const time = (flag: string, text: string) => {
      if (!isDateTime(text))
        throw new UsageError(
          `${flag}: expected an ISO 8601 time with a zone, e.g. 2026-01-31T12:00:00Z, got "${text}"`,
        );
      return new Date(text);
    };
    const to = options.to === undefined ? new Date() : time("--to", options.to);
    const from =
      options.from === undefined
        ? new Date(to.getTime() - 86_400_000)
        : time("--from", options.from);
    if (from >= to) throw new UsageError("--from must be before --to");
    const runtime = await openRuntime(loadConfig());
    try {
      const started = Date.now();
      // Rollups outlive raw samples: before the oldest raw day still kept, a rebuild would
      // replace them with nothing. Partitions are dropped whole, so that day is complete.
      const [oldest] = await runtime.services.partitions.list();
      const start = new Date(Math.max(from.getTime(), oldest?.day ?? to.getTime()));
      if (start >= to) {
        console.log("no raw samples are kept in that window: its rollups are left as they are");
        return;
      }
      if (start > from)
        console.log(
          `raw samples are kept from ${start.toISOString()}: the rollups before it are left as they are`,
        );
      await runtime.services.rollups.rebuild(start, to);
      console.log(
        `rebuilt rollups from ${start.toISOString()} to ${to.toISOString()} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
      );
    } finally {
      await runtime.close();
    }
  });

function wholeNumber(name: string, min: number, max: number) {
  return (value: string) => {
    const parsed = Number(value);
    if (!/^\d+$/.test(value) || parsed < min || parsed > max)
      throw new UsageError(
        `${name}: expected a whole number from ${min} to ${max}, got "${value}"`,
      );
    return parsed;
  };
}

program
  .command("simulate")
  .description("run simulated 5-axis machines and send their data to a target")
  .option("--machines <n>", "machines, 1 to 10000", wholeNumber("--machines", 1, 10_000), 20)
  .option(
    "--first-machine <id>",
    `the first machine's id, the others following it (default ${FIRST_MACHINE_ID}; a server's own simulator has ${FIRST_MACHINE_ID} upward)`,
    wholeNumber("--first-machine", 1, Number.MAX_SAFE_INTEGER - 10_000),
  )
  .option("--axes <list>", "axes to report, e.g. X,Y,Z", "X,Y,Z,A,C")
  .option("--fields <file>", "field spec (.xlsx, .csv or .json) with each field's update interval")
  .option(
    "--duration <time>",
    'stop after this long, e.g. "60s" or "15 min" (default: until Ctrl-C)',
  )
  .option("--speed <factor>", "divide every update interval by this, for demos", "1")
  .option("--seed <n>", "makes a run reproducible", wholeNumber("--seed", 0, 2 ** 31 - 1), 1)
  .option(
    "--target <target>",
    "embedded, db (DATABASE_URL or the embedded database) or http(s)://host:port of a Spindle",
    "db",
  )
  .option("--client-id <id>", "http target: OAuth2 client (or SPINDLE_CLIENT_ID)")
  .option("--client-secret <secret>", "http target: its secret (or SPINDLE_CLIENT_SECRET)")
  .option(
    "--username <username>",
    "http target: a user who may add machines, axes and tools and send every kind of row (to create a missing fleet; the client needs the password grant and write scope)",
  )
  .option(
    "--password <password>",
    'http target: that user\'s password, or "-" for standard input',
    passwordArgument,
  )
  .action(async (options: SimulateFlags) => {
    const axes = (() => {
      try {
        return parseAxisList(options.axes);
      } catch (error) {
        throw new UsageError(`--axes: ${(error as Error).message}`);
      }
    })();
    const speed = Number(options.speed);
    if (!Number.isFinite(speed) || speed <= 0 || speed > 1000)
      throw new UsageError(
        `--speed: expected a number above 0 and at most 1000, got "${options.speed}"`,
      );
    const durationMs =
      options.duration === undefined ? undefined : parseUpdateInterval(options.duration);
    if (options.duration !== undefined && (typeof durationMs !== "number" || durationMs <= 0)) {
      throw new UsageError(
        `--duration: cannot parse "${options.duration}" (expected e.g. "60s", "15 min")`,
      );
    }
    const simulatorOptions = {
      machines: options.machines,
      firstMachineId: options.firstMachine,
      axes,
      fieldsFile: options.fields,
      speed,
      seed: options.seed,
      durationMs: durationMs ?? undefined,
    };
    const hooks = {
      onReport: (report: { message: string }) => console.log(report.message),
      onPause: (reason: string) => console.log(`paused: ${reason}`),
    };
    const run = async (
      target: Parameters<typeof startSimulator>[0],
      close: () => Promise<void>,
    ) => {
      try {
        const simulator = await startSimulator(target, simulatorOptions, hooks).catch(
          (error: unknown) => {
            // The fleet's own range checks (e.g. a speed that makes an interval shorter than 1 ms).
            throw error instanceof RangeError ? new UsageError(error.message) : error;
          },
        );
        // Its outcome, failure included, is reported below through fleet.done.
        const stop = () => void simulator.stop().catch(() => {});
        process.once("SIGINT", stop);
        process.once("SIGTERM", stop);
        const stats = await simulator.fleet.done;
        console.log(
          `done: ${stats.samples.total} samples in ${(stats.elapsedMs / 1000).toFixed(1)} s (${Math.round(stats.samplesPerSecond)}/s; the spec asks ${Math.round(stats.expectedSamplesPerSecond)}/s)`,
        );
      } finally {
        await close();
      }
    };
    if (/^https?:\/\//.test(options.target)) {
      if (!URL.canParse(options.target))
        throw new UsageError(`--target: not a valid URL: "${options.target}"`);
      const clientId = options.clientId ?? process.env.SPINDLE_CLIENT_ID;
      const clientSecret = options.clientSecret ?? process.env.SPINDLE_CLIENT_SECRET;
      if (!clientId || !clientSecret)
        throw new UsageError(
          "--target http…: needs --client-id and --client-secret (or SPINDLE_CLIENT_ID/SPINDLE_CLIENT_SECRET)",
        );
      await run(
        httpTarget(options.target, {
          clientId,
          clientSecret,
          username: options.username,
          password: options.password,
        }),
        async () => {},
      );
      return;
    }
    if (options.target !== "db" && options.target !== "embedded") {
      throw new UsageError(
        `--target: expected embedded, db or an http(s):// URL, got "${options.target}"`,
      );
    }
    const config = loadConfig();
    const runtime = await openRuntime(
      options.target === "embedded" ? { ...config, databaseUrl: undefined } : config,
    );
    const { services } = runtime;
    // As in a server: the rollup maintainer runs beside the pipeline, and on the way out the
    // pipeline's last rows are committed before the rollups' last recompute.
    await services.start();
    await run(databaseTarget(services), async () => {
      try {
        await services.close();
      } finally {
        await runtime.close();
      }
    });
  });

interface SimulateFlags {
  machines: number;
  firstMachine?: number;
  axes: string;
  fields?: string;
  duration?: string;
  speed: string;
  seed: number;
  target: string;
  clientId?: string;
  clientSecret?: string;
  username?: string;
  password?: string;
}

function reasonOf(error: unknown): string {
  if (error instanceof DomainError && error.fields) {
    return Object.entries(error.fields)
      .map(([field, reasons]) => `${field}: ${reasons.join(" ")}`)
      .join("; ");
  }
  return error instanceof Error ? error.message : String(error);
}

// A usage error shows the usage of the command it was made in, not the list of commands.
let running: Command = program;
program.hook("preSubcommand", (_program, command) => {
  running = command;
});

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version are successes; anything else commander rejects is a usage error.
    process.exitCode = error.exitCode === 0 ? exit.ok : exit.usage;
  } else if (error instanceof UsageError) {
    process.stderr.write(`spindle: ${error.message}\n`);
    running.outputHelp({ error: true });
    process.exitCode = exit.usage;
  } else {
    const known =
      error instanceof ConfigError ||
      error instanceof DataDirLockedError ||
      error instanceof DataDirError ||
      error instanceof DomainError;
    process.stderr.write(`spindle: ${known ? reasonOf(error) : `failed: ${reasonOf(error)}`}\n`);
    process.exitCode = exit.failure;
  }
}
