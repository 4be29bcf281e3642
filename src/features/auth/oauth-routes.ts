import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { can } from "../../platform/context.ts";
import { OAuthError } from "../../platform/errors.ts";
import { actorOf } from "./authenticate.ts";
import {
  type ClientCredentials,
  grantTypes,
  type OAuthClient,
  type OAuthService,
} from "./oauth-service.ts";
import { knownScopes } from "./scopes.ts";

const param = Type.String({ maxLength: 4096 });

// RFC 6749 says unknown parameters are ignored, so the body is open; each known one is bounded.
const TokenBody = Type.Object(
  {
    grant_type: Type.Optional(param),
    username: Type.Optional(param),
    password: Type.Optional(param),
    refresh_token: Type.Optional(param),
    scope: Type.Optional(param),
    client_id: Type.Optional(param),
    client_secret: Type.Optional(param),
  },
  { additionalProperties: true },
);

const TokenAnswer = Type.Object({
  access_token: Type.String(),
  expires_in: Type.Integer(),
  token_type: Type.Literal("Bearer"),
  scope: Type.String(),
  refresh_token: Type.Optional(Type.String()),
});

const OAuthErrorAnswer = Type.Object({
  error: Type.String(),
  error_description: Type.Optional(Type.String()),
});

const RevokeBody = Type.Object(
  {
    token: Type.Optional(param),
    token_type_hint: Type.Optional(param),
    client_id: Type.Optional(param),
    client_secret: Type.Optional(param),
  },
  { additionalProperties: true },
);

const Client = Type.Object({
  client_id: Type.String(),
  name: Type.String(),
  public: Type.Boolean(),
  grant_types: Type.Array(Type.String()),
  scopes: Type.Array(Type.String()),
  created_at: Type.String({ format: "date-time" }),
});

const NewClientBody = Type.Object(
  {
    client_id: Type.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9._~-]+$" }),
    client_secret: Type.Optional(Type.String({ minLength: 16, maxLength: 256 })),
    public: Type.Optional(Type.Boolean()),
    name: Type.Optional(Type.String({ maxLength: 255 })),
    grant_types: Type.Optional(
      Type.Array(Type.Union(grantTypes.map((grant) => Type.Literal(grant))), {
        minItems: 1,
        maxItems: 3,
        uniqueItems: true,
      }),
    ),
    scopes: Type.Optional(
      Type.Array(Type.Union(knownScopes.map((scope) => Type.Literal(scope))), {
        maxItems: 4,
        uniqueItems: true,
      }),
    ),
  },
  { additionalProperties: false },
);

/** Client authentication from HTTP Basic (RFC 6749 §2.3.1) or the body, never both. */
function clientCredentials(
  request: FastifyRequest,
  body: Record<string, unknown>,
): ClientCredentials | undefined {
  const header = request.headers.authorization;
  const inBody = typeof body.client_id === "string" ? body.client_id : undefined;
  // RFC 7235 §2.1: the scheme's name is case-insensitive.
  if (header !== undefined && /^basic /i.test(header)) {
    if (inBody !== undefined) {
      throw new OAuthError("invalid_request", "Use one client authentication method, not two.");
    }
    const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) throw new OAuthError("invalid_client", "Malformed Basic credentials.");
    try {
      return {
        clientId: decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, " ")),
        clientSecret: decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, " ")),
      };
    } catch {
      throw new OAuthError("invalid_client", "Malformed Basic credentials.");
    }
  }
  if (inBody === undefined) return undefined;
  const secret = typeof body.client_secret === "string" ? body.client_secret : undefined;
  return { clientId: inBody, clientSecret: secret };
}

function requireValid(request: FastifyRequest): void {
  if (request.validationError) {
    throw new OAuthError(
      "invalid_request",
      "Parameters must be valid text of at most 4096 characters.",
    );
  }
}

const clientView = (client: OAuthClient) => ({
  client_id: client.clientId,
  name: client.name,
  public: client.secretHash === null,
  grant_types: client.grantTypes,
  scopes: client.scopes,
  created_at: client.createdAt.toISOString(),
});

