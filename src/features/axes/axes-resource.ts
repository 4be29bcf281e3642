import { Type } from "@sinclair/typebox";
import type { ResourceDefinition } from "../../platform/resource.ts";
import { Id } from "../../platform/schema-types.ts";

export const AxisName = Type.String({
  minLength: 1,
  maxLength: 32,
  pattern: "^[A-Za-z][A-Za-z0-9_]*$",
});

const machineMissing = { field: "machine", reason: "Invalid pk - machine does not exist." };

export const axesResource: ResourceDefinition = {
  name: "axis",
  noun: "axis",
  path: "/data/axes/",
  tag: "axes",
  table: "axis",
  from: "axis x",
  alias: "x",
  idField: "axis_id",
  idColumn: "axis_id",
  clientSuppliedId: false,
  columns: {
    axis_id: "x.axis_id",
    machine: "x.machine_id",
    axis_name: "x.axis_name",
    max_acceleration: "x.max_acceleration",
    max_velocity: "x.max_velocity",
  },
  writable: {
    machine: "machine_id",
    axis_name: "axis_name",
    max_acceleration: "max_acceleration",
    max_velocity: "max_velocity",
  },
  filters: {
    machine: { sql: (p) => `x.machine_id = ${p}`, schema: Id() },
    axis_name: { sql: (p) => `x.axis_name = ${p}`, schema: AxisName },
  },
  orderable: ["axis_id", "machine", "axis_name", "max_acceleration", "max_velocity"],
  defaultOrdering: ["axis_id"],
  defaultLimit: 1000,
  cachedUntilChanged: ["axis", "machine"],
  row: Type.Object({
    axis_id: Type.Integer(),
    machine: Type.Integer(),
    axis_name: Type.String(),
    max_acceleration: Type.Number(),
    max_velocity: Type.Number(),
  }),
  input: Type.Object({
    machine: Id("machine_id of the machine this axis belongs to"),
    axis_name: AxisName,
    max_acceleration: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1e9,
      description: "mm/s² (linear) or °/s² (rotary)",
    }),
    max_velocity: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1e9,
      description: "mm/s (linear) or °/s (rotary)",
    }),
  }),
  readOnly: ["axis_id"],
  constraints: {
    axis_machine_name_key: {
      field: "axis_name",
      reason: "This machine already has an axis with this name.",
    },
    axis_machine_id_fkey: machineMissing,
  },
};
