/** Query parameters whose values are secrets: `token`, `access_token`, `client_secret`, `password`… */
const secretName = /token|secret|password|passwd|authorization/i;

/**
 * `url` as logs may show it: the value of every query parameter whose name looks like a secret's
 * is `[redacted]`, however the name is spelled (`token`, `Token`, `token[]`, `%74oken`). A
 * WebSocket's `?token=` is the expected one; a client may put any credential in a query string.
 */
export function redactedUrl(url: string): string {
  const start = url.indexOf("?");
  if (start === -1) return withoutSpindleSecrets(url);
  const params = url
    .slice(start + 1)
    .split("&")
    .map((param) => {
      const equals = param.indexOf("=");
      const name = equals === -1 ? param : param.slice(0, equals);
      return secretName.test(decoded(name)) ? `${name}=[redacted]` : param;
    });
  return withoutSpindleSecrets(`${url.slice(0, start)}?${params.join("&")}`);
}

/**
 * Spindle's own tokens and client secrets (`spa_`, `spr_`, `sps_` and 43 base64url characters)
 * wherever they are, under any parameter name or in the path, percent-encoded or not: a client
 * that puts one in `?x=` has still sent a secret.
 */
const spindleSecret = /sp[ars]_(?:[A-Za-z0-9_-]|%[0-9A-Fa-f]{2}){20,}/g;

const withoutSpindleSecrets = (url: string) => url.replace(spindleSecret, "[redacted]");

/** A query parameter's name decoded as a server would read it, or as sent when it is malformed. */
function decoded(name: string): string {
  try {
    return decodeURIComponent(name.replaceAll("+", " "));
  } catch {
    return name;
  }
}
