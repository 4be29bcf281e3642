import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import {
  DomainError,
  type ErrorCode,
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
    const oauth = /^\/o\/(token|revoke_token|introspect)\//.test(request.url);
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
      const body = error.fields ?? { detail: error.message };
      return reply.code(status).send(body);
    }
    if (error instanceof OAuthError) {
      reply.header("Cache-Control", "no-store").header("Pragma", "no-cache");
      if (error.retryAfterSeconds) reply.header("Retry-After", String(error.retryAfterSeconds));
      if (error.error === "invalid_client" && request.headers.authorization?.startsWith("Basic ")) {
        reply.header("WWW-Authenticate", 'Basic realm="oauth"');
      }
      return reply
        .code(error.status)
        .send({ error: error.error, error_description: error.description });
    }
    if (error.validation) {
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

  app.setNotFoundHandler(async (request, reply) => {
    if (await notFoundPage?.(request, reply)) return reply;
    return reply.code(404).send({ detail: "Not found." });
  });
}
