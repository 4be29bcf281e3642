import { Api } from "./client.ts";

/** The console's one API client: one session per browser tab. */
export const api = new Api();
