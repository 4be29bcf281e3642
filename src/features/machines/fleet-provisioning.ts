import type { ChangeFeed } from "../../platform/change-feed.ts";
import type { Database } from "../../platform/database.ts";

export interface MachineSpec {
  machineId: number;
  machineName: string;
  toolCapacity: number;
  axes: readonly { axisName: string; maxVelocity: number; maxAcceleration: number }[];
  tools: readonly { toolOffset: number; feedrate: number }[];
}

export interface ProvisionedMachine {
  /** axis_name → axis_id. */
  axisIds: Map<string, number>;
  /** The database's limits for each axis (an existing machine keeps its own). */
  axisLimits: Map<string, { maxVelocity: number; maxAcceleration: number }>;
  /**
   * tool_id of tool number n at index n − 1: the machine's tools in id order (undefined: the
   * tool was deleted while the simulator ran).
   */
  toolIds: (number | undefined)[];
}

/**
 * Makes sure machines, their axes and a tool per magazine pocket exist, in a few set-based
 * statements (10,000 machines is 300,000 rows), reusing what is there and never duplicating:
 * running it twice changes nothing.
 */
export async function ensureFleet(
  db: Database,
  changes: ChangeFeed,
  machines: readonly MachineSpec[],
): Promise<Map<number, ProvisionedMachine>> {
  const ids = machines.map((machine) => machine.machineId);
  await db.transaction(async (tx) => {
    await tx.query(
      `insert into machine (machine_id, machine_name, tool_capacity)
       select * from unnest($1::bigint[], $2::text[], $3::int[]) on conflict (machine_id) do nothing`,
      [
        ids,
        machines.map((machine) => machine.machineName),
        machines.map((machine) => machine.toolCapacity),
      ],
    );
    const axes = machines.flatMap((machine) =>
      machine.axes.map((axis) => ({ machineId: machine.machineId, ...axis })),
    );
    await tx.query(
      `insert into axis (machine_id, axis_name, max_velocity, max_acceleration)
       select * from unnest($1::bigint[], $2::text[], $3::float8[], $4::float8[])
       on conflict (machine_id, axis_name) do nothing`,
      [
        axes.map((axis) => axis.machineId),
        axes.map((axis) => axis.axisName),
        axes.map((axis) => axis.maxVelocity),
        axes.map((axis) => axis.maxAcceleration),
      ],
    );
    const existing = await tx.query<{ machine_id: number; tools: number }>(
      "select machine_id, count(*)::int as tools from tool where machine_id = any($1::bigint[]) group by machine_id",
      [ids],
    );
    const have = new Map(existing.rows.map((row) => [row.machine_id, row.tools]));
    const missing = machines.flatMap((machine) =>
      machine.tools
        .slice(have.get(machine.machineId) ?? 0)
        .map((tool) => ({ machineId: machine.machineId, ...tool })),
    );
    if (missing.length > 0) {
      await tx.query(
        `insert into tool (machine_id, tool_offset, feedrate)
         select m, o, f from unnest($1::bigint[], $2::float8[], $3::float8[]) with ordinality as t (m, o, f, n) order by n`,
        [
          missing.map((tool) => tool.machineId),
          missing.map((tool) => tool.toolOffset),
          missing.map((tool) => tool.feedrate),
        ],
      );
    }
  });
  changes.changed("machine", "axis", "tool");

  const provisioned = new Map<number, ProvisionedMachine>(
    ids.map((id) => [id, { axisIds: new Map(), axisLimits: new Map(), toolIds: [] }]),
  );
  const axisRows = await db.query<{
    machine_id: number;
    axis_id: number;
    axis_name: string;
    max_velocity: number;
    max_acceleration: number;
  }>(
    "select machine_id, axis_id, axis_name, max_velocity, max_acceleration from axis where machine_id = any($1::bigint[])",
    [ids],
  );
  for (const row of axisRows.rows) {
    const machine = provisioned.get(row.machine_id)!;
    machine.axisIds.set(row.axis_name, row.axis_id);
    machine.axisLimits.set(row.axis_name, {
      maxVelocity: row.max_velocity,
      maxAcceleration: row.max_acceleration,
    });
  }
  const toolRows = await db.query<{ machine_id: number; tool_id: number }>(
    "select machine_id, tool_id from tool where machine_id = any($1::bigint[]) order by machine_id, tool_id",
    [ids],
  );
  for (const row of toolRows.rows) provisioned.get(row.machine_id)!.toolIds.push(row.tool_id);
  return provisioned;
}
