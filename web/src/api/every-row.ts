import type { Api, Query } from "./client.ts";

/** The most rows a Spindle list answers at once. */
const pageSize = 10_000;

/**
 * Every row of a Spindle list, however long: a fleet of 1,000 machines has 24,000 tools, more than
 * one page. The first page tells the total (`X-Total-Count`) and the rest are asked for together.
 * Pages follow the list's own order (its primary key unless `ordering` says otherwise), so a row
 * added meanwhile comes last instead of shifting the pages; one deleted meanwhile may hide the
 * row after it until the next load.
 */
export async function everyRow<T>(api: Api, path: string, query: Query = {}): Promise<T[]> {
  const first = await api.list<T>(path, { ...query, limit: pageSize });
  const offsets: number[] = [];
  for (let offset = first.rows.length; offset < first.total; offset += pageSize) {
    offsets.push(offset);
  }
  const rest = await Promise.all(
    offsets.map((offset) => api.list<T>(path, { ...query, limit: pageSize, offset })),
  );
  return first.rows.concat(...rest.map((page) => page.rows));
}
