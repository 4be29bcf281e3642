import { Readable } from "node:stream";
import { setImmediate as nextTurn } from "node:timers/promises";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import type { FastifyInstance, FastifyReply } from "fastify";
import { csvFilename, encodeCsv, encodeJson } from "./history-encoding.ts";
import {
  HistoryAnswer,
  HistoryBody,
  type HistoryParams,
  HistoryQueryString,
  parseHistoryParams,
} from "./history-schemas.ts";
import type { HistoryService } from "./history-service.ts";

const tags = ["axis data"];
const description =
  "Samples of any machines × axes over a window (`minutes` ending now, default 15, or `from` inclusive / `to` exclusive). " +
  "With `max_points`, each series (one per machine × axis) is cut into at most that many equal time buckets " +
  "and each row is a bucket: for every field F, `F` (average; for homed: homed throughout), `F_min`, `F_max`, " +
  "`update_timestamp` = bucket start, `samples` = count. Without it, raw rows stream. Ordered by axis, then time. " +
  "An empty result is `200 []`.";

/** `GET` and `POST /api/axis-data/`: the same parameters in the query string or a JSON body. */
export async function historyRoutes(
  app: FastifyInstance,
  { history }: { history: HistoryService },
) {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const response = { 200: HistoryAnswer };

  r.get(
    "/api/axis-data/",
    {
      config: { permission: "axisdata.view" },
      schema: {
        tags,
        summary: "History of axis data over any window, raw or downsampled; JSON or CSV",
        description,
        querystring: HistoryQueryString,
        response,
      },
    },
    (request, reply) => answer(history, request.query, reply),
  );

  r.post(
    "/api/axis-data/",
    {
      config: { permission: "axisdata.view" },
      // A POST with no body at all asks for the default window, as the seed's POST did.
      preValidation: async (request) => {
        if (request.body === undefined) request.body = {};
      },
      schema: {
        tags,
        summary: "The same as GET, with the parameters in a JSON body (the seed's POST)",
        description,
        body: HistoryBody,
        response,
      },
    },
    (request, reply) => answer(history, request.body, reply),
  );
}

async function answer(history: HistoryService, params: HistoryParams, reply: FastifyReply) {
  const { input, format } = parseHistoryParams(params);
  const result = await history.query(input, format);
  // Pulled, not pushed: the stream asks the generator for the next page only when the socket
  // has drained what it was given, so a slow client holds at most a page or two in memory.
  const chunks = format === "csv" ? encodeCsv(result) : encodeJson(result);
  const body = Readable.from(takingTurns(chunks), {
    objectMode: false,
    highWaterMark: 64 * 1024,
  });
  if (format === "csv") {
    reply
      .type("text/csv; charset=utf-8")
      .header(
        "Content-Disposition",
        `attachment; filename="${csvFilename(result.from, result.to)}"`,
      );
  } else {
    reply.type("application/json; charset=utf-8");
  }
  return reply.send(body);
}

/**
 * `chunks`, giving the event loop a turn after each. The embedded database answers in this
 * thread with no I/O to wait for, so an export its client reads as fast as it is written would
 * otherwise run from first page to last while no other request, ingest or live push is served.
 */
async function* takingTurns(chunks: AsyncIterable<string>): AsyncGenerator<string> {
  for await (const chunk of chunks) {
    yield chunk;
    await nextTurn();
  }
}
