import type { HistoryAnswer, HistoryPage, HistorySeries } from "./history-service.ts";

/**
 * Turns pages of a history answer into text chunks (one per page) for JSON or CSV. Each chunk is
 * built once and handed on; nothing accumulates the whole answer.
 */

/** The answer's columns in order: the seed's axis data row, or a bucket row when downsampled. */
export function historyColumns(answer: Pick<HistoryAnswer, "fields" | "bucketMs">): string[] {
  if (answer.bucketMs === undefined) {
    return [
      "axis_data_id",
      "axis",
      "machine_id",
      "machine_name",
      "axis_name",
      ...answer.fields,
      "update_timestamp",
    ];
  }
  return [
    "axis",
    "machine_id",
    "machine_name",
    "axis_name",
    ...answer.fields.flatMap((field) => [field, `${field}_min`, `${field}_max`]),
    "update_timestamp",
    "samples",
  ];
}

const seriesValues = (series: HistorySeries): Record<string, unknown> => ({
  axis: series.axisId,
  machine_id: series.machineId,
  machine_name: series.machineName,
  axis_name: series.axisName,
});

/** `t` carries microseconds for exact paging; answers show milliseconds, as the CRUD API does. */
const millis = (t: unknown) => `${String(t).slice(0, 23)}Z`;

function jsonValue(value: unknown): string {
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (value === null || value === undefined) return "null";
  return JSON.stringify(value);
}

export async function* encodeJson(answer: HistoryAnswer): AsyncGenerator<string> {
  const columns = historyColumns(answer);
  const keys = columns.map((column, i) => `${i > 0 ? "," : ""}${JSON.stringify(column)}:`);
  let first = true;
  yield "[";
  for await (const page of answer.pages()) {
    const fixed = fixedValues(page, jsonValue);
    const parts: string[] = [];
    for (const row of page.rows) {
      let text = first ? "{" : ",{";
      first = false;
      for (let i = 0; i < columns.length; i++) {
        const column = columns[i]!;
        const value =
          column === "update_timestamp"
            ? `"${millis(row.t)}"`
            : (fixed[column] ?? jsonValue(row[column]));
        text += keys[i] + value;
      }
      parts.push(`${text}}`);
    }
    yield parts.join("");
  }
  yield "]";
}

/** RFC 4180: a value with a comma, quote or line break is quoted, its quotes doubled. */
export function csvValue(value: unknown): string {
  if (value === null || value === undefined) return "";
  const text = typeof value === "number" && !Number.isFinite(value) ? "" : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export async function* encodeCsv(answer: HistoryAnswer): AsyncGenerator<string> {
  const columns = historyColumns(answer);
  yield `${columns.map(csvValue).join(",")}\r\n`;
  for await (const page of answer.pages()) {
    const fixed = fixedValues(page, csvValue);
    const parts: string[] = [];
    for (const row of page.rows) {
      const values = columns.map((column) =>
        column === "update_timestamp" ? millis(row.t) : (fixed[column] ?? csvValue(row[column])),
      );
      parts.push(`${values.join(",")}\r\n`);
    }
    yield parts.join("");
  }
}

/** The series columns are the same on every row of a page: encode them once. */
function fixedValues(
  page: HistoryPage,
  encode: (value: unknown) => string,
): Record<string, string> {
  return Object.fromEntries(
    Object.entries(seriesValues(page.series)).map(([column, value]) => [column, encode(value)]),
  );
}

/** `axis-data-20261124T140000Z-20261124T141500Z.csv` */
export function csvFilename(from: Date, to: Date): string {
  const compact = (date: Date) => date.toISOString().replace(/[-:]/g, "").replace(/\.\d+/, "");
  return `axis-data-${compact(from)}-${compact(to)}.csv`;
}
