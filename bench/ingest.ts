// Issue 4's ingest benchmark: rows/s into PostgreSQL through the in-process pipeline and through
// POST /api/ingest/ (batches of 1,000 rows, several concurrent producers), each beside a raw COPY
// of the same number of rows into the same table in the same run.
import { Readable } from "node:stream";
import { pipeline as pump } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { parseConfig } from "../src/config.ts";
import { openRuntime } from "../src/runtime.ts";
import { fixed, freshTarget, provision, ratio, signIn, startSpindle } from "./lib.ts";

const machines = 20;
const axes = ["X", "Y", "Z", "A", "C"];

interface Row {
  machine_id: number;
  axis_name: string;
  actual_position: number;
  target_position: number;
  velocity: number;
  acceleration: number;
  homed: boolean;
  timestamp: string;
}

/** `count` samples spread over the fleet, 10 Hz per axis, starting `startMs`: never colliding across phases. */
function rowsFrom(startMs: number, count: number): Row[] {
  const rows: Row[] = [];
  for (let i = 0; i < count; i++) {
    const series = i % (machines * axes.length);
    const tick = Math.floor(i / (machines * axes.length));
    rows.push({
      machine_id: 81258856 + Math.floor(series / axes.length),
      axis_name: axes[series % axes.length]!,
      actual_position: Math.sin(i) * 100,
      target_position: Math.sin(i + 1) * 100,
      velocity: Math.cos(i) * 50,
      acceleration: Math.sin(i / 3) * 10,
      homed: true,
      timestamp: new Date(startMs + tick * 100).toISOString(),
    });
  }
  return rows;
}

const chunk = <T>(items: T[], size: number) =>
  Array.from({ length: Math.ceil(items.length / size) }, (_, i) =>
    items.slice(i * size, (i + 1) * size),
  );

async function concurrently<T>(items: T[], workers: number, work: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

export async function benchIngest({ rows = 200_000, producers = 8 } = {}) {
  const target = await freshTarget("postgres");
  try {
    await provision(target);
    const runtime = await openRuntime(parseConfig(target.env));
    const { services } = runtime;
    const day = Date.now() - 6 * 3_600_000;
    await services.partitions.ensure([day, day + 86_400_000]);
    const results: string[] = [];
    try {
      await services.db.query(
        "insert into machine select 81258856 + g, 'Machine ' || g, 24 from generate_series(0, $1::int - 1) g on conflict do nothing",
        [machines],
      );
      await services.db.query(
        "insert into axis (machine_id, axis_name, max_velocity, max_acceleration) select 81258856 + g, a, 500, 2000 from generate_series(0, $1::int - 1) g, unnest($2::text[]) a on conflict do nothing",
        [machines, axes],
      );
      services.changes.changed("machine", "axis");
      const catalog = await services.catalog.fleet();
      const idOf = (row: Row) =>
        catalog.machines.get(row.machine_id)!.axes.get(row.axis_name)!.axisId;

      // Baseline: a raw COPY of the same rows into the same table, from a client connection.
      const copyRows = rowsFrom(day, rows);
      const client = new pg.Client({ connectionString: target.env.DATABASE_URL });
      await client.connect();
      const copyStart = performance.now();
      const lines = copyRows.map(
        (row) =>
          `${idOf(row)}\t${row.timestamp}\t${row.actual_position}\t${row.target_position}\t${row.velocity}\t${row.acceleration}\t${row.homed ? "t" : "f"}\n`,
      );
      await pump(
        Readable.from(chunk(lines, 5000).map((part) => part.join(""))),
        client.query(
          copyFrom(
            "copy axis_data (axis_id, update_timestamp, actual_position, target_position, velocity, acceleration, homed) from stdin",
          ),
        ),
      );
      const copySeconds = (performance.now() - copyStart) / 1000;
      await client.end();
      const copyRate = rows / copySeconds;

      // In-process: the pipeline every source uses, validation included.
      const inProcessRows = rowsFrom(day + 3_600_000, rows);
      const inProcessStart = performance.now();
      await concurrently(chunk(inProcessRows, 1000), producers, async (batch) => {
        await services.ingest.ingest({ axis_data: batch });
      });
      const inProcessRate = rows / ((performance.now() - inProcessStart) / 1000);

      results.push(`| raw COPY (baseline) | ${Math.round(copyRate).toLocaleString("en")} | 1.00 |`);
      results.push(
        `| in-process pipeline (${producers} producers × 1,000-row batches) | ${Math.round(inProcessRate).toLocaleString("en")} | **${fixed(ratio(inProcessRate, copyRate))}** |`,
      );

      // HTTP: a Spindle server in its own process; producers here send JSON batches of 1,000.
      await services.ingest.close();
      await runtime.close();
      const server = await startSpindle(target);
      try {
        const token = await signIn(server);
        const httpRows = rowsFrom(day + 2 * 3_600_000, rows);
        const bodies = chunk(httpRows, 1000).map((batch) => JSON.stringify({ axis_data: batch }));
        const httpStart = performance.now();
        await concurrently(bodies, producers, async (body) => {
          for (;;) {
            const answer = await fetch(`${server.url}/api/ingest/`, {
              method: "POST",
              headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
              body,
            });
            if (answer.status === 202) return;
            if (answer.status !== 503)
              throw new Error(`ingest: ${answer.status} ${await answer.text()}`);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        });
        const httpRate = rows / ((performance.now() - httpStart) / 1000);
        results.push(
          `| POST /api/ingest/ (${producers} producers × 1,000-row JSON batches) | ${Math.round(httpRate).toLocaleString("en")} | **${fixed(ratio(httpRate, copyRate))}** |`,
        );
      } finally {
        await server.stop();
      }
    } finally {
      await services.ingest.close().catch(() => {});
      await runtime.close().catch(() => {});
    }
    return [
      `Ingest of ${rows.toLocaleString("en")} rows into PostgreSQL (axis_data with its unique (axis_id, time) index), each path beside a raw COPY of as many rows in the same run:`,
      "",
      "| path | rows/s | ratio to COPY |",
      "| --- | --- | --- |",
      ...results,
    ].join("\n");
  } finally {
    await target.cleanup();
  }
}
