import { Busboy, type BusboyHeaders } from "@fastify/busboy";
import type { FastifyInstance } from "fastify";
import { DomainError } from "./errors.ts";
import { tooDeep, tooDeepLine } from "./json-depth.ts";
import { parseFormBody } from "./validation.ts";

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
    else if (tooDeepLine(body as string) !== undefined) done(tooDeep(), undefined);
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

/** The most fields a multipart form may carry; every Spindle body has far fewer. */
const multipartFieldLimit = 1000;

/**
 * `multipart/form-data` bodies (`curl -F`, Python requests' `files=`, an HTML form sent as
 * multipart), read as Django REST Framework's MultiPartParser reads them: their fields are a
 * form's, with the same meaning as `application/x-www-form-urlencoded`. Spindle stores no files,
 * so a body that carries one is refused whole rather than stored without it.
 */
export function readMultipartForms(app: FastifyInstance, bodyLimit: number): void {
  app.addContentTypeParser(
    "multipart/form-data",
    { parseAs: "buffer", bodyLimit },
    (request, body, done) => {
      let settled = false;
      const settle = (error: Error | null, form?: unknown) => {
        if (settled) return;
        settled = true;
        done(error, form);
      };
      const refuse = (reason: string) =>
        settle(new DomainError("validation", `Multipart form parse error - ${reason}`));
      // No body at all, as an empty urlencoded form is: no fields.
      if ((body as Buffer).length === 0) {
        settle(null, parseFormBody(""));
        return;
      }
      let parser: ReturnType<typeof Busboy>;
      try {
        parser = Busboy({
          headers: request.headers as BusboyHeaders,
          limits: { files: 0, fields: multipartFieldLimit, parts: multipartFieldLimit },
        });
      } catch (error) {
        refuse((error as Error).message);
        return;
      }
      const fields = new URLSearchParams();
      let refused: string | undefined;
      parser.on("field", (name, value) => fields.append(name, value));
      parser.on("filesLimit", () => {
        refused ??= "Files are not accepted; send the fields only.";
      });
      parser.on("fieldsLimit", () => {
        refused ??= `More than ${multipartFieldLimit} fields.`;
      });
      parser.on("partsLimit", () => {
        refused ??= `More than ${multipartFieldLimit} parts.`;
      });
      parser.on("error", (error) => refuse((error as Error).message));
      parser.on("finish", () => {
        if (refused !== undefined) refuse(refused);
        else settle(null, parseFormBody(fields.toString()));
      });
      parser.end(body as Buffer);
    },
  );
}
