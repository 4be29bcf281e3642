import { createHash, randomBytes } from "node:crypto";

export type TokenKind = "access" | "refresh";

const prefixes: Record<TokenKind, string> = { access: "spa_", refresh: "spr_" };

/** 256 random bits; the prefix lets secret scanners and people tell what a leaked string is. */
export function newToken(kind: TokenKind): string {
  return prefixes[kind] + randomBytes(32).toString("base64url");
}

export const newClientSecret = (): string => `sps_${randomBytes(32).toString("base64url")}`;

/** Tokens are high-entropy, so SHA-256 suffices to store them and to find them by index. */
export const tokenHash = (token: string): Buffer => createHash("sha256").update(token).digest();
