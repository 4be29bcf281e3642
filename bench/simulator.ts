// Issue 3's benchmark: samples/s that the simulator (the code behind `spindle simulate --target
// db`) sustains into each database with 20 and 1,000 machines, sped up until the database is the
// limit, beside a raw multi-row insert of as many rows into the same table in the same run.
import { parseConfig } from "../src/config.ts";
import { databaseTarget, startSimulator } from "../src/features/simulator/simulator-runner.ts";
import { openRuntime } from "../src/runtime.ts";
import { type DatabaseTarget, fixed, freshTarget, ratio } from "./lib.ts";

export async function benchSimulator({
  seconds = 8,
  databases = ["postgres", "embedded"] as DatabaseTarget[],
} = {}) {
  const rows: string[] = [];
  for (const database of databases) {
    for (const machines of [20, 1000]) {
      const target = await freshTarget(database);
      try {
        const runtime = await openRuntime(parseConfig(target.env));
        const { services } = runtime;
        try {
          // Spec rate × speed far above what any database here takes: the simulator runs flat out.
          const speed = Math.min(100, Math.ceil(400_000 / (machines * 50)));
          const simulator = await startSimulator(databaseTarget(services), {
            machines,
            speed,
            durationMs: seconds * 1000,
          });
          const stats = await simulator.fleet.done;
          await services.ingest.close();
          const simulated = stats.samplesPerSecond;

          // Baseline: the same number of axis rows, inserted raw in 5,000-row unnest statements.
          const axisIds = (
            await services.db.query<{ axis_id: number }>(
              "select axis_id from axis order by axis_id",
            )
          ).rows.map((row) => row.axis_id);
          const total = Math.max(20_000, Math.min(stats.samples.axis, 400_000));
          const base = Date.now() - 3 * 3_600_000;
          await services.partitions.ensure([base, base + 3_600_000]);
          const started = performance.now();
          for (let offset = 0; offset < total; offset += 5000) {
            const size = Math.min(5000, total - offset);
            const ids: number[] = [];
            const times: string[] = [];
            const values: number[] = [];
            const homed: boolean[] = [];
            for (let i = 0; i < size; i++) {
              const n = offset + i;
              ids.push(axisIds[n % axisIds.length]!);
              times.push(new Date(base + Math.floor(n / axisIds.length) * 10).toISOString());
              values.push(Math.sin(n));
              homed.push(true);
            }
            await services.db.query(
              `insert into axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed)
               select * from unnest($1::bigint[], $2::timestamptz[], $3::float8[], $3::float8[], $3::float8[], $3::float8[], $4::bool[])`,
              [ids, times, values, homed],
            );
          }
          const raw = total / ((performance.now() - started) / 1000);
          rows.push(
            `| ${database} | ${machines} | ${Math.round(stats.expectedSamplesPerSecond).toLocaleString("en")} | ${Math.round(simulated).toLocaleString("en")} | ${Math.round(stats.lagMs)} | ${Math.round(raw).toLocaleString("en")} | **${fixed(ratio(simulated, raw))}** |`,
          );
        } finally {
          await services.ingest.close().catch(() => {});
          await runtime.close();
        }
      } finally {
        await target.cleanup();
      }
    }
  }
  return [
    `The simulator flat out for ${seconds} s (in-process, through the ingest pipeline, as \`spindle simulate --target db\`), beside a raw multi-row insert (5,000-row unnest statements) of as many rows in the same run:`,
    "",
    "| database | machines | asked (samples/s) | achieved (samples/s) | final lag ms | raw insert (rows/s) | ratio |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}
