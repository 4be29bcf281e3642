import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import { type TObject, type TSchema, Type } from "@sinclair/typebox";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { ChangeFeed } from "./change-feed.ts";
import type { Database, Queryable } from "./database.ts";
import { DomainError, invalid, notFound, pgErrorCode, pgErrorCodes } from "./errors.ts";

/**
 * A table exposed the way Django REST Framework exposes a model: list, create, retrieve,
 * replace, update and delete at the seed's paths, with pagination, filters and ordering. Each
 * feature declares its resource and its own rules (`prepare`); the SQL shape lives here once.
 */
export interface ResourceDefinition {
  /** Permission prefix, e.g. `machine` for `machine.view`. */
  name: string;
  /** What one row is called in the API's documentation, e.g. `tool usage record`. */
  noun: string;
  path: string;
  tag: string;
  table: string;
  /** FROM clause for reads; `alias` names the resource's own table in it. */
  from: string;
  alias: string;
  idField: string;
  idColumn: string;
  /** The id is given by the client (machines) rather than generated. */
  clientSuppliedId: boolean;
  /** API field → SQL expression read in the select. */
  columns: Record<string, string>;
  /** Writable API field → table column. */
  writable: Record<string, string>;
  /**
   * Query parameter → condition, its value bound as $n (`param`); `value`, already validated,
   * lets a condition take another form for another value.
   */
  filters: Record<string, { sql: (param: string, value: unknown) => string; schema: TSchema }>;
  orderable: string[];
  /**
   * Orderable field → SQL expression to order by, where it is not the column read: a time read
   * as exact text still orders by the timestamp itself, on its index.
   */
  orderExpressions?: Record<string, string>;
  defaultOrdering: string[];
  defaultLimit: number;
  /** Counting a huge table exactly would take minutes; past this many rows the total is left out. */
  countCap?: number;
  row: TObject;
  /** Body of POST and PUT (every writable field); PATCH takes any subset of it. */
  input: TObject;
  /** Read-only fields a client may send back unchanged; they are ignored, as DRF does. */
  readOnly: string[];
  /** Constraint name → the field and reason a client sees when it is violated. */
  constraints: Record<string, { field: string; reason: string }>;
  /**
   * Small, read-mostly tables: list pages are kept in memory until one of these tables changes
   * (this process's writes, or any other writer's through NOTIFY). Absent: never cached.
   */
  cachedUntilChanged?: string[];
  /**
   * Told of each write once it is committed, and awaited before the answer: the row as it was
   * (`before`: updates and deletes) and as it is (`after`: creates and updates).
   */
  afterWrite?: (change: RowChange) => void | Promise<void>;
  /** Domain checks and derived values before a write; `existing` is set on updates. */
  prepare?: (
    db: Database,
    input: Record<string, unknown>,
    existing?: Record<string, unknown>,
  ) => Promise<void>;
}

export interface RowChange {
  before?: Record<string, unknown>;
  after?: Record<string, unknown>;
}

/** `def`, telling `hook` of each write too, after what it tells already. */
export function alsoAfterWrite(
  def: ResourceDefinition,
  hook: (change: RowChange) => void | Promise<void>,
): ResourceDefinition {
  return {
    ...def,
    afterWrite: async (change) => {
      await def.afterWrite?.(change);
      await hook(change);
    },
  };
}

const maxLimit = 10_000;

interface Page {
  rows: Record<string, unknown>[];
  hasNext: boolean;
  total: number | undefined;
  limit: number;
  offset: number;
}

const maxCachedPages = 500;

