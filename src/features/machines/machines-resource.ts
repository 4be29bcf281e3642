import { Type } from "@sinclair/typebox";
import type { ResourceDefinition } from "../../platform/resource.ts";
import { Id } from "../../platform/schema-types.ts";

// PostgreSQL text cannot hold a NUL character.
export const MachineName = Type.String({ minLength: 1, maxLength: 255, pattern: "^[^\\x00]*$" });

export const machinesResource: ResourceDefinition = {
  name: "machine",
  noun: "machine",
  path: "/data/machines/",
  tag: "machines",
  table: "machine",
  from: "machine m",
  alias: "m",
  idField: "machine_id",
  idColumn: "machine_id",
  clientSuppliedId: true,
  columns: {
    machine_id: "m.machine_id",
    machine_name: "m.machine_name",
    tool_capacity: "m.tool_capacity",
  },
  writable: {
    machine_id: "machine_id",
    machine_name: "machine_name",
    tool_capacity: "tool_capacity",
  },
  filters: {
    machine_name: { sql: (p) => `m.machine_name = ${p}`, schema: MachineName },
  },
  orderable: ["machine_id", "machine_name", "tool_capacity"],
  defaultOrdering: ["machine_id"],
  defaultLimit: 1000,
  cachedUntilChanged: ["machine"],
  row: Type.Object({
    machine_id: Type.Integer(),
    machine_name: Type.String(),
    tool_capacity: Type.Integer(),
  }),
  input: Type.Object({
    machine_id: Id("Chosen by the client, e.g. the machine's serial number"),
    machine_name: MachineName,
    tool_capacity: Type.Integer({
      minimum: 0,
      maximum: 10000,
      description: "Pockets in the tool magazine",
    }),
  }),
  readOnly: [],
  constraints: {
    machine_pkey: { field: "machine_id", reason: "machine with this machine id already exists." },
  },
};
