import { Ajv } from "ajv";
import type { InjectOptions, LightMyRequestResponse } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "../../test/helpers/app.ts";

interface Answer {
  description: string;
  headers?: Record<string, unknown>;
  content?: Record<string, { schema?: object }>;
}

interface Operation {
  method: string;
  path: string;
  security?: Record<string, string[]>[];
  parameters?: { in: string; name: string }[];
  requestBody?: { content: Record<string, { schema?: object }> };
  responses: Record<string, Answer>;
}

let t: TestApp;
let operations: Operation[];
let noPermissions: { authorization: string };

beforeAll(async () => {
  // Small body limits, so a body over them is cheap to send.
  t = await buildTestApp({ BODY_LIMIT: "2048", INGEST_BODY_LIMIT: "4096" });
  const answer = await t.inject({ url: "/openapi.json" });
  expect(answer.statusCode).toBe(200);
  const paths = answer.json().paths as Record<string, Record<string, Omit<Operation, "path">>>;
  operations = Object.entries(paths).flatMap(([path, byMethod]) =>
    Object.entries(byMethod).map(([method, operation]) => ({
      ...operation,
      method: method.toUpperCase(),
      path,
    })),
  );
  noPermissions = await t.userAuth([]);
});
afterAll(() => t.close());

const name = (operation: Operation) => `${operation.method} ${operation.path}`;
const statuses = (operation: Operation) => Object.keys(operation.responses).sort();
const anonymous = (operation: Operation) =>
  operation.security !== undefined &&
  (operation.security.length === 0 ||
    operation.security.some((need) => Object.keys(need).length === 0));
const readsBody = (operation: Operation) =>
  ["POST", "PUT", "PATCH", "DELETE"].includes(operation.method);

/** A value for each path parameter that names nothing. */
const unknown: Record<string, string> = {
  id: "999999999",
  name: "no-such-group",
  client_id: "no-such-client",
};
const urlOf = (operation: Operation) =>
  operation.path.replace(/\{(\w+)\}/g, (_, parameter: string) => unknown[parameter]!);

const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });

/** The answer has a status its operation documents, and, for an error, the body documented. */
function expectDocumented(operation: Operation, what: string, answer: LightMyRequestResponse) {
  const status = String(answer.statusCode);
  const label = `${name(operation)}, ${what}: ${status} ${answer.body.slice(0, 200)}`;
  expect(statuses(operation), label).toContain(status);
  const content = operation.responses[status]?.content;
  const mediaType = String(answer.headers["content-type"] ?? "").split(";")[0]!;
  if (content && answer.body !== "") expect(Object.keys(content), label).toContain(mediaType);
  const schema = content?.["application/json"]?.schema;
  if (answer.statusCode >= 400 && schema) {
    const validate = ajv.compile(schema);
    expect(validate(answer.json()), `${label}: ${ajv.errorsText(validate.errors)}`).toBe(true);
  }
}

describe("the interactive documentation", () => {
  it("opens in a browser without a token, as /openapi.json does", async () => {
    for (const url of ["/docs", "/docs/"]) {
      const page = await t.inject({ url });
      expect(page.statusCode, url).toBe(200);
      expect(page.headers["content-type"], url).toMatch(/^text\/html/);
    }
    const json = await t.inject({ url: "/docs/json" });
    expect(json.statusCode).toBe(200);
    expect(json.json().openapi).toMatch(/^3\./);
  });
});

