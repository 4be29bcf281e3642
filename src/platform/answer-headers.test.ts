import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../test/helpers/app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t.close());

describe("headers on every answer", () => {
  it("tells browsers not to guess a JSON answer's type, error or not", async () => {
    for (const [url, headers, status] of [
      ["/data/machines/", t.adminAuth, 200],
      ["/data/machines/", {}, 401],
      ["/data/machines/abc/", t.adminAuth, 404],
      ["/healthz", {}, 200],
      ["/openapi.json", {}, 200],
    ] as const) {
      const answer = await t.inject({ url, headers });
      expect(answer.statusCode, url).toBe(status);
      expect(answer.headers["x-content-type-options"], url).toBe("nosniff");
    }
  });

  it("keeps what a token was shown out of every cache; answers without one are left alone", async () => {
    const shown = await t.inject({ url: "/users/me/", headers: t.adminAuth });
    expect(shown.statusCode).toBe(200);
    expect(shown.headers["cache-control"]).toBe("no-store");
    const refused = await t.inject({
      url: "/users/me/",
      headers: { authorization: "Bearer spa_made-up" },
    });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers["cache-control"]).toBe("no-store");
    const health = await t.inject({ url: "/healthz" });
    expect(health.headers["cache-control"]).toBeUndefined();
  });

  it("lets no other site frame the interactive documentation", async () => {
    const docs = await t.inject({ url: "/docs/" });
    expect(docs.statusCode).toBe(200);
    expect(docs.headers["x-frame-options"]).toBe("DENY");
    expect(docs.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
  });
});
