import { randomUUID } from "node:crypto";
import type { Config } from "../../config.ts";
import type { ChangeFeed } from "../../platform/change-feed.ts";
import type { Clock, Principal } from "../../platform/context.ts";
import type { Database, Queryable } from "../../platform/database.ts";
import { DomainError, OAuthError, pgErrorCode, pgErrorCodes } from "../../platform/errors.ts";
import type { LoginThrottle } from "./login-throttle.ts";
import { hashPassword, verifyPassword } from "./passwords.ts";
import { effectivePermissions, knownScopes, parseScope } from "./scopes.ts";
import { newClientSecret, newToken, type TokenKind, tokenHash } from "./tokens.ts";

export const grantTypes = ["password", "refresh_token", "client_credentials"] as const;
export type GrantType = (typeof grantTypes)[number];

export interface OAuthClient {
  id: number;
  clientId: string;
  name: string;
  secretHash: string | null;
  grantTypes: GrantType[];
  scopes: string[];
  createdAt: Date;
}

export interface ClientCredentials {
  clientId: string;
  clientSecret?: string | undefined;
}

export interface TokenRequest {
  grant_type?: string | undefined;
  username?: string | undefined;
  password?: string | undefined;
  refresh_token?: string | undefined;
  scope?: string | undefined;
}

export interface TokenResponse {
  access_token: string;
  expires_in: number;
  token_type: "Bearer";
  scope: string;
  refresh_token?: string;
}

export interface OAuthDeps {
  db: Database;
  clock: Clock;
  config: Pick<Config, "accessTokenLifetime" | "refreshTokenLifetime">;
  loginThrottle: LoginThrottle;
  changes: ChangeFeed;
  /**
   * Client ids only the server registers (the console's): one made first by hand, with a secret
   * say, would be kept and break what the server expects of it.
   */
  reservedClientIds?: readonly string[];
}

/** Tables whose change can end a token or alter what it permits (ChangeFeed table names). */
export const authTables: ReadonlySet<string> = new Set([
  "*",
  "oauth_token",
  "oauth_client",
  "app_user",
  "user_group",
  "group_permission",
]);
const maxCachedTokens = 50_000;

interface StoredToken {
  id: number;
  kind: TokenKind;
  client_id: number;
  user_id: number | null;
  scope: string;
  family: string;
  expires_at: Date;
  revoked_at: Date | null;
}

export type OAuthService = ReturnType<typeof createOAuthService>;

