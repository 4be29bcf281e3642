import { readFile } from "node:fs/promises";
import { extname } from "node:path";
import { fileURLToPath } from "node:url";
import ExcelJS from "exceljs";
import { DomainError } from "../../platform/errors.ts";

/**
 * The field spec: how often each field of each entity gets a new value. The seed ships it as
 * an Excel sheet ("UPDATE INTERVAL"); we read that, CSV and JSON, all with the same columns.
 */
export type SpecEntity = "axis" | "tool" | "tool_usage" | "machine";

export const KNOWN_FIELDS: Record<SpecEntity, readonly string[]> = {
  axis: [
    "actual_position",
    "target_position",
    "velocity",
    "acceleration",
    "homed",
    "distance_to_go",
  ],
  tool: ["tool_offset", "feedrate"],
  tool_usage: ["tool_in_use"],
  machine: ["machine_name", "tool_capacity"],
};

export interface FieldSpecEntry {
  entity: SpecEntity;
  field: string;
  unit: string;
  type: string;
  /** Milliseconds between values; null for a static field, written once when a machine is created. */
  intervalMs: number | null;
  /** Where it was read, for messages: the spreadsheet row (header = row 1) or the JSON entry. */
  row: number;
}

export interface FieldSpec {
  source: string;
  entries: FieldSpecEntry[];
}

export const SPEC_COLUMNS = ["entity", "field", "unit", "type", "update interval"] as const;
type SpecColumn = (typeof SPEC_COLUMNS)[number];

export class FieldSpecError extends DomainError {
  constructor(
    readonly file: string,
    readonly row: number | null,
    readonly column: string | null,
    problem: string,
  ) {
    const where = [
      row === null ? null : `row ${row}`,
      column === null ? null : `column "${column}"`,
    ]
      .filter(Boolean)
      .join(", ");
    super("validation", `${file}: ${where ? `${where}: ` : ""}${problem}`);
    this.name = "FieldSpecError";
  }
}

/** Cells as read, before any meaning is given to them: one record per non-blank row. */
interface RawRow {
  row: number;
  cells: Map<string, string>;
}
interface RawTable {
  /** Normalised header names, or null when the format has no header row (JSON). */
  header: string[] | null;
  rows: RawRow[];
}

export interface ReadFieldSpecOptions {
  /** Divides every interval, for demos: 10 makes 100 ms axis samples arrive every 10 ms. */
  speed?: number;
}

export async function readFieldSpec(
  file: string,
  options: ReadFieldSpecOptions = {},
): Promise<FieldSpec> {
  const table = await readRawTable(file);
  const spec = parseFieldSpecTable(file, table);
  return options.speed === undefined ? spec : withSpeed(spec, options.speed);
}

async function readRawTable(file: string): Promise<RawTable> {
  const format = extname(file).toLowerCase();
  if (![".xlsx", ".csv", ".json"].includes(format)) {
    throw new FieldSpecError(
      file,
      null,
      null,
      `unsupported format "${format || "(none)"}" (expected .xlsx, .csv or .json)`,
    );
  }
  let content: Buffer;
  try {
    content = await readFile(file);
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new FieldSpecError(file, null, null, `cannot read the file (${reason})`);
  }
  if (format === ".xlsx") return readXlsxTable(file, content);
  const text = content.toString("utf8").replace(/^\uFEFF/, "");
  return format === ".csv" ? readCsvTable(text) : readJsonTable(file, text);
}

async function readXlsxTable(file: string, content: Buffer): Promise<RawTable> {
  const workbook = new ExcelJS.Workbook();
  try {
    await workbook.xlsx.load(content as unknown as ArrayBuffer);
  } catch (error) {
    throw new FieldSpecError(file, null, null, `not a readable .xlsx workbook (${String(error)})`);
  }
  const sheet = workbook.worksheets[0];
  const lines: { row: number; values: string[] }[] = [];
  sheet?.eachRow({ includeEmpty: false }, (row, rowNumber) => {
    const values: string[] = [];
    row.eachCell({ includeEmpty: true }, (cell, columnNumber) => {
      values[columnNumber - 1] = cell.text ?? "";
    });
    lines.push({ row: rowNumber, values: Array.from(values, (v) => v ?? "") });
  });
  return tableFromLines(lines);
}

