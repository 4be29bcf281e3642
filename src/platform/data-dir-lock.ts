import { chmod, mkdir, open, readFile, rm, stat } from "node:fs/promises";
import { hostname } from "node:os";
import { join, parse, resolve } from "node:path";

/** DATA_DIR cannot be used: one line naming it and why, never a stack. */
export class DataDirError extends Error {
  constructor(reason: string) {
    super(`DATA_DIR: ${reason}`);
    this.name = "DataDirError";
  }
}

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
  await makeDirectory(dataDir);
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
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EEXIST") throw new DataDirError(`cannot write ${path} (${code ?? error})`);
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

/**
 * Makes `dataDir` and any missing parents, one level at a time: Node's recursive mkdir retries
 * for ever where mkdir answers ENOENT under a parent that exists (`/proc/x`).
 */
async function makeDirectory(dataDir: string): Promise<void> {
  const full = resolve(dataDir);
  let path = parse(full).root;
  for (const part of full.slice(path.length).split("/").filter(Boolean)) {
    path = join(path, part);
    const code = await mkdir(path).then(
      () => undefined,
      (error: NodeJS.ErrnoException) => error.code ?? String(error),
    );
    if (code === undefined) continue;
    if (code !== "EEXIST") throw new DataDirError(`cannot make ${path} (${code})`);
    const isDirectory = await stat(path).then(
      (found) => found.isDirectory(),
      () => false,
    );
    if (!isDirectory) throw new DataDirError(`${path} is not a directory`);
  }
}

/**
 * Makes the embedded database's own directory (`DATA_DIR/pglite`) private to this user, as
 * PostgreSQL requires of a data directory: PGlite writes its files readable and writable by
 * anyone (0666), and they hold password and token hashes, so the directory's mode is what keeps
 * other local accounts out. One an earlier version made open is made private too. `DATA_DIR`
 * itself is left as it is: it may be a directory shared with other things.
 */
export async function makePrivateDirectory(path: string): Promise<void> {
  const failed = (doing: string) => (error: NodeJS.ErrnoException) => {
    throw new DataDirError(`cannot ${doing} ${path} (${error.code ?? error})`);
  };
  await mkdir(path, { mode: 0o700 }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== "EEXIST") failed("make")(error);
  });
  await chmod(path, 0o700).catch(failed("make private"));
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  try {
    const owner = JSON.parse(await readFile(path, "utf8")) as LockOwner;
    return Number.isSafeInteger(owner.pid) ? owner : undefined;
  } catch {
    return undefined;
  }
}
