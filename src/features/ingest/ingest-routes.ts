import { finished } from "node:stream";
import { type TSchema, Type } from "@sinclair/typebox";
import type { FastifyInstance } from "fastify";
import { DomainError, forbidden } from "../../platform/errors.ts";
import { tooDeep, tooDeepLine } from "../../platform/json-depth.ts";
import { Id, Measurement, Timestamp } from "../../platform/schema-types.ts";
import { actorOf } from "../auth/authenticate.ts";
import { toolReport } from "../auth/scopes.ts";
import { type RawBatch, type RowKind, rowKinds } from "./ingest-batch.ts";
import { type IngestPipeline, IngestRefused, IngestUnavailable } from "./ingest-pipeline.ts";
import { maxRowsPerBatch } from "./ingest-validation.ts";

const ndjsonTypes = ["application/x-ndjson", "application/ndjson", "application/jsonl"];

/** A batch object's keys that are not row kinds: refused, or a misspelt list would go unseen. */
const unknownKinds = (batch: object) =>
  Object.keys(batch).filter((key) => !rowKinds.includes(key as RowKind));

const unknownKindsDetail = (keys: string[]) =>
  `Unknown field(s): ${keys.join(", ")}. Expected ${rowKinds.join(", ")}.`;

/**
 * What each kind of row does, as the CRUD endpoints name it: a sample is added, a tool's offset
 * and feedrate changed, a tool-usage report added. Ingest asks for the same permission, so it
 * is not a way around the matrix (a Supervisor may send samples but not change a tool's offset).
 * Any one of a kind's permissions will do: an `ingest` token reports tools with `tool.report`,
 * which allows nothing through `/data/tools/`.
 */
const kindPermissions: Record<RowKind, string[]> = {
  axis_data: ["axisdata.add"],
  tool_data: ["tool.change", toolReport],
  tool_usage: ["toolusage.add"],
};

/** A kind the batch sends rows of: present and not an empty list. */
const sends = (batch: RawBatch, kind: RowKind) =>
  batch[kind] !== undefined && !(Array.isArray(batch[kind]) && batch[kind].length === 0);

/**
 * NDJSON: each line is a batch object (`{"axis_data":[…]}`) or one row naming its `kind`
 * (`{"kind":"axis_data","machine_id":…}`), so a producer can stream rows as it has them.
 */
