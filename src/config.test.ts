import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig, redactUrl } from "./config.ts";

describe("parseConfig", () => {
  it("has the contract's defaults", () => {
    expect(parseConfig({})).toMatchObject({
      port: 8000,
      host: "127.0.0.1",
      databaseUrl: undefined,
      dataDir: "./data",
      simulator: false,
      logLevel: "info",
      accessTokenLifetime: 36000,
      retentionDays: 30,
      rollupSecondRetentionDays: 90,
      rollupFiveSecondRetentionDays: 180,
      rollupTenSecondRetentionDays: 365,
      rollupMinuteRetentionDays: 730,
      liveSocketsPerUser: 100,
      ingestBytesInFlight: 268_435_456,
      loginAttemptsPerUser: 10,
      loginAttemptsPerUserAllAddresses: 100,
      loginAttemptsPerAddress: 100,
    });
  });

  it("reads TRUST_PROXY as none, any, or a list of addresses and ranges", () => {
    expect(parseConfig({}).trustProxy).toBe(false);
    expect(parseConfig({ TRUST_PROXY: "false" }).trustProxy).toBe(false);
    expect(parseConfig({ TRUST_PROXY: "True" }).trustProxy).toBe(true);
    expect(
      parseConfig({ TRUST_PROXY: "127.0.0.1, 10.0.0.0/8,::1,fd00::/8,loopback" }).trustProxy,
    ).toEqual(["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8", "loopback"]);
  });

  it("accepts only TRUST_PROXY lists Fastify takes", async () => {
    const { trustProxy } = parseConfig({
      TRUST_PROXY: "127.0.0.1,10.0.0.0/8,::1,fd00::/8,::ffff:10.0.0.0/104,loopback,uniquelocal",
    });
    const app = Fastify({ trustProxy });
    await expect(app.ready()).resolves.toBeDefined();
    await app.close();
  });

  it("bounds a username's failures across addresses at ten addresses' worth, unless told", () => {
    expect(parseConfig({ LOGIN_ATTEMPTS_PER_USER: "3" }).loginAttemptsPerUserAllAddresses).toBe(30);
    expect(
      parseConfig({ LOGIN_ATTEMPTS_PER_USER: "3", LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES: "3" })
        .loginAttemptsPerUserAllAddresses,
    ).toBe(3);
  });

  it("reads every variable", () => {
    const config = parseConfig({
      PORT: "9000",
      HOST: "0.0.0.0",
      DATABASE_URL: "postgresql://u@db:5432/spindle",
      DATA_DIR: "/var/lib/spindle",
      SIMULATOR: "on",
      ADMIN_USERNAME: "root",
      ADMIN_PASSWORD: "pw",
      LOG_LEVEL: "debug",
      ACCESS_TOKEN_LIFETIME: "60",
      ROLLUP_5S_RETENTION_DAYS: "200",
      ROLLUP_10S_RETENTION_DAYS: "400",
      LIVE_SOCKETS_PER_USER: "5",
    });
    expect(config).toMatchObject({
      port: 9000,
      host: "0.0.0.0",
      simulator: true,
      adminUsername: "root",
      logLevel: "debug",
      rollupFiveSecondRetentionDays: 200,
      rollupTenSecondRetentionDays: 400,
      liveSocketsPerUser: 5,
    });
  });

  it.each([
    [{ PORT: "-1" }, "PORT"],
    [{ PORT: "8000x" }, "PORT"],
    [{ PORT: "1e3" }, "PORT"],
    [{ DATABASE_URL: "not a url" }, "DATABASE_URL"],
    [{ DATABASE_URL: "redis://x" }, "DATABASE_URL"],
    [{ SIMULATOR: "sometimes" }, "SIMULATOR"],
    [{ LOG_LEVEL: "verbose" }, "LOG_LEVEL"],
    [{ ACCESS_TOKEN_LIFETIME: "0" }, "ACCESS_TOKEN_LIFETIME"],
    [{ BODY_LIMIT: "12" }, "BODY_LIMIT"],
    [{ ADMIN_USERNAME: "root" }, "ADMIN_PASSWORD"],
    [{ ADMIN_PASSWORD: "Granite-Owl-5521" }, "ADMIN_USERNAME"],
    [{ ROLLUP_5S_RETENTION_DAYS: "0" }, "ROLLUP_5S_RETENTION_DAYS"],
    [{ ROLLUP_5S_RETENTION_DAYS: "-30" }, "ROLLUP_5S_RETENTION_DAYS"],
    [{ ROLLUP_5S_RETENTION_DAYS: "36501" }, "ROLLUP_5S_RETENTION_DAYS"],
    [{ ROLLUP_5S_RETENTION_DAYS: "1.5" }, "ROLLUP_5S_RETENTION_DAYS"],
    [{ ROLLUP_5S_RETENTION_DAYS: "180d" }, "ROLLUP_5S_RETENTION_DAYS"],
    [{ ROLLUP_5S_RETENTION_DAYS: "99999999999999999999" }, "ROLLUP_5S_RETENTION_DAYS"],
    [{ ROLLUP_5S_RETENTION_DAYS: "'; drop table axis_data_5s; --" }, "ROLLUP_5S_RETENTION_DAYS"],
    [{ ROLLUP_10S_RETENTION_DAYS: "0" }, "ROLLUP_10S_RETENTION_DAYS"],
    [{ ROLLUP_10S_RETENTION_DAYS: "-30" }, "ROLLUP_10S_RETENTION_DAYS"],
    [{ ROLLUP_10S_RETENTION_DAYS: "36501" }, "ROLLUP_10S_RETENTION_DAYS"],
    [{ ROLLUP_10S_RETENTION_DAYS: "1.5" }, "ROLLUP_10S_RETENTION_DAYS"],
    [{ ROLLUP_10S_RETENTION_DAYS: "365d" }, "ROLLUP_10S_RETENTION_DAYS"],
    [{ ROLLUP_10S_RETENTION_DAYS: "99999999999999999999" }, "ROLLUP_10S_RETENTION_DAYS"],
    [{ ROLLUP_10S_RETENTION_DAYS: "'; drop table axis_data_10s; --" }, "ROLLUP_10S_RETENTION_DAYS"],
    [{ ROLLUP_1S_RETENTION_DAYS: "29" }, "ROLLUP_1S_RETENTION_DAYS"],
    [{ RETENTION_DAYS: "91" }, "ROLLUP_1S_RETENTION_DAYS"],
    [{ LIVE_SOCKETS_PER_USER: "0" }, "LIVE_SOCKETS_PER_USER"],
    [{ LIVE_SOCKETS_PER_USER: "many" }, "LIVE_SOCKETS_PER_USER"],
    [{ LIVE_SOCKETS_PER_USER: "1000001" }, "LIVE_SOCKETS_PER_USER"],
    [{ INGEST_BYTES_IN_FLIGHT: "1000" }, "INGEST_BYTES_IN_FLIGHT"],
    [{ INGEST_BYTES_IN_FLIGHT: "256MB" }, "INGEST_BYTES_IN_FLIGHT"],
    [{ LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES: "9" }, "LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES"],
    [{ LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES: "0" }, "LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES"],
    [{ LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES: "lots" }, "LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES"],
    [{ TRUST_PROXY: "1" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "2" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "maybe" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "proxy.example.com" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "10.0.0.256" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "10.0.0.0/33" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "0.0.0.0/0" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "::1/129" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "10.0.0.0/8/8" }, "TRUST_PROXY"],
    [{ TRUST_PROXY: "10.0.0.1," }, "TRUST_PROXY"],
  ])("refuses %j naming %s", (env, variable) => {
    expect(() => parseConfig(env)).toThrow(ConfigError);
    try {
      parseConfig(env);
    } catch (error) {
      expect((error as ConfigError).variable).toBe(variable);
      expect((error as Error).message.startsWith(`${variable}: `)).toBe(true);
    }
  });

  it("keeps passwords out of database URLs it shows", () => {
    expect(redactUrl("postgres://spindle:hunter2@db/x")).toBe("postgres://spindle:***@db/x");
  });
});
