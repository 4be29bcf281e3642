import type { FastifyInstance, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import type { Principal } from "../../platform/context.ts";
import { DomainError, forbidden } from "../../platform/errors.ts";
import type { OAuthService } from "./oauth-service.ts";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Reachable without a token (sign-in, registration, health). Everything else needs one. */
    public?: boolean;
    /** On a public route: a token, when one is sent and good, names the caller. */
    identifiesCaller?: boolean;
    /** The permission a caller needs, e.g. `machine.view`; absent means any valid token. */
    permission?: string;
    /** Passes when the caller holds any one of these (OR semantics). */
    anyPermission?: string[];
  }
  interface FastifyRequest {
    actor: Principal | null;
  }
}

export const notProvided = () =>
  new DomainError("unauthenticated", "Authentication credentials were not provided.");

export function bearerToken(header: string | undefined): string | undefined {
  const match = header ? /^Bearer[ ]+([^\s]+)\s*$/i.exec(header) : null;
  return match?.[1];
}

/** The acting principal of an authenticated route. */
export function actorOf(request: FastifyRequest): Principal {
  if (!request.actor) throw notProvided();
  return request.actor;
}

/**
 * Secure by default: every route needs a valid Bearer token unless it says `public: true`, and
 * then the permission it names. Unknown paths fall through to the 404 handler untouched.
 */
export const authenticate = fp(
  async (app: FastifyInstance, { oauth }: { oauth: OAuthService }) => {
    app.decorateRequest("actor", null);
    app.addHook("onRequest", async (request) => {
      const config = request.routeOptions.config;
      if (request.routeOptions.url === undefined) return;
      const header = request.headers.authorization;
      if (config.public) {
        // As DRF reads a public view's caller: a token that does not check out leaves it anonymous.
        if (config.identifiesCaller && header) {
          const token = bearerToken(header);
          request.actor = token
            ? await oauth.authenticateAccessToken(token).catch((error: unknown) => {
                if (error instanceof DomainError && error.code === "invalid_token") return null;
                throw error;
              })
            : null;
        }
        return;
      }
      if (!header) throw notProvided();
      const token = bearerToken(header);
      if (!token) throw new DomainError("invalid_token", "Invalid token.");
      request.actor = await oauth.authenticateAccessToken(token);
      const required = config.anyPermission ?? (config.permission ? [config.permission] : []);
      if (required.length > 0 && !required.some((code) => request.actor!.permissions.has(code))) {
        throw forbidden();
      }
    });
  },
  { name: "authenticate" },
);
