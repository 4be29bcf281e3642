import type { FastifyInstance } from "fastify";

/**
 * What an empty or missing request body means, the same for every route, as Django REST
 * Framework reads one (its `request.data` is then empty). Call before any route is added.
 */
export function readEmptyBodiesAsDrfDoes(app: FastifyInstance): void {
  // A DELETE carries nothing: an empty body under a content type (Python's requests sends
  // Content-Length: 0 with a session's JSON content type; curl -H sends none) is no body at all,
  // where Fastify would try to parse it, or refuse its type.
  app.addHook("onRequest", (request, _reply, done) => {
    const { headers } = request;
    if (
      request.method === "DELETE" &&
      headers["transfer-encoding"] === undefined &&
      (headers["content-length"] === undefined || headers["content-length"] === "0")
    )
      delete headers["content-type"];
    done();
  });

  // Nor is an empty JSON body (`-H 'Content-Type: application/json'` and no data, chunked or
  // not) a malformed one: it is no body. Anything else is parsed as Fastify parses JSON.
  const { onProtoPoisoning = "error", onConstructorPoisoning = "error" } = app.initialConfig;
  const parseJson = app.getDefaultJsonParser(onProtoPoisoning, onConstructorPoisoning);
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    if (body === "") done(null, undefined);
    else void parseJson(request, body as string, done);
  });

  // A route whose body is an object reads no body as `{}`: a POST to /api/axis-data/ asks for
  // the default window, a PATCH changes nothing, a POST /o/token/ is told which parameter it
  // lacks, and a create names each required field, where each would be told "Expected an
  // object." The body's schema still decides what `{}` is worth.
  app.addHook("preValidation", async (request) => {
    const schema = request.routeOptions.schema?.body as { type?: unknown } | undefined;
    if (request.body === undefined && schema?.type === "object") request.body = {};
  });
}
