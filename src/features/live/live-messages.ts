import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { axisSampleFields } from "../axis-data/axis-sample-fields.ts";
import type { AxisSampleRow, ToolRow, ToolUsageRow } from "../ingest/ingest-batch.ts";
import type { CatalogMachine, Fleet } from "../machines/fleet-catalog.ts";
import { liveEncodings } from "./live-encoding.ts";

/** The fields of an axis-data row, in the order they are sent (the seed's axis data shape). */
export const axisFields = [
  "axis",
  "machine_id",
  "machine_name",
  "axis_name",
  ...axisSampleFields,
  "update_timestamp",
] as const;
export type AxisField = (typeof axisFields)[number];

const MachineIds = Type.Array(Type.Integer({ minimum: 1 }), { maxItems: 10_000 });
/** An axis by name ("X") or by id. */
const AxisRefs = Type.Array(
  Type.Union([Type.String({ minLength: 1, maxLength: 50 }), Type.Integer({ minimum: 1 })]),
  { maxItems: 10_000 },
);
const Fields = Type.Array(Type.Union(axisFields.map((field) => Type.Literal(field))), {
  maxItems: axisFields.length,
});

export const SubscribeMessage = Type.Object({
  type: Type.Literal("subscribe"),
  machines: Type.Optional(MachineIds),
  axes: Type.Optional(AxisRefs),
  fields: Type.Optional(Fields),
  max_rate_hz: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1000 })),
  since_seq: Type.Optional(Type.Integer({ minimum: 0 })),
  encoding: Type.Optional(Type.Union(liveEncodings.map((encoding) => Type.Literal(encoding)))),
  /** At most this many pushes unacknowledged (`ack`); then the socket is conflated. */
  window: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
});
export type SubscribeMessage = Static<typeof SubscribeMessage>;

/** The client has handled every push up to `seq` (subscriptions with a `window`). */
const AckMessage = Type.Object({
  type: Type.Literal("ack"),
  seq: Type.Integer({ minimum: 0 }),
});

const AuthenticateMessage = Type.Object({
  type: Type.Literal("authenticate"),
  token: Type.String({ minLength: 1, maxLength: 512 }),
});
const SimpleMessage = (type: string) => Type.Object({ type: Type.Literal(type) });

const schemas = {
  authenticate: AuthenticateMessage,
  subscribe: SubscribeMessage,
  ack: AckMessage,
  unsubscribe: SimpleMessage("unsubscribe"),
  get_machine_data: SimpleMessage("get_machine_data"),
  get_tool_data: SimpleMessage("get_tool_data"),
  get_axis_data: SimpleMessage("get_axis_data"),
} as const;

export type ClientMessage =
  | Static<typeof AuthenticateMessage>
  | SubscribeMessage
  | Static<typeof AckMessage>
  | { type: "unsubscribe" | "get_machine_data" | "get_tool_data" | "get_axis_data" };

const choices = (values: readonly string[]) =>
  `must be one of ${values.map((v) => `"${v}"`).join(", ")}`;
const encodingHint = choices(liveEncodings);
const fieldHint = choices(axisFields);

/** Parses one text frame into a known message, or says what is wrong with it in one line. */
export function parseClientMessage(text: string): ClientMessage | { error: string } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { error: "Invalid JSON." };
  }
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return { error: "A message is a JSON object with a type." };
  const type = (value as { type?: unknown }).type;
  if (typeof type !== "string") return { error: "A message needs a string type." };
  if (!Object.hasOwn(schemas, type))
    return { error: `Unknown message type "${type.slice(0, 50)}".` };
  const schema = schemas[type as keyof typeof schemas];
  if (!Value.Check(schema, value)) {
    const first = Value.Errors(schema, value).First();
    const field = first?.path.replace(/^\//, "").replace(/\//g, ".") || "message";
    const problem =
      field === "encoding"
        ? encodingHint
        : /^fields\.\d+$/.test(field) && typeof first?.value === "string"
          ? fieldHint
          : (first?.message ?? "invalid");
    return { error: `${type}: ${field}: ${problem}.` };
  }
  return value as ClientMessage;
}

