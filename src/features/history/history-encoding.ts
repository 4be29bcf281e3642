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

/**
 * `t` carries six digits past the second, for exact paging; answers show milliseconds, and the
 * microseconds when there are any, as ingest stores times and the CRUD API and live feed show them.
 */
const millis = (t: unknown) => {
  const text = String(t);
  return text.slice(23, 26) === "000" ? `${text.slice(0, 23)}Z` : text;
};

/** A series column (an id or a name) as JSON. */
const jsonValue = (value: unknown): string => JSON.stringify(value) ?? "null";

/** PostgreSQL prints NaN and ±Infinity, which JSON cannot carry. */
const notFinite = (text: string) => text.endsWith("N") || text.endsWith("y");

/**
 * A field value: PostgreSQL's text of a number (`12.5`, `1e-05`) or boolean (`true`) is already
 * a JSON literal and a CSV field; counts and ids come as numbers.
 */
function fieldText(value: unknown, notANumber: string): string {
  if (typeof value === "string") return notFinite(value) ? notANumber : value;
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : notANumber;
  return value === null || value === undefined ? notANumber : String(value);
}

const seriesColumns = ["axis", "machine_id", "machine_name", "axis_name"];

/** The series columns as JSON members: the same on every row of a page, encoded once. */
function seriesJson(series: HistorySeries): string {
  const values = seriesValues(series);
  return seriesColumns.map((column) => `"${column}":${jsonValue(values[column])}`).join(",");
}

/**
 * A bucket row's `text` (history-service.ts, `bucketText`) with the values JSON or CSV cannot
 * carry as PostgreSQL prints them (NaN, ±Infinity: only data written by direct SQL can hold them)
 * made `null` in JSON and empty in CSV, as in raw rows.
 */
function bucketRowText(row: Record<string, unknown>, format: "json" | "csv"): string {
  const text = row.text as string;
  if (!text.includes("NaN") && !text.includes("Infinity")) return text;
  return format === "json"
    ? text.replace(/:(?:NaN|-?Infinity)(?=,|$)/g, ":null")
    : text.replace(/(^|,)(?:NaN|-?Infinity)(?=,|$)/g, "$1");
}

export async function* encodeJson(answer: HistoryAnswer): AsyncGenerator<string> {
  if (answer.bucketMs !== undefined) {
    yield* encodeJsonBuckets(answer);
    return;
  }
  const columns = historyColumns(answer);
  // A row is its own columns before the series block (raw: axis_data_id), the series block (the
  // same on every row of a page: encoded once per page), then its own columns after it.
  const seriesAt = columns.indexOf("axis");
  const own = (names: string[], leadingComma: boolean) =>
    names.map((column, i) => ({
      column,
      key: `${leadingComma || i > 0 ? "," : ""}${JSON.stringify(column)}:`,
    }));
  const head = own(columns.slice(0, seriesAt), false);
  const tail = own(columns.slice(seriesAt + seriesColumns.length), true);
  let first = true;
  yield "[";
  for await (const page of answer.pages()) {
    const series = `${head.length > 0 ? "," : ""}${seriesJson(page.series)}`;
    const parts: string[] = [];
    for (const row of page.rows) {
      let text = first ? "{" : ",{";
      first = false;
      for (const { column, key } of head) text += key + fieldText(row[column], "null");
      text += series;
      for (const { column, key } of tail) {
        text +=
          key +
          (column === "update_timestamp" ? `"${millis(row.t)}"` : fieldText(row[column], "null"));
      }
      parts.push(`${text}}`);
    }
    yield parts.join("");
  }
  yield "]";
}

/** Downsampled rows: the series columns, encoded once per page, then the bucket's own text. */
async function* encodeJsonBuckets(answer: HistoryAnswer): AsyncGenerator<string> {
  let first = true;
  yield "[";
  for await (const page of answer.pages()) {
    const series = seriesJson(page.series);
    const parts: string[] = [];
    for (const row of page.rows) {
      parts.push(`${first ? "{" : ",{"}${series},${bucketRowText(row, "json")}}`);
      first = false;
    }
    yield parts.join("");
  }
  yield "]";
}

/**
 * RFC 4180: a value with a comma, quote or line break is quoted, its quotes doubled. Text a
 * spreadsheet would take for a formula (first character =, +, -, @, tab or CR: a machine named
 * `=HYPERLINK(…)`) gets a leading ' so it opens as the text it is, as OWASP advises for CSV
 * exports. Numbers are never text here, so a negative one stays a number.
 */
export function csvValue(value: unknown): string {
  if (value === null || value === undefined) return "";
  let text = String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export async function* encodeCsv(answer: HistoryAnswer): AsyncGenerator<string> {
  const columns = historyColumns(answer);
  yield `${columns.map(csvValue).join(",")}\r\n`;
  const buckets = answer.bucketMs !== undefined;
  for await (const page of answer.pages()) {
    const fixed = fixedValues(page, csvValue);
    const parts: string[] = [];
    if (buckets) {
      const series = seriesColumns.map((column) => fixed[column]).join(",");
      for (const row of page.rows) parts.push(`${series},${bucketRowText(row, "csv")}\r\n`);
      yield parts.join("");
      continue;
    }
    for (const row of page.rows) {
      const values = columns.map((column) =>
        column === "update_timestamp"
          ? millis(row.t)
          : (fixed[column] ?? fieldText(row[column], "")),
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
