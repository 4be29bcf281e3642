/**
 * Domain errors with stable codes. Services throw these; `error-handler.ts` maps them to HTTP
 * in one place, and the CLI to exit statuses.
 */
export type ErrorCode =
  | "validation"
  | "not_found"
  | "conflict"
  | "unauthenticated"
  | "invalid_token"
  | "forbidden"
  | "rate_limited"
  | "unavailable";

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** For `validation` and `conflict`: the reasons per field, as DRF shows them. */
    readonly fields?: Record<string, string[]>,
  ) {
    super(message);
    this.name = "DomainError";
  }
}

export const notFound = () => new DomainError("not_found", "Not found.");

export const forbidden = () =>
  new DomainError("forbidden", "You do not have permission to perform this action.");

export const invalid = (fields: Record<string, string[]>) =>
  new DomainError("validation", "Invalid input.", fields);

export const invalidField = (field: string, reason: string) => invalid({ [field]: [reason] });

/** PostgreSQL's SQLSTATE codes we turn into answers a client can act on. */
export const pgErrorCodes = {
  uniqueViolation: "23505",
  foreignKeyViolation: "23503",
  checkViolation: "23514",
  notNullViolation: "23502",
  numericOutOfRange: "22003",
  invalidTextRepresentation: "22P02",
  datetimeOverflow: "22008",
  /** Text PostgreSQL cannot store: a NUL character (`\u0000`). */
  characterNotInRepertoire: "22021",
  untranslatableCharacter: "22P05",
  serializationFailure: "40001",
  deadlockDetected: "40P01",
} as const;

export function pgErrorCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

/**
 * The database could not do the work now, though nothing was wrong with what was asked: it is
 * unreachable or restarting, every pooled connection stayed busy past the pool's wait, or it
 * aborted the transaction for a deadlock, a serialization conflict or a lock it waited too long
 * for. Asking again shortly may succeed. (A connection lost while a write committed leaves it
 * unknown whether the write was applied.)
 */
export function isTransientDatabaseError(error: unknown): boolean {
  const code = pgErrorCode(error);
  if (code !== undefined) {
    if (code.startsWith("08") || code === "53300") return true; // connection; too many clients
    if (code === "57P01" || code === "57P02" || code === "57P03") return true; // shutting down
    // Refused at connecting: the database dropped or renamed (3D000), its owner's password or
    // pg_hba changed (28000, 28P01), or it takes no connections for now (`allow_connections
    // false`, 55000). Nothing was asked of it yet; an operator is at work.
    if (code === "3D000" || code === "28000" || code === "28P01") return true;
    if (code === "55000" && /not currently accepting connections/.test(String(error))) return true;
    if (code === pgErrorCodes.serializationFailure || code === pgErrorCodes.deadlockDetected)
      return true;
    if (code === "55P03") return true; // lock timeout
    if (/^E[A-Z_]+$/.test(code))
      return [
        "ECONNREFUSED",
        "ECONNRESET",
        "ETIMEDOUT",
        "EPIPE",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENOTFOUND",
        "EAI_AGAIN",
      ].includes(code);
  }
  // node-postgres's own: a connection lost, or none free in time.
  return (
    error instanceof Error &&
    /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/.test(
      error.message,
    )
  );
}

/**
 * The token, revocation and introspection endpoints (a request URL or a route's pattern): they
 * answer every error in RFC 6749's shape, `{"error", "error_description"}`, never `{"detail"}`.
 */
export const isOAuthEndpoint = (url: string): boolean =>
  /^\/o\/(token|revoke_token|introspect)\//.test(url);

/** RFC 6749 §5.2 errors from the token, revocation and introspection endpoints. */
export type OAuthErrorCode =
  | "invalid_request"
  | "invalid_client"
  | "invalid_grant"
  | "unauthorized_client"
  | "unsupported_grant_type"
  | "invalid_scope"
  | "unsupported_token_type"
  | "too_many_requests";

export class OAuthError extends Error {
  constructor(
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly status = error === "invalid_client" ? 401 : error === "too_many_requests" ? 429 : 400,
    readonly retryAfterSeconds?: number,
  ) {
    super(description);
    this.name = "OAuthError";
  }
}
