import { describe, expect, it } from "vitest";
import type { TestApp } from "./app.ts";
import { expectRefused, rawJson } from "./crud.ts";
import { snapshot } from "./factories.ts";

type FieldKind = "id" | "integer" | "number" | "string" | "boolean" | "timestamp";

export interface BadInputSpec {
  path: string;
  /** Every writable field and what it holds. */
  fields: Record<string, FieldKind>;
  required: string[];
  /** Fields naming another row (`machine`, `axis`), and the field an unknown one is reported on. */
  references: string[];
  /** A valid body for POST and PUT; creates what it refers to. */
  validBody: () => Promise<Record<string, unknown>>;
  /** The id of a row to PUT and PATCH. */
  existing: () => Promise<number>;
}

/** Values of the wrong JSON type for a field of this kind. */
const wrongValues: Record<FieldKind, [string, unknown][]> = {
  id: [
    ["a string", "5"],
    ["true", true],
    ["a fraction", 1.5],
    ["an array", [1]],
    ["an object", { id: 1 }],
    ["null", null],
  ],
  integer: [
    ["a string", "5"],
    ["true", true],
    ["a fraction", 1.5],
    ["an array", [1]],
    ["null", null],
  ],
  number: [
    ["a string", "1.5"],
    ["true", true],
    ["an array", [1.5]],
    ["an object", {}],
    ["null", null],
  ],
  string: [
    ["a number", 5],
    ["true", true],
    ["an array", ["x"]],
    ["null", null],
    ["an empty string", ""],
  ],
  boolean: [
    ["a string", "true"],
    ["a number", 1],
    ["an array", [true]],
    ["null", null],
  ],
  timestamp: [
    ["a number", 1_700_000_000],
    ["not a date", "yesterday"],
    ["an impossible date", "2026-13-45T99:00:00Z"],
    ["before year 1 in UTC", "0001-01-01T00:00:00+01:00"],
    ["after year 9999 in UTC", "9999-12-31T23:00:00-15:00"],
    ["finer than microseconds", "2026-03-01T23:59:59.9999999Z"],
    ["SQL", "'; drop table machine; --"],
    ["null", null],
  ],
};

/** A body as a form (`application/x-www-form-urlencoded`), each value as its text. */
const formOf = (body: Record<string, unknown>) =>
  new URLSearchParams(Object.entries(body).map(([key, value]) => [key, String(value)])).toString();

const boundary = "spindle-test-boundary";
const multipartType = `multipart/form-data; boundary=${boundary}`;

/** A body as a multipart form (`curl -F`), each value as its text; `file` adds a file part. */
const multipartOf = (body: Record<string, unknown>, file?: string) =>
  [
    ...Object.entries(body).map(
      ([key, value]) =>
        `--${boundary}\r\nContent-Disposition: form-data; name="${key}"\r\n\r\n${String(value)}\r\n`,
    ),
    ...(file === undefined
      ? []
      : [
          `--${boundary}\r\nContent-Disposition: form-data; name="upload"; filename="${file}"\r\n` +
            "Content-Type: text/plain\r\n\r\nG0 X10\r\n",
        ]),
    `--${boundary}--\r\n`,
  ].join("");

const numeric = (kind: FieldKind) => ["id", "integer", "number"].includes(kind);

/**
 * Every shape of bad input on one resource's POST, PUT and PATCH: each is answered with the
 * documented 4xx, never a 500, and leaves the database as it was. The app must be built with
 * BODY_LIMIT=2048.
 */
