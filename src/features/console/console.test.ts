import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp, testPassword } from "../../../test/helpers/app.ts";
import { registerErrorHandler } from "../../platform/error-handler.ts";
import { consoleClient, ensureConsoleClient } from "./console-client.ts";
import { consolePageNotFound, consoleRoutes, defaultConsoleRoot } from "./console-routes.ts";

let t: TestApp;
let root: string;

beforeAll(async () => {
  t = await buildTestApp();
  root = await mkdtemp(join(tmpdir(), "spindle-console-"));
  await mkdir(join(root, "assets"));
  await writeFile(join(root, "index.html"), "<!doctype html><title>Spindle console</title>");
  await writeFile(join(root, "assets", "index-abc123.js"), "console.log('spindle')");
});

afterAll(async () => {
  await t.close();
  await rm(root, { recursive: true, force: true });
});

/** The console plugin alone, over a directory of this test's own. */
async function consoleApp(dir: string) {
  const app = Fastify();
  await app.register(consoleRoutes, { root: dir });
  return app;
}

describe("console", () => {
  it("answers the console's own routes with index.html, without a token", async () => {
    const app = await consoleApp(root);
    for (const url of [
      "/",
      "/signin",
      "/machines/81000001",
      "/history",
      "/admin",
      "/admin/users",
    ]) {
      const answer = await app.inject({ url });
      expect({ url, status: answer.statusCode }).toEqual({ url, status: 200 });
      expect(answer.headers["content-type"]).toMatch(/^text\/html/);
      expect(answer.headers["cache-control"]).toBe("no-cache");
      expect(answer.headers["content-security-policy"]).toContain("default-src 'self'");
      expect(answer.body).toContain("Spindle console");
    }
    await app.close();
  });

  it("serves hashed assets for a year and 404s unknown ones", async () => {
    const app = await consoleApp(root);
    const asset = await app.inject({ url: "/assets/index-abc123.js" });
    expect(asset.statusCode).toBe(200);
    expect(asset.headers["content-type"]).toMatch(/javascript/);
    expect(asset.headers["cache-control"]).toContain("immutable");
    expect((await app.inject({ url: "/assets/missing.js" })).statusCode).toBe(404);
    expect((await app.inject({ url: "/assets/../index.html" })).statusCode).not.toBe(200);
    await app.close();
  });

  it("explains how to build the console when web/dist is missing, and still starts", async () => {
    const app = await consoleApp(join(root, "nowhere"));
    const answer = await app.inject({ url: "/" });
    expect(answer.statusCode).toBe(503);
    expect(answer.headers["content-type"]).toMatch(/^text\/html/);
    expect(answer.body).toContain("npm run build:web");
    await app.close();
  });

  it("is public in Spindle and leaves every API path its JSON 404", async () => {
    const home = await t.inject({ url: "/" });
    expect([200, 503]).toContain(home.statusCode);
    expect(home.headers["content-type"]).toMatch(/^text\/html/);
    for (const url of [
      "/data/nothing/",
      "/o/nothing/",
      "/api/nothing/",
      "/users/nothing/x/",
      "/ws/nothing/",
      "/register/nothing/",
      "/nothing",
      "/assets/nothing.js",
    ]) {
      const answer = await t.inject({ url, headers: t.adminAuth });
      expect({ url, status: answer.statusCode }).toEqual({ url, status: 404 });
      expect(answer.json()).toEqual({ detail: "Not found." });
    }
    // Authentication still guards the API beside the console.
    expect((await t.inject({ url: "/data/machines/" })).statusCode).toBe(401);
    // A browser's mistyped address: the console's page once it is built (npm test builds it).
    const mistyped = await t.inject({ url: "/fleet", headers: { accept: "text/html" } });
    expect(mistyped.statusCode).toBe(404);
    expect(mistyped.headers["content-type"]).toMatch(
      existsSync(join(defaultConsoleRoot, "index.html")) ? /^text\/html/ : /^application\/json/,
    );
  });

  it("answers a browser's page request for no route with the console, 404, and API clients with JSON", async () => {
    const app = Fastify();
    registerErrorHandler(app, { notFoundPage: consolePageNotFound(root) });
    await app.register(consoleRoutes, { root });
    const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    for (const url of ["/fleet", "/machine/81000001", "/data/machinez/"]) {
      const page = await app.inject({ url, headers: { accept: browser } });
      expect({ url, status: page.statusCode }).toEqual({ url, status: 404 });
      expect(page.headers["content-type"]).toMatch(/^text\/html/);
      expect(page.headers["content-security-policy"]).toContain("default-src 'self'");
      expect(page.body).toContain("Spindle console");
    }
    const head = await app.inject({ method: "HEAD", url: "/fleet", headers: { accept: browser } });
    expect(head.statusCode).toBe(404);
    expect(head.headers["content-type"]).toMatch(/^text\/html/);
    for (const request of [
      { url: "/fleet" },
      { url: "/fleet", headers: { accept: "*/*" } },
      { url: "/fleet", headers: { accept: "application/json" } },
      { url: "/fleet", method: "POST" as const, headers: { accept: browser } },
    ]) {
      const answer = await app.inject(request);
      expect(answer.statusCode).toBe(404);
      expect(answer.json()).toEqual({ detail: "Not found." });
    }
    await app.close();
    // Before the console is built, a browser gets the JSON 404 too.
    const unbuilt = Fastify();
    registerErrorHandler(unbuilt, { notFoundPage: consolePageNotFound(join(root, "nowhere")) });
    const answer = await unbuilt.inject({ url: "/fleet", headers: { accept: browser } });
    expect(answer.json()).toEqual({ detail: "Not found." });
    await unbuilt.close();
  });

  it("registers its public OAuth2 client once, and signs people in without a secret", async () => {
    expect(await ensureConsoleClient(t.services.oauth)).toBe(true);
    expect(await ensureConsoleClient(t.services.oauth)).toBe(false);
    const { username } = await t.userAuth(["Manager"]);
    const form = {
      grant_type: "password",
      client_id: consoleClient.clientId,
      username,
      password: testPassword,
    };
    const signIn = await t.inject({ method: "POST", url: "/o/token/", payload: form });
    expect(signIn.statusCode).toBe(200);
    expect(signIn.json().scope).toBe("read write groups");
    const refreshed = await t.inject({
      method: "POST",
      url: "/o/token/",
      payload: {
        grant_type: "refresh_token",
        client_id: consoleClient.clientId,
        refresh_token: signIn.json().refresh_token,
      },
    });
    expect(refreshed.statusCode).toBe(200);
    const machineCredentials = await t.inject({
      method: "POST",
      url: "/o/token/",
      payload: { grant_type: "client_credentials", client_id: consoleClient.clientId },
    });
    expect(machineCredentials.statusCode).toBeGreaterThanOrEqual(400);
  });
});
