import type { SwaggerTransform } from "@fastify/swagger";
import { type TSchema, Type } from "@sinclair/typebox";
import { isOAuthEndpoint } from "./errors.ts";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Answers without the database (the process's own health), so never 503. */
    withoutDatabase?: boolean;
  }
}

/** Methods whose body Fastify reads: the body can be malformed, too large or of a wrong type. */
const bodyMethods = ["POST", "PUT", "PATCH", "DELETE"];

/**
 * The contract's forms for a body that may be sent as a form or as JSON (RFC 6749 §4); a
 * multipart form's fields are read as a form's (`readMultipartForms`).
 */
const oauthMediaTypes = [
  "application/x-www-form-urlencoded",
  "application/json",
  "multipart/form-data",
];

/** Every other body: JSON, or a form read as a query string is (`parseFormBody`). */
const bodyMediaTypes = [
  "application/json",
  "application/x-www-form-urlencoded",
  "multipart/form-data",
];

const Detail = (description: string, headers?: Record<string, TSchema>) =>
  Type.Object({ detail: Type.String({ maxLength: 1000 }) }, { description, headers });

/** RFC 6749 §5.2: the token, revocation and introspection endpoints' every error. */
const OAuthProblem = (description: string, headers?: Record<string, TSchema>) =>
  Type.Object(
    {
      error: Type.String({ maxLength: 100, description: "An RFC 6749 error code" }),
      error_description: Type.Optional(Type.String({ maxLength: 1000 })),
    },
    { description, headers },
  );

const retryAfter = {
  "Retry-After": Type.Integer({ minimum: 1, description: "Seconds to wait before asking again" }),
};

/** Every answer an operation may give besides its own, by what kind of route it is. */
function commonAnswers(oauth: boolean): Record<number, () => TSchema> {
  const problem = oauth ? OAuthProblem : Detail;
  return {
    400: () =>
      oauth
        ? OAuthProblem("`invalid_request`: a parameter missing, repeated or malformed")
        : Type.Union(
            [
              Type.Object(
                {},
                {
                  additionalProperties: Type.Array(Type.String({ maxLength: 1000 })),
                  description: 'Each field to fix and why: `{"field": ["reason", …]}`',
                },
              ),
              Type.Object({ detail: Type.String({ maxLength: 1000 }) }),
            ],
            {
              description:
                'Invalid input: `{"field": ["reason", …]}` naming each field to fix, or ' +
                '`{"detail": "…"}` for a body that is no JSON (`JSON parse error - …`) or a ' +
                "change refused as a whole",
            },
          ),
    401: () =>
      Detail(
        'No token: `{"detail": "Authentication credentials were not provided."}`; a token ' +
          'unknown, expired or revoked: `{"detail": "Invalid token."}`',
        { "WWW-Authenticate": Type.String({ description: 'Bearer realm="api"' }) },
      ),
    403: () =>
      Detail(
        'The token may not do this: `{"detail": "You do not have permission to perform this action."}`',
      ),
    404: () => Detail('Nothing at this address: `{"detail": "Not found."}`'),
    413: () => problem("The body is larger than this server takes: `Request body is too large.`"),
    415: () => problem("A body of a media type this operation does not read"),
    503: () =>
      oauth
        ? OAuthProblem(
            "`temporarily_unavailable`: the database cannot answer now; retry later",
            retryAfter,
          )
        : Detail(
            "The database cannot answer now, or aborted the request in a conflict; retry after " +
              "`Retry-After` seconds",
            retryAfter,
          ),
  };
}

/**
 * @fastify/swagger's `transform`: documents, for every operation, the answers the platform gives
 * it besides those its route declares, by what the route is: authenticated → 401; with a
 * `permission` → 403; with path parameters → 404; taking a body → 400, 413 and 415; with a query
 * string → 400; and 503 unless it answers without the database. A response a route declares is
 * never replaced. A DELETE declaring no success answers 204. A public route needs no token
 * (`security: []`, or the token optional where it names the caller). Bodies are JSON or a form;
 * the OAuth endpoints answer in RFC 6749's shape.
 *
 * It shapes the document only: answers are serialized by the routes' own schemas, so a field
 * error's `{"field": […]}` is never cut down to a documented `{"detail"}`.
 */
export const describeOperation: SwaggerTransform = ({ schema, url, route }) => {
  const config = route.config ?? {};
  const methods: string[] = [route.method].flat();
  const oauth = isOAuthEndpoint(url);
  const takesBody = methods.some((method) => bodyMethods.includes(method));
  const response: Record<string, unknown> = { ...(schema?.response as object | undefined) };
  const succeeds = Object.keys(response).some((status) => status.startsWith("2"));
  if (methods.includes("DELETE") && !succeeds) {
    response[204] = Type.Null({ description: "Deleted; no body" });
  }

  // A body schema of its own media types (ingest's JSON or NDJSON) is documented as it says.
  const body = schema?.body as { content?: unknown } | undefined;
  const declaresBody = takesBody && body !== undefined && body.content === undefined;

  const answers = commonAnswers(oauth);
  const statuses = [
    takesBody || schema?.querystring !== undefined ? 400 : undefined,
    config.public ? undefined : 401,
    config.permission || config.anyPermission ? 403 : undefined,
    schema?.params !== undefined || url.includes(":") ? 404 : undefined,
    takesBody ? 413 : undefined,
    takesBody ? 415 : undefined,
    config.withoutDatabase ? undefined : 503,
  ];
  for (const status of statuses) {
    if (status !== undefined && response[status] === undefined)
      response[status] = answers[status]!();
  }

  return {
    url,
    schema: {
      ...schema,
      response,
      ...(config.public ? { security: config.identifiesCaller ? [{}, { bearer: [] }] : [] } : {}),
      ...(declaresBody ? { consumes: oauth ? oauthMediaTypes : bodyMediaTypes } : {}),
    },
  };
};
