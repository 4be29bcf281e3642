import type { Api } from "../api/client.ts";
import type { AxisSample } from "../api/types.ts";

/**
 * Where current machine data comes from. Today it polls the REST API; the WebSocket
 * (`/ws/machine_data/`, subscribe/unsubscribe) will implement the same two calls, and no page
 * changes when it does.
 */
export interface LiveSource {
  /** How the data arrives, for the page to say so. */
  readonly description: string;
  /**
   * The newest samples of these machines, repeatedly, until the returned function is called.
   * `onAnswered` is told of each machine whose first answer came back, whether or not it held
   * samples: a machine with none is then known to have no data, not to be still loading.
   */
  watch(
    machines: readonly number[],
    onSamples: (samples: AxisSample[]) => void,
    onAnswered?: (machine: number) => void,
  ): () => void;
  /**
   * Every sample of one machine after `since` (ISO 8601), in time order, until stopped.
   * `onGap` is told when samples were skipped (the feed could not replay what it missed), so
   * the page reads its window again.
   */
  follow(
    machine: number,
    since: string,
    onSamples: (samples: AxisSample[]) => void,
    onGap?: () => void,
  ): () => void;
}

interface Watcher {
  machines: Set<number>;
  onSamples: (samples: AxisSample[]) => void;
  onAnswered: ((machine: number) => void) | undefined;
}

/** Polls `/data/axises/` for what is on screen, a few requests at a time. */
export class PollingLiveSource implements LiveSource {
  readonly description: string;
  private watchers = new Set<Watcher>();
  /** Machines whose recent trend was fetched; later rounds need only the newest rows. */
  private primed = new Set<number>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** A round is under way: it schedules the next itself, so a new watcher must not. */
  private polling = false;

  constructor(
    private readonly api: Api,
    private readonly watchIntervalMs = 2000,
    private readonly followIntervalMs = 1000,
    private readonly concurrency = 6,
  ) {
    this.description = `updated every ${watchIntervalMs / 1000} s`;
  }

  watch(
    machines: readonly number[],
    onSamples: (samples: AxisSample[]) => void,
    onAnswered?: (machine: number) => void,
  ): () => void {
    const watcher: Watcher = { machines: new Set(machines), onSamples, onAnswered };
    this.watchers.add(watcher);
    if (this.timer === undefined && !this.polling)
      this.timer = setTimeout(() => void this.poll(), 0);
    return () => {
      this.watchers.delete(watcher);
      if (this.watchers.size === 0) {
        clearTimeout(this.timer);
        this.timer = undefined;
      }
    };
  }

  private async poll(): Promise<void> {
    this.timer = undefined;
    this.polling = true;
    const machines = [...new Set([...this.watchers].flatMap((w) => [...w.machines]))];
    const queue = [...machines];
    const worker = async () => {
      for (let machine = queue.shift(); machine !== undefined; machine = queue.shift()) {
        try {
          // Five axes: the last ten rows hold each axis' newest sample in practice; the first
          // round fetches more, so the tile's feed trend starts filled.
          const rows = await this.api.get<AxisSample[]>("/data/axises/", {
            machine,
            ordering: "-update_timestamp",
            limit: this.primed.has(machine) ? 10 : 200,
          });
          this.primed.add(machine);
          for (const watcher of this.watchers) {
            if (!watcher.machines.has(machine)) continue;
            watcher.onSamples(rows);
            watcher.onAnswered?.(machine);
          }
        } catch {
          // The banner shows a lost connection; the next round tries again.
        }
      }
    };
    await Promise.all(Array.from({ length: this.concurrency }, worker));
    this.polling = false;
    if (this.watchers.size > 0 && this.timer === undefined)
      this.timer = setTimeout(() => void this.poll(), this.watchIntervalMs);
  }

  follow(machine: number, since: string, onSamples: (samples: AxisSample[]) => void): () => void {
    let stopped = false;
    let cursor = since;
    const seen = new Set<string>();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        const rows = await this.api.get<AxisSample[]>("/data/axises/", {
          machine,
          since: cursor,
          ordering: "update_timestamp",
          limit: 5000,
        });
        // `since` is inclusive: drop the rows at the cursor that were delivered last time.
        const fresh = rows.filter((row) => !seen.has(`${row.axis}@${row.update_timestamp}`));
        const last = rows.at(-1);
        if (last) {
          if (last.update_timestamp !== cursor) seen.clear();
          cursor = last.update_timestamp;
          for (const row of rows) {
            if (row.update_timestamp === cursor) seen.add(`${row.axis}@${row.update_timestamp}`);
          }
        }
        if (!stopped && fresh.length > 0) onSamples(fresh);
      } catch {
        // Shown by the connection banner; try again next tick.
      }
      if (!stopped) timer = setTimeout(() => void tick(), this.followIntervalMs);
    };
    timer = setTimeout(() => void tick(), this.followIntervalMs);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }
}
