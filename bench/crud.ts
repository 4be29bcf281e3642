// Issue 2's benchmark: GET /data/machines/ (20 machines) and GET /data/axes/ (100 axes) with a
// valid Bearer token, 32 connections for 10 s from a second process, on each database, beside
// bare Fastify answering the same bytes in the same run.
import {
  autocannon,
  type DatabaseTarget,
  fixed,
  freshTarget,
  type LoadResult,
  provision,
  ratio,
  signIn,
  startBareServer,
  startSpindle,
} from "./lib.ts";

const machineCount = 20;
const axisNames = ["X", "Y", "Z", "A", "C"];

export async function benchCrud({
  seconds = 10,
  connections = 32,
  databases = ["postgres", "embedded"] as DatabaseTarget[],
} = {}) {
  const rows: string[] = [];
  for (const database of databases) {
    const target = await freshTarget(database);
    try {
      await provision(target);
      const spindle = await startSpindle(target);
      try {
        const token = await signIn(spindle);
        const auth = { authorization: `Bearer ${token}`, "content-type": "application/json" };
        for (let i = 0; i < machineCount; i++) {
          const machineId = 81258856 + i;
          await post(spindle.url, "/data/machines/", auth, {
            machine_id: machineId,
            machine_name: `Machine ${String(i + 1).padStart(2, "0")}`,
            tool_capacity: 24,
          });
          for (const axis_name of axisNames) {
            const linear = axis_name === "X" || axis_name === "Y" || axis_name === "Z";
            await post(spindle.url, "/data/axes/", auth, {
              machine: machineId,
              axis_name,
              max_acceleration: linear ? 2000 : 400,
              max_velocity: linear ? 500 : 100,
            });
          }
        }
        for (const path of ["/data/machines/", "/data/axes/"]) {
          const body = await (await fetch(`${spindle.url}${path}`, { headers: auth })).text();
          const measured = await autocannon(`${spindle.url}${path}`, {
            connections,
            seconds,
            headers: { authorization: `Bearer ${token}` },
          });
          const bare = await startBareServer(body);
          let ceiling: LoadResult;
          try {
            ceiling = await autocannon(`${bare.url}${path}`, { connections, seconds });
          } finally {
            await bare.stop();
          }
          if (measured.non2xx > 0 || measured.errors > 0)
            throw new Error(`${path}: ${measured.non2xx} non-2xx, ${measured.errors} errors`);
          rows.push(
            `| ${database} | GET ${path} (${body.length} B) | ${Math.round(measured.requestsPerSecond)} | ${measured.p50} / ${measured.p99} | ${Math.round(ceiling.requestsPerSecond)} | ${ceiling.p50} / ${ceiling.p99} | **${fixed(ratio(measured.requestsPerSecond, ceiling.requestsPerSecond))}** |`,
          );
        }
      } finally {
        await spindle.stop();
      }
    } finally {
      await target.cleanup();
    }
  }
  return [
    `CRUD reads, ${connections} connections × ${seconds} s (autocannon in its own process):`,
    "",
    "| database | endpoint | Spindle req/s | p50 / p99 ms | bare Fastify req/s | p50 / p99 ms | ratio |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
  ].join("\n");
}

async function post(base: string, path: string, headers: Record<string, string>, body: unknown) {
  const answer = await fetch(`${base}${path}`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
  });
  if (answer.status !== 201)
    throw new Error(`POST ${path}: ${answer.status} ${await answer.text()}`);
}
