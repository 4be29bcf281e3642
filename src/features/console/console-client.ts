import type { OAuthService } from "../auth/oauth-service.ts";

/**
 * The console signs people in through the public API like any other client: a public OAuth2
 * client (no secret; a browser cannot keep one) with the password and refresh_token grants.
 */
export const consoleClient = {
  clientId: "spindle-console",
  name: "Spindle web console",
  public: true,
  grantTypes: ["password", "refresh_token"],
  scopes: ["read", "write", "groups"],
} as const;

/** Registers the console's client unless it exists; an Admin's later edits are left alone. */
export async function ensureConsoleClient(oauth: OAuthService): Promise<boolean> {
  if (await oauth.findClient(consoleClient.clientId)) return false;
  try {
    await oauth.createClient(
      {
        ...consoleClient,
        grantTypes: [...consoleClient.grantTypes],
        scopes: [...consoleClient.scopes],
      },
      { reserved: true },
    );
    return true;
  } catch (error) {
    // Another process sharing the database registered it first.
    if (await oauth.findClient(consoleClient.clientId)) return false;
    throw error;
  }
}