describe("/openapi.json", () => {
  it("documents every DELETE as 204 without a body, never 200", () => {
    const deletes = operations.filter((operation) => operation.method === "DELETE");
    expect(deletes.length).toBeGreaterThanOrEqual(8);
    for (const operation of deletes) {
      expect(statuses(operation), name(operation)).toContain("204");
      expect(statuses(operation), name(operation)).not.toContain("200");
      expect(operation.responses["204"]!.content, name(operation)).toBeUndefined();
    }
  });

  it("lets exactly the public operations go without a token, and documents 401 on the rest", () => {
    const open = operations.filter(anonymous).map(name).sort();
    expect(open).toEqual(
      [
        "GET /healthz",
        "GET /readyz",
        "POST /o/introspect/",
        "POST /o/revoke_token/",
        "POST /o/token/",
        "POST /register/",
      ].sort(),
    );
    for (const operation of operations.filter((operation) => !anonymous(operation))) {
      expect(operation.security, name(operation)).toBeUndefined(); // the document's: bearer
      expect(statuses(operation), name(operation)).toContain("401");
      expect(operation.responses["401"]!.headers, name(operation)).toHaveProperty(
        "WWW-Authenticate",
      );
    }
  });

  it("documents the errors each kind of operation can give", () => {
    for (const operation of operations) {
      const documented = statuses(operation);
      const has = (...expected: string[]) =>
        expect(documented, name(operation)).toEqual(expect.arrayContaining(expected));
      if (operation.parameters?.some((parameter) => parameter.in === "path")) has("404");
      if (operation.parameters?.some((parameter) => parameter.in === "query")) has("400");
      if (readsBody(operation)) has("400", "413", "415");
      // The process's own health needs no database; readiness's 503 is its answer, not a refusal.
      if (operation.path !== "/healthz") has("503");
      if (!["/healthz", "/readyz"].includes(operation.path)) {
        expect(operation.responses["503"]!.headers ?? {}, name(operation)).toHaveProperty(
          "Retry-After",
        );
      }
    }
  });

  it("takes the OAuth endpoints' parameters as a form or as JSON, and their errors in RFC 6749's shape", () => {
    const oauth = operations.filter((operation) =>
      ["/o/token/", "/o/revoke_token/", "/o/introspect/"].includes(operation.path),
    );
    expect(oauth).toHaveLength(3);
    for (const operation of oauth) {
      expect(Object.keys(operation.requestBody!.content), name(operation)).toEqual([
        "application/x-www-form-urlencoded",
        "application/json",
        "multipart/form-data",
      ]);
      // Each checks a client's secret, and failed checks are limited per address.
      expect(statuses(operation), name(operation)).toContain("429");
      for (const status of statuses(operation).filter((status) => status >= "400")) {
        const schema = operation.responses[status]!.content!["application/json"]!.schema;
        expect(schema, `${name(operation)} ${status}`).toMatchObject({
          properties: { error: { type: "string" } },
        });
      }
    }
  });

  it("takes every other body as JSON or a form (urlencoded or multipart), and a form is answered as its JSON is", async () => {
    const withBody = operations.filter(
      (operation) => operation.requestBody && operation.path !== "/api/ingest/",
    );
    expect(withBody.length).toBeGreaterThan(10);
    for (const operation of withBody)
      expect(Object.keys(operation.requestBody!.content).sort(), name(operation)).toEqual([
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
      ]);
    const form = await t.inject({
      method: "POST",
      url: "/data/machines/",
      headers: { ...t.adminAuth, "content-type": "application/x-www-form-urlencoded" },
      payload: "machine_id=4242&machine_name=Form%20made&tool_capacity=3",
    });
    expect(form.statusCode, form.body).toBe(201);
    expect(form.json()).toMatchObject({
      machine_id: 4242,
      machine_name: "Form made",
      tool_capacity: 3,
    });
  });

  it("documents /api/ingest/'s body as JSON or NDJSON", () => {
    const ingest = operations.find((o) => name(o) === "POST /api/ingest/")!;
    const content = ingest.requestBody!.content;
    expect(Object.keys(content)).toEqual(
      expect.arrayContaining(["application/json", "application/x-ndjson"]),
    );
    expect(content["application/json"]!.schema).toMatchObject({
      properties: {
        axis_data: {
          type: "array",
          items: {
            properties: {
              machine_id: { type: "integer" },
              axis_name: { type: "string" },
              actual_position: { type: "number" },
              homed: { type: "boolean" },
            },
          },
        },
        tool_data: { type: "array" },
        tool_usage: { type: "array" },
      },
    });
    expect(content["application/x-ndjson"]!.schema).toMatchObject({ type: "string" });
  });

  it("documents /api/axis-data/'s answers as JSON or CSV", () => {
    for (const method of ["GET", "POST"]) {
      const history = operations.find((o) => name(o) === `${method} /api/axis-data/`)!;
      expect(Object.keys(history.responses["200"]!.content!), method).toEqual([
        "application/json",
        "text/csv",
      ]);
    }
  });

  it("documents the Link and X-Total-Count headers of every paginated list", () => {
    const lists = operations.filter(
      (operation) =>
        operation.method === "GET" &&
        ["limit", "offset"].every((query) =>
          operation.parameters?.some((parameter) => parameter.name === query),
        ),
    );
    expect(lists.map(name)).toEqual(
      expect.arrayContaining(["GET /data/machines/", "GET /data/axises/"]),
    );
    for (const operation of lists) {
      expect(Object.keys(operation.responses["200"]!.headers ?? {}), name(operation)).toEqual([
        "Link",
        "X-Total-Count",
      ]);
    }
  });
});

