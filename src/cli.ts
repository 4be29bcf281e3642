import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import dotenv from "dotenv";
import { type Config, ConfigError, parseConfig } from "./config.ts";
import { grantTypes } from "./features/auth/oauth-service.ts";
import { DataDirLockedError } from "./platform/data-dir-lock.ts";
import { DomainError } from "./platform/errors.ts";
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

program
  .command("createclient")
  .description("register an OAuth2 client (the seed's OAuth application)")
  .requiredOption("--client-id <id>", "the client's public identifier")
  .option("--client-secret <secret>", "its secret (generated and printed when omitted)")
  .option("--public", "a public client with no secret (browser apps)")
  .option("--name <name>", "a name people recognise", "")
  .addOption(
    new Option("--grant <grants>", `grant types, comma separated: ${grantTypes.join(", ")}`)
      .default(["password", "refresh_token"])
      .argParser(list),
  )
  .addOption(
    new Option("--scope <scopes>", "scopes it may ask for")
      .default(["read", "write", "groups"])
      .argParser(list),
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

function reasonOf(error: unknown): string {
  if (error instanceof DomainError && error.fields) {
    return Object.entries(error.fields)
      .map(([field, reasons]) => `${field}: ${reasons.join(" ")}`)
      .join("; ");
  }
  return error instanceof Error ? error.message : String(error);
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    // Help and version are successes; anything else commander rejects is a usage error.
    process.exitCode = error.exitCode === 0 ? exit.ok : exit.usage;
  } else if (error instanceof UsageError) {
    process.stderr.write(`spindle: ${error.message}\n`);
    program.outputHelp({ error: true });
    process.exitCode = exit.usage;
  } else {
    const known =
      error instanceof ConfigError ||
      error instanceof DataDirLockedError ||
      error instanceof DomainError;
    process.stderr.write(`spindle: ${known ? reasonOf(error) : `failed: ${reasonOf(error)}`}\n`);
    process.exitCode = exit.failure;
  }
}
