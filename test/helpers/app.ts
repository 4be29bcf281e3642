import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from "fastify";
import { buildApp } from "../../src/app.ts";
import { type Config, parseConfig } from "../../src/config.ts";
import { createServices, type ServiceOptions, type Services } from "../../src/services.ts";
import { TestClock } from "./clock.ts";
import { openTestDatabase, type TestDatabase } from "./database.ts";

export interface TestApp {
  app: FastifyInstance;
  services: Services;
  database: TestDatabase;
  clock: TestClock;
  /** An Admin's Authorization header, for arranging data. */
  adminAuth: { authorization: string };
  /** Signs in a new user in these groups and returns its Authorization header. */
  userAuth(
    groups: string[],
    scope?: string,
  ): Promise<{ authorization: string; username: string; password: string }>;
  token(form: Record<string, string>, basic?: [string, string]): Promise<LightMyRequestResponse>;
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export const testClient = { id: "test-client", secret: "test-client-secret-0123456789" };
export const testPassword = "Correct-Horse-Battery-9";

let userCounter = 0;
export const uniqueName = (prefix: string) => `${prefix}${process.pid}_${++userCounter}`;

/** Spindle as it runs, on a database of this file's own, reached through app.inject. */
export async function buildTestApp(
  env: Record<string, string> = {},
  options: Pick<ServiceOptions, "ingest" | "live"> = {},
): Promise<TestApp> {
  const database = await openTestDatabase();
  const clock = new TestClock();
  const config: Config = parseConfig({
    LOGIN_ATTEMPTS_PER_ADDRESS: "1000",
    REGISTRATIONS_PER_ADDRESS: "1000",
    ...env,
  });
  const services = createServices({ config, db: database.db, clock, ...options });
  const app = await buildApp(services);
  await app.ready();
  await services.oauth.createClient({
    clientId: testClient.id,
    secret: testClient.secret,
    grantTypes: ["password", "refresh_token", "client_credentials"],
    scopes: ["read", "write", "groups", "ingest"],
  });

  const token = (
    form: Record<string, string>,
    basic: [string, string] = [testClient.id, testClient.secret],
  ) =>
    app.inject({
      method: "POST",
      url: "/o/token/",
      headers: { authorization: `Basic ${Buffer.from(basic.join(":")).toString("base64")}` },
      payload: form,
    });

  async function userAuth(groups: string[], scope?: string) {
    const username = uniqueName("user");
    await services.users.createUser({ username, password: testPassword }, groups);
    const answer = await token({
      grant_type: "password",
      username,
      password: testPassword,
      ...(scope ? { scope } : {}),
    });
    if (answer.statusCode !== 200) throw new Error(`sign-in failed: ${answer.body}`);
    return {
      authorization: `Bearer ${answer.json().access_token}`,
      username,
      password: testPassword,
    };
  }

  const admin = await userAuth(["Admin"]);
  return {
    app,
    services,
    database,
    clock,
    adminAuth: { authorization: admin.authorization },
    userAuth,
    token,
    inject: (options) => app.inject(options),
    async close() {
      await app.close();
      await services.ingest.close();
      await database.drop();
    },
  };
}
