import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

/** Where `npm run build:web` writes the console (web/dist), resolved from this file. */
export const defaultConsoleRoot = fileURLToPath(new URL("../../../web/dist", import.meta.url));

/**
 * The console's client-side routes. Listed, not a catch-all, so every API path keeps its JSON
 * 404 for API clients; only a browser asking for a page gets the console's own "Page not
 * found" (`consolePageNotFound`).
 */
export const consolePaths = [
  "/",
  "/signin",
  "/machines",
  "/machines/*",
  "/history",
  "/history/*",
  "/admin",
  "/admin/*",
] as const;

// The console talks to this origin only (REST and the WebSocket); uPlot sets inline styles.
const securityHeaders = {
  "content-security-policy":
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; " +
    "style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
};

/** The console's page is never cached: a rebuild names new assets. */
const pageHeaders = (reply: FastifyReply) =>
  reply.headers(securityHeaders).header("cache-control", "no-cache");

const notBuiltPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Spindle</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}
code{background:#8882;padding:.1em .3em;border-radius:3px}</style></head>
<body><h1>Spindle is running</h1>
<p>The web console has not been built yet. Build it with <code>npm run build:web</code>
(<code>npm start</code> and <code>npm test</code> do this for you), then reload this page.</p>
<p>The API answers meanwhile: <a href="/docs">interactive documentation</a>,
<a href="/openapi.json">OpenAPI document</a>.</p></body></html>`;

export interface ConsoleOptions {
  /** The built console; defaults to web/dist. Read per request, so a rebuild needs no restart. */
  root?: string;
}

/** Serves the console's single-page app at `/`, public: it signs in through /o/token/ itself. */
export async function consoleRoutes(app: FastifyInstance, options: ConsoleOptions = {}) {
  const root = options.root ?? defaultConsoleRoot;
  const index = join(root, "index.html");

  // Everything this plugin serves is public; @fastify/static's own routes included.
  app.addHook("onRoute", (route) => {
    route.config = { ...route.config, public: true };
  });

  // Hashed file names: a file under /assets/ never changes, so browsers may keep it for a year.
  await app.register(fastifyStatic, {
    root: join(root, "assets"),
    prefix: "/assets/",
    suppressWarning: true,
    immutable: true,
    maxAge: "365d",
    preCompressed: true,
    index: false,
  });

  const sendIndex = (reply: FastifyReply) => {
    pageHeaders(reply);
    if (!existsSync(index)) return reply.code(503).type("text/html").send(notBuiltPage);
    return reply.sendFile("index.html", root, { cacheControl: false });
  };

  for (const url of consolePaths) {
    app.get(url, { config: { public: true }, schema: { hide: true } }, (_request, reply) =>
      sendIndex(reply),
    );
  }
}

/**
 * A browser asking for a page at an address that is no route (a mistyped console address, or an
 * API path typed into the address bar): the console, answered 404, so its own "Page not found"
 * shows with the way back. Anything else, an API client's request above all (they ask for JSON or
 * for anything), keeps the JSON 404; so does every request while the console is not built.
 */
export function consolePageNotFound(root = defaultConsoleRoot) {
  const index = join(root, "index.html");
  return async (request: FastifyRequest, reply: FastifyReply): Promise<boolean> => {
    const page = request.method === "GET" || request.method === "HEAD";
    if (!page || !/\btext\/html\b/.test(request.headers.accept ?? "")) return false;
    const html = await readFile(index, "utf8").catch(() => undefined);
    if (html === undefined) return false;
    pageHeaders(reply.code(404)).type("text/html; charset=utf-8").send(html);
    return true;
  };
}
