import { mkdir } from "node:fs/promises";
import lockfile from "proper-lockfile";

export class DataDirLockedError extends Error {
  constructor(readonly dataDir: string) {
    super(
      `the embedded database in ${dataDir} is in use by another Spindle process; stop it first, ` +
        "or set DATABASE_URL to share a PostgreSQL server between processes",
    );
    this.name = "DataDirLockedError";
  }
}

/**
 * Takes the embedded database's directory for this process alone. PGlite is a single-user
 * PostgreSQL: two processes writing one data directory would corrupt it, so a second one stops.
 * The lock is refreshed while held and taken over only once its owner stopped refreshing it.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await mkdir(dataDir, { recursive: true });
  try {
    return await lockfile.lock(dataDir, {
      lockfilePath: `${dataDir}/.spindle.lock`,
      stale: 10_000,
      update: 2_000,
      realpath: false,
      // If the lock is lost (its file removed under us), keep running rather than crash.
      onCompromised: () => {},
    });
  } catch (error) {
    if ((error as { code?: string }).code === "ELOCKED") throw new DataDirLockedError(dataDir);
    throw error;
  }
}
