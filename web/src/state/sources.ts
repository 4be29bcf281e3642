import { api } from "../api/instance.ts";
import { type LiveSource, PollingLiveSource } from "./live.ts";

/** The one place that chooses how live data arrives (a WebSocket source replaces this line). */
export const liveSource: LiveSource = new PollingLiveSource(api);