export function resourceService(db: Database, def: ResourceDefinition, changes: ChangeFeed) {
  const pages = new Map<string, { version: number; page: Page }>();
  const version = () =>
    (def.cachedUntilChanged ?? []).reduce((sum, table) => sum + changes.version(table), 0);
  const written = () => changes.changed(def.table);
  const select = `select ${Object.entries(def.columns)
    .map(([field, sql]) => `${sql} as "${field}"`)
    .join(", ")} from ${def.from}`;
  const idSql = `${def.alias}.${def.idColumn}`;

  async function list(query: Record<string, unknown>): Promise<Page> {
    if (!def.cachedUntilChanged) return listFromDatabase(query);
    const key = JSON.stringify(Object.entries(query).sort(([a], [b]) => a.localeCompare(b)));
    // Read the version before the query: a write landing meanwhile leaves the entry stale.
    const current = version();
    const hit = pages.get(key);
    if (hit && hit.version === current) return hit.page;
    const page = await listFromDatabase(query);
    if (pages.size >= maxCachedPages) pages.clear();
    pages.set(key, { version: current, page });
    return page;
  }

  async function listFromDatabase(query: Record<string, unknown>): Promise<Page> {
    const params: unknown[] = [];
    const where = Object.entries(def.filters)
      .filter(([name]) => query[name] !== undefined)
      .map(([name, filter]) => {
        params.push(query[name]);
        return filter.sql(`$${params.length}`, query[name]);
      });
    const whereSql = where.length > 0 ? ` where ${where.join(" and ")}` : "";
    const order = orderBy(def, query.ordering as string | undefined);
    const limit = (query.limit as number | undefined) ?? def.defaultLimit;
    const offset = (query.offset as number | undefined) ?? 0;
    const rows = await withBadValues(() =>
      db.query(
        `${select}${whereSql} order by ${order} limit ${limit + 1} offset ${offset}`,
        params,
      ),
    );
    const countSql = def.countCap
      ? `select count(*)::bigint as n from (select 1 from ${def.from}${whereSql} limit ${def.countCap + 1}) capped`
      : `select count(*)::bigint as n from ${def.from}${whereSql}`;
    const counted = Number(
      (await withBadValues(() => db.query<{ n: number }>(countSql, params))).rows[0]?.n ?? 0,
    );
    const total = def.countCap && counted > def.countCap ? undefined : counted;
    return {
      rows: rows.rows.slice(0, limit),
      hasNext: rows.rows.length > limit,
      total,
      limit,
      offset,
    };
  }

  async function get(id: number | string, via: Queryable = db) {
    const { rows } = await via.query(`${select} where ${idSql} = $1`, [id]);
    if (!rows[0]) throw notFound();
    return rows[0];
  }

  async function create(body: Record<string, unknown>) {
    const input = writableOf(def, body);
    await def.prepare?.(db, input);
    const fields = Object.keys(input);
    const columns = fields.map((field) => def.writable[field]);
    const { rows } = await withConstraints(db, def, () =>
      db.query<{ id: number }>(
        `insert into ${def.table} (${columns.join(", ")}) values (${fields.map((_, i) => `$${i + 1}`).join(", ")})
         returning ${def.idColumn} as id`,
        fields.map((field) => input[field]),
      ),
    );
    written();
    const created = await get(rows[0]!.id);
    await def.afterWrite?.({ after: created });
    return created;
  }

  async function update(id: number | string, body: Record<string, unknown>) {
    const existing = await get(id);
    const input = writableOf(def, body);
    if (
      def.clientSuppliedId &&
      input[def.idField] !== undefined &&
      input[def.idField] !== existing[def.idField]
    ) {
      throw invalid({ [def.idField]: ["This field cannot be changed."] });
    }
    delete input[def.idField];
    await def.prepare?.(db, input, existing);
    const fields = Object.keys(input);
    if (fields.length === 0) return existing;
    const sets = fields.map((field, i) => `${def.writable[field]} = $${i + 2}`);
    const { rowCount } = await withConstraints(db, def, () =>
      db.query(`update ${def.table} set ${sets.join(", ")} where ${def.idColumn} = $1`, [
        id,
        ...fields.map((field) => input[field]),
      ]),
    );
    if (rowCount === 0) throw notFound();
    written();
    const updated = await get(id);
    await def.afterWrite?.({ before: existing, after: updated });
    return updated;
  }

  async function remove(id: number | string) {
    const existing = def.afterWrite ? await get(id) : undefined;
    const { rowCount } = await db.query(`delete from ${def.table} where ${def.idColumn} = $1`, [
      id,
    ]);
    if (rowCount === 0) throw notFound();
    written();
    if (existing) await def.afterWrite?.({ before: existing });
  }

  return { list, get, create, update, remove };
}

