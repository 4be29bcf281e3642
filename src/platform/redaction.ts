/** Query parameters whose values are secrets: `token`, `access_token`, `client_secret`, `password`… */
const secretName = /token|secret|password|passwd|authorization/i;

/**
 * `url` as logs may show it: the value of every query parameter whose name looks like a secret's
 * is `[redacted]`, however the name is spelled (`token`, `Token`, `token[]`, `%74oken`). A
 * WebSocket's `?token=` is the expected one; a client may put any credential in a query string.
 */
export function redactedUrl(url: string): string {
  const start = url.indexOf("?");
  if (start === -1) return url;
  const params = url
    .slice(start + 1)
    .split("&")
    .map((param) => {
      const equals = param.indexOf("=");
      const name = equals === -1 ? param : param.slice(0, equals);
      return secretName.test(decoded(name)) ? `${name}=[redacted]` : param;
    });
  return `${url.slice(0, start)}?${params.join("&")}`;
}

/** A query parameter's name decoded as a server would read it, or as sent when it is malformed. */
function decoded(name: string): string {
  try {
    return decodeURIComponent(name.replaceAll("+", " "));
  } catch {
    return name;
  }
}
