import { ApiError } from "../api/client.ts";
import { api } from "../api/instance.ts";
import type { AxisSample } from "../api/types.ts";

let historyEndpoint: boolean | undefined;

/**
 * A machine's samples over the last `minutes`: downsampled by the history endpoint
 * (`/api/axis-data/`, `max_points`) where the server has it, else the newest raw rows.
 */
export async function recentSamples(
  machine: number,
  minutes: number,
  maxPoints = 500,
): Promise<{ rows: AxisSample[]; downsampled: boolean }> {
  if (historyEndpoint !== false) {
    try {
      const rows = await api.get<AxisSample[]>("/api/axis-data/", {
        machine_id: machine,
        minutes,
        max_points: maxPoints,
      });
      historyEndpoint = true;
      return { rows: byTime(rows), downsampled: true };
    } catch (error) {
      if (!(error instanceof ApiError && (error.status === 404 || error.status === 405))) {
        throw error;
      }
      historyEndpoint = false;
    }
  }
  const since = new Date(Date.now() - minutes * 60_000).toISOString();
  const rows = await api.get<AxisSample[]>("/data/axises/", {
    machine,
    since,
    ordering: "-update_timestamp",
    limit: 10_000,
  });
  return { rows: byTime(rows), downsampled: false };
}

const byTime = (rows: AxisSample[]) =>
  [...rows].sort((a, b) => Date.parse(a.update_timestamp) - Date.parse(b.update_timestamp));
