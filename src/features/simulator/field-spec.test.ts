import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import ExcelJS from "exceljs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_FIELD_SPEC_FILE,
  entityIntervals,
  type FieldSpec,
  FieldSpecError,
  parseUpdateInterval,
  readFieldSpec,
  withSpeed,
} from "./field-spec.ts";

const HEADER = ["entity", "field", "unit", "type", "update interval"];
const ROWS = [
  ["machine", "machine_name", "", "string", "static"],
  ["axis", "actual_position", "mm", "float", "100 ms"],
  ["axis", "velocity", "mm/s", "float", "250ms"],
  ["tool", "feedrate", "mm/min", "float", "15 min"],
  ["tool_usage", "tool_in_use", "", "integer", "5 MIN"],
];

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "spindle-spec-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const csvOf = (rows: string[][]) => rows.map((row) => row.join(",")).join("\n");
async function writeSpec(name: string, content: string): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, content);
  return file;
}
async function writeXlsx(name: string, rows: string[][]): Promise<string> {
  const workbook = new ExcelJS.Workbook();
  const sheet = workbook.addWorksheet("Fields");
  for (const row of rows) sheet.addRow(row);
  const file = join(dir, name);
  await workbook.xlsx.writeFile(file);
  return file;
}
async function specError(file: string): Promise<FieldSpecError> {
  const error = await readFieldSpec(file).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(FieldSpecError);
  return error as FieldSpecError;
}

describe("update intervals", () => {
  it.each([
    ["100 ms", 100],
    ["250ms", 250],
    ["5 s", 5000],
    ["5 Sec", 5000],
    ["15 min", 900_000],
    ["15 MIN", 900_000],
    ["1 h", 3_600_000],
    ["0.5 s", 500],
  ])("reads %s as %i ms", (text, ms) => {
    expect(parseUpdateInterval(text)).toBe(ms);
  });

  it.each(["static", "Once", "-"])("reads %s as a static field", (text) => {
    expect(parseUpdateInterval(text)).toBeNull();
  });

  it.each(["fast", "100", "0 s", "5 parsecs", "", "-1 s"])("rejects %j", (text) => {
    expect(parseUpdateInterval(text)).toBeUndefined();
  });
});

describe("reading a spec", () => {
  it("reads the same spec from .xlsx, .csv and .json", async () => {
    const csv = await writeSpec("same.csv", csvOf([HEADER, ...ROWS]));
    const xlsx = await writeXlsx("same.xlsx", [HEADER, ...ROWS]);
    const json = await writeSpec(
      "same.json",
      JSON.stringify(ROWS.map((row) => Object.fromEntries(HEADER.map((h, i) => [h, row[i]])))),
    );
    const fromCsv = await readFieldSpec(csv);
    const fromXlsx = await readFieldSpec(xlsx);
    const fromJson = await readFieldSpec(json);
    const meaning = (spec: FieldSpec) => spec.entries.map(({ row: _, ...entry }) => entry);
    expect(meaning(fromXlsx)).toEqual(meaning(fromCsv));
    expect(meaning(fromJson)).toEqual(meaning(fromCsv));
    expect(fromCsv.entries.map((e) => e.intervalMs)).toEqual([null, 100, 250, 900_000, 300_000]);
  });

  it("ships the default spec as .xlsx and .csv with the same content", async () => {
    const xlsx = await readFieldSpec(DEFAULT_FIELD_SPEC_FILE);
    const csv = await readFieldSpec(DEFAULT_FIELD_SPEC_FILE.replace(/\.xlsx$/, ".csv"));
    expect(xlsx.entries).toEqual(csv.entries);
    expect(entityIntervals(xlsx, "axis")).toEqual([100]);
    expect(entityIntervals(xlsx, "tool")).toEqual([900_000]);
    expect(entityIntervals(xlsx, "tool_usage")).toEqual([300_000]);
  });

  it("accepts the seed's upper-case headers, extra columns and semicolon CSV", async () => {
    const file = await writeSpec(
      "excel-export.csv",
      '\uFEFFENTITY;FIELD;UNIT;TYPE;UPDATE INTERVAL;NOTES\r\naxis;homed;;boolean;100 ms;"a; b"\r\n',
    );
    const spec = await readFieldSpec(file);
    expect(spec.entries).toEqual([
      { entity: "axis", field: "homed", unit: "", type: "boolean", intervalMs: 100, row: 2 },
    ]);
  });

  it("divides every interval by the speed factor, leaving static fields static", async () => {
    const spec = await readFieldSpec(DEFAULT_FIELD_SPEC_FILE, { speed: 10 });
    expect(entityIntervals(spec, "axis")).toEqual([10]);
    expect(entityIntervals(spec, "tool_usage")).toEqual([30_000]);
    expect(spec.entries.find((e) => e.field === "machine_name")?.intervalMs).toBeNull();
    expect(() => withSpeed(spec, 0)).toThrow(/speed/);
  });
});