function readCsvTable(text: string): RawTable {
  return tableFromLines(parseCsv(text));
}

function readJsonTable(file: string, text: string): RawTable {
  if (text.trim() === "") {
    throw new FieldSpecError(
      file,
      1,
      SPEC_COLUMNS[0],
      `the file is empty (expected an array of fields with ${SPEC_COLUMNS.join(", ")})`,
    );
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new FieldSpecError(file, null, null, `not valid JSON (${(error as Error).message})`);
  }
  const entries = Array.isArray(document)
    ? document
    : (document as { fields?: unknown } | null)?.fields;
  if (!Array.isArray(entries)) {
    throw new FieldSpecError(
      file,
      null,
      null,
      'expected an array of fields or { "fields": [...] }',
    );
  }
  const rows = entries.map((entry, index) => {
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
      throw new FieldSpecError(file, index + 1, null, "expected an object with the spec columns");
    }
    const cells = new Map<string, string>();
    for (const [key, value] of Object.entries(entry)) {
      cells.set(normaliseColumn(key), value === null || value === undefined ? "" : String(value));
    }
    return { row: index + 1, cells };
  });
  return { header: null, rows };
}

function tableFromLines(lines: { row: number; values: string[] }[]): RawTable {
  const nonBlank = lines.filter((line) => line.values.some((value) => value.trim() !== ""));
  const [headerLine, ...dataLines] = nonBlank;
  if (!headerLine) return { header: [], rows: [] };
  const header = headerLine.values.map(normaliseColumn);
  const rows = dataLines.map(({ row, values }) => {
    const cells = new Map<string, string>();
    header.forEach((name, i) => {
      if (name !== "") cells.set(name, values[i] ?? "");
    });
    return { row, cells };
  });
  return { header, rows };
}

/** "UPDATE_INTERVAL", "Update interval" and "updateInterval" are the same column. */
function normaliseColumn(name: string): string {
  const spaced = name
    .replace(/([a-z])([A-Z])/g, "$1 $2")
    .toLowerCase()
    .replace(/[\s_-]+/g, " ")
    .trim();
  return spaced === "interval" ? "update interval" : spaced;
}

/** RFC 4180 with the line where each record starts; Excel's `;` exports are accepted too. */
export function parseCsv(text: string): { row: number; values: string[] }[] {
  const firstLine = text.slice(0, text.search(/\r?\n|$/));
  const delimiter = firstLine.includes(";") && !firstLine.includes(",") ? ";" : ",";
  const records: { row: number; values: string[] }[] = [];
  let values: string[] = [];
  let value = "";
  let quoted = false;
  let line = 1;
  let recordLine = 1;
  const endRecord = () => {
    values.push(value);
    records.push({ row: recordLine, values });
    values = [];
    value = "";
  };
  for (let i = 0; i < text.length; i += 1) {
    const char = text[i]!;
    if (char === "\n") line += 1;
    if (quoted) {
      if (char === '"' && text[i + 1] === '"') {
        value += '"';
        i += 1;
      } else if (char === '"') quoted = false;
      else value += char;
    } else if (char === '"') quoted = true;
    else if (char === delimiter) {
      values.push(value);
      value = "";
    } else if (char === "\n") {
      endRecord();
      recordLine = line;
    } else if (char !== "\r") value += char;
  }
  if (value !== "" || values.length > 0) endRecord();
  return records;
}

function parseFieldSpecTable(file: string, table: RawTable): FieldSpec {
  if (table.header !== null) checkHeader(file, table.header);
  if (table.rows.length === 0) {
    throw new FieldSpecError(
      file,
      table.header === null ? 1 : 2,
      "field",
      "the spec lists no fields",
    );
  }
  const seen = new Map<string, number>();
  const entries = table.rows.map((raw) => {
    const entry = parseEntry(file, raw);
    const key = `${entry.entity}.${entry.field}`;
    const first = seen.get(key);
    if (first !== undefined) {
      throw new FieldSpecError(file, raw.row, "field", `duplicate of row ${first} (${key})`);
    }
    seen.set(key, raw.row);
    return entry;
  });
  return { source: file, entries };
}

