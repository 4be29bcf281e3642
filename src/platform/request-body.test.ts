import { Readable } from "node:stream";
import type { InjectOptions } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp, testClient } from "../../test/helpers/app.ts";

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(() => t.close());

type Method = "POST" | "PUT" | "PATCH";

/** The same request three ways: an empty JSON body, one sent chunked, and no body at all. */
function emptyBodies(method: Method, url: string, headers: Record<string, string> = {}) {
  const json = { ...headers, "content-type": "application/json" };
  return [
    ["an empty JSON body", { method, url, headers: json, payload: "" }],
    ["an empty chunked JSON body", { method, url, headers: json, payload: Readable.from([]) }],
    ["no body", { method, url, headers }],
  ] as [string, InjectOptions][];
}

describe("an empty or missing body", () => {
  it("asks POST /api/axis-data/ for the default window", async () => {
    for (const [what, request] of emptyBodies("POST", "/api/axis-data/", t.adminAuth)) {
      const answer = await t.inject(request);
      expect({ what, status: answer.statusCode }).toEqual({ what, status: 200 });
      expect(answer.json()).toEqual([]);
    }
  });

  it("tells POST /o/token/ which parameter it lacks", async () => {
    for (const [what, request] of emptyBodies("POST", "/o/token/")) {
      const answer = await t.inject(request);
      expect({ what, status: answer.statusCode }).toEqual({ what, status: 400 });
      expect(answer.json()).toEqual({
        error: "invalid_request",
        error_description: "Missing grant_type.",
      });
    }
  });

  it("names each required field of a create, as an empty object does", async () => {
    for (const [what, request] of emptyBodies("POST", "/register/")) {
      const answer = await t.inject(request);
      expect({ what, status: answer.statusCode }).toEqual({ what, status: 400 });
      expect(answer.json()).toEqual({
        username: ["This field is required."],
        password: ["This field is required."],
      });
    }
  });

  it("changes nothing in a PATCH", async () => {
    const { username } = await t.userAuth([]);
    const user = (await t.services.users.listUsers()).find((u) => u.username === username)!;
    const url = `/users/${user.id}/`;
    const before = (await t.inject({ url, headers: t.adminAuth })).json();
    for (const [what, request] of emptyBodies("PATCH", url, t.adminAuth)) {
      const answer = await t.inject(request);
      expect({ what, status: answer.statusCode }).toEqual({ what, status: 200 });
      expect(answer.json()).toEqual(before);
    }
  });

  it("is refused by ingest, which needs a batch; an empty NDJSON stream is an empty batch", async () => {
    for (const [what, request] of emptyBodies("POST", "/api/ingest/", t.adminAuth)) {
      const answer = await t.inject(request);
      expect({ what, status: answer.statusCode }).toEqual({ what, status: 400 });
      expect(answer.json().detail).toMatch(/^Expected an object/);
    }
    const ndjson = await t.inject({
      method: "POST",
      url: "/api/ingest/",
      headers: { ...t.adminAuth, "content-type": "application/x-ndjson" },
      payload: "",
    });
    expect(ndjson.statusCode).toBe(202);
    expect(ndjson.json()).toEqual({ accepted: 0, duplicates: 0 });
  });
});

describe("a JSON body that is not empty", () => {
  it.each([
    ["blank", " \n"],
    ["malformed", '{"minutes": '],
    ["a prototype pollution", '{"__proto__": {"admin": true}}'],
  ])("is still parsed as JSON: %s is 400 JSON parse error", async (_what, payload) => {
    const answer = await t.inject({
      method: "POST",
      url: "/api/axis-data/",
      headers: { ...t.adminAuth, "content-type": "application/json" },
      payload,
    });
    expect(answer.statusCode).toBe(400);
    expect(answer.json().detail).toMatch(/^JSON parse error/);
  });
});

