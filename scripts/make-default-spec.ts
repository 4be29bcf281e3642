/**
 * Writes src/features/simulator/specs/default-fields.xlsx from default-fields.csv, so the
 * binary sheet is never edited by hand and can be rebuilt: `npx tsx scripts/make-default-spec.ts`.
 * Fixed document dates keep the output byte-for-byte the same from run to run.
 */
import { readFile, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import ExcelJS from "exceljs";
import { parseCsv } from "../src/features/simulator/field-spec.ts";

const specs = fileURLToPath(new URL("../src/features/simulator/specs/", import.meta.url));
const FIXED_DATE = new Date("2024-01-01T00:00:00Z");

const csv = await readFile(`${specs}default-fields.csv`, "utf8");
const records = parseCsv(csv).filter((record) => record.values.some((v) => v.trim() !== ""));

const workbook = new ExcelJS.Workbook();
workbook.creator = "Spindle";
workbook.created = FIXED_DATE;
workbook.modified = FIXED_DATE;
const sheet = workbook.addWorksheet("Fields");
for (const record of records) sheet.addRow(record.values);
sheet.getRow(1).font = { bold: true };
sheet.columns.forEach((column, i) => {
  column.width = [12, 18, 20, 10, 16][i] ?? 14;
});

const buffer = await withPinnedClock(() => workbook.xlsx.writeBuffer());
await writeFile(`${specs}default-fields.xlsx`, new Uint8Array(buffer as ArrayBuffer));
console.log(`wrote ${specs}default-fields.xlsx (${records.length - 1} fields)`);

/** JSZip, under exceljs, stamps every zip entry with `new Date()`: pin it for the same bytes. */
async function withPinnedClock<T>(write: () => Promise<T>): Promise<T> {
  const RealDate = Date;
  class PinnedDate extends RealDate {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(FIXED_DATE.getTime());
      else super(...(args as [number]));
    }
  }
  globalThis.Date = PinnedDate as DateConstructor;
  try {
    return await write();
  } finally {
    globalThis.Date = RealDate;
  }
}
