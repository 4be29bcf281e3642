import type { Config } from "../../config.ts";
import type { Clock } from "../../platform/context.ts";
import type { Database } from "../../platform/database.ts";
import { type AxisDataPartitions, dayOf } from "../axis-data/partitions.ts";
import { type BucketCache, rollupChannel } from "./bucket-cache.ts";
import { inTurn } from "./rollups.ts";

export interface RetentionPolicy {
  /** Raw samples. */
  rawDays: number;
  /** 1 s rollups. */
  secondDays: number;
  /** 5 s rollups. */
  fiveSecondDays: number;
  /** 10 s rollups. */
  tenSecondDays: number;
  /** 1 min rollups. */
  minuteDays: number;
}

/** The settings a retention policy is read from. */
export type RetentionSettings = Pick<
  Config,
  | "retentionDays"
  | "rollupSecondRetentionDays"
  | "rollupFiveSecondRetentionDays"
  | "rollupTenSecondRetentionDays"
  | "rollupMinuteRetentionDays"
>;

export function retentionPolicy(config: RetentionSettings): RetentionPolicy {
  return {
    rawDays: config.retentionDays,
    secondDays: config.rollupSecondRetentionDays,
    fiveSecondDays: config.rollupFiveSecondRetentionDays,
    tenSecondDays: config.rollupTenSecondRetentionDays,
    minuteDays: config.rollupMinuteRetentionDays,
  };
}

export interface RetentionResult {
  dropped: string[];
  minuteRowsDeleted: number;
}

/**
 * Drops what is older than the policy keeps: raw samples, 1 s, 5 s and 10 s rollups by whole day
 * partitions (instant, no vacuum debt), 1 min rollups by a range delete (they are few). A
 * partition is dropped only when every row it can hold is past the cut-off.
 */
export async function applyRetention(
  db: Database,
  clock: Clock,
  policy: RetentionPolicy,
  partitions: {
    raw: AxisDataPartitions;
    seconds: AxisDataPartitions;
    fiveSeconds: AxisDataPartitions;
    tenSeconds: AxisDataPartitions;
  },
  bucketCache?: BucketCache,
): Promise<RetentionResult> {
  const now = clock.now().getTime();
  const cutoff = (days: number) => new Date(now - days * 86_400_000);
  // A mark of samples past retention (a process stopped before rolling them up, and nothing
  // recomputed them since) is forgotten with the raw days it refers to. Both under the
  // recomputes' lock: a recompute never sees a raw day go while it reads it, and one after
  // leaves the rollups of days without raw samples as they are (rollups.ts, `recomputeIn`).
  const droppedRaw = await inTurn(db, async (tx) => {
    // Only the marks of days dropped: a day partly past the cut-off keeps its samples, and
    // they are still to be rolled up.
    const firstDayKept = new Date(dayOf(cutoff(policy.rawDays)));
    await tx.query("delete from rollup_pending where last_time < $1", [firstDayKept]);
    return partitions.raw.dropBefore(cutoff(policy.rawDays), tx);
  });
  const dropped = [
    ...droppedRaw,
    ...(await partitions.seconds.dropBefore(cutoff(policy.secondDays))),
    ...(await partitions.fiveSeconds.dropBefore(cutoff(policy.fiveSecondDays))),
    ...(await partitions.tenSeconds.dropBefore(cutoff(policy.tenSecondDays))),
  ];
  const { rowCount } = await db.query("delete from axis_data_1m where update_timestamp < $1", [
    cutoff(policy.minuteDays),
  ]);
  if (dropped.length > 0 || rowCount > 0) {
    // Buckets of what was dropped must not outlive it, here or in other processes.
    const upTo = cutoff(
      Math.min(policy.secondDays, policy.fiveSecondDays, policy.tenSecondDays, policy.minuteDays),
    );
    bucketCache?.invalidate(0, upTo.getTime());
    await db.query("select pg_notify($1, $2)", [rollupChannel, `0:${upTo.getTime()}`]);
  }
  return { dropped, minuteRowsDeleted: rowCount };
}
