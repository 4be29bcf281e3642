import { buildApp } from "./app.ts";
import { type Config, ConfigError } from "./config.ts";
import { ensureConsoleClient } from "./features/console/console-client.ts";
import {
  databaseTarget,
  type RunningSimulator,
  startSimulator,
} from "./features/simulator/simulator-runner.ts";
import { DomainError } from "./platform/errors.ts";
import { redactedUrl } from "./platform/redaction.ts";
import { openRuntime } from "./runtime.ts";

/** `spindle serve`: migrate, then serve until SIGTERM or SIGINT, then close cleanly. */
export async function serve(config: Config): Promise<void> {
  const runtime = await openRuntime(config);
  const { services } = runtime;
  const app = await buildApp(services, {
    logger: {
      level: config.logLevel,
      // Tokens can travel in query strings (the WebSocket's ?token=); keep them out of logs.
      serializers: {
        req: (request) => ({
          method: request.method,
          url: redactedUrl(request.url),
          remoteAddress: request.ip,
        }),
      },
      redact: ["req.headers.authorization"],
    },
  });
  if (runtime.migrated.length > 0)
    app.log.info({ migrations: runtime.migrated }, "database migrated");
  // A failed run (its DDL gave up waiting behind readers) is tried again at the next one.
  const maintenance = async () => {
    try {
      const { dropped } = await services.maintain();
      if (dropped.length > 0) app.log.info({ dropped }, "retention dropped partitions");
    } catch (error) {
      app.log.warn({ err: error }, "maintenance failed");
    }
  };
  const purge = setInterval(() => void maintenance(), 3_600_000);
  purge.unref();
  try {
    if (config.adminUsername && config.adminPassword) {
      const created = await services.users
        .ensureAdmin(config.adminUsername, config.adminPassword)
        .catch((error: unknown) => {
          throw adminConfigError(error);
        });
      if (created) app.log.info({ username: config.adminUsername }, "admin user created");
    }
    await ensureConsoleClient(services.oauth);
    // Rollups may have missed a crash: recompute what it may have kept from them.
    const now = services.clock.now().getTime();
    await services.rollups.recover(now);
    // The live feed answers from memory: give it every series' newest value of the last day.
    await services.latest.load(services.db, new Date(now - 86_400_000));
  } catch (error) {
    // The services' listeners (the change feed's connection) hold the process until closed.
    clearInterval(purge);
    await app.close();
    await runtime.close();
    throw error;
  }

  // Settles with the simulator once it has started (undefined: none), so a shutdown that comes
  // while the fleet is being created waits for it and stops it.
  let simulator: Promise<RunningSimulator | undefined> = Promise.resolve(undefined);
  const shutdown = async (signal: string) => {
    if (app.closing) return;
    // At once, not when close() reaches its hooks: a request under way may be answered meanwhile.
    app.closing = true;
    app.log.info({ signal }, "shutting down");
    clearInterval(purge);
    // Its unsent samples were never acknowledged; nothing accepted is lost by stopping it.
    await (await simulator.catch(() => undefined))
      ?.stop()
      .catch((error: unknown) => app.log.error({ err: error }, "simulator failed"));
    // Commits every row already accepted, then the rollups of them (app.ts, onClose).
    await app.close();
    await runtime.close();
  };
  process.once("SIGTERM", () => void shutdown("SIGTERM"));
  process.once("SIGINT", () => void shutdown("SIGINT"));

  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    clearInterval(purge);
    await app.close();
    await runtime.close();
    const code = (error as { code?: string }).code;
    const where = `cannot listen on ${config.host}:${config.port}`;
    // Name the variable to change where one is to blame.
    if (code === "EADDRINUSE" || code === "EACCES")
      throw new ConfigError(
        "PORT",
        `${where}: ${code === "EACCES" ? "not permitted" : "address already in use"}`,
      );
    if (code === "ENOTFOUND" || code === "EADDRNOTAVAIL" || code === "EAI_AGAIN")
      throw new ConfigError("HOST", `${where}: no such address here (${code})`);
    throw new Error(`${where}: ${String(error)}`);
  }
  // Beside serving: its sweep of rollup marks may have a month loaded by COPY to go through.
  void maintenance();
  if (config.simulator) {
    // The built-in machines feed the same ingest pipeline as every other source.
    const starting = startSimulator(
      databaseTarget(services),
      { machines: config.simulatorMachines },
      {
        onReport: (report) =>
          app.log[report.keepingUp ? "debug" : "warn"]({ simulator: report.message }, "simulator"),
        onPause: (reason) => app.log.warn({ reason }, "simulator paused"),
      },
    );
    simulator = starting;
    let running: RunningSimulator;
    try {
      running = await starting;
    } catch (error) {
      // Asked for and not there: stop rather than serve without it.
      await shutdown("simulator failed to start");
      throw error;
    }
    // The server goes on without it if it fails; nothing it had sent is lost.
    running.fleet.done.catch((error: unknown) =>
      app.log.error({ err: error }, "simulator stopped"),
    );
    if (!app.closing) app.log.info({ machines: config.simulatorMachines }, "simulator running");
  }
}

/** ADMIN_USERNAME's or ADMIN_PASSWORD's account refused: one line naming the variable. */
function adminConfigError(error: unknown): unknown {
  if (!(error instanceof DomainError) || !error.fields) return error;
  const [field, reasons] = Object.entries(error.fields)[0] ?? ["", []];
  return new ConfigError(
    field === "password" ? "ADMIN_PASSWORD" : "ADMIN_USERNAME",
    reasons.join(" ") || error.message,
  );
}
