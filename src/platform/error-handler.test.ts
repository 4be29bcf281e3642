import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Fastify from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../test/helpers/app.ts";
import { consolePageNotFound } from "../features/console/console-routes.ts";
import { frameworkErrorHandler, registerErrorHandler } from "./error-handler.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t.close());

const notFound = { detail: "Not found." };

describe("a path that names nothing", () => {
  // Fastify's router answers these itself unless told otherwise: 400 FST_ERR_BAD_URL and
  // 414 FST_ERR_MAX_PARAM_LENGTH, in its own shape, before authentication.
  const unreadable = [
    ["/data/machines/%zz/", "/data/machines/%zz/"],
    ["/data/machines/%E0%A4%A/", "/data/machines/%E0%A4%A/"],
    ["/users/%/", "/users/%/"],
    ["/%zz", "/%zz"],
    ["/users/<201 digits>/", `/users/${"1".repeat(201)}/`],
    ["/groups/<201 letters>/", `/groups/${"g".repeat(201)}/`],
    ["/data/machines/<500 digits>/", `/data/machines/${"9".repeat(500)}/`],
  ];

  it.each(unreadable)("%s is 404 {detail}, with a token or without", async (_name, url) => {
    for (const headers of [{}, t.adminAuth]) {
      const answer = await t.inject({ url, headers });
      expect(answer.statusCode, answer.body).toBe(404);
      expect(answer.json()).toEqual(notFound);
    }
  });

  it("is 404 whatever the method", async () => {
    for (const method of ["POST", "PUT", "PATCH", "DELETE"] as const) {
      const answer = await t.inject({ method, url: "/data/machines/%zz/", headers: t.adminAuth });
      expect({ method, status: answer.statusCode }).toEqual({ method, status: 404 });
      expect(answer.json()).toEqual(notFound);
    }
  });

  it("is 404 when its parameter is one the route cannot take", async () => {
    // Longer than any group name or client id, yet within maxParamLength: the route matched,
    // and the parameter's own schema refused it.
    for (const [method, url] of [
      ["GET", `/groups/${"g".repeat(151)}/`],
      ["DELETE", `/groups/${"g".repeat(151)}/`],
      ["PUT", `/groups/${"g".repeat(151)}/permissions/`],
      ["DELETE", `/o/clients/${"c".repeat(101)}/`],
    ] as const) {
      const answer = await t.inject({
        method,
        url,
        headers: t.adminAuth,
        ...(method === "PUT" ? { payload: { permissions: [] } } : {}),
      });
      expect({ url, status: answer.statusCode }).toEqual({ url, status: 404 });
      expect(answer.json()).toEqual(notFound);
    }
  });

  it("still needs a token before its parameter is looked at", async () => {
    const answer = await t.inject({ url: `/groups/${"g".repeat(151)}/` });
    expect(answer.statusCode).toBe(401);
  });

  it("shows a browser the console's page, as any unknown path does", async () => {
    const root = await mkdtemp(join(tmpdir(), "spindle-not-found-"));
    try {
      await writeFile(join(root, "index.html"), "<!doctype html><title>Spindle console</title>");
      const notFoundPage = consolePageNotFound(root);
      const app = Fastify({ frameworkErrors: frameworkErrorHandler({ notFoundPage }) });
      registerErrorHandler(app, { notFoundPage });
      app.get("/data/machines/:id/", () => ({}));
      for (const url of ["/data/machines/%zz/", `/data/machines/${"9".repeat(101)}/`]) {
        const page = await app.inject({ url, headers: { accept: "text/html" } });
        expect({ url, status: page.statusCode }).toEqual({ url, status: 404 });
        expect(page.headers["content-type"]).toMatch(/^text\/html/);
        expect(page.body).toContain("Spindle console");
        const api = await app.inject({ url, headers: { accept: "application/json" } });
        expect(api.statusCode).toBe(404);
        expect(api.json()).toEqual(notFound);
      }
      await app.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe("the OAuth endpoints", () => {
  it("answer a Bearer token that is no token in RFC 6749's shape", async () => {
    const answer = await t.inject({
      method: "POST",
      url: "/o/introspect/",
      headers: { authorization: "Bearer not-a-token" },
      payload: { token: "whatever" },
    });
    expect(answer.statusCode).toBe(401);
    expect(answer.json()).toEqual({ error: "invalid_token", error_description: "Invalid token." });
  });
});
