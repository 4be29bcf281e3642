// Issue 4's history benchmark, on PostgreSQL: N hours (default 1) of 20 machines × 5 axes at
// 10 Hz loaded with COPY, then p50/p99 of
//   (a) the last 15 minutes of 1 machine × 5 axes, max_points=1000
//   (b) the whole span of 20 machines × 1 axis, max_points=1000
// through HTTP (autocannon, its own process) beside the same SQL statements run in-process over
// node-postgres; and a raw CSV export of 15 minutes at 100 Hz of one machine (450,000 rows), in
// rows/s beside PostgreSQL's own `COPY (select …) TO STDOUT CSV`, with the server's peak RSS.

import { readFile } from "node:fs/promises";
import { Readable, Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { parseConfig } from "../src/config.ts";
import { AxisDataPartitions } from "../src/features/axis-data/partitions.ts";
import { createHistoryService } from "../src/features/history/history-service.ts";
import { systemClock } from "../src/platform/context.ts";
import { openDatabase } from "../src/platform/database.ts";
import { openRuntime } from "../src/runtime.ts";
import {
  autocannon,
  fixed,
  freshTarget,
  provision,
  ratio,
  type Server,
  signIn,
  startSpindle,
} from "./lib.ts";

const machineCount = 20;
const axisNames = ["X", "Y", "Z", "A", "C"];
const firstMachine = 81_300_000;
const exportMachine = firstMachine + machineCount;
const minute = 60_000;

export interface HistoryBenchOptions {
  hours?: number;
  seconds?: number;
  connections?: number;
}

export async function benchHistory({
  hours = 1,
  seconds = 10,
  connections = 1,
}: HistoryBenchOptions = {}): Promise<string> {
  const target = await freshTarget("postgres");
  const url = target.env.DATABASE_URL!;
  const lines: string[] = [];
  try {
    await provision(target);
    const end = Math.floor(Date.now() / 1000) * 1000;
    const start = end - hours * 3_600_000;
    const load = await loadData(url, start, end);
    // COPY bypasses Spindle, so its rollups are built afterwards, as `spindle rebuild-rollups` does.
    const rebuildStarted = performance.now();
    const runtime = await openRuntime(parseConfig(target.env));
    try {
      await runtime.services.rollups.rebuild(new Date(start), new Date(end + minute));
      // What autovacuum does after a bulk load in production: the planner needs statistics.
      await runtime.services.db.query(
        "analyze axis_data, axis_data_1s, axis_data_5s, axis_data_10s, axis_data_1m",
      );
    } finally {
      await runtime.close();
    }
    const rebuildSeconds = (performance.now() - rebuildStarted) / 1000;
    lines.push(
      `Loaded ${load.rows.toLocaleString("en")} rows (${hours} h of ${machineCount} machines × ${axisNames.length} axes at 10 Hz, plus 15 min of one machine at 100 Hz) with COPY in ${fixed(load.seconds, 1)} s: ${Math.round(load.rows / load.seconds).toLocaleString("en")} rows/s; 1 s, 5 s, 10 s and 1 min rollups rebuilt from them in ${fixed(rebuildSeconds, 1)} s.`,
      "",
    );

    const machines = Array.from({ length: machineCount }, (_, i) => firstMachine + i);
    const queries = [
      {
        name: `(a) last 15 min, 1 machine × 5 axes, max_points=1000`,
        params: { machine_id: String(firstMachine) } as Record<string, string>,
        input: { machineIds: [firstMachine], from: end - 15 * minute, to: end },
      },
      {
        name: `(b) whole ${hours} h, 20 machines × 1 axis, max_points=1000`,
        params: { machine_id: machines.join(","), axis_name: "X" } as Record<string, string>,
        input: { machineIds: machines, axisNames: ["X"], from: start, to: end },
      },
    ];

    const spindle = await startSpindle(target);
    try {
      const token = await signIn(spindle);
      const auth = { authorization: `Bearer ${token}` };
      lines.push(
        `History queries (HTTP: autocannon, ${connections} connection × ${seconds} s, after a first request that fills the cache of finished buckets; baseline: the same SQL statements in-process over node-postgres without that cache, one after another for ${seconds} s):`,
        "",
        "| query | rows | HTTP first request ms | HTTP p50 / p99 ms | HTTP req/s | SQL via pg p50 / p99 ms | HTTP p99 ÷ SQL p99 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
      );
      const db = await openDatabase({ url, maxConnections: 10 });
      try {
        const history = createHistoryService({ db, clock: systemClock });
        for (const query of queries) {
          const search = new URLSearchParams({
            ...query.params,
            from: new Date(query.input.from).toISOString(),
            to: new Date(query.input.to).toISOString(),
            max_points: "1000",
          });
          const path = `${spindle.url}/api/axis-data/?${search}`;
          // The first request finds no finished bucket cached; the ones autocannon makes do.
          const firstStarted = performance.now();
          const answer = await fetch(path, { headers: auth });
          if (answer.status !== 200) throw new Error(`${path}: ${answer.status}`);
          const rows = ((await answer.json()) as unknown[]).length;
          const firstMs = performance.now() - firstStarted;
          const measured = await autocannon(path, { connections, seconds, headers: auth });
          if (measured.non2xx > 0 || measured.errors > 0)
            throw new Error(`${query.name}: ${measured.non2xx} non-2xx, ${measured.errors} errors`);
          const baseline = await timeLoop(seconds, async () => {
            const result = await history.query({
              ...query.input,
              from: new Date(query.input.from),
              to: new Date(query.input.to),
              maxPoints: 1000,
            });
            for await (const _page of result.pages());
          });
          lines.push(
            `| ${query.name} | ${rows} | ${Math.round(firstMs)} | ${measured.p50} / ${measured.p99} | ${Math.round(measured.requestsPerSecond)} | ${fixed(baseline.p50, 1)} / ${fixed(baseline.p99, 1)} | ${fixed(ratio(measured.p99, baseline.p99))} |`,
          );
        }
      } finally {
        await db.close();
      }

      lines.push("", ...(await benchExport(spindle, url, auth, end)));
    } finally {
      await spindle.stop();
    }
  } finally {
    await target.cleanup();
  }
  return lines.join("\n");
}

/** Machines and axes, the days' partitions, then every sample through COPY in time order. */
export async function loadData(url: string, start: number, end: number) {
  const db = await openDatabase({ url, maxConnections: 2 });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const began = performance.now();
  let rows = 0;
  try {
    const axisIds: number[][] = [];
    for (let m = 0; m <= machineCount; m++) {
      const machineId = firstMachine + m;
      await db.query(
        "insert into machine (machine_id, machine_name, tool_capacity) values ($1, $2, 24)",
        [machineId, `Machine ${String(m + 1).padStart(2, "0")}`],
      );
      const ids: number[] = [];
      for (const name of axisNames) {
        const { rows } = await db.query<{ axis_id: number }>(
          `insert into axis (machine_id, axis_name, max_acceleration, max_velocity)
           values ($1, $2, 2000, 500) returning axis_id`,
          [machineId, name],
        );
        ids.push(Number(rows[0]!.axis_id));
      }
      axisIds.push(ids);
    }
    const partitions = new AxisDataPartitions(db);
    const days: number[] = [];
    for (let day = start; day < end + 86_400_000; day += 86_400_000) days.push(day);
    await partitions.ensure([...days, end - 1]);

    // 10 Hz for the fleet; 100 Hz for the last 15 minutes of the export machine. Rows come in
    // time order with every axis interleaved, as ingest writes them.
    const fleet = axisIds.slice(0, machineCount).flat();
    const exportAxes = axisIds[machineCount]!;
    const series = [
      { axes: fleet, from: start, to: end, stepMs: 100 },
      { axes: exportAxes, from: end - 15 * minute, to: end, stepMs: 10 },
    ];
    // Data made here is consistent by construction: skip the per-row foreign key check, which
    // would otherwise dominate the load (the server role of the bench is a superuser).
    await client.query("set session_replication_role = replica");
    for (const { axes, from, to, stepMs } of series) {
      const source = Readable.from(samples(axes, from, to, stepMs), { objectMode: false });
      const sink = client.query(
        copyFrom(
          "copy axis_data (axis_id, update_timestamp, actual_position, target_position, homed, acceleration, velocity) from stdin",
        ),
      );
      await pipeline(source, sink);
      rows += axes.length * Math.ceil((to - from) / stepMs);
    }
    await client.query("vacuum analyze axis_data");
  } finally {
    await client.end();
    await db.close();
  }
  return { rows, seconds: (performance.now() - began) / 1000 };
}

function* samples(axes: number[], from: number, to: number, stepMs: number): Generator<string> {
  let chunk: string[] = [];
  for (let time = from, tick = 0; time < to; time += stepMs, tick++) {
    const stamp = new Date(time).toISOString();
    for (let a = 0; a < axes.length; a++) {
      const phase = tick / 200 + a;
      const actual = (100 * Math.sin(phase)).toFixed(3);
      const target = (100 * Math.sin(phase + 0.01)).toFixed(3);
      const velocity = (100 * Math.cos(phase)).toFixed(3);
      const acceleration = (-100 * Math.sin(phase)).toFixed(3);
      chunk.push(
        `${axes[a]}\t${stamp}\t${actual}\t${target}\t${tick % 1000 === 0 ? "f" : "t"}\t${acceleration}\t${velocity}\n`,
      );
    }
    if (chunk.length >= 20_000) {
      yield chunk.join("");
      chunk = [];
    }
  }
  if (chunk.length > 0) yield chunk.join("");
}

/** Raw CSV of 15 minutes at 100 Hz of one machine through Spindle, and through COPY TO. */
async function benchExport(
  spindle: Server,
  url: string,
  auth: Record<string, string>,
  end: number,
): Promise<string[]> {
  const from = new Date(end - 15 * minute).toISOString();
  const to = new Date(end).toISOString();
  const path = `${spindle.url}/api/axis-data/?machine_id=${exportMachine}&from=${from}&to=${to}&format=csv`;
  // Both read the same pages: read them once first, so neither pays for a cold cache (at 24 h,
  // the export measured first read from disk and the COPY after it from memory: 0.24 of COPY).
  await copyExport(url, from, to);
  const pid = spindle.process.pid!;
  const idle = await rssMiB(pid);
  let peak = idle;
  const sampler = setInterval(() => {
    rssMiB(pid).then(
      (rss) => {
        peak = Math.max(peak, rss);
      },
      () => {},
    );
  }, 10);
  let http: { rows: number; seconds: number; bytes: number };
  try {
    http = await countCsv(async (sink) => {
      const answer = await fetch(path, { headers: auth });
      if (answer.status !== 200) throw new Error(`${path}: ${answer.status}`);
      await pipeline(Readable.fromWeb(answer.body as never), sink);
    });
  } finally {
    clearInterval(sampler);
  }

  const copy = await copyExport(url, from, to);
  const rate = (run: { rows: number; seconds: number }) => Math.round(run.rows / run.seconds);
  return [
    "Raw CSV export, 15 minutes of one machine × 5 axes at 100 Hz:",
    "",
    "| path | rows | MB | seconds | rows/s | server RSS idle → peak MiB |",
    "| --- | --- | --- | --- | --- | --- |",
    `| Spindle GET /api/axis-data/?format=csv | ${http.rows.toLocaleString("en")} | ${fixed(http.bytes / 1e6, 1)} | ${fixed(http.seconds)} | ${rate(http).toLocaleString("en")} | ${Math.round(idle)} → ${Math.round(peak)} |`,
    `| PostgreSQL COPY (select …) TO STDOUT CSV | ${copy.rows.toLocaleString("en")} | ${fixed(copy.bytes / 1e6, 1)} | ${fixed(copy.seconds)} | ${rate(copy).toLocaleString("en")} | |`,
    "",
    `Spindle ÷ COPY: **${fixed(ratio(rate(http), rate(copy)))}**.`,
  ];
}

/** PostgreSQL's own CSV of what the export answers: the baseline. */
async function copyExport(url: string, from: string, to: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await countCsv(async (sink) => {
      const source = client.query(
        copyTo(`copy (
          select d.axis_data_id, d.axis_id as axis, x.machine_id, m.machine_name, x.axis_name,
                 d.actual_position, d.target_position, d.distance_to_go, d.homed, d.acceleration,
                 d.velocity, d.update_timestamp
          from axis_data d join axis x on x.axis_id = d.axis_id
          join machine m on m.machine_id = x.machine_id
          where x.machine_id = ${exportMachine} and d.update_timestamp >= '${from}'
            and d.update_timestamp < '${to}'
          order by d.axis_id, d.update_timestamp) to stdout with csv header`),
      );
      await pipeline(source, sink);
    });
  } finally {
    await client.end();
  }
}

/** Rows (lines after the header) and bytes of a CSV written into the given sink. */
async function countCsv(run: (sink: Writable) => Promise<void>) {
  let newlines = 0;
  let bytes = 0;
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      bytes += chunk.length;
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) newlines++;
      done();
    },
  });
  const began = performance.now();
  await run(sink);
  return { rows: newlines - 1, bytes, seconds: (performance.now() - began) / 1000 };
}

async function rssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kib = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return kib / 1024;
}

/** Calls `work` one after another for `seconds`; its latencies' p50 and p99 in ms. */
async function timeLoop(seconds: number, work: () => Promise<void>) {
  const times: number[] = [];
  const until = performance.now() + seconds * 1000;
  await work(); // warm-up
  while (performance.now() < until) {
    const began = performance.now();
    await work();
    times.push(performance.now() - began);
  }
  times.sort((a, b) => a - b);
  const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!;
  return { p50: at(0.5), p99: at(0.99), count: times.length };
}