export function createOAuthService({
  db,
  clock,
  config,
  loginThrottle,
  changes,
  reservedClientIds = [],
}: OAuthDeps) {
  // Resolving a token costs a query; requests repeat the same few tokens. Any change to tokens,
  // users or permissions, here or in another process, empties the cache (see ChangeFeed).
  const principals = new Map<string, Principal>();
  /** Counts the emptyings: a lookup that began before one may have read what was revoked. */
  let cleared = 0;
  changes.onChange((table) => {
    if (!authTables.has(table)) return;
    principals.clear();
    cleared++;
  });

  async function findClient(clientId: string): Promise<OAuthClient | undefined> {
    const { rows } = await db.query<ClientRow>(`${clientSelect} where client_id = $1`, [clientId]);
    return rows[0] && toClient(rows[0]);
  }

  /**
   * RFC 6749 §2.3: a confidential client proves its secret; a public one only names itself.
   * Failed proofs are limited per client id from `address`, and per `address`, as logins are
   * (login-throttle.ts).
   */
  async function authenticateClient(
    credentials: ClientCredentials,
    address: string,
  ): Promise<OAuthClient> {
    const client = await findClient(credentials.clientId);
    const secret = credentials.clientSecret;
    if (client && client.secretHash === null && !secret) return client;
    const wait = await loginThrottle.clientWait(credentials.clientId, address);
    if (wait > 0)
      throw new OAuthError(
        "too_many_requests",
        "Too many failed client authentications; try again later.",
        429,
        wait,
      );
    const valid = await verifyPassword(client?.secretHash ?? undefined, secret ?? "");
    if (!client || !valid) {
      await loginThrottle.clientFailed(credentials.clientId, address);
      throw new OAuthError("invalid_client", "Client authentication failed.");
    }
    return client;
  }

  function grantedScope(client: OAuthClient, requested: string | undefined): string[] {
    if (requested === undefined || requested.trim() === "") return client.scopes;
    const scopes = parseScope(requested);
    const unknown = scopes.filter((scope) => !(knownScopes as readonly string[]).includes(scope));
    const notAllowed = scopes.filter((scope) => !client.scopes.includes(scope));
    if (unknown.length > 0 || notAllowed.length > 0) {
      throw new OAuthError(
        "invalid_scope",
        `Scope not allowed: ${[...new Set([...unknown, ...notAllowed])].join(" ")}.`,
      );
    }
    return scopes;
  }

  async function issueTokens(
    tx: Queryable,
    client: OAuthClient,
    userId: number | null,
    scopes: string[],
    family: string,
    withRefresh: boolean,
  ): Promise<TokenResponse> {
    const now = clock.now().getTime();
    const insert = (kind: TokenKind, token: string, lifetime: number) =>
      tx.query(
        `insert into oauth_token (kind, token_hash, client_id, user_id, scope, family, expires_at, created_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [
          kind,
          tokenHash(token),
          client.id,
          userId,
          scopes.join(" "),
          family,
          new Date(now + lifetime * 1000),
          new Date(now),
        ],
      );
    const accessToken = newToken("access");
    await insert("access", accessToken, config.accessTokenLifetime);
    const response: TokenResponse = {
      access_token: accessToken,
      expires_in: config.accessTokenLifetime,
      token_type: "Bearer",
      scope: scopes.join(" "),
    };
    if (withRefresh) {
      const refreshToken = newToken("refresh");
      await insert("refresh", refreshToken, config.refreshTokenLifetime);
      response.refresh_token = refreshToken;
    }
    return response;
  }

  async function passwordGrant(client: OAuthClient, request: TokenRequest, address: string) {
    const { username, password } = request;
    if (!username || !password) {
      throw new OAuthError("invalid_request", "The password grant needs username and password.");
    }
    // The throttle counts by the username as the lookup matches it, the database's lower():
    // JavaScript's lowers some letters otherwise ("İ" to "i̇" where PostgreSQL may give "i"),
    // and each spelling that finds one user would get an allowance of its own. Unknown
    // usernames take the same query, and the decoy hash below, so they answer no faster.
    const { rows } = await db.query<
      { account: string } & (
        | { id: number; password_hash: string; is_active: boolean }
        | { id: null; password_hash: null; is_active: null }
      )
    >(
      `select lower($1::text) as account, u.id, u.password_hash, u.is_active
       from (select) as one left join app_user u on lower(u.username) = lower($1::text)`,
      [username],
    );
    const { account, ...found } = rows[0]!;
    const wait = await loginThrottle.take(account, address);
    if (wait > 0) {
      throw new OAuthError(
        "too_many_requests",
        "Too many failed logins; try again later.",
        429,
        wait,
      );
    }
    const user = found.id === null ? undefined : found;
    const valid = await verifyPassword(user?.password_hash, password);
    if (!user || !valid || !user.is_active)
      throw new OAuthError("invalid_grant", "Invalid credentials given.");
    await loginThrottle.succeeded(account, address);
    const scopes = grantedScope(client, request.scope);
    return db.transaction(async (tx) => {
      // Only if the password checked is still the user's: a reset or deactivation that committed
      // during the (slow) check would otherwise be outlived by the tokens issued here. The row
      // lock also makes a reset under way wait until these tokens exist, so it revokes them.
      const { rowCount } = await tx.query(
        "update app_user set last_login = $2 where id = $1 and password_hash = $3 and is_active",
        [user.id, clock.now(), user.password_hash],
      );
      if (rowCount !== 1) throw new OAuthError("invalid_grant", "Invalid credentials given.");
      const withRefresh = client.grantTypes.includes("refresh_token");
      return issueTokens(tx, client, user.id, scopes, randomUUID(), withRefresh);
    });
  }

  /**
   * Rotation: a refresh token works once. Presenting one that was already used means it leaked,
   * so the whole family (every token descended from that login) is revoked.
   */
  async function refreshGrant(client: OAuthClient, request: TokenRequest) {
    if (!request.refresh_token) {
      throw new OAuthError("invalid_request", "The refresh_token grant needs refresh_token.");
    }
    const presented = tokenHash(request.refresh_token);
    const outcome = await db.transaction(async (tx) => {
      // The user's row first, then the token's, as a password reset or deactivation locks them:
      // one that is under way finishes (revoking this token) before the token is read.
      await tx.query(
        `select 1 from app_user where id = (select user_id from oauth_token where token_hash = $1) for share`,
        [presented],
      );
      const { rows } = await tx.query<StoredToken>(
        `select * from oauth_token where token_hash = $1 and kind = 'refresh' for update`,
        [presented],
      );
      const token = rows[0];
      if (!token || token.client_id !== client.id) return "invalid" as const;
      const now = clock.now();
      if (token.revoked_at !== null) {
        await revokeFamily(tx, token.family, now);
        return "reused" as const;
      }
      if (token.expires_at <= now) return "invalid" as const;
      if (token.user_id !== null && !(await userIsActive(tx, token.user_id)))
        return "invalid" as const;
      const previous = parseScope(token.scope);
      const scopes = request.scope ? parseScope(request.scope) : previous;
      if (scopes.some((scope) => !previous.includes(scope))) return "scope" as const;
      await revokeFamily(tx, token.family, now);
      return issueTokens(tx, client, token.user_id, scopes, token.family, true);
    });
    // Only a refresh that revoked tokens changed any: anyone may present a made-up one, and
    // each change empties the token cache and rechecks every live socket.
    if (outcome === "reused" || typeof outcome !== "string") changes.changed("oauth_token");
    if (outcome === "scope") {
      throw new OAuthError("invalid_scope", "A refresh may not widen the scope.");
    }
    if (typeof outcome === "string") {
      throw new OAuthError("invalid_grant", "Invalid refresh token.");
    }
    return outcome;
  }

  async function clientCredentialsGrant(client: OAuthClient, request: TokenRequest) {
    if (client.secretHash === null) {
      throw new OAuthError("unauthorized_client", "A public client cannot use client_credentials.");
    }
    const scopes = grantedScope(client, request.scope);
    // RFC 6749 §4.4.3: no refresh token; the client simply asks again.
    return db.transaction((tx) => issueTokens(tx, client, null, scopes, randomUUID(), false));
  }

  async function grantToken(
    credentials: ClientCredentials | undefined,
    request: TokenRequest,
    address: string,
  ): Promise<TokenResponse> {
    if (!request.grant_type) throw new OAuthError("invalid_request", "Missing grant_type.");
    if (!(grantTypes as readonly string[]).includes(request.grant_type)) {
      throw new OAuthError(
        "unsupported_grant_type",
        `Unsupported grant_type "${request.grant_type}".`,
      );
    }
    if (!credentials) throw new OAuthError("invalid_client", "Client authentication failed.");
    const client = await authenticateClient(credentials, address);
    const grant = request.grant_type as GrantType;
    if (!client.grantTypes.includes(grant)) {
      throw new OAuthError("unauthorized_client", `This client may not use the ${grant} grant.`);
    }
    switch (grant) {
      case "password":
        return passwordGrant(client, request, address);
      case "refresh_token":
        return refreshGrant(client, request);
      case "client_credentials":
        return clientCredentialsGrant(client, request);
    }
  }

  /** RFC 7009: revokes a token issued to this client; unknown tokens are not an error. */
  async function revoke(
    credentials: ClientCredentials | undefined,
    token: string | undefined,
    address: string,
  ) {
    if (!credentials) throw new OAuthError("invalid_client", "Client authentication failed.");
    const client = await authenticateClient(credentials, address);
    if (!token) throw new OAuthError("invalid_request", "Missing token.");
    const revoked = await db.transaction(async (tx) => {
      const { rows } = await tx.query<StoredToken>(
        "select * from oauth_token where token_hash = $1 and client_id = $2",
        [tokenHash(token), client.id],
      );
      const stored = rows[0];
      if (!stored) return false;
      const now = clock.now();
      // A refresh token takes the tokens issued with it along; an access token goes alone.
      if (stored.kind === "refresh") await revokeFamily(tx, stored.family, now);
      else await tx.query("update oauth_token set revoked_at = $2 where id = $1", [stored.id, now]);
      return true;
    });
    // An unknown token changes nothing, and says so to no cache.
    if (revoked) changes.changed("oauth_token");
  }

  /** RFC 7662: anything not currently valid is simply `{"active": false}`. */
  async function introspect(token: string | undefined) {
    if (!token) throw new OAuthError("invalid_request", "Missing token.");
    const { rows } = await db.query<
      StoredToken & {
        client: string;
        username: string | null;
        is_active: boolean | null;
        created_at: Date;
      }
    >(
      `select t.*, c.client_id as client, u.username, u.is_active
       from oauth_token t join oauth_client c on c.id = t.client_id
       left join app_user u on u.id = t.user_id where t.token_hash = $1`,
      [tokenHash(token)],
    );
    const stored = rows[0];
    const active =
      stored !== undefined &&
      stored.revoked_at === null &&
      stored.expires_at > clock.now() &&
      stored.is_active !== false;
    if (!active) return { active: false as const };
    return {
      active: true as const,
      scope: stored.scope,
      client_id: stored.client,
      username: stored.username ?? undefined,
      token_type: stored.kind === "access" ? "Bearer" : "refresh_token",
      exp: Math.floor(stored.expires_at.getTime() / 1000),
      iat: Math.floor(stored.created_at.getTime() / 1000),
      sub: stored.user_id === null ? undefined : String(stored.user_id),
    };
  }

  /** Resolves a Bearer token to who is acting and what they may do. */
  async function authenticateAccessToken(token: string): Promise<Principal> {
    // Keyed by the token itself: a hit needs no hash (the token is in this request's memory
    // anyway); only a miss hashes it to find it in the database.
    const cached = principals.get(token);
    if (cached) {
      if (cached.expiresAt > clock.now()) return cached;
      principals.delete(token);
    }
    const before = cleared;
    const principal = await lookUpAccessToken(tokenHash(token));
    if (before !== cleared) return principal;
    if (principals.size >= maxCachedTokens) principals.clear();
    principals.set(token, principal);
    return principal;
  }

  async function lookUpAccessToken(key: Buffer): Promise<Principal> {
    const { rows } = await db.query<{
      id: number;
      user_id: number | null;
      username: string | null;
      is_active: boolean | null;
      scope: string;
      expires_at: Date;
      revoked_at: Date | null;
      client: string;
      permissions: string[] | null;
    }>(
      `select t.id, t.user_id, u.username, u.is_active, t.scope, t.expires_at, t.revoked_at,
              c.client_id as client,
              case when t.user_id is null then null else array(
                select distinct gp.permission_code from user_group ug
                join group_permission gp on gp.group_id = ug.group_id
                where ug.user_id = t.user_id) end as permissions
       from oauth_token t
       join oauth_client c on c.id = t.client_id
       left join app_user u on u.id = t.user_id
       where t.token_hash = $1 and t.kind = 'access'`,
      [key],
    );
    const stored = rows[0];
    if (
      !stored ||
      stored.revoked_at !== null ||
      stored.expires_at <= clock.now() ||
      stored.is_active === false
    ) {
      throw new DomainError("invalid_token", "Invalid token.");
    }
    const scopes = parseScope(stored.scope);
    return {
      tokenId: stored.id,
      userId: stored.user_id,
      username: stored.username,
      clientId: stored.client,
      scopes,
      permissions: effectivePermissions(stored.permissions, scopes),
      expiresAt: stored.expires_at,
    };
  }

  /** `reserved`: the server registering a client of its own (`reservedClientIds`). */
  async function createClient(
    input: NewClient,
    { reserved = false } = {},
  ): Promise<{ client: OAuthClient; secret: string | null }> {
    if (!reserved && reservedClientIds.includes(input.clientId))
      throw new DomainError("validation", "Invalid input.", {
        client_id: ["Reserved: the server registers this client itself."],
      });
    const secret = input.public ? null : (input.secret ?? newClientSecret());
    const scopes = input.scopes ?? ["read", "write", "groups"];
    const grants = input.grantTypes ?? ["password", "refresh_token"];
    const problems = clientProblems(input, grants, scopes);
    if (Object.keys(problems).length > 0)
      throw new DomainError("validation", "Invalid input.", problems);
    try {
      const { rows } = await db.query<ClientRow>(
        `insert into oauth_client (client_id, secret_hash, name, grant_types, scopes)
         values ($1, $2, $3, $4, $5)
         returning id, client_id, secret_hash, name, grant_types, scopes, created_at`,
        [
          input.clientId,
          secret === null ? null : await hashPassword(secret),
          input.name ?? "",
          grants,
          scopes,
        ],
      );
      return { client: toClient(rows[0]!), secret };
    } catch (error) {
      if (pgErrorCode(error) === pgErrorCodes.uniqueViolation) {
        throw new DomainError("conflict", "Invalid input.", {
          client_id: ["oauth client with this client id already exists."],
        });
      }
      throw error;
    }
  }

  async function listClients(): Promise<OAuthClient[]> {
    const { rows } = await db.query<ClientRow>(`${clientSelect} order by id`);
    return rows.map(toClient);
  }

  async function deleteClient(clientId: string): Promise<void> {
    const { rowCount } = await db.query("delete from oauth_client where client_id = $1", [
      clientId,
    ]);
    if (rowCount === 0) throw new DomainError("not_found", "Not found.");
    changes.changed("oauth_client");
  }

  /** Drops tokens that can no longer be used, so the table does not grow without bound. */
  async function purgeExpiredTokens(): Promise<number> {
    const { rowCount } = await db.query(
      "delete from oauth_token where expires_at < $1::timestamptz - interval '1 day'",
      [clock.now()],
    );
    return rowCount;
  }

  return {
    findClient,
    grantToken,
    revoke,
    introspect,
    authenticateClient,
    authenticateAccessToken,
    createClient,
    listClients,
    deleteClient,
    purgeExpiredTokens,
  };
}

/**
 * What makes a client unusable or unsendable, by field. The API's schema checks the same first;
 * the CLI reaches only this.
 */
function clientProblems(
  input: NewClient,
  grants: readonly string[],
  scopes: readonly string[],
): Record<string, string[]> {
  const problems: Record<string, string[]> = {};
  // No ':' (HTTP Basic splits there), no space or '/': what a client can send as typed.
  if (!/^[A-Za-z0-9._~-]{1,100}$/.test(input.clientId))
    problems.client_id = ["1 to 100 letters, digits or . _ ~ - only."];
  if (input.secret !== undefined && (input.secret.length < 16 || input.secret.length > 256))
    problems.client_secret = ["16 to 256 characters."];
  if ((input.name ?? "").length > 255) problems.name = ["At most 255 characters."];
  const unknownGrants = grants.filter(
    (grant) => !(grantTypes as readonly string[]).includes(grant),
  );
  if (unknownGrants.length > 0)
    problems.grant_types = [`Unknown grant type: ${unknownGrants.join(" ")}.`];
  else if (grants.length === 0 || new Set(grants).size < grants.length)
    problems.grant_types = ["At least one grant type, each once."];
  else if (input.public && grants.includes("client_credentials"))
    problems.grant_types = ["A public client cannot use client_credentials: it has no secret."];
  const unknown = scopes.filter((scope) => !(knownScopes as readonly string[]).includes(scope));
  if (unknown.length > 0) problems.scope = [`Unknown scope: ${unknown.join(" ")}.`];
  else if (scopes.length === 0 || new Set(scopes).size < scopes.length)
    problems.scope = ["At least one scope, each once."];
  return problems;
}

export interface NewClient {
  clientId: string;
  secret?: string | undefined;
  public?: boolean | undefined;
  name?: string | undefined;
  grantTypes?: GrantType[] | undefined;
  scopes?: string[] | undefined;
}

interface ClientRow {
  id: number;
  client_id: string;
  secret_hash: string | null;
  name: string;
  grant_types: string[];
  scopes: string[];
  created_at: Date;
}

const clientSelect =
  "select id, client_id, secret_hash, name, grant_types, scopes, created_at from oauth_client";

const toClient = (row: ClientRow): OAuthClient => ({
  id: row.id,
  clientId: row.client_id,
  name: row.name,
  secretHash: row.secret_hash,
  grantTypes: row.grant_types as GrantType[],
  scopes: row.scopes,
  createdAt: row.created_at,
});

async function revokeFamily(tx: Queryable, family: string, now: Date): Promise<void> {
  await tx.query(
    "update oauth_token set revoked_at = $2 where family = $1 and revoked_at is null",
    [family, now],
  );
}

async function userIsActive(tx: Queryable, userId: number): Promise<boolean> {
  const { rows } = await tx.query<{ is_active: boolean }>(
    "select is_active from app_user where id = $1",
    [userId],
  );
  return rows[0]?.is_active === true;
}
