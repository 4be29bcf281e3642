import { api } from "../api/instance.ts";
import { PollingLiveSource } from "./live.ts";
import { WebSocketLiveSource } from "./live-socket.ts";

/** The one place that chooses how live data arrives: the WebSocket, polling where it cannot. */
export const liveSource = new WebSocketLiveSource(api, new PollingLiveSource(api));