describe("the answers the server gives", () => {
  it("to no token, a bad token, a token without permissions and an Admin are documented", async () => {
    for (const operation of operations) {
      const request = {
        method: operation.method as InjectOptions["method"],
        url: urlOf(operation),
      };
      for (const [what, headers] of [
        ["no token", {}],
        ["a token that is none", { authorization: "Bearer not-a-token" }],
        ["a token without permissions", noPermissions],
        ["an Admin, naming nothing", t.adminAuth],
      ] as const) {
        expectDocumented(operation, what, await t.inject({ ...request, headers }));
      }
    }
  });

  it("to a malformed body, a body of another type, or one too large are documented", async () => {
    for (const operation of operations.filter(readsBody)) {
      for (const [what, contentType, payload] of [
        ["malformed JSON", "application/json", '{"machine_id": '],
        ["an XML body", "application/xml", "<machine/>"],
        ["a body over the limit", "application/json", JSON.stringify({ x: "x".repeat(8000) })],
      ] as const) {
        const answer = await t.inject({
          method: operation.method as InjectOptions["method"],
          url: urlOf(operation),
          headers: { ...t.adminAuth, "content-type": contentType },
          payload,
        });
        expect(answer.statusCode, `${name(operation)}: ${what}`).toBeGreaterThanOrEqual(400);
        expectDocumented(operation, what, answer);
      }
    }
  });

  it("in other media types are documented", async () => {
    const operation = (method: string, path: string) =>
      operations.find((o) => o.method === method && o.path === path)!;
    for (const [method, url, payload, contentType] of [
      ["GET", "/api/axis-data/?format=csv", undefined, undefined],
      ["POST", "/api/axis-data/", '{"format": "csv"}', "application/json"],
      ["POST", "/api/ingest/", '{"axis_data": []}\n', "application/x-ndjson"],
    ] as const) {
      const path = url.split("?")[0]!;
      const answer = await t.inject({
        method,
        url,
        headers: { ...t.adminAuth, ...(contentType ? { "content-type": contentType } : {}) },
        ...(payload === undefined ? {} : { payload }),
      });
      expect(answer.statusCode, answer.body).toBeLessThan(300);
      expectDocumented(operation(method, path), contentType ?? "CSV", answer);
    }
  });

  it("to a DELETE are 204, as documented", async () => {
    const create = async (url: string, payload: Record<string, unknown>) => {
      const answer = await t.inject({ method: "POST", url, headers: t.adminAuth, payload });
      expect(answer.statusCode, answer.body).toBe(201);
    };
    await create("/data/machines/", {
      machine_id: 81_900_001,
      machine_name: "old",
      tool_capacity: 4,
    });
    await create("/groups/", { name: "to-delete" });
    await create("/o/clients/", { client_id: "to-delete", grant_types: ["client_credentials"] });
    const { username } = await t.userAuth([]);
    const user = (await t.services.users.listUsers()).find((u) => u.username === username)!;
    for (const [path, url] of [
      ["/data/machines/{id}/", "/data/machines/81900001/"],
      ["/groups/{name}/", "/groups/to-delete/"],
      ["/o/clients/{client_id}/", "/o/clients/to-delete/"],
      ["/users/{id}/", `/users/${user.id}/`],
    ]) {
      const operation = operations.find((o) => o.method === "DELETE" && o.path === path)!;
      const deleted = await t.inject({ method: "DELETE", url: url!, headers: t.adminAuth });
      expect(deleted.statusCode, `${url}: ${deleted.body}`).toBe(204);
      expect(deleted.body).toBe("");
      expectDocumented(operation, "an Admin", deleted);
    }
  });
});
