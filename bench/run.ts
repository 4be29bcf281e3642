// npm run bench [-- console|crud|history|ingest|live|simulator] [--seconds N] [--hours N]
// [--connections N] (history's concurrent requests): runs the benchmarks and prints
// their tables in Markdown, ready for docs/benchmarks.md. Each figure is a ratio against a
// baseline measured in the same run.
import { parseArgs } from "node:util";
import { benchConsole } from "./console.ts";
import { benchCrud } from "./crud.ts";
import { benchHistory } from "./history.ts";
import { benchIngest } from "./ingest.ts";
import { benchLive } from "./live.ts";
import { benchSimulator } from "./simulator.ts";

const benches: Record<
  string,
  (options: { seconds?: number; hours?: number; connections?: number }) => Promise<string>
> = {
  console: (options) => benchConsole(options),
  crud: (options) => benchCrud(options),
  history: (options) => benchHistory(options),
  ingest: () => benchIngest(),
  live: (options) => benchLive(options),
  simulator: (options) => benchSimulator(options),
};

const { values, positionals } = parseArgs({
  options: {
    seconds: { type: "string" },
    hours: { type: "string" },
    connections: { type: "string" },
  },
  allowPositionals: true,
});
const selected = positionals.length > 0 ? positionals : Object.keys(benches);
const unknown = selected.filter((name) => !(name in benches));
if (unknown.length > 0) {
  console.error(
    `unknown benchmark: ${unknown.join(", ")} (known: ${Object.keys(benches).join(", ")})`,
  );
  process.exit(2);
}
/** A flag's value as a positive number; anything else ends the run with its name. */
const positive = (name: "seconds" | "hours" | "connections"): number | undefined => {
  const text = values[name];
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!(value > 0) || !Number.isFinite(value)) {
    console.error(`--${name} must be a positive number, not "${text}"`);
    process.exit(2);
  }
  return value;
};
const seconds = positive("seconds");
const hours = positive("hours");
const connections = positive("connections");
console.log(
  `# npm run bench ${process.argv.slice(2).join(" ")}\n\nnode ${process.version}, ${new Date().toISOString()}\n`,
);
for (const name of selected) {
  console.log(`## ${name}\n`);
  console.log(
    await benches[name]!({
      ...(seconds === undefined ? {} : { seconds }),
      ...(hours === undefined ? {} : { hours }),
      ...(connections === undefined ? {} : { connections }),
    }),
  );
  console.log();
}
