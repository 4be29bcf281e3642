import { ApiError } from "../api/client.ts";
import { api } from "../api/instance.ts";
import { Store } from "./store.ts";

/** Whether the signed-in user may administer Spindle: `/users/` answers them, 403 otherwise. */
export const adminAccess = new Store<"unknown" | "yes" | "no">("unknown");

export async function checkAdminAccess(): Promise<void> {
  try {
    await api.get("/users/");
    adminAccess.set("yes");
  } catch (error) {
    adminAccess.set(error instanceof ApiError && error.status === 403 ? "no" : "unknown");
  }
}

// Asked again when someone else signs in, not on every renewal of the same user's tokens: the
// admin pages wait on "unknown", and showing that in place of a page every few minutes lost
// what it held (a new client's secret, shown only once; a half-edited permission matrix).
let checkedFor: string | undefined = api.session.get().tokens?.username;
api.session.subscribe(({ tokens }) => {
  if (tokens?.username === checkedFor && adminAccess.get() !== "unknown") return;
  checkedFor = tokens?.username;
  adminAccess.set("unknown");
  if (tokens) void checkAdminAccess();
});
if (checkedFor) void checkAdminAccess();
