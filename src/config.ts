import { isIP } from "node:net";

/** Spindle's configuration: read from the environment once at start, typed, then passed in. */
export interface Config {
  port: number;
  host: string;
  databaseUrl: string | undefined;
  dataDir: string;
  simulator: boolean;
  /** Machines the in-server simulator runs. */
  simulatorMachines: number;
  adminUsername: string | undefined;
  adminPassword: string | undefined;
  logLevel: LogLevel;
  /** Seconds an access token lives (the seed's django-oauth-toolkit default). */
  accessTokenLifetime: number;
  refreshTokenLifetime: number;
  /** Largest request body accepted, in bytes; larger ones get 413. */
  bodyLimit: number;
  /** Largest ingest body in bytes (batches are larger than other requests). */
  ingestBodyLimit: number;
  /** Bytes of ingest bodies in flight at once; a request beyond it is refused before it is read. */
  ingestBytesInFlight: number;
  /**
   * Failed logins allowed, in each window: per username from one address, per username from all
   * addresses together, and per address across usernames.
   */
  loginAttemptsPerUser: number;
  loginAttemptsPerUserAllAddresses: number;
  loginAttemptsPerAddress: number;
  loginWindowSeconds: number;
  registrationsPerAddress: number;
  /**
   * Which peers may say, in X-Forwarded-For, whose request they pass on (Fastify's trustProxy):
   * none, any, or those at these addresses and ranges.
   */
  trustProxy: boolean | string[];
  /** Live WebSocket connections one user (or one client, without a user) may hold at once. */
  liveSocketsPerUser: number;
  /** Raw axis data older than this many days is dropped. */
  retentionDays: number;
  /** 1 s, 5 s, 10 s and 1 min rollups are kept this many days. */
  rollupSecondRetentionDays: number;
  rollupFiveSecondRetentionDays: number;
  rollupTenSecondRetentionDays: number;
  rollupMinuteRetentionDays: number;
}

export const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof logLevels)[number];

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    reason: string,
  ) {
    super(`${variable}: ${reason}`);
    this.name = "ConfigError";
  }
}

type Env = Record<string, string | undefined>;

export function parseConfig(env: Env): Config {
  const config = readConfig(env);
  // The coarser tiers are recomputed from the 1 s rows whenever a sample arrives late, which it
  // may as long as raw samples are kept: those 1 s rows must still be there.
  if (config.rollupSecondRetentionDays < config.retentionDays)
    throw new ConfigError(
      "ROLLUP_1S_RETENTION_DAYS",
      `must be at least RETENTION_DAYS (${config.retentionDays}), got ${config.rollupSecondRetentionDays}`,
    );
  // Below LOGIN_ATTEMPTS_PER_USER one address could again lock a user out by itself.
  if (config.loginAttemptsPerUserAllAddresses < config.loginAttemptsPerUser)
    throw new ConfigError(
      "LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES",
      `must be at least LOGIN_ATTEMPTS_PER_USER (${config.loginAttemptsPerUser}), got ${config.loginAttemptsPerUserAllAddresses}`,
    );
  return config;
}

function readConfig(env: Env): Config {
  return {
    port: integer(env, "PORT", 8000, 0, 65535),
    host: text(env, "HOST") ?? "127.0.0.1",
    databaseUrl: databaseUrl(env),
    dataDir: text(env, "DATA_DIR") ?? "./data",
    simulator: flag(env, "SIMULATOR", false),
    simulatorMachines: integer(env, "SIMULATOR_MACHINES", 20, 1, 10_000),
    adminUsername: text(env, "ADMIN_USERNAME"),
    adminPassword: adminPassword(env),
    logLevel: oneOf(env, "LOG_LEVEL", logLevels, "info"),
    accessTokenLifetime: integer(env, "ACCESS_TOKEN_LIFETIME", 36000, 1, 365 * 86400),
    refreshTokenLifetime: integer(env, "REFRESH_TOKEN_LIFETIME", 14 * 86400, 1, 3650 * 86400),
    bodyLimit: integer(env, "BODY_LIMIT", 1024 * 1024, 1024, 1024 * 1024 * 1024),
    ingestBodyLimit: integer(env, "INGEST_BODY_LIMIT", 32 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    ingestBytesInFlight: integer(
      env,
      "INGEST_BYTES_IN_FLIGHT",
      256 * 1024 * 1024,
      1024,
      64 * 1024 * 1024 * 1024,
    ),
    loginAttemptsPerUser: integer(env, "LOGIN_ATTEMPTS_PER_USER", 10, 1, 1_000_000),
    loginAttemptsPerUserAllAddresses: loginAttemptsPerUserAllAddresses(env),
    loginAttemptsPerAddress: integer(env, "LOGIN_ATTEMPTS_PER_ADDRESS", 100, 1, 1_000_000),
    loginWindowSeconds: integer(env, "LOGIN_WINDOW_SECONDS", 900, 1, 86400),
    registrationsPerAddress: integer(env, "REGISTRATIONS_PER_ADDRESS", 10, 1, 1_000_000),
    trustProxy: trustProxy(env),
    liveSocketsPerUser: integer(env, "LIVE_SOCKETS_PER_USER", 100, 1, 1_000_000),
    retentionDays: integer(env, "RETENTION_DAYS", 30, 1, 36500),
    rollupSecondRetentionDays: integer(env, "ROLLUP_1S_RETENTION_DAYS", 90, 1, 36500),
    rollupFiveSecondRetentionDays: integer(env, "ROLLUP_5S_RETENTION_DAYS", 180, 1, 36500),
    rollupTenSecondRetentionDays: integer(env, "ROLLUP_10S_RETENTION_DAYS", 365, 1, 36500),
    rollupMinuteRetentionDays: integer(env, "ROLLUP_1M_RETENTION_DAYS", 730, 1, 36500),
  };
}

function text(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `expected a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) {
    throw new ConfigError(name, `expected a number from ${min} to ${max}, got ${raw}`);
  }
  return value;
}

function flag(env: Env, name: string, fallback: boolean): boolean {
  const raw = text(env, name)?.toLowerCase();
  if (raw === undefined) return fallback;
  if (["on", "true", "1", "yes"].includes(raw)) return true;
  if (["off", "false", "0", "no"].includes(raw)) return false;
  throw new ConfigError(name, `expected on or off, got "${raw}"`);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const raw = text(env, name);
  if (raw === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(name, `expected one of ${allowed.join(", ")}, got "${raw}"`);
  }
  return raw as T;
}

function databaseUrl(env: Env): string | undefined {
  const raw = text(env, "DATABASE_URL");
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(
      "DATABASE_URL",
      "not a URL (expected postgres://user@host:port/database)",
    );
  }
  if (url.protocol !== "postgres:" && url.protocol !== "postgresql:") {
    throw new ConfigError("DATABASE_URL", `expected a postgres:// URL, got ${url.protocol}//…`);
  }
  return raw;
}

