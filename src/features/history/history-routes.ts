import { Readable } from "node:stream";
import { setImmediate as nextTurn } from "node:timers/promises";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply } from "fastify";
import { invalid } from "../../platform/errors.ts";
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
  const response = {
    200: {
      description: "The rows: JSON, or with format=csv a CSV download of the same columns",
      headers: {
        "Content-Disposition": Type.String({
          description: 'With format=csv: `attachment; filename="…csv"`, named after the window',
        }),
        "X-Bucket-Width-Ms": Type.Integer({
          description:
            "With max_points: the width of every bucket in milliseconds (the first may be partial, " +
            "labelled at the window's start). It is rounded up to a rollup's grid, so it is often " +
            "wider than the window divided by max_points.",
        }),
      },
      content: {
        "application/json": { schema: HistoryAnswer },
        "text/csv": {
          schema: Type.String({
            description: "A header line naming the columns, then one line per row",
          }),
        },
      },
    },
  };

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
      schema: {
        tags,
        summary:
          "The same as GET, with the parameters in a JSON body (the seed's POST), the query string, or both",
        description,
        querystring: HistoryQueryString,
        body: HistoryBody,
        response,
      },
    },
    (request, reply) => answer(history, bothParts(request.query, request.body), reply),
  );
}

/**
 * A POST's parameters from its query string and its body together (the contract lets either
 * carry them); one given in both is refused rather than one of them silently winning.
 */
function bothParts(query: HistoryParams, body: HistoryParams): HistoryParams {
  const twice = Object.keys(query).filter((name) => name in body);
  if (twice.length > 0)
    throw invalid(
      Object.fromEntries(
        twice.map((name) => [name, ["Given in both the query string and the body; give it once."]]),
      ),
    );
  return { ...query, ...body } as HistoryParams;
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
  // The buckets' starts cannot tell it exactly: empty buckets are left out of the answer.
  if (result.bucketMs !== undefined) reply.header("X-Bucket-Width-Ms", String(result.bucketMs));
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
