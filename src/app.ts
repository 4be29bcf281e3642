import formbody from "@fastify/formbody";
import swagger from "@fastify/swagger";
import swaggerUi from "@fastify/swagger-ui";
import { Type } from "@sinclair/typebox";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import { authenticate } from "./features/auth/authenticate.ts";
import { oauthRoutes } from "./features/auth/oauth-routes.ts";
import { axesResource } from "./features/axes/axes-resource.ts";
import { axisDataResource } from "./features/axis-data/axis-data-resource.ts";
import { consolePageNotFound, consoleRoutes } from "./features/console/console-routes.ts";
import { historyRoutes } from "./features/history/history-routes.ts";
import { createHistoryService } from "./features/history/history-service.ts";
import { ingestRoutes } from "./features/ingest/ingest-routes.ts";
import { liveRoutes } from "./features/live/live-routes.ts";
import { machinesResource } from "./features/machines/machines-resource.ts";
import { toolsResource, toolUsageResource } from "./features/tools/tools-resource.ts";
import { usersRoutes } from "./features/users/users-routes.ts";
import { answerWrongMethods } from "./platform/allowed-methods.ts";
import { frameworkErrorHandler, registerErrorHandler } from "./platform/error-handler.ts";
import { describeOperation } from "./platform/openapi.ts";
import { readEmptyBodiesAsDrfDoes, readMultipartForms } from "./platform/request-body.ts";
import { alsoAfterWrite, resourceRoutes } from "./platform/resource.ts";
import { parseFormBody, validatorCompiler } from "./platform/validation.ts";
import type { Services } from "./services.ts";

export interface AppOptions {
  logger?: FastifyServerOptions["logger"];
}

declare module "fastify" {
  interface FastifyInstance {
    /** From the start of a shutdown: every response then closes its connection. */
    closing: boolean;
  }
}

