import type { ChangeFeed } from "../../platform/change-feed.ts";
import type { Database } from "../../platform/database.ts";

export interface CatalogAxis {
  axisId: number;
  machineId: number;
  axisName: string;
  maxVelocity: number;
  maxAcceleration: number;
}

export interface CatalogMachine {
  machineId: number;
  machineName: string;
  toolCapacity: number;
  axes: Map<string, CatalogAxis>;
}

export interface Fleet {
  machines: Map<number, CatalogMachine>;
  axes: Map<number, CatalogAxis>;
}

/**
 * The machines and their axes, in memory: ingest resolves `machine_id` + `axis_name` for every
 * sample and the live feed filters by machine, so neither may cost a query. Reloaded whole
 * after any change to `machine` or `axis` (small tables that change rarely), by any process.
 */
export class FleetCatalog {
  private current: Promise<Fleet> | undefined;

  constructor(
    private readonly db: Database,
    changes: ChangeFeed,
  ) {
    changes.onChange((table) => {
      if (table === "machine" || table === "axis" || table === "*") this.current = undefined;
    });
  }

  fleet(): Promise<Fleet> {
    if (!this.current) {
      const loading = this.load();
      this.current = loading;
      // A failed load must not be remembered: the next caller tries again.
      loading.catch(() => {
        if (this.current === loading) this.current = undefined;
      });
    }
    return this.current;
  }

  private async load(): Promise<Fleet> {
    const [machineRows, axisRows] = await Promise.all([
      this.db.query<{ machine_id: number; machine_name: string; tool_capacity: number }>(
        "select machine_id, machine_name, tool_capacity from machine",
      ),
      this.db.query<{
        axis_id: number;
        machine_id: number;
        axis_name: string;
        max_velocity: number;
        max_acceleration: number;
      }>("select axis_id, machine_id, axis_name, max_velocity, max_acceleration from axis"),
    ]);
    const machines = new Map<number, CatalogMachine>();
    for (const row of machineRows.rows) {
      machines.set(row.machine_id, {
        machineId: row.machine_id,
        machineName: row.machine_name,
        toolCapacity: row.tool_capacity,
        axes: new Map(),
      });
    }
    const axes = new Map<number, CatalogAxis>();
    for (const row of axisRows.rows) {
      const axis: CatalogAxis = {
        axisId: row.axis_id,
        machineId: row.machine_id,
        axisName: row.axis_name,
        maxVelocity: row.max_velocity,
        maxAcceleration: row.max_acceleration,
      };
      axes.set(axis.axisId, axis);
      machines.get(axis.machineId)?.axes.set(axis.axisName, axis);
    }
    return { machines, axes };
  }
}
