import type { Database } from "./database.ts";

export const changeChannel = "spindle_changes";

/**
 * Versions of the tables a process caches from. A cache remembers the version it filled at and
 * is stale once the version moves. Versions move on this process's own writes at once (so a
 * client reads its writes) and on every other writer's through the database's NOTIFY triggers
 * (migration 0002).
 */
export class ChangeFeed {
  private readonly versions = new Map<string, number>();
  private readonly listeners = new Set<(table: string) => void>();
  private stop: (() => Promise<void>) | undefined;
  private epoch = 0;

  version(table: string): number {
    return this.epoch + (this.versions.get(table) ?? 0);
  }

  changed(...tables: string[]): void {
    for (const table of tables) {
      this.versions.set(table, (this.versions.get(table) ?? 0) + 1);
      for (const listener of this.listeners) listener(table);
    }
  }

  /** Everything may have changed (notifications were missed while disconnected). */
  changedAll(): void {
    this.epoch += 1_000_000;
    for (const listener of this.listeners) listener("*");
  }

  onChange(listener: (table: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async start(db: Database): Promise<void> {
    this.stop = await db.listen(
      changeChannel,
      (table) => this.changed(table),
      () => this.changedAll(),
    );
  }

  async close(): Promise<void> {
    await this.stop?.();
  }
}
