import { everyRow } from "../api/every-row.ts";
import { api } from "../api/instance.ts";
import type { Axis, Machine, Tool, ToolUsage } from "../api/types.ts";
import { useQuery } from "./query.ts";

export interface Fleet {
  machines: Machine[];
  axesByMachine: Map<number, Axis[]>;
  toolsByMachine: Map<number, Tool[]>;
  /** The tool each machine reported in use last. */
  toolInUse: Map<number, ToolUsage>;
}

function groupBy<T>(rows: T[], key: (row: T) => number): Map<number, T[]> {
  const groups = new Map<number, T[]>();
  for (const row of rows) {
    const id = key(row);
    const group = groups.get(id);
    if (group) group.push(row);
    else groups.set(id, [row]);
  }
  return groups;
}

export async function loadFleet(): Promise<Fleet> {
  const [machines, axes, tools, usage] = await Promise.all([
    everyRow<Machine>(api, "/data/machines/"),
    everyRow<Axis>(api, "/data/axes/"),
    everyRow<Tool>(api, "/data/tools/"),
    everyRow<ToolUsage>(api, "/data/tool-usage/", { latest: true }),
  ]);
  const toolInUse = new Map(usage.map((row) => [row.machine, row]));
  return {
    machines,
    axesByMachine: groupBy(axes, (axis) => axis.machine),
    toolsByMachine: groupBy(tools, (tool) => tool.machine),
    toolInUse,
  };
}

/** Machines, axes, tools and tools in use; refreshed every 10 s (the WebSocket will push them). */
export const useFleet = () => useQuery(loadFleet, [], 10_000);
