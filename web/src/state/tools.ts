import type { Tool, ToolUsage } from "../api/types.ts";

/**
 * A tool as operators know it: its number on the machine, 1 for the machine's first tool in id
 * order. The simulator provisions one tool per magazine pocket and numbers them so (tool number
 * n is the n-th tool by id; src/features/machines/fleet-provisioning.ts), and a tool row has no
 * pocket field of its own; `tool_in_use` holds the database id, which means nothing at the
 * machine. Undefined when the tool is not among `tools`: deleted (the usage log outlives it), or
 * past the rows a large fleet's list returned.
 */
export function toolNumber(tools: readonly Tool[], toolId: number): number | undefined {
  if (!tools.some((tool) => tool.tool_id === toolId)) return undefined;
  // Counting the lower ids, not an index: `tools` need not be sorted.
  return tools.filter((tool) => tool.tool_id <= toolId).length;
}

/** "T3 in use"; "tool id 457 in use" when its number cannot be told; "no tool in use". */
export function toolInUseLabel(tools: readonly Tool[], usage: ToolUsage | undefined): string {
  if (!usage) return "no tool in use";
  const number = toolNumber(tools, usage.tool_in_use);
  return number === undefined ? `tool id ${usage.tool_in_use} in use` : `T${number} in use`;
}

/** What the label leaves out: which tool row it is, and its offset and feed rate. */
export function toolInUseDetail(
  tools: readonly Tool[],
  usage: ToolUsage | undefined,
): string | undefined {
  const tool = usage && tools.find((candidate) => candidate.tool_id === usage.tool_in_use);
  if (!tool) return undefined;
  return `Tool ${toolNumber(tools, tool.tool_id)} of this machine's ${tools.length} (tools numbered in id order; tool id ${tool.tool_id}): offset ${tool.tool_offset} mm, feed rate ${tool.feedrate} mm/min`;
}

/** The offset and feed rate of the tool in use, as a machine page says them beside its number. */
export function toolInUseFigures(
  tools: readonly Tool[],
  usage: ToolUsage | undefined,
): string | undefined {
  const tool = usage && tools.find((candidate) => candidate.tool_id === usage.tool_in_use);
  return tool && `offset ${tool.tool_offset} mm, ${tool.feedrate} mm/min`;
}