/** What a subscriber asked for; absent parts mean all. */
export interface LiveFilter {
  machines: ReadonlySet<number> | null;
  axisNames: ReadonlySet<string> | null;
  axisIds: ReadonlySet<number> | null;
  fields: readonly AxisField[];
  /** Row kinds the principal may see. */
  axisData: boolean;
  tools: boolean;
  toolUsage: boolean;
}

export function filterOf(
  message: SubscribeMessage,
  permitted: { axisData: boolean; tools: boolean; toolUsage: boolean },
): LiveFilter {
  const names = message.axes?.filter((axis): axis is string => typeof axis === "string");
  const ids = message.axes?.filter((axis): axis is number => typeof axis === "number");
  // Rows are meaningless without their axis; `axis` is always sent.
  const fields = message.fields
    ? axisFields.filter((field) => field === "axis" || message.fields!.includes(field))
    : axisFields;
  return {
    machines: message.machines ? new Set(message.machines) : null,
    axisNames: names ? new Set(names) : null,
    axisIds: ids ? new Set(ids) : null,
    fields,
    ...permitted,
  };
}

/** Subscribers with equal keys share every serialized push. */
export function filterKey(filter: LiveFilter): string {
  const sorted = <T>(set: ReadonlySet<T> | null) =>
    set ? [...set].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) : null;
  return JSON.stringify([
    sorted(filter.machines),
    sorted(filter.axisNames),
    sorted(filter.axisIds),
    filter.fields,
    filter.axisData,
    filter.tools,
    filter.toolUsage,
  ]);
}

export const machineMatches = (filter: LiveFilter, machineId: number) =>
  filter.machines === null || filter.machines.has(machineId);

export function axisMatches(filter: LiveFilter, row: AxisSampleRow): boolean {
  if (!filter.axisData || !machineMatches(filter, row.machineId)) return false;
  if (filter.axisNames === null && filter.axisIds === null) return true;
  return (
    (filter.axisNames?.has(row.axisName) ?? false) || (filter.axisIds?.has(row.axisId) ?? false)
  );
}

/** An axis sample as the seed's REST and WebSocket APIs show it, limited to `fields`. */
export function axisRow(
  row: AxisSampleRow,
  machine: CatalogMachine | undefined,
  fields: readonly AxisField[],
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of fields) {
    switch (field) {
      case "axis":
        out.axis = row.axisId;
        break;
      case "machine_id":
        out.machine_id = row.machineId;
        break;
      case "machine_name":
        out.machine_name = machine?.machineName ?? null;
        break;
      case "axis_name":
        out.axis_name = row.axisName;
        break;
      case "actual_position":
        out.actual_position = row.actualPosition;
        break;
      case "target_position":
        out.target_position = row.targetPosition;
        break;
      case "distance_to_go":
        out.distance_to_go = row.targetPosition - row.actualPosition;
        break;
      case "homed":
        out.homed = row.homed;
        break;
      case "acceleration":
        out.acceleration = row.acceleration;
        break;
      case "velocity":
        out.velocity = row.velocity;
        break;
      case "update_timestamp":
        out.update_timestamp = row.time;
        break;
    }
  }
  return out;
}

/** The fields of tool and tool-usage rows, in the order they are sent. */
export const toolFields = [
  "tool_id",
  "machine",
  "tool_offset",
  "feedrate",
  "update_timestamp",
] as const;
export const toolUsageFields = ["machine", "tool_in_use", "update_timestamp"] as const;

export const toolRow = (row: ToolRow) => ({
  tool_id: row.toolId,
  machine: row.machineId,
  tool_offset: row.toolOffset,
  feedrate: row.feedrate,
  update_timestamp: row.time,
});

export const toolUsageRow = (row: ToolUsageRow) => ({
  machine: row.machineId,
  tool_in_use: row.toolInUse,
  update_timestamp: row.time,
});

export const machineRows = (fleet: Fleet) =>
  [...fleet.machines.values()]
    .sort((a, b) => a.machineId - b.machineId)
    .map((machine) => ({
      machine_id: machine.machineId,
      machine_name: machine.machineName,
      tool_capacity: machine.toolCapacity,
    }));