function writableOf(
  def: ResourceDefinition,
  body: Record<string, unknown>,
): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(body)) {
    if (field in def.writable && value !== undefined) input[field] = value;
  }
  return input;
}

function orderBy(def: ResourceDefinition, ordering: string | undefined): string {
  const terms = ordering ? ordering.split(",").map((term) => term.trim()) : def.defaultOrdering;
  const sql = terms.map((term) => {
    const field = term.replace(/^-/, "");
    if (!def.orderable.includes(field)) {
      throw invalid({
        ordering: [`Cannot order by "${field}". Choose from: ${def.orderable.join(", ")}.`],
      });
    }
    const expression = def.orderExpressions?.[field] ?? `"${field}"`;
    return `${expression} ${term.startsWith("-") ? "desc" : "asc"}`;
  });
  // The primary key last makes every page boundary stable.
  return [...sql, `"${def.idField}" asc`].join(", ");
}

/** Turns a violated constraint into the field a client should fix; never a 500. */
async function withConstraints<T>(
  db: Database,
  def: ResourceDefinition,
  write: () => Promise<T>,
): Promise<T> {
  try {
    return await write();
  } catch (error) {
    const code = pgErrorCode(error);
    const constraint = (error as { constraint?: string }).constraint;
    const known = constraint
      ? (def.constraints[constraint] ?? def.constraints[await parentIndex(db, constraint)])
      : undefined;
    if (known)
      throw new DomainError("conflict", "Invalid input.", { [known.field]: [known.reason] });
    if (code === pgErrorCodes.uniqueViolation) {
      throw new DomainError("conflict", "Invalid input.", {
        non_field_errors: ["This object already exists."],
      });
    }
    if (code?.startsWith("22") || code?.startsWith("23")) {
      throw invalid({ non_field_errors: ["Invalid value."] });
    }
    throw error;
  }
}

/**
 * A partition reports its own copy of a unique index (`axis_data_20261124_axis_id_…_key`); the
 * partitioned table's index, the one a resource declares, is its parent.
 */
async function parentIndex(db: Database, index: string): Promise<string> {
  const { rows } = await db.query<{ name: string }>(
    `select p.relname as name from pg_class c
     join pg_inherits i on i.inhrelid = c.oid
     join pg_class p on p.oid = i.inhparent
     where c.relname = $1 and c.relnamespace = to_regnamespace(current_schema())::oid`,
    [index],
  );
  return rows[0]?.name ?? index;
}

/** A filter value the database cannot take (a NUL character, say) is the client's mistake. */
async function withBadValues<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (error) {
    if (pgErrorCode(error)?.startsWith("22"))
      throw invalid({ non_field_errors: ["Invalid value."] });
    throw error;
  }
}

// ------------------------------------------------------------------- routes

/** A path naming no row is 404 however it is spelled (`/machines/abc/`, `/machines/0/`). */
export async function rowIdOrNotFound(request: FastifyRequest): Promise<void> {
  const { id } = request.params as { id: string };
  const value = Number(id);
  if (!/^\d{1,20}$/.test(id) || value < 1 || value > Number.MAX_SAFE_INTEGER) throw notFound();
}