describe("a bad spec names the file, the row and the column", () => {
  const withRow = (row: string[]) => csvOf([HEADER, ROWS[1]!, ROWS[2]!, row]);

  it("an unparseable interval", async () => {
    const file = await writeSpec("fields.csv", withRow(["axis", "homed", "", "boolean", "fast"]));
    expect((await specError(file)).message).toBe(
      `${file}: row 4, column "update interval": cannot parse "fast" (expected e.g. "100 ms", "5 s", "15 min")`,
    );
  });

  it("an unknown field", async () => {
    const file = await writeSpec("field.csv", withRow(["axis", "jerk", "", "float", "1 s"]));
    const error = await specError(file);
    expect(error.message).toMatch(
      /^.*field\.csv: row 4, column "field": unknown axis field "jerk"/,
    );
    expect([error.row, error.column]).toEqual([4, "field"]);
  });

  it("an unknown entity", async () => {
    const file = await writeSpec("entity.csv", withRow(["spindle", "speed", "", "float", "1 s"]));
    expect((await specError(file)).message).toMatch(/entity\.csv: row 4, column "entity": unknown/);
  });

  it("a static interval on a time-series field", async () => {
    const file = await writeSpec("static.csv", withRow(["axis", "homed", "", "boolean", "once"]));
    expect((await specError(file)).message).toMatch(/row 4, column "update interval": "once"/);
  });

  it("a missing column", async () => {
    const file = await writeSpec("columns.csv", "entity,field,unit,type\naxis,homed,,boolean\n");
    expect((await specError(file)).message).toBe(
      `${file}: row 1, column "update interval": missing column (found: entity, field, unit, type)`,
    );
  });

  it("a missing column in .xlsx", async () => {
    const file = await writeXlsx("columns.xlsx", [
      ["entity", "field", "type", "update interval"],
      ["axis", "homed", "boolean", "100 ms"],
    ]);
    expect((await specError(file)).message).toMatch(/columns\.xlsx: row 1, column "unit": missing/);
  });

  it("a missing key in a .json entry", async () => {
    const file = await writeSpec(
      "entries.json",
      JSON.stringify({
        fields: [
          { entity: "axis", field: "homed", unit: "", type: "boolean", update_interval: "1 s" },
          { entity: "axis", field: "velocity", unit: "mm/s", type: "float" },
        ],
      }),
    );
    expect((await specError(file)).message).toBe(
      `${file}: row 2, column "update interval": missing column`,
    );
  });

  it("an unparseable interval in .xlsx, on the sheet's row", async () => {
    const file = await writeXlsx("interval.xlsx", [
      HEADER,
      ROWS[1]!,
      [],
      ["tool", "feedrate", "", "", "soon"],
    ]);
    expect((await specError(file)).message).toMatch(
      /interval\.xlsx: row 4, column "update interval": cannot parse "soon"/,
    );
  });

  it("a duplicate field", async () => {
    const file = await writeSpec("twice.csv", withRow(["AXIS", "Velocity", "", "float", "1 s"]));
    expect((await specError(file)).message).toBe(
      `${file}: row 4, column "field": duplicate of row 3 (axis.velocity)`,
    );
  });

  it.each([
    ["empty.csv", ""],
    ["empty.json", " \n"],
  ])("an empty file (%s)", async (name, content) => {
    const file = await writeSpec(name, content);
    expect((await specError(file)).message).toMatch(
      new RegExp(`${name.replace(".", "\\.")}: row 1, column "entity": the file is empty`),
    );
  });

  it("an empty .xlsx sheet", async () => {
    const file = await writeXlsx("empty.xlsx", []);
    expect((await specError(file)).message).toMatch(
      /empty\.xlsx: row 1, column "entity": the file is empty/,
    );
  });

  it("a header and no fields", async () => {
    const file = await writeSpec("header-only.csv", `${HEADER.join(",")}\n`);
    expect((await specError(file)).message).toMatch(
      /row 2, column "field": the spec lists no fields/,
    );
  });

  it("invalid JSON, an unknown format and a missing file", async () => {
    const json = await writeSpec("broken.json", "[{");
    expect((await specError(json)).message).toMatch(/broken\.json: not valid JSON/);
    const text = await writeSpec("fields.txt", csvOf([HEADER, ROWS[1]!]));
    expect((await specError(text)).message).toMatch(/fields\.txt: unsupported format "\.txt"/);
    expect((await specError(join(dir, "absent.csv"))).message).toMatch(
      /absent\.csv: cannot read the file \(ENOENT\)/,
    );
  });
});
