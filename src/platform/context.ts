/** Time as the application sees it: injected so that token expiry can be tested without waiting. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** Who is acting: a user through a token, or an OAuth2 client on its own (no user). */
export interface Principal {
  tokenId: number;
  userId: number | null;
  username: string | null;
  clientId: string;
  scopes: readonly string[];
  permissions: ReadonlySet<string>;
  expiresAt: Date;
}

export const can = (actor: Principal, permission: string): boolean =>
  actor.permissions.has(permission);
