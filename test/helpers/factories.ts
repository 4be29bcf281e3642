import type { TestApp } from "./app.ts";

let machineCounter = 0;

/** A fresh machine_id: the seed's range, spread by process so parallel files never collide. */
export const nextMachineId = () => 81_000_000 + (process.pid % 1000) * 1000 + ++machineCounter;

async function created(t: TestApp, url: string, payload: Record<string, unknown>) {
  const answer = await t.inject({ method: "POST", url, headers: t.adminAuth, payload });
  if (answer.statusCode !== 201)
    throw new Error(`POST ${url} failed: ${answer.statusCode} ${answer.body}`);
  return answer.json();
}

export async function createMachine(t: TestApp, overrides: Record<string, unknown> = {}) {
  const machineId = nextMachineId();
  return created(t, "/data/machines/", {
    machine_id: machineId,
    machine_name: `Machine ${machineId}`,
    tool_capacity: 24,
    ...overrides,
  });
}

export async function createAxis(
  t: TestApp,
  machine: number,
  overrides: Record<string, unknown> = {},
) {
  return created(t, "/data/axes/", {
    machine,
    axis_name: "X",
    max_acceleration: 2000,
    max_velocity: 500,
    ...overrides,
  });
}

export async function createTool(
  t: TestApp,
  machine: number,
  overrides: Record<string, unknown> = {},
) {
  return created(t, "/data/tools/", { machine, tool_offset: 12.5, feedrate: 1200, ...overrides });
}

export async function createToolUsage(t: TestApp, machine: number, toolInUse: number) {
  return created(t, "/data/tool-usage/", { machine, tool_in_use: toolInUse });
}

export async function createAxisData(
  t: TestApp,
  axis: number,
  overrides: Record<string, unknown> = {},
) {
  return created(t, "/data/axises/", {
    axis,
    actual_position: 10,
    target_position: 12.5,
    homed: true,
    acceleration: 0,
    velocity: 100,
    ...overrides,
  });
}

/** Sends samples through `POST /api/ingest/` as a producer would; they must be accepted. */
export async function ingestAxisData(t: TestApp, rows: Record<string, unknown>[]): Promise<void> {
  const answer = await t.inject({
    method: "POST",
    url: "/api/ingest/",
    headers: t.adminAuth,
    payload: { axis_data: rows },
  });
  if (answer.statusCode !== 202)
    throw new Error(`ingest answered ${answer.statusCode}: ${answer.body}`);
}

/** Every row of every machine-data table, to show that a refused request changed nothing. */
export async function snapshot(t: TestApp): Promise<string> {
  const tables = [
    "machine",
    "tool",
    "tool_usage",
    "axis",
    "axis_data",
    "app_user",
    "user_group",
    "group_permission",
    "oauth_client",
  ];
  const parts: string[] = [];
  for (const table of tables) {
    const { rows } = await t.database.db.query(`select * from ${table} order by 1, 2`);
    parts.push(`${table}:${JSON.stringify(rows)}`);
  }
  return parts.join("\n");
}