export function resourceRoutes(
  app: FastifyInstance,
  db: Database,
  changes: ChangeFeed,
  def: ResourceDefinition,
): void {
  const r = app.withTypeProvider<TypeBoxTypeProvider>();
  const service = resourceService(db, def, changes);
  const serializedPages = new WeakMap<Page, Buffer>();
  const idSchema = Type.Object({
    id: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  });
  const readOnly = Object.fromEntries(
    def.readOnly.map((field) => [field, Type.Optional(Type.Unknown())]),
  );
  const full = Type.Object(
    { ...def.input.properties, ...readOnly },
    { additionalProperties: false },
  );
  const partial = Type.Partial(full, { additionalProperties: false });
  const listQuery = Type.Object(
    {
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: maxLimit })),
      offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000 })),
      ordering: Type.Optional(Type.String({ maxLength: 200 })),
      ...Object.fromEntries(
        Object.entries(def.filters).map(([name, filter]) => [name, Type.Optional(filter.schema)]),
      ),
    },
    // DRF ignores query parameters it does not know (clients send ?format=json), so do we.
    { additionalProperties: true },
  );
  const permission = (action: string) => ({ permission: `${def.name}.${action}` });
  const tags = [def.tag];

  r.get(
    def.path,
    {
      config: permission("view"),
      schema: {
        tags,
        summary: `List ${def.tag} (paginated: limit, offset; Link and X-Total-Count headers)`,
        querystring: listQuery,
        response: { 200: Type.Array(def.row, { headers: pageHeaders }) },
      },
    },
    async (request, reply) => {
      const page = await service.list(request.query as Record<string, unknown>);
      paginationHeaders(reply, def.path, request.query as Record<string, unknown>, page);
      // A cached page is the same object on every hit, so its bytes are made once.
      let body = serializedPages.get(page);
      if (!body) {
        body = Buffer.from(reply.serialize(page.rows) as string);
        serializedPages.set(page, body);
      }
      // Already serialized by this route's own serializer; the type provider only knows rows.
      return reply.type("application/json; charset=utf-8").send(body as never);
    },
  );

  r.post(
    def.path,
    {
      config: permission("add"),
      schema: { tags, summary: `Create a ${def.noun}`, body: full, response: { 201: def.row } },
    },
    async (request, reply) =>
      reply.code(201).send(await service.create(request.body as Record<string, unknown>)),
  );

  const one = `${def.path}:id/`;
  r.get(
    one,
    {
      config: permission("view"),
      preValidation: rowIdOrNotFound,
      schema: { tags, summary: `One ${def.noun}`, params: idSchema, response: { 200: def.row } },
    },
    (request) => service.get(request.params.id),
  );

  r.put(
    one,
    {
      config: permission("change"),
      preValidation: rowIdOrNotFound,
      schema: {
        tags,
        summary: `Replace a ${def.noun}`,
        params: idSchema,
        body: full,
        response: { 200: def.row },
      },
    },
    (request) => service.update(request.params.id, request.body as Record<string, unknown>),
  );

  r.patch(
    one,
    {
      config: permission("change"),
      preValidation: rowIdOrNotFound,
      schema: {
        tags,
        summary: `Change some fields of a ${def.noun}`,
        params: idSchema,
        body: partial,
        response: { 200: def.row },
      },
    },
    (request) => service.update(request.params.id, request.body as Record<string, unknown>),
  );

  r.delete(
    one,
    {
      config: permission("delete"),
      preValidation: rowIdOrNotFound,
      schema: {
        tags,
        summary: `Delete a ${def.noun}`,
        params: idSchema,
        response: { 204: Type.Null({ description: "Deleted; no body" }) },
      },
    },
    async (request, reply) => {
      await service.remove(request.params.id);
      return reply.code(204).send(null);
    },
  );
}

/** What `paginationHeaders` sets, as the OpenAPI document describes it. */
const pageHeaders = {
  Link: Type.String({
    description:
      'The neighbouring pages, when there are any: `</data/…?limit=100&offset=100>; rel="next"` and `rel="prev"`',
  }),
  "X-Total-Count": Type.Integer({
    minimum: 0,
    description:
      "How many rows match the filters, all pages together (left out where counting would take too long)",
  }),
};

function paginationHeaders(
  reply: FastifyReply,
  path: string,
  query: Record<string, unknown>,
  page: { hasNext: boolean; total: number | undefined; limit: number; offset: number },
): void {
  const link = (offset: number) => {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && key !== "offset" && key !== "limit")
        params.set(key, String(value));
    }
    params.set("limit", String(page.limit));
    params.set("offset", String(offset));
    return `<${path}?${params}>`;
  };
  const links: string[] = [];
  if (page.hasNext) links.push(`${link(page.offset + page.limit)}; rel="next"`);
  if (page.offset > 0) links.push(`${link(Math.max(0, page.offset - page.limit))}; rel="prev"`);
  if (links.length > 0) reply.header("Link", links.join(", "));
  if (page.total !== undefined) reply.header("X-Total-Count", String(page.total));
}
