import type { FastifyInstance } from "fastify";
import FindMyWay from "find-my-way";
import { isOAuthEndpoint } from "./errors.ts";

/** How paths are matched; the same options Fastify's own router is given. */
export interface PathMatching {
  ignoreTrailingSlash: boolean;
  maxParamLength: number;
}

/** The order `Allow` lists methods in: reads, writes, then OPTIONS. */
const methodOrder = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const byMethodOrder = (a: string, b: string) =>
  (methodOrder.indexOf(a) + 1 || methodOrder.length + 1) -
  (methodOrder.indexOf(b) + 1 || methodOrder.length + 1);

/**
 * A request for a path some route has, under a method none has: `405 {"detail": "Method \"PUT\"
 * not allowed."}` with `Allow` naming the path's methods, as Django REST Framework answers,
 * where Fastify would answer 404; `OPTIONS` is answered `204` with that `Allow`. A path no route
 * has keeps its 404. Neither needs a token: the paths and their methods are public in
 * /openapi.json already, and the method is the mistake to fix first.
 *
 * Fastify's `hasRoute` and `findRoute` look a route up by its pattern (`/users/:id/`), not by a
 * URL, so the routes are kept a second time in a router of their own, given the same matching
 * options, whose `find` matches a URL as Fastify's does. Call this before any route is added.
 */
export function answerWrongMethods(app: FastifyInstance, matching: PathMatching): void {
  const routes = FindMyWay({ ...matching });
  const methods = new Set<string>();
  app.addHook("onRoute", (route) => {
    for (const method of [route.method].flat()) {
      methods.add(method);
      if (!routes.hasRoute(method as FindMyWay.HTTPMethod, route.url)) {
        routes.on(method as FindMyWay.HTTPMethod, route.url, () => {});
      }
    }
  });

  // onRequest, before the body is read: a body sent with the wrong method is not looked at.
  app.addHook("onRequest", async (request, reply) => {
    if (!request.is404) return;
    const allowed = [...methods].filter(
      (method) => routes.find(method as FindMyWay.HTTPMethod, request.url, {}) !== null,
    );
    if (allowed.length === 0) return;
    reply.header("allow", [...allowed, "OPTIONS"].sort(byMethodOrder).join(", "));
    if (request.method === "OPTIONS") return reply.code(204).send();
    const message = `Method "${request.method}" not allowed.`;
    return reply
      .code(405)
      .send(
        isOAuthEndpoint(request.url)
          ? { error: "invalid_request", error_description: message }
          : { detail: message },
      );
  });
}
