import { useEffect, useState } from "preact/hooks";
import type { AxisSample } from "../api/types.ts";
import { liveSource } from "./sources.ts";

export interface MachineLatest {
  /** The newest sample of each axis, by axis name. */
  axes: Map<string, AxisSample>;
  /** Path feed (mm/s over the linear axes), oldest first, for the tile's sparkline. */
  feed: number[];
  /** Epoch ms of the newest sample. */
  updatedAt: number;
}

export type MachineStatus = "running" | "idle" | "not-homed" | "stale" | "no-data";

export const statusLabel: Record<MachineStatus, string> = {
  running: "Running",
  idle: "Idle",
  "not-homed": "Not homed",
  stale: "No recent data",
  "no-data": "No data",
};

const feedPoints = 60;
const staleAfterMs = 60_000;
const linearAxes = new Set(["X", "Y", "Z"]);

/** Every machine's newest values, kept across pages so coming back shows them at once. */
const latest = new Map<number, MachineLatest>();
/** Machines whose first answer came back, with samples or none: the rest are still loading. */
const answered = new Set<number>();

/** Whether this machine's values are still being loaded: nothing known of it yet, either way. */
export const isLoading = (machine: number) => !latest.has(machine) && !answered.has(machine);

/** Takes samples in any order; each new instant of a machine adds a point to its feed trend. */
export function applySamples(samples: readonly AxisSample[]): boolean {
  const instants = new Map<string, AxisSample[]>();
  const ordered = [...samples].sort(
    (a, b) => Date.parse(a.update_timestamp) - Date.parse(b.update_timestamp),
  );
  for (const sample of ordered) {
    const key = `${sample.machine_id}@${sample.update_timestamp}`;
    const instant = instants.get(key);
    if (instant) instant.push(sample);
    else instants.set(key, [sample]);
  }
  let changed = false;
  for (const instant of instants.values()) {
    const machine = instant[0]!.machine_id;
    let entry = latest.get(machine);
    if (!entry) {
      entry = { axes: new Map(), feed: [], updatedAt: 0 };
      latest.set(machine, entry);
    }
    let fresh = false;
    for (const sample of instant) {
      const at = Date.parse(sample.update_timestamp);
      const known = entry.axes.get(sample.axis_name);
      if (known && Date.parse(known.update_timestamp) >= at) continue;
      entry.axes.set(sample.axis_name, sample);
      entry.updatedAt = Math.max(entry.updatedAt, at);
      fresh = true;
    }
    if (!fresh) continue;
    changed = true;
    entry.feed.push(pathFeed(entry));
    if (entry.feed.length > feedPoints) entry.feed.shift();
  }
  return changed;
}

export function pathFeed(entry: MachineLatest): number {
  let sum = 0;
  for (const [name, sample] of entry.axes) {
    if (linearAxes.has(name)) sum += sample.velocity ** 2;
  }
  return Math.sqrt(sum);
}

export function statusOf(entry: MachineLatest | undefined, now = Date.now()): MachineStatus {
  if (!entry || entry.axes.size === 0) return "no-data";
  const samples = [...entry.axes.values()];
  if (samples.some((sample) => !sample.homed)) return "not-homed";
  if (now - entry.updatedAt > staleAfterMs) return "stale";
  const moving = samples.some(
    (sample) => Math.abs(sample.velocity) > 1e-3 || Math.abs(sample.distance_to_go) > 1e-3,
  );
  return moving ? "running" : "idle";
}

/**
 * The newest values of these machines, re-rendering (at most once a frame) as they change.
 * Fed by whatever `liveSource` is: REST polling now, the WebSocket later.
 */
export function useLatest(machines: readonly number[]): ReadonlyMap<number, MachineLatest> {
  const [, setVersion] = useState(0);
  const key = machines.join(",");
  useEffect(() => {
    if (machines.length === 0) return;
    let frame = 0;
    const redraw = () => {
      if (frame !== 0) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setVersion((version) => version + 1);
      });
    };
    const stop = liveSource.watch(
      machines,
      (samples) => {
        if (applySamples(samples)) redraw();
      },
      (machine) => {
        if (answered.has(machine)) return;
        answered.add(machine);
        redraw();
      },
    );
    return () => {
      stop();
      cancelAnimationFrame(frame);
    };
  }, [key]);
  return latest;
}
