import type { InjectOptions, LightMyRequestResponse } from "fastify";
import { expect } from "vitest";
import type { TestApp } from "./app.ts";
import { snapshot } from "./factories.ts";

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

/** One request as an Admin unless other headers are given. */
export function send(
  t: TestApp,
  method: Method,
  url: string,
  payload?: InjectOptions["payload"],
  headers: Record<string, string> = t.adminAuth,
): Promise<LightMyRequestResponse> {
  return t.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });
}

/**
 * Sends a request that must be refused: answers `status` (and `body`, when given, exactly) and
 * leaves every table as it was.
 */
export async function expectRefused(
  t: TestApp,
  request: InjectOptions,
  status: number,
  body?: unknown,
): Promise<LightMyRequestResponse> {
  const before = await snapshot(t);
  const answer = await t.inject(request);
  expect(answer.statusCode, answer.body).toBe(status);
  if (body !== undefined) expect(answer.json()).toEqual(body);
  expect(await snapshot(t)).toBe(before);
  return answer;
}

/** A raw JSON text body as an Admin, so tests can send what JSON.stringify never would. */
export const rawJson = (
  t: TestApp,
  method: Method,
  url: string,
  payload: string,
  contentType = "application/json",
): InjectOptions => ({
  method,
  url,
  headers: { ...t.adminAuth, "content-type": contentType },
  payload,
});

/** An ISO 8601 UTC timestamp as Spindle answers it. */
export const isoUtc = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}(\d{3})?)?Z$/;

/** Parses a `Link` header into rel → URL. */
export function links(answer: LightMyRequestResponse): Record<string, string> {
  const header = answer.headers.link;
  const result: Record<string, string> = {};
  if (typeof header !== "string") return result;
  for (const part of header.split(",")) {
    const match = /<([^>]+)>;\s*rel="(\w+)"/.exec(part.trim());
    if (match) result[match[2]!] = match[1]!;
  }
  return result;
}