export function describeBadInput(getT: () => TestApp, spec: BadInputSpec): void {
  const one = async () => `${spec.path}${await spec.existing()}/`;
  const writes = [
    ["POST", async () => spec.path],
    ["PUT", one],
    ["PATCH", one],
  ] as const;

  describe("bad input", () => {
    for (const [method, url] of writes) {
      it(`${method}: malformed JSON is 400 "JSON parse error"`, async () => {
        const t = getT();
        const answer = await expectRefused(t, rawJson(t, method, await url(), '{"a": 1,'), 400);
        expect(answer.json().detail).toMatch(/^JSON parse error/);
      });

      // As DRF reads them: an empty body, or none, is an empty object.
      for (const [what, request] of [
        ["an empty JSON body", async (t: TestApp) => rawJson(t, method, await url(), "")],
        [
          "no body at all",
          async (t: TestApp) => ({ method, url: await url(), headers: t.adminAuth }),
        ],
      ] as const) {
        if (method === "PATCH") {
          it(`PATCH: ${what} changes nothing`, async () => {
            const t = getT();
            const target = await request(t);
            const before = await snapshot(t);
            const answer = await t.inject(target);
            expect(answer.statusCode, answer.body).toBe(200);
            expect(await snapshot(t)).toBe(before);
          });
        } else {
          it(`${method}: ${what} is 400 naming each required field`, async () => {
            const t = getT();
            await expectRefused(
              t,
              await request(t),
              400,
              Object.fromEntries(
                spec.required.map((field) => [field, ["This field is required."]]),
              ),
            );
          });
        }
      }

      for (const [what, text] of [
        ["an array", "[]"],
        ["a string", '"machine"'],
        ["a number", "5"],
        ["null", "null"],
      ] as const) {
        it(`${method}: a body that is ${what}, not an object, is 400`, async () => {
          const t = getT();
          await expectRefused(t, rawJson(t, method, await url(), text), 400);
        });
      }

      it(`${method}: an unknown field is 400 naming it`, async () => {
        const t = getT();
        const body = method === "PATCH" ? {} : await spec.validBody();
        await expectRefused(
          t,
          { method, url: await url(), headers: t.adminAuth, payload: { ...body, colour: "red" } },
          400,
          { colour: ["Unknown field."] },
        );
      });

      for (const name of ["toString", "constructor", "hasOwnProperty", "valueOf"]) {
        it(`${method}: an unknown field named ${name} is 400 naming it`, async () => {
          const t = getT();
          const body = method === "PATCH" ? {} : await spec.validBody();
          const text = JSON.stringify(body).replace(
            /^\{/,
            `{"${name}":1${method === "PATCH" ? "" : ","}`,
          );
          await expectRefused(t, rawJson(t, method, await url(), text), 400, {
            [name]: ["Unknown field."],
          });
        });
      }

      it(`${method}: a body over BODY_LIMIT is 413`, async () => {
        const t = getT();
        const body = { ...(await spec.validBody()), padding: "x".repeat(3000) };
        await expectRefused(
          t,
          { method, url: await url(), headers: t.adminAuth, payload: body },
          413,
          { detail: "Request body is too large." },
        );
      });

      for (const [contentType, status] of [
        ["text/plain", 415],
        ["application/xml", 415],
      ] as const) {
        it(`${method}: a ${contentType.split(";")[0]} body is ${status}`, async () => {
          const t = getT();
          const body = JSON.stringify(await spec.validBody());
          await expectRefused(t, rawJson(t, method, await url(), body, contentType), status);
        });
      }

      // Forms are text, as a query string is: read as DRF reads them. (A POST's body, which
      // names every field; PUT and PATCH share its parsing.)
      it.runIf(method === "POST")(
        `${method}: a form body is taken as the same JSON would be`,
        async () => {
          const t = getT();
          const body = await spec.validBody();
          const form = formOf(body);
          const answer = await t.inject(
            rawJson(t, method, await url(), form, "application/x-www-form-urlencoded"),
          );
          expect(answer.statusCode, answer.body).toBe(201);
          expect(answer.json()).toMatchObject(body);
        },
      );
      it.runIf(method === "POST")(
        `${method}: a multipart form body is taken as the same JSON would be`,
        async () => {
          const t = getT();
          const body = await spec.validBody();
          const answer = await t.inject(
            rawJson(t, method, await url(), multipartOf(body), multipartType),
          );
          expect(answer.statusCode, answer.body).toBe(201);
          expect(answer.json()).toMatchObject(body);
        },
      );
      it(`${method}: a multipart body carrying a file, or not multipart at all, is 400 and changes nothing`, async () => {
        const t = getT();
        const body = await spec.validBody();
        const withFile = await expectRefused(
          t,
          rawJson(t, method, await url(), multipartOf(body, "part.nc"), multipartType),
          400,
        );
        expect(withFile.json().detail).toBe(
          "Multipart form parse error - Files are not accepted; send the fields only.",
        );
        for (const [payload, contentType] of [
          [JSON.stringify(body), multipartType],
          [multipartOf(body), "multipart/form-data"],
          [multipartOf(body).slice(0, -8), multipartType],
        ]) {
          const answer = await expectRefused(
            t,
            rawJson(t, method, await url(), payload!, contentType!),
            400,
          );
          expect(answer.json().detail).toMatch(/^Multipart form parse error - /);
        }
      });
      it(`${method}: a form body's wrong values are 400 naming them, and change nothing`, async () => {
        const t = getT();
        const body = await spec.validBody();
        const wrong = Object.entries(spec.fields).find(
          ([, kind]) => kind !== "string" && kind !== "timestamp",
        );
        if (!wrong) return;
        const form = formOf({ ...body, [wrong[0]]: "not-a-value" });
        const answer = await expectRefused(
          t,
          rawJson(t, method, await url(), form, "application/x-www-form-urlencoded"),
          400,
        );
        expect(Object.keys(answer.json())).toContain(wrong[0]);
      });
      // JavaScript's Number reads these as numbers; a client writing them meant something else.
      for (const numeral of ["0x10", "Infinity", " 5", "1_0"]) {
        it(`${method}: a form body's number written ${JSON.stringify(numeral)} is 400`, async () => {
          const t = getT();
          const body = await spec.validBody();
          const field = Object.entries(spec.fields).find(([, kind]) => numeric(kind))?.[0];
          if (!field) return;
          const form = formOf({ ...body, [field]: numeral });
          const answer = await expectRefused(
            t,
            rawJson(t, method, await url(), form, "application/x-www-form-urlencoded"),
            400,
          );
          expect(answer.json()[field]).toEqual([
            expect.stringMatching(/^A valid (integer|number)/),
          ]);
        });
      }
    }

    for (const [what, contentType] of [
      ["a JSON content type", "application/json"],
      ["a text content type", "text/plain"],
    ] as const) {
      it(`DELETE with an empty body under ${what} is 204, as without one`, async () => {
        const t = getT();
        const url = await one();
        const answer = await t.inject(rawJson(t, "DELETE", url, "", contentType));
        expect(answer.statusCode, answer.body).toBe(204);
        expect((await t.inject({ method: "GET", url, headers: t.adminAuth })).statusCode).toBe(404);
      });
    }

    for (const field of spec.required) {
      for (const method of ["POST", "PUT"] as const) {
        it(`${method}: missing ${field} is 400 {${field}: ["This field is required."]}`, async () => {
          const t = getT();
          const body = await spec.validBody();
          delete body[field];
          const target = method === "POST" ? spec.path : await one();
          await expectRefused(
            t,
            { method, url: target, headers: t.adminAuth, payload: body },
            400,
            {
              [field]: ["This field is required."],
            },
          );
        });
      }
    }

    for (const [field, kind] of Object.entries(spec.fields)) {
      for (const [what, value] of wrongValues[kind]) {
        for (const method of ["POST", "PATCH"] as const) {
          it(`${method}: ${field} as ${what} is 400 naming ${field}`, async () => {
            const t = getT();
            const body = method === "POST" ? await spec.validBody() : {};
            const target = method === "POST" ? spec.path : await one();
            const answer = await expectRefused(
              t,
              { method, url: target, headers: t.adminAuth, payload: { ...body, [field]: value } },
              400,
            );
            expect(Object.keys(answer.json())).toEqual([field]);
          });
        }
      }

      if (kind === "string") {
        for (const method of ["POST", "PATCH"] as const) {
          it(`${method}: ${field} holding half a surrogate pair is 400 naming ${field}`, async () => {
            const t = getT();
            const body = method === "POST" ? await spec.validBody() : {};
            const target = method === "POST" ? spec.path : await one();
            // JSON.stringify writes the lone surrogate as the escape "\udbff"; a pair is fine.
            const text = JSON.stringify({ ...body, [field]: "Mill \udbff" });
            const answer = await expectRefused(t, rawJson(t, method, target, text), 400);
            expect(answer.json()).toEqual({
              [field]: [
                "Not valid text: it holds half of a UTF-16 surrogate pair (\\ud800-\\udfff).",
              ],
            });
          });
        }
      }

      if (numeric(kind)) {
        for (const huge of ["1e400", "-1e400", "1e300", "99999999999999999999999"]) {
          it(`POST: ${field} = ${huge} in the JSON text is 400 naming ${field}`, async () => {
            const t = getT();
            const body = JSON.stringify({ ...(await spec.validBody()), [field]: 0 }).replace(
              `"${field}":0`,
              `"${field}":${huge}`,
            );
            const answer = await expectRefused(t, rawJson(t, "POST", spec.path, body), 400);
            expect(Object.keys(answer.json())).toEqual([field]);
          });
        }
      }
    }

    for (const field of spec.references) {
      for (const method of ["POST", "PUT", "PATCH"] as const) {
        it(`${method}: an unknown ${field} is 400 naming ${field}`, async () => {
          const t = getT();
          const body = method === "PATCH" ? {} : await spec.validBody();
          const target = method === "POST" ? spec.path : await one();
          const answer = await expectRefused(
            t,
            {
              method,
              url: target,
              headers: t.adminAuth,
              payload: { ...body, [field]: 987_654_321_987 },
            },
            400,
          );
          expect(Object.keys(answer.json())).toContain(field);
        });
      }
    }

    it("still accepts the valid body the cases above spoil, so each refusal is for its own reason", async () => {
      const t = getT();
      const answer = await t.inject({
        method: "POST",
        url: spec.path,
        headers: t.adminAuth,
        payload: await spec.validBody(),
      });
      expect(answer.statusCode, answer.body).toBe(201);
    });

    for (const query of [
      "ordering=%27%3B%20drop%20table%20machine%3B%20--",
      "ordering=nonexistent",
      "ordering=-",
      "ordering=,",
      "limit=10001",
      "limit=0",
      "limit=-1",
      "limit=abc",
      "offset=-1",
      "offset=abc",
      "limit=0x10",
      "limit=Infinity",
      "limit=1e1",
      "limit=%2010",
      "offset=0b11",
    ]) {
      it(`GET ?${decodeURIComponent(query)} is 400`, async () => {
        const t = getT();
        await expectRefused(
          t,
          { method: "GET", url: `${spec.path}?${query}`, headers: t.adminAuth },
          400,
        );
      });
    }

    for (const id of ["0", "-1", "abc", "1.5", "99999999999999999999", "1e3", "%27%3B--"]) {
      for (const method of ["GET", "PUT", "PATCH", "DELETE"] as const) {
        it(`${method} ${spec.path}${decodeURIComponent(id)}/ is 404`, async () => {
          const t = getT();
          const payload = method === "PUT" ? await spec.validBody() : {};
          await expectRefused(
            t,
            {
              method,
              url: `${spec.path}${id}/`,
              headers: t.adminAuth,
              ...(method === "GET" || method === "DELETE" ? {} : { payload }),
            },
            404,
            { detail: "Not found." },
          );
        });
      }
    }
  });
}
