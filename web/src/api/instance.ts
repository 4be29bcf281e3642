import { Api } from "./client.ts";

/** The console's one API client: one session per browser, shared by its tabs. */
export const api = new Api();
