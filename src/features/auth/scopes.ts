/** Scopes a token may carry. `read`, `write` and `groups` are the seed's; `ingest` is Spindle's. */
export const knownScopes = ["read", "write", "groups", "ingest"] as const;
export type Scope = (typeof knownScopes)[number];

export const machineDataResources = ["machine", "tool", "axis", "axisdata", "toolusage"];

/**
 * Reporting a tool's offset and feedrate through ingest: what `tool.change` allows there, without
 * what it allows through `/data/tools/` (moving a tool to another machine). Granted by the
 * `ingest` scope only; no group holds it.
 */
export const toolReport = "tool.report";

/** What a machine adapter's `ingest` scope lets it write: samples, tool reports, tool usage. */
export const ingestPermissions = ["axisdata.add", toolReport, "toolusage.add"];

export function parseScope(scope: string): string[] {
  return [...new Set(scope.split(" ").filter(Boolean))];
}

/**
 * A token's permissions: what its user may do (or, for a client's own token, what the client's
 * scopes name), narrowed by the scopes the token was granted: `read` for viewing, `write` for
 * changes, `ingest` for sending machine data.
 */
export function effectivePermissions(
  userPermissions: readonly string[] | null,
  scopes: readonly string[],
): Set<string> {
  const granted = new Set<string>();
  const has = (scope: Scope) => scopes.includes(scope);
  if (userPermissions === null) {
    if (has("read")) for (const resource of machineDataResources) granted.add(`${resource}.view`);
    if (has("ingest")) for (const permission of ingestPermissions) granted.add(permission);
    return granted;
  }
  for (const permission of userPermissions) {
    const action = permission.slice(permission.indexOf(".") + 1);
    const allowed =
      (action === "view" && has("read")) ||
      (action !== "view" && has("write")) ||
      (has("ingest") && ingestPermissions.includes(permission));
    if (allowed) granted.add(permission);
    // A user who may change tools may report them through ingest with an `ingest` token.
    if (has("ingest") && permission === "tool.change") granted.add(toolReport);
  }
  return granted;
}
