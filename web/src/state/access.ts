import { api } from "../api/instance.ts";
import type { Me } from "../api/types.ts";
import { Store } from "./store.ts";

/** Who the server says is signed in: the account's own spelling, not what was typed at sign-in. */
export interface Identity {
  id: number;
  username: string;
}

/**
 * What the signed-in user's token may do: the permission codes `GET /users/me/` lists, with the
 * account they belong to (usernames are case-insensitive at sign-in, so "is this me" is by id).
 */
export type Access =
  | { status: "unknown" }
  | { status: "known"; permissions: ReadonlySet<string>; me: Identity }
  | { status: "failed"; error: Error };

export const access = new Store<Access>({ status: "unknown" });

/** Whether this account is the signed-in user's; false until that is known. */
export function isMe(current: Access, id: number): boolean {
  return current.status === "known" && current.me.id === id;
}

/** Whether the user holds `code` (`machine.add`); nothing is held until it is known. */
export function allows(current: Access, code: string): boolean {
  return current.status === "known" && current.permissions.has(code);
}

const retryMs = 15_000;
let retryTimer: ReturnType<typeof setTimeout> | undefined;
/** Bumped when someone else signs in, so an answer about the previous user is dropped. */
let generation = 0;

/**
 * Reads the user's permissions (again), keeping what is shown meanwhile: after an Admin edits
 * groups, the console follows without its pages going back to "Loading".
 */
export async function checkAccess(): Promise<void> {
  const asked = generation;
  clearTimeout(retryTimer);
  try {
    const me = await api.get<Me>("/users/me/");
    if (asked !== generation) return;
    const known = access.get();
    const same =
      known.status === "known" &&
      known.me.id === me.id &&
      known.me.username === me.username &&
      known.permissions.size === me.permissions.length &&
      me.permissions.every((code) => known.permissions.has(code));
    if (!same) {
      access.set({
        status: "known",
        permissions: new Set(me.permissions),
        me: { id: me.id, username: me.username },
      });
    }
  } catch (error) {
    if (asked !== generation || !api.session.get().tokens) return;
    // What was known stays (a re-check that failed changes nothing); a first check that failed
    // says so, and is tried again on its own.
    if (access.get().status !== "known") access.set({ status: "failed", error: error as Error });
    retryTimer = setTimeout(() => void checkAccess(), retryMs);
  }
}

// Asked again when someone else signs in, not on every renewal of the same user's tokens: the
// admin pages wait on "unknown", and showing that in place of a page every few minutes lost
// what it held (a new client's secret, shown only once; a half-edited permission matrix).
let checkedFor: string | undefined = api.session.get().tokens?.username;
api.session.subscribe(({ tokens }) => {
  if (tokens?.username === checkedFor) {
    if (tokens && access.get().status === "failed") void checkAccess();
    return;
  }
  checkedFor = tokens?.username;
  generation++;
  clearTimeout(retryTimer);
  access.set({ status: "unknown" });
  if (tokens) void checkAccess();
});
if (checkedFor) void checkAccess();
