/**
 * One tab of the browser at a time renews the shared tokens: two tabs presenting the same
 * refresh token would look like theft to Spindle, which then revokes the whole session.
 */
const lockName = "spindle-token-renewal";

/**
 * Web Locks exist only in secure contexts (https, or http on localhost), and Spindle is often
 * served over plain http on a LAN address: there, a lock kept in localStorage stands in.
 */
export function withRenewalLock<T>(storage: Storage, work: () => Promise<T>): Promise<T> {
  // The lock is held until `work` settles (its promise is what the callback returns).
  if ("locks" in navigator) return navigator.locks.request(lockName, work) as Promise<T>;
  return withStorageLock(storage, work);
}

/**
 * How long /o/token/ and /o/revoke_token/ are given: a renewal that hung would hold the lock
 * below, and every tab would wait on it for good.
 */
export const tokenRequestTimeoutMs = 15_000;

const leaseKey = "spindle.token-renewal";
/**
 * A tab closed mid-renewal cannot say it is done, so a lease ends on its own. It outlasts any
 * answer from /o/token/ (which is given up after `tokenRequestTimeoutMs`): a tab still waiting
 * when it ended would let another tab present the same refresh token.
 */
const leaseMs = 2 * tokenRequestTimeoutMs;
const tab = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;

interface Lease {
  owner: string;
  until: number;
}

function readLease(storage: Storage): Lease | null {
  try {
    const lease = JSON.parse(storage.getItem(leaseKey) ?? "null") as Lease | null;
    return lease && typeof lease.owner === "string" && typeof lease.until === "number"
      ? lease
      : null;
  } catch {
    return null;
  }
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function withStorageLock<T>(storage: Storage, work: () => Promise<T>): Promise<T> {
  for (;;) {
    const held = readLease(storage);
    if (held && held.owner !== tab && held.until > Date.now()) {
      await pause(100 + Math.random() * 200);
      continue;
    }
    storage.setItem(leaseKey, JSON.stringify({ owner: tab, until: Date.now() + leaseMs }));
    // Two tabs may take a free lease at once. A write reaches the other tabs a moment later and
    // the last one wins in all of them: after a pause, only one tab still finds its own name.
    await pause(100 + Math.random() * 200);
    if (readLease(storage)?.owner === tab) break;
  }
  const release = () => {
    if (readLease(storage)?.owner === tab) storage.removeItem(leaseKey);
  };
  addEventListener("pagehide", release);
  try {
    return await work();
  } finally {
    removeEventListener("pagehide", release);
    release();
  }
}
