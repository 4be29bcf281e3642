import websocket from "@fastify/websocket";
import type { FastifyInstance } from "fastify";
import { bearerToken } from "../auth/authenticate.ts";
import type { LiveHub } from "./live-hub.ts";

/**
 * `/ws/machine_data/` on the HTTP port. The route is public because the socket authenticates
 * itself: by the upgrade's `Authorization` header, `?token=`, or an `authenticate` message.
 */
export async function liveRoutes(app: FastifyInstance, { live }: { live: LiveHub }) {
  await app.register(websocket, { options: { maxPayload: live.options.maxPayloadBytes } });
  app.addHook("onClose", () => live.close());
  app.get(
    "/ws/machine_data/",
    { websocket: true, config: { public: true }, schema: { hide: true } },
    (socket, request) => {
      const header = request.headers.authorization;
      const query = request.query as { token?: unknown };
      // A malformed header is a wrong token, not a missing one.
      const fromHeader = header === undefined ? undefined : (bearerToken(header) ?? "");
      const fromQuery = typeof query.token === "string" ? query.token : undefined;
      live.connect(socket, fromHeader ?? fromQuery);
    },
  );
}
