import { join } from "node:path";
import { type Config, ConfigError, redactUrl } from "./config.ts";
import { lockDataDir, makePrivateDirectory } from "./platform/data-dir-lock.ts";
import { type Database, openDatabase } from "./platform/database.ts";
import { migrate } from "./platform/migrations.ts";
import { createServices, type Services } from "./services.ts";

export interface Runtime {
  services: Services;
  /** Migrations applied by this start. */
  migrated: string[];
  close(): Promise<void>;
}

/**
 * Opens what a process needs to work: the data directory's lock (embedded database), the
 * database, its migrations, the services. Every command of the CLI starts here.
 */
export async function openRuntime(config: Config): Promise<Runtime> {
  const release = config.databaseUrl ? undefined : await lockDataDir(config.dataDir);
  const embeddedDir = join(config.dataDir, "pglite");
  let db: Database;
  try {
    if (!config.databaseUrl) await makePrivateDirectory(embeddedDir);
    db = await openDatabase(
      config.databaseUrl ? { url: config.databaseUrl } : { dataDir: embeddedDir },
    );
  } catch (error) {
    await release?.();
    if (config.databaseUrl) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new ConfigError(
        "DATABASE_URL",
        `cannot connect to ${redactUrl(config.databaseUrl)}: ${reason}`,
      );
    }
    throw error;
  }
  try {
    const migrated = await migrate(db);
    let closing: Promise<void> | undefined;
    return {
      services: createServices({ config, db }),
      migrated,
      // Once, however many paths end the process (a failed start, then a signal).
      close() {
        closing ??= db.close().then(() => release?.());
        return closing;
      },
    };
  } catch (error) {
    await db.close();
    await release?.();
    throw error;
  }
}
