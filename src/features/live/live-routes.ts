import websocket from "@fastify/websocket";
import type { FastifyInstance } from "fastify";
import { bearerToken } from "../auth/authenticate.ts";
import type { LiveHub } from "./live-hub.ts";

/**
 * `/ws/machine_data/` on the HTTP port. The route is public because the socket authenticates
 * itself: by the upgrade's `Authorization` header, `?token=`, or an `authenticate` message.
 */
export async function liveRoutes(app: FastifyInstance, { live }: { live: LiveHub }) {
  await app.register(websocket, {
    options: { maxPayload: live.options.maxPayloadBytes },
    errorHandler: (error, socket, request) => {
      // A client breaking the protocol (a message above maxPayload, text that is not UTF-8): ws
      // has begun the close with the code that says why (1009, 1007…). The client's doing, not
      // the server's; and cutting the socket now would lose that close frame.
      const code = (error as { code?: unknown }).code;
      if (typeof code === "string" && code.startsWith("WS_ERR_")) {
        request.log.info({ code, reason: error.message }, "websocket client broke the protocol");
        return;
      }
      request.log.error({ err: error }, "websocket handler failed");
      socket.terminate();
    },
  });
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