export async function oauthRoutes(app: FastifyInstance, { oauth }: { oauth: OAuthService }) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();

  r.post(
    "/o/token/",
    {
      config: { public: true },
      attachValidation: true,
      schema: {
        tags: ["auth"],
        summary: "Obtain a token (password, refresh_token or client_credentials grant)",
        body: TokenBody,
        response: {
          200: TokenAnswer,
          400: OAuthErrorAnswer,
          401: OAuthErrorAnswer,
          429: OAuthErrorAnswer,
        },
      },
    },
    async (request, reply) => {
      requireValid(request);
      const body = (request.body ?? {}) as Record<string, string | undefined>;
      const answer = await oauth.grantToken(clientCredentials(request, body), body, request.ip);
      return reply.header("Cache-Control", "no-store").header("Pragma", "no-cache").send(answer);
    },
  );

  r.post(
    "/o/revoke_token/",
    {
      config: { public: true },
      attachValidation: true,
      schema: {
        tags: ["auth"],
        summary: "Revoke an access or refresh token (RFC 7009)",
        body: RevokeBody,
        response: {
          200: Type.Object({}),
          400: OAuthErrorAnswer,
          401: OAuthErrorAnswer,
          429: OAuthErrorAnswer,
        },
      },
    },
    async (request) => {
      requireValid(request);
      const body = (request.body ?? {}) as Record<string, string | undefined>;
      await oauth.revoke(clientCredentials(request, body), body.token, request.ip);
      return {};
    },
  );

  r.post(
    "/o/introspect/",
    {
      config: { public: true },
      attachValidation: true,
      schema: {
        tags: ["auth"],
        summary: "Introspect a token (RFC 7662); needs client authentication or a Bearer token",
        body: RevokeBody,
        response: {
          200: Type.Object({
            active: Type.Boolean(),
            scope: Type.Optional(Type.String()),
            client_id: Type.Optional(Type.String()),
            username: Type.Optional(Type.String()),
            token_type: Type.Optional(Type.String()),
            exp: Type.Optional(Type.Integer()),
            iat: Type.Optional(Type.Integer()),
            sub: Type.Optional(Type.String()),
          }),
          400: OAuthErrorAnswer,
          401: OAuthErrorAnswer,
          429: OAuthErrorAnswer,
        },
      },
    },
    async (request) => {
      requireValid(request);
      const body = (request.body ?? {}) as Record<string, string | undefined>;
      // RFC 7662 §2.1: the caller must be authorized, lest anyone probe tokens.
      const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? "")?.[1];
      const holder = bearer ? await oauth.authenticateAccessToken(bearer) : undefined;
      if (!holder) {
        const credentials = clientCredentials(request, body);
        if (!credentials) throw new OAuthError("invalid_client", "Client authentication failed.");
        const client = await oauth.authenticateClient(credentials, request.ip);
        // A public client proves nothing: naming the console's would let anyone probe tokens.
        if (client.secretHash === null)
          throw new OAuthError("invalid_client", "A public client may not introspect tokens.");
      }
      const answer = await oauth.introspect(body.token);
      // A client (a resource server) may look at any token; a token's holder at its own person's
      // (or, without a person, its own client's), unless an Admin: else whose a token is, and
      // what it may do, would be anyone's to learn.
      if (!holder || !answer.active || can(holder, "oauthclient.view")) return answer;
      const own =
        holder.userId === null
          ? answer.sub === undefined && answer.client_id === holder.clientId
          : answer.sub === String(holder.userId);
      return own ? answer : { active: false as const };
    },
  );

  r.get(
    "/o/clients/",
    {
      config: { permission: "oauthclient.view" },
      schema: {
        tags: ["auth"],
        summary: "List OAuth2 clients (Admin)",
        response: { 200: Type.Array(Client) },
      },
    },
    async () => (await oauth.listClients()).map(clientView),
  );

  r.post(
    "/o/clients/",
    {
      config: { permission: "oauthclient.add" },
      schema: {
        tags: ["auth"],
        summary: "Register an OAuth2 client (Admin); a generated secret is shown once",
        body: NewClientBody,
        response: {
          201: Type.Intersect([
            Client,
            Type.Object({ client_secret: Type.Union([Type.String(), Type.Null()]) }),
          ]),
        },
      },
    },
    async (request, reply) => {
      actorOf(request);
      const body = request.body;
      const { client, secret } = await oauth.createClient({
        clientId: body.client_id,
        secret: body.client_secret,
        public: body.public,
        name: body.name,
        grantTypes: body.grant_types,
        scopes: body.scopes,
      });
      return reply.code(201).send({ ...clientView(client), client_secret: secret });
    },
  );

  r.delete(
    "/o/clients/:client_id/",
    {
      config: { permission: "oauthclient.delete" },
      schema: {
        tags: ["auth"],
        summary: "Delete an OAuth2 client and its tokens (Admin)",
        params: Type.Object({ client_id: Type.String({ maxLength: 100 }) }),
      },
    },
    async (request, reply) => {
      await oauth.deleteClient(request.params.client_id);
      return reply.code(204).send();
    },
  );
}