/** Builds the HTTP (and later WebSocket) server from its services; nothing is global. */
export async function buildApp(
  services: Services,
  options: AppOptions = {},
): Promise<FastifyInstance> {
  const { config, db } = services;
  const notFoundPage = consolePageNotFound();
  const pathMatching = { ignoreTrailingSlash: true, maxParamLength: 200 };
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: config.bodyLimit,
    // request.ip, which every per-address limit and the request log go by, is then the client's
    // address as the trusted proxy forwards it, not the proxy's.
    trustProxy: config.trustProxy,
    ajv: { customOptions: { allErrors: true } },
    routerOptions: pathMatching,
    frameworkErrors: frameworkErrorHandler({ notFoundPage }),
  });
  answerWrongMethods(app, pathMatching);
  app.setValidatorCompiler(validatorCompiler);
  // Caches hear about other processes' writes only while this listens.
  app.addHook("onReady", () => services.start());
  app.addHook("onClose", () => services.close());
  // close() lets requests in flight finish, then keeps their keep-alive connections open until
  // keepAliveTimeout (72 s; fastify/fastify#7044), which held a SIGTERM that long. A response
  // sent while closing says `Connection: close`, so its socket ends with it. `closing` is set by
  // close(), or at once by whoever starts a shutdown: close() runs its hooks a few turns later,
  // and a request under way may be answered meanwhile.
  app.decorate("closing", false);
  app.addHook("preClose", (done) => {
    app.closing = true;
    done();
  });
  app.addHook("onSend", (request, reply, payload, done) => {
    if (app.closing) reply.header("connection", "close");
    // A JSON answer is never to be read as a page or a script, whatever a browser guesses.
    if (!reply.hasHeader("x-content-type-options"))
      reply.header("x-content-type-options", "nosniff");
    // What a token was shown is that person's: no browser or proxy keeps a copy.
    if (request.headers.authorization !== undefined && !reply.hasHeader("cache-control"))
      reply.header("cache-control", "no-store");
    done(null, payload);
  });
  readEmptyBodiesAsDrfDoes(app);
  // Bodies are JSON or a form: text is 415 Unsupported Media Type, as DRF answers, rather than
  // a string that fails validation.
  app.removeContentTypeParser("text/plain");
  registerErrorHandler(app, { notFoundPage });

  await app.register(formbody, { bodyLimit: config.bodyLimit, parser: parseFormBody });
  readMultipartForms(app, config.bodyLimit);
  await app.register(swagger, {
    openapi: {
      info: {
        title: "Spindle",
        version: "0.1.0",
        description:
          "Machine data for CNC fleets: machines, axes, tools, axis data, users and tokens.",
      },
      components: {
        securitySchemes: {
          bearer: {
            type: "http",
            scheme: "bearer",
            description: "An access token from POST /o/token/",
          },
        },
      },
      security: [{ bearer: [] }],
    },
    transform: describeOperation,
  });
  // The interactive documentation is for anyone who can reach the server, as /openapi.json is:
  // a browser opening it has no token to send. (Trying an operation there needs one.)
  await app.register(async (docs) => {
    docs.addHook("onRoute", (route) => {
      route.config = { ...route.config, public: true };
    });
    // Its Authorize dialog takes a token: no other site may frame it and overlay its own.
    docs.addHook("onSend", (_request, reply, payload, done) => {
      reply.header("x-frame-options", "DENY");
      reply.header("content-security-policy", "frame-ancestors 'none'");
      done(null, payload);
    });
    await docs.register(swaggerUi, { routePrefix: "/docs" });
  });
  app.get("/openapi.json", { config: { public: true }, schema: { hide: true } }, () =>
    app.swagger(),
  );

  app.get(
    "/healthz",
    {
      config: { public: true, withoutDatabase: true },
      schema: {
        tags: ["health"],
        summary: "The process is up",
        response: { 200: Type.Object({ status: Type.Literal("ok") }) },
      },
    },
    () => ({ status: "ok" }),
  );
  const readiness = (status: "ready" | "unavailable", description: string) =>
    Type.Object(
      {
        status: Type.Literal(status),
        database: Type.Union([Type.Literal("embedded"), Type.Literal("postgres")]),
      },
      { description },
    );
  app.get(
    "/readyz",
    {
      config: { public: true },
      schema: {
        tags: ["health"],
        summary: "The database answers",
        response: {
          200: readiness("ready", "The database answered"),
          503: readiness("unavailable", "The database did not answer"),
        },
      },
    },
    async (_request, reply) => {
      try {
        await db.query("select 1");
        return { status: "ready", database: db.kind };
      } catch {
        return reply.code(503).send({ status: "unavailable", database: db.kind });
      }
    },
  );

  await app.register(authenticate, { oauth: services.oauth });
  await app.register(oauthRoutes, { oauth: services.oauth });
  await app.register(usersRoutes, {
    users: services.users,
    registrations: services.registrations,
  });
  await app.register(historyRoutes, { history: createHistoryService(services) });
  await app.register(ingestRoutes, {
    ingest: services.ingest,
    bodyLimit: config.ingestBodyLimit,
    bytesInFlight: config.ingestBytesInFlight,
  });
  await app.register(async (data) => {
    // Machine data written here reaches the live feed as ingested data does.
    const live = (keys: Partial<Record<"axes" | "tools" | "machines", unknown[]>>) =>
      services.live.storedChanged({
        axes: distinctIds(keys.axes),
        tools: distinctIds(keys.tools),
        machines: distinctIds(keys.machines),
      });
    for (const resource of [
      alsoAfterWrite(machinesResource, ({ before, after }) => {
        if (before && !after) return services.live.machinesDeleted([Number(before.machine_id)]);
      }),
      alsoAfterWrite(toolsResource(services.clock), ({ before, after }) =>
        live({ tools: [before?.tool_id, after?.tool_id] }),
      ),
      alsoAfterWrite(toolUsageResource(services.clock), ({ before, after }) =>
        live({ machines: [before?.machine, after?.machine] }),
      ),
      // An axis moved to another machine or renamed: its latest sample is read again in its new
      // place (the catalog would only tell that it still exists).
      alsoAfterWrite(axesResource, ({ before, after }) =>
        live({ axes: [before?.axis_id, after?.axis_id] }),
      ),
      alsoAfterWrite(
        axisDataResource({
          clock: services.clock,
          retentionDays: config.retentionDays,
          partitions: services.partitions,
          onSampleWritten: (axisId, timeMs) => services.rollups.noteSample(axisId, timeMs),
        }),
        ({ before, after }) => live({ axes: [before?.axis, after?.axis] }),
      ),
    ]) {
      resourceRoutes(data, db, services.changes, resource);
    }
  });
  await app.register(liveRoutes, { live: services.live });
  await app.register(consoleRoutes);
  return app;
}

/** The distinct ids among `values` (a row's before and after), leaving out absent ones. */
function distinctIds(values: unknown[] = []): number[] {
  return [...new Set(values.filter((value) => value !== undefined).map(Number))];
}
