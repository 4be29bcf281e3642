import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  DomainError,
  type ErrorCode,
  isOAuthEndpoint,
  isTransientDatabaseError,
  OAuthError,
  pgErrorCode,
  pgErrorCodes,
} from "./errors.ts";
import { fieldErrors } from "./validation.ts";

const statusOf: Record<ErrorCode, number> = {
  validation: 400,
  conflict: 400,
  unauthenticated: 401,
  invalid_token: 401,
  forbidden: 403,
  not_found: 404,
  rate_limited: 429,
  unavailable: 503,
};

/** A domain error's RFC 6749 §5.2 code (RFC 6750 §3.1's for a bad token) on the OAuth endpoints. */
const oauthErrorOf: Record<ErrorCode, string> = {
  validation: "invalid_request",
  conflict: "invalid_request",
  unauthenticated: "invalid_request",
  invalid_token: "invalid_token",
  forbidden: "access_denied",
  not_found: "invalid_request",
  rate_limited: "too_many_requests",
  unavailable: "temporarily_unavailable",
};

/**
 * The one place where errors become HTTP answers. Anything not recognised is a 500 whose body
 * says nothing of the cause; the cause goes to the log.
 */
export interface ErrorHandlerOptions {
  /**
   * Answers a request for which there is no route with a page of its own, if it is one a page
   * suits (true when it has answered); otherwise, or when absent, the answer is the JSON 404.
   */
  notFoundPage?: (request: FastifyRequest, reply: FastifyReply) => Promise<boolean>;
}

export function registerErrorHandler(
  app: FastifyInstance,
  { notFoundPage }: ErrorHandlerOptions = {},
): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    // The OAuth endpoints answer every error in RFC 6749's shape, which their schemas require.
    const oauth = isOAuthEndpoint(request.url);
    const badRequest = (status: number, detail: string) =>
      reply
        .code(status)
        .send(oauth ? { error: "invalid_request", error_description: detail } : { detail });
    if (error instanceof DomainError) {
      const status = statusOf[error.code];
      if (error.code === "unauthenticated" || error.code === "invalid_token") {
        reply.header("WWW-Authenticate", 'Bearer realm="api"');
      }
      if (error.code === "unavailable") reply.header("Retry-After", "1");
      if (oauth) {
        // A bad Bearer token given to /o/introspect/, say: its schema has no `{"detail"}`.
        return reply
          .code(status)
          .send({ error: oauthErrorOf[error.code], error_description: error.message });
      }
      const body = error.fields ?? { detail: error.message };
      return reply.code(status).send(body);
    }
    if (error instanceof OAuthError) {
      reply.header("Cache-Control", "no-store").header("Pragma", "no-cache");
      if (error.retryAfterSeconds) reply.header("Retry-After", String(error.retryAfterSeconds));
      if (
        error.error === "invalid_client" &&
        /^basic /i.test(request.headers.authorization ?? "")
      ) {
        reply.header("WWW-Authenticate", 'Basic realm="oauth"');
      }
      return reply
        .code(error.status)
        .send({ error: error.error, error_description: error.description });
    }
    if (error.validation) {
      // A path parameter its route cannot take (a group name longer than any group's) names
      // nothing: 404, as for any path naming nothing, rather than a field error about the URL.
      if (error.validationContext === "params") return reply.code(404).send(notFoundBody);
      return reply.code(400).send(fieldErrors(error.validation as never));
    }
    switch (error.code) {
      case "FST_ERR_CTP_INVALID_JSON_BODY":
      case "FST_ERR_CTP_EMPTY_JSON_BODY":
        return badRequest(400, `JSON parse error - ${error.message}`);
      case "FST_ERR_CTP_BODY_TOO_LARGE":
        return badRequest(413, "Request body is too large.");
      case "FST_ERR_CTP_INVALID_MEDIA_TYPE":
        return badRequest(
          415,
          `Unsupported media type "${request.headers["content-type"]}" in request.`,
        );
    }
    const sqlState = pgErrorCode(error);
    if (
      sqlState === pgErrorCodes.characterNotInRepertoire ||
      sqlState === pgErrorCodes.untranslatableCharacter
    ) {
      // Text reached the database that it cannot store (a NUL character): the statement
      // failed, so nothing changed.
      return badRequest(400, "Text may not contain the NUL character (\\u0000).");
    }
    if (error instanceof SyntaxError || error.statusCode === 400) {
      return badRequest(400, `JSON parse error - ${error.message}`);
    }
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      return badRequest(error.statusCode, error.message);
    }
    if (isTransientDatabaseError(error)) {
      const retryLater = (description: string) =>
        reply
          .code(503)
          .header("Retry-After", "1")
          .send(
            oauth
              ? { error: "temporarily_unavailable", error_description: description }
              : { detail: description },
          );
      if (
        sqlState === pgErrorCodes.deadlockDetected ||
        sqlState === pgErrorCodes.serializationFailure
      ) {
        // The database is there: it aborted this transaction to let a concurrent one through.
        request.log.warn({ err: error }, "transaction aborted in a conflict");
        return retryLater(
          "The database aborted this request in a conflict with another; retry it.",
        );
      }
      request.log.warn({ err: error }, "database unavailable");
      return retryLater("The database is unavailable; retry later.");
    }
    request.log.error({ err: error }, "unhandled error");
    return reply.code(500).send({ detail: "Internal server error." });
  });

  app.setNotFoundHandler(notFoundAnswer({ notFoundPage }));
}

const notFoundBody = { detail: "Not found." };

/** The answer to a request naming nothing: a page of its own if it is one a page suits. */
function notFoundAnswer({ notFoundPage }: ErrorHandlerOptions) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (await notFoundPage?.(request, reply)) return reply;
    return reply.code(404).send(notFoundBody);
  };
}

/**
 * Fastify's `frameworkErrors` option: its router answers by itself, before any route or hook,
 * a URL it cannot decode (`/data/machines/%zz/`) or a path parameter longer than
 * `maxParamLength`. Either way the path names nothing, so it is answered as an unknown path is,
 * with or without a token, never in Fastify's own `{"error","code","statusCode"}` shape (or 414).
 */
export function frameworkErrorHandler(options: ErrorHandlerOptions = {}) {
  const notFound = notFoundAnswer(options);
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    if (error.code === "FST_ERR_BAD_URL" || error.code === "FST_ERR_MAX_PARAM_LENGTH") {
      notFound(request, reply).catch((cause: unknown) => {
        request.log.error({ err: cause }, "not-found answer failed");
        if (!reply.sent) reply.code(500).send({ detail: "Internal server error." });
      });
      return;
    }
    request.log.error({ err: error }, "router failed");
    reply.code(500).send({ detail: "Internal server error." });
  };
}
