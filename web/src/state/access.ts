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

api.session.subscribe(({ tokens }) => {
  adminAccess.set("unknown");
  if (tokens) void checkAdminAccess();
});
if (api.session.get().tokens) void checkAdminAccess();