/**
 * Ten addresses' worth of LOGIN_ATTEMPTS_PER_USER unless set: locking a user out then takes ten
 * addresses, not one, while guesses at one account stay at NIST SP 800-63B's ceiling of 100
 * (§5.2.2) with the defaults.
 */
function loginAttemptsPerUserAllAddresses(env: Env): number {
  const perUser = integer(env, "LOGIN_ATTEMPTS_PER_USER", 10, 1, 1_000_000);
  return integer(env, "LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES", perUser * 10, 1, 10_000_000);
}

const proxyRule =
  "expected false, true, or a comma-separated list of proxy addresses and CIDR ranges (10.0.0.0/8, ::1, loopback)";

/**
 * A hop count is refused rather than passed on: Fastify (5.12) then trusts no proxy at all, as
 * it cannot tell the proxy from a client that connects directly with a header of its own.
 */
function trustProxy(env: Env): boolean | string[] {
  const raw = text(env, "TRUST_PROXY");
  if (raw === undefined) return false;
  const word = raw.toLowerCase();
  if (["on", "true", "yes"].includes(word)) return true;
  if (["off", "false", "no"].includes(word)) return false;
  if (/^\d+$/.test(raw))
    throw new ConfigError(
      "TRUST_PROXY",
      `a hop count (${raw}) is not supported: it cannot tell the proxy from a client connecting directly; name the proxy's addresses instead`,
    );
  const entries = raw.split(",").map((entry) => entry.trim());
  for (const entry of entries)
    if (!isProxyAddress(entry))
      throw new ConfigError("TRUST_PROXY", `${proxyRule}, got "${entry}"`);
  return entries;
}

/** An address, a CIDR range, or one of the names Fastify's proxy-addr knows. */
function isProxyAddress(entry: string): boolean {
  if (["loopback", "linklocal", "uniquelocal"].includes(entry)) return true;
  const [address = "", prefix, ...rest] = entry.split("/");
  const version = isIP(address);
  if (version === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  // proxy-addr refuses /0 too: trusting every peer is TRUST_PROXY=true.
  return (
    /^\d{1,3}$/.test(prefix) && Number(prefix) >= 1 && Number(prefix) <= (version === 4 ? 32 : 128)
  );
}

function adminPassword(env: Env): string | undefined {
  const password = text(env, "ADMIN_PASSWORD");
  if (text(env, "ADMIN_USERNAME") && !password) {
    throw new ConfigError("ADMIN_PASSWORD", "required when ADMIN_USERNAME is set");
  }
  // A password alone would be read and then do nothing: most likely the name was mistyped.
  if (password && !text(env, "ADMIN_USERNAME")) {
    throw new ConfigError("ADMIN_USERNAME", "required when ADMIN_PASSWORD is set");
  }
  return password;
}

/** The database URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    // libpq takes secrets as query parameters too: `?password=…`, `sslpassword=…` (a key's).
    for (const name of [...parsed.searchParams.keys()]) {
      if (/password/i.test(name)) parsed.searchParams.set(name, "***");
    }
    return parsed.toString();
  } catch {
    return "(unparseable URL)";
  }
}