describe("a body nested deeper than any Spindle body", () => {
  // Over 256 KiB (smaller ones cost JSON.parse little however nested).
  const padding = "x".repeat(270_000);
  const ingest = (payload: string, contentType = "application/json") =>
    t.inject({
      method: "POST",
      url: "/api/ingest/",
      headers: { ...t.adminAuth, "content-type": contentType },
      payload,
    });

  it("is refused before it is parsed, as JSON and on its NDJSON line", async () => {
    const deep = `${"[".repeat(101)}${"]".repeat(101)}`;
    const json = await ingest(`{"axis_data":${deep},"padding":"${padding}"}`);
    expect(json.statusCode).toBe(400);
    expect(json.json()).toEqual({ detail: "JSON parse error - nested deeper than 100 levels." });
    // Each NDJSON line is a document of its own: depth does not add up across lines.
    const shallowLines = Array.from({ length: 60 }, () => `{"axis_data":[[[[]]]]}`);
    const ndjson = await ingest(
      [...shallowLines, `{"padding":"${padding}"}`, `{"axis_data":${deep}}`].join("\n"),
      "application/x-ndjson",
    );
    expect(ndjson.statusCode).toBe(400);
    expect(ndjson.json()).toEqual({
      detail: "JSON parse error on line 62 - nested deeper than 100 levels.",
    });
  });

  it("is told from brackets inside strings, which do not nest", async () => {
    const brackets = `${"[{".repeat(200)}\\"`;
    const answer = await t.inject({
      method: "POST",
      url: "/api/axis-data/",
      headers: { ...t.adminAuth, "content-type": "application/json" },
      payload: `{"axis_name":["${brackets}${padding}"]}`,
    });
    // Read as a history request: the brackets were text, so the body parsed.
    expect(answer.statusCode, answer.body).toBe(400);
    expect(Object.keys(answer.json())).toEqual(["axis_name.0"]);
  });
});

describe("a multipart form", () => {
  const boundary = "curl-like-boundary";
  const multipart = (fields: Record<string, string>) =>
    `${Object.entries(fields)
      .map(
        ([name, value]) =>
          `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
      )
      .join("")}--${boundary}--\r\n`;
  const headers = { "content-type": `multipart/form-data; boundary=${boundary}` };

  it("signs in at /o/token/ as curl -F sends it, and is refused there as a form is", async () => {
    const { username, password } = await t.userAuth([]);
    const fields = {
      grant_type: "password",
      username,
      password,
      client_id: testClient.id,
      client_secret: testClient.secret,
    };
    const token = await t.inject({
      method: "POST",
      url: "/o/token/",
      headers,
      payload: multipart(fields),
    });
    expect(token.statusCode, token.body).toBe(200);
    expect(token.json()).toMatchObject({ token_type: "Bearer" });
    const wrong = await t.inject({
      method: "POST",
      url: "/o/token/",
      headers,
      payload: multipart({ ...fields, password: "not the password" }),
    });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.json()).toMatchObject({ error: "invalid_grant" });
  });

  it("with no body is no fields, as an empty urlencoded form is", async () => {
    const answer = await t.inject({
      method: "POST",
      url: "/o/token/",
      headers,
      payload: "",
    });
    expect(answer.statusCode).toBe(400);
    expect(answer.json()).toEqual({
      error: "invalid_request",
      error_description: "Missing grant_type.",
    });
  });
});

describe("a body that is neither JSON nor a form", () => {
  it.each([
    ["POST", "/groups/"],
    ["POST", "/register/"],
    ["POST", "/api/axis-data/"],
    ["POST", "/o/token/"],
    ["PATCH", "/users/1/"],
  ] as const)("is 415 at %s %s, as DRF answers, and changes nothing", async (method, url) => {
    for (const contentType of ["text/plain", "text/plain; charset=utf-8", "application/xml"]) {
      const answer = await t.inject({
        method,
        url,
        headers: { ...t.adminAuth, "content-type": contentType },
        payload: '{"name": "Typed as text"}',
      });
      expect(answer.statusCode, `${contentType}: ${answer.body}`).toBe(415);
    }
    const groups = await t.inject({ url: "/groups/", headers: t.adminAuth });
    expect(groups.body).not.toContain("Typed as text");
  });
});
