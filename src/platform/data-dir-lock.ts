import { mkdir, open, readFile, rm } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";

export class DataDirLockedError extends Error {
  constructor(
    readonly dataDir: string,
    readonly ownerPid: number,
  ) {
    super(
      `the embedded database in ${dataDir} is in use by another Spindle process (pid ${ownerPid}); stop it first, ` +
        "or set DATABASE_URL to share a PostgreSQL server between processes",
    );
    this.name = "DataDirLockedError";
  }
}

interface LockOwner {
  pid: number;
  host: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else, which still means it is running.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the embedded database's directory for this process alone. PGlite is a single-user
 * PostgreSQL: two processes writing one data directory would corrupt it, so a second one stops.
 * The lock file names its owner's pid; a lock whose owner is no longer running (a crash, a
 * SIGKILL) is taken over at once, so a restart after a crash never has to wait.
 */
export async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, ".spindle.lock");
  const me: LockOwner = { pid: process.pid, host: hostname() };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const file = await open(path, "wx");
      await file.writeFile(JSON.stringify(me));
      await file.close();
      return async () => {
        await rm(path, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const owner = await readOwner(path);
    if (owner && owner.host === me.host && alive(owner.pid) && owner.pid !== me.pid) {
      throw new DataDirLockedError(dataDir, owner.pid);
    }
    // The owner is gone (or the file is unreadable, left half-written by a crash): take over.
    await rm(path, { force: true });
  }
  throw new Error(`could not lock ${dataDir}`);
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    const owner = JSON.parse(await readFile(path, "utf8")) as LockOwner;
    return Number.isSafeInteger(owner.pid) ? owner : undefined;
  } catch {
    return undefined;
  }
}
