import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../test/helpers/app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t.close());

type Method = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS";

describe("a method the path does not have", () => {
  const wrong: [Method, string, string][] = [
    ["PUT", "/users/1/", "GET, HEAD, PATCH, DELETE, OPTIONS"],
    ["POST", "/users/", "GET, HEAD, OPTIONS"],
    ["PUT", "/data/machines/", "GET, HEAD, POST, OPTIONS"],
    ["DELETE", "/data/machines/", "GET, HEAD, POST, OPTIONS"],
    ["POST", "/data/machines/5/", "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"],
    ["PATCH", "/groups/", "GET, HEAD, POST, OPTIONS"],
    ["DELETE", "/api/axis-data/", "GET, HEAD, POST, OPTIONS"],
    ["GET", "/api/ingest/", "POST, OPTIONS"],
    ["GET", "/register/", "POST, OPTIONS"],
  ];

  it.each(wrong)(
    "%s %s is 405 with Allow: %s, with a token or without",
    async (method, url, allow) => {
      for (const headers of [{}, t.adminAuth, { authorization: "Bearer nonsense" }]) {
        const answer = await t.inject({ method, url, headers });
        expect(answer.statusCode, answer.body).toBe(405);
        expect(answer.headers.allow).toBe(allow);
        expect(answer.json()).toEqual({ detail: `Method "${method}" not allowed.` });
      }
    },
  );

  it("is found however the path is spelled: no trailing slash, a query string", async () => {
    for (const url of ["/data/machines", "/data/machines/?limit=5", "/users/1?x=y"]) {
      const answer = await t.inject({ method: "PUT", url, headers: t.adminAuth });
      expect({ url, status: answer.statusCode }).toEqual({ url, status: 405 });
    }
  });

  it("is answered in RFC 6749's shape on the OAuth endpoints", async () => {
    for (const url of ["/o/token/", "/o/revoke_token/", "/o/introspect/"]) {
      const answer = await t.inject({ method: "GET", url });
      expect(answer.statusCode).toBe(405);
      expect(answer.headers.allow).toBe("POST, OPTIONS");
      expect(answer.json()).toEqual({
        error: "invalid_request",
        error_description: 'Method "GET" not allowed.',
      });
    }
  });

  it("is refused before its body is read", async () => {
    for (const [payload, contentType] of [
      ['{"machine_id": ', "application/json"],
      ["<machine/>", "application/xml"],
      [JSON.stringify({ padding: "x".repeat(2_000_000) }), "application/json"],
    ]) {
      const answer = await t.inject({
        method: "PUT",
        url: "/data/machines/",
        headers: { ...t.adminAuth, "content-type": contentType! },
        payload,
      });
      expect(answer.statusCode, answer.body).toBe(405);
    }
  });

  it("is 405 without a body for HEAD", async () => {
    const answer = await t.inject({ method: "HEAD", url: "/o/token/" });
    expect(answer.statusCode).toBe(405);
    expect(answer.headers.allow).toBe("POST, OPTIONS");
    expect(answer.body).toBe("");
  });
});

describe("OPTIONS", () => {
  it("answers a path some route has with 204 and Allow, without a token", async () => {
    for (const [url, allow] of [
      ["/data/machines/", "GET, HEAD, POST, OPTIONS"],
      ["/data/machines/81000001/", "GET, HEAD, PUT, PATCH, DELETE, OPTIONS"],
      ["/o/token/", "POST, OPTIONS"],
    ]) {
      const answer = await t.inject({ method: "OPTIONS", url: url! });
      expect({ url, status: answer.statusCode }).toEqual({ url, status: 204 });
      expect(answer.headers.allow).toBe(allow);
      expect(answer.body).toBe("");
    }
  });

  it("is 404 for a path no route has", async () => {
    const answer = await t.inject({ method: "OPTIONS", url: "/data/nothing/" });
    expect(answer.statusCode).toBe(404);
    expect(answer.json()).toEqual({ detail: "Not found." });
  });
});

describe("a path no route has", () => {
  it("stays 404 under every method", async () => {
    for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE"] as const) {
      for (const url of ["/data/nothing/", "/users/1/nothing/", `/users/${"1".repeat(201)}/`]) {
        const answer = await t.inject({ method, url, headers: t.adminAuth });
        expect({ method, url, status: answer.statusCode }).toEqual({ method, url, status: 404 });
        expect(answer.json()).toEqual({ detail: "Not found." });
        expect(answer.headers.allow).toBeUndefined();
      }
    }
  });
});

describe("a method the path has", () => {
  it("is served as before: authentication first", async () => {
    expect((await t.inject({ method: "PATCH", url: "/users/1/" })).statusCode).toBe(401);
    const machines = await t.inject({ url: "/data/machines/", headers: t.adminAuth });
    expect(machines.statusCode).toBe(200);
    expect(machines.headers.allow).toBeUndefined();
  });
});