export function parseNdjson(text: string): RawBatch {
  const deep = tooDeepLine(text, true);
  if (deep !== undefined) throw tooDeep(deep);
  const batch: Record<RowKind, unknown[]> = { axis_data: [], tool_data: [], tool_usage: [] };
  const lines = text.split("\n");
  lines.forEach((line, index) => {
    if (line.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (error) {
      throw new DomainError(
        "validation",
        `JSON parse error on line ${index + 1} - ${(error as Error).message}`,
      );
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new DomainError("validation", `Line ${index + 1}: expected a JSON object.`);
    }
    const record = value as Record<string, unknown>;
    if ("kind" in record) {
      const { kind, ...row } = record;
      if (!rowKinds.includes(kind as RowKind)) {
        throw new DomainError(
          "validation",
          `Line ${index + 1}: kind must be one of ${rowKinds.join(", ")}.`,
        );
      }
      batch[kind as RowKind].push(row);
      return;
    }
    const unknown = unknownKinds(record);
    if (unknown.length > 0) {
      throw new DomainError("validation", `Line ${index + 1}: ${unknownKindsDetail(unknown)}`);
    }
    for (const kind of rowKinds) {
      const rows = record[kind];
      if (rows === undefined) continue;
      if (!Array.isArray(rows))
        throw new DomainError("validation", `Line ${index + 1}: ${kind} must be a list.`);
      for (const row of rows) batch[kind].push(row);
    }
  });
  return batch;
}

// The body as the OpenAPI document shows it. The pipeline checks the rows itself (every bad
// row's index and field, in one answer), so these schemas document and never validate.
const sampleTime = Type.Optional(
  Timestamp(
    "When it was read: ISO 8601 with a zone, at most microseconds; default the time of receipt " +
      "(`update_timestamp`, the seed's name, is read too)",
  ),
);

const AxisDataRow = Type.Object(
  {
    machine_id: Type.Optional(Id("The machine; with axis_name, names the axis")),
    axis_name: Type.Optional(
      Type.String({ minLength: 1, maxLength: 32, description: "The axis on that machine, e.g. X" }),
    ),
    axis: Type.Optional(Id("The axis's axis_id, instead of machine_id + axis_name")),
    actual_position: Measurement("Where the axis is"),
    target_position: Measurement("Where it is going"),
    velocity: Measurement("Its velocity"),
    acceleration: Measurement("Its acceleration"),
    homed: Type.Boolean(),
    timestamp: sampleTime,
  },
  { description: "One sample of an axis" },
);

const ToolDataRow = Type.Object(
  {
    tool_id: Id("The tool"),
    tool_offset: Measurement("Its offset"),
    feedrate: Type.Number({ minimum: 0, maximum: 1e12, description: "Its feedrate" }),
    machine_id: Type.Optional(
      Id("The tool's machine (or `machine`), if given: a report does not move a tool"),
    ),
    timestamp: sampleTime,
  },
  { description: "A tool's offset and feedrate" },
);

const ToolUsageRow = Type.Object(
  {
    machine_id: Id("The machine"),
    tool_in_use: Id("The tool_id of one of its tools"),
    timestamp: sampleTime,
  },
  { description: "The tool a machine has in use" },
);

const rows = (row: TSchema) => Type.Optional(Type.Array(row, { maxItems: maxRowsPerBatch }));

const IngestBatch = Type.Object(
  { axis_data: rows(AxisDataRow), tool_data: rows(ToolDataRow), tool_usage: rows(ToolUsageRow) },
  {
    additionalProperties: false,
    description: `A batch of rows of any kinds, at most ${maxRowsPerBatch} in all`,
  },
);

const IngestLines = Type.String({
  description:
    "One JSON object per line: a batch object as for JSON, or one row with its `kind` " +
    "(`axis_data`, `tool_data` or `tool_usage`); blank lines are skipped",
  example:
    '{"kind":"axis_data","machine_id":81258856,"axis_name":"X","actual_position":10,' +
    '"target_position":12.5,"velocity":100,"acceleration":0,"homed":true}\n' +
    '{"kind":"tool_usage","machine_id":81258856,"tool_in_use":1}\n',
});

const Problem = Type.Object({
  kind: Type.String(),
  index: Type.Integer({ description: "Position of the row in its list (-1: the list itself)" }),
  field: Type.String(),
  reason: Type.String(),
});

/**
 * Bytes of ingest bodies being read, parsed, validated or committed at once. A body becomes
 * objects several times its size; the pipeline bounds the rows queued for commit, but only
 * after a body is parsed, so without this many large requests at once could each hold their
 * hundreds of megabytes before any was refused. A request is taken if the budget has room for
 * its declared length (or, without one, `bodyLimit`), or if it is the only one; otherwise it is
 * refused before its body is read: 503 with Retry-After.
 */
class BodyBudget {
  private used = 0;
  private readonly held = new WeakMap<object, number>();

  constructor(private readonly bytes: number) {}

  take(request: object, bytes: number): boolean {
    if (this.used > 0 && this.used + bytes > this.bytes) return false;
    this.used += bytes;
    this.held.set(request, bytes);
    return true;
  }

  release(request: object): void {
    const bytes = this.held.get(request);
    if (bytes === undefined) return;
    this.held.delete(request);
    this.used -= bytes;
  }
}

export async function ingestRoutes(
  app: FastifyInstance,
  {
    ingest,
    bodyLimit,
    bytesInFlight,
  }: { ingest: IngestPipeline; bodyLimit: number; bytesInFlight: number },
) {
  const budget = new BodyBudget(bytesInFlight);
  app.addContentTypeParser(
    ndjsonTypes,
    { parseAs: "string", bodyLimit },
    (_request, body, done) => {
      try {
        done(null, parseNdjson(body as string));
      } catch (error) {
        done(error as Error, undefined);
      }
    },
  );

  app.post(
    "/api/ingest/",
    {
      bodyLimit,
      config: { anyPermission: ["axisdata.add"] },
      preParsing: async (request, reply, payload) => {
        const declared = Number(request.headers["content-length"]);
        const bytes = Number.isSafeInteger(declared) && declared >= 0 ? declared : bodyLimit;
        if (!budget.take(request, Math.min(bytes, bodyLimit)))
          throw new IngestUnavailable("Ingest is saturated; retry later.");
        // Given back when the response is done with, however: sent, failed, or its client gone
        // (mid-body, after the body, or before this hook ran: then at once).
        finished(reply.raw, () => budget.release(request));
        return payload;
      },
      schema: {
        tags: ["ingest"],
        summary: "Send machine data; answered once it is committed",
        description:
          'JSON `{"axis_data":[…],"tool_data":[…],"tool_usage":[…]}` or NDJSON (a batch object, or one row with a `kind`, per line). ' +
          "An axis_data row names its axis by `machine_id` + `axis_name` (or `axis`) and carries actual_position, target_position, " +
          "velocity, acceleration, homed and optionally `timestamp` (ISO 8601; default: time of receipt). tool_data: tool_id, " +
          "tool_offset, feedrate. tool_usage: machine_id, tool_in_use (a tool_id of that machine). A bad batch is refused whole. " +
          "A sample is unique per axis and instant, so retries never duplicate; `duplicates` counts the repeats ignored. " +
          "Allowed with the axisdata.add permission or a client token with the ingest scope; a user's tool_data rows also " +
          "need tool.change, and tool_usage rows toolusage.add (403 otherwise, and nothing is stored).",
        body: {
          content: {
            "application/json": { schema: IngestBatch },
            ...Object.fromEntries(ndjsonTypes.map((type) => [type, { schema: IngestLines }])),
          },
        },
        response: {
          202: Type.Object({ accepted: Type.Integer(), duplicates: Type.Integer() }),
          400: Type.Object({ detail: Type.String(), errors: Type.Optional(Type.Array(Problem)) }),
          503: Type.Object(
            { detail: Type.String() },
            {
              description: "Ingest is saturated, or the database slow or away; retry later",
              headers: { "Retry-After": Type.Integer({ minimum: 1 }) },
            },
          ),
        },
      },
      // The body schema above is the document's; a second pass over a 32 MB body would only
      // repeat, less well, what the pipeline checks row by row.
      validatorCompiler: () => () => true,
    },
    async (request, reply) => {
      const body = request.body;
      if (typeof body !== "object" || body === null || Array.isArray(body)) {
        return reply.code(400).send({ detail: 'Expected an object such as {"axis_data": […]}.' });
      }
      const unknown = unknownKinds(body);
      if (unknown.length > 0) return reply.code(400).send({ detail: unknownKindsDetail(unknown) });
      const { permissions } = actorOf(request);
      const allowed = (kind: RowKind) => kindPermissions[kind].some((p) => permissions.has(p));
      if (rowKinds.some((kind) => sends(body, kind) && !allowed(kind))) throw forbidden();
      try {
        return reply.code(202).send(await ingest.ingest(body as RawBatch));
      } catch (error) {
        if (error instanceof IngestRefused)
          return reply.code(400).send({ detail: error.message, errors: error.problems });
        if (error instanceof IngestUnavailable) {
          return reply
            .code(503)
            .header("Retry-After", String(error.retryAfterSeconds))
            .send({ detail: error.message });
        }
        throw error;
      }
    },
  );
}