function checkHeader(file: string, header: string[]): void {
  if (header.length === 0) {
    throw new FieldSpecError(
      file,
      1,
      SPEC_COLUMNS[0],
      `the file is empty (expected a header row: ${SPEC_COLUMNS.join(", ")})`,
    );
  }
  for (const column of SPEC_COLUMNS) {
    if (!header.includes(column)) {
      const found = header.filter(Boolean).join(", ") || "nothing";
      throw new FieldSpecError(file, 1, column, `missing column (found: ${found})`);
    }
  }
}

function parseEntry(file: string, raw: RawRow): FieldSpecEntry {
  const cell = (column: SpecColumn): string => {
    const value = raw.cells.get(column);
    if (value === undefined) throw new FieldSpecError(file, raw.row, column, "missing column");
    return value.trim();
  };
  const entityText = cell("entity").toLowerCase();
  if (!(entityText in KNOWN_FIELDS)) {
    const known = Object.keys(KNOWN_FIELDS).join(", ");
    throw new FieldSpecError(
      file,
      raw.row,
      "entity",
      `unknown entity "${cell("entity")}" (expected one of ${known})`,
    );
  }
  const entity = entityText as SpecEntity;
  const field = cell("field").toLowerCase();
  if (!KNOWN_FIELDS[entity].includes(field)) {
    throw new FieldSpecError(
      file,
      raw.row,
      "field",
      `unknown ${entity} field "${cell("field")}" (expected one of ${KNOWN_FIELDS[entity].join(", ")})`,
    );
  }
  const intervalText = cell("update interval");
  const intervalMs = parseUpdateInterval(intervalText);
  if (intervalMs === undefined) {
    throw new FieldSpecError(
      file,
      raw.row,
      "update interval",
      `cannot parse "${intervalText}" (expected e.g. "100 ms", "5 s", "15 min")`,
    );
  }
  if (intervalMs === null && entity !== "machine") {
    throw new FieldSpecError(
      file,
      raw.row,
      "update interval",
      `"${intervalText}" is only for machine fields; ${entity}.${field} needs an interval such as "100 ms"`,
    );
  }
  return { entity, field, unit: cell("unit"), type: cell("type"), intervalMs, row: raw.row };
}

const UNIT_MS: [RegExp, number][] = [
  [/^(ms|msec|millis|milliseconds?)$/, 1],
  [/^(s|sec|secs|seconds?)$/, 1000],
  [/^(m|min|mins|minutes?)$/, 60_000],
  [/^(h|hr|hrs|hours?)$/, 3_600_000],
];
const STATIC_WORDS = new Set(["static", "once", "constant", "never", "-", "n/a"]);

/**
 * "100 ms", "5 s", "15 min", "1 h", "250ms", any case → milliseconds; "static", "once" and the
 * like → null (a value that never changes); anything else → undefined.
 */
export function parseUpdateInterval(text: string): number | null | undefined {
  const normalised = text.trim().toLowerCase();
  if (STATIC_WORDS.has(normalised)) return null;
  const match = /^(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)\.?$/.exec(normalised);
  if (!match) return undefined;
  const amount = Number(match[1]);
  const unit = UNIT_MS.find(([pattern]) => pattern.test(match[2]!));
  if (!unit || !(amount > 0)) return undefined;
  return amount * unit[1];
}

/** Every interval divided by `speed`; static fields stay static. */
export function withSpeed(spec: FieldSpec, speed: number): FieldSpec {
  if (!(speed > 0) || !Number.isFinite(speed)) {
    throw new RangeError(`speed must be a positive number, not ${speed}`);
  }
  return {
    ...spec,
    entries: spec.entries.map((entry) => ({
      ...entry,
      intervalMs: entry.intervalMs === null ? null : entry.intervalMs / speed,
    })),
  };
}

/** The distinct intervals, ms, at which an entity's fields are due. */
export function entityIntervals(spec: FieldSpec, entity: SpecEntity): number[] {
  const intervals = spec.entries
    .filter((entry) => entry.entity === entity && entry.intervalMs !== null)
    .map((entry) => entry.intervalMs as number);
  return [...new Set(intervals)].sort((a, b) => a - b);
}

/** The spec `spindle simulate` uses without `--fields`: the seed's intervals. */
export const DEFAULT_FIELD_SPEC_FILE = fileURLToPath(
  new URL("./specs/default-fields.xlsx", import.meta.url),
);
