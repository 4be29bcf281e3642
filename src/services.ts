import type { Config } from "./config.ts";
import { LoginThrottle } from "./features/auth/login-throttle.ts";
import { createOAuthService } from "./features/auth/oauth-service.ts";
import { AxisDataPartitions } from "./features/axis-data/partitions.ts";
import { BucketCache } from "./features/history/bucket-cache.ts";
import { applyRetention, type RetentionResult } from "./features/history/retention.ts";
import { RollupMaintainer } from "./features/history/rollups.ts";
import { type IngestOptions, IngestPipeline } from "./features/ingest/ingest-pipeline.ts";
import { LatestValues } from "./features/ingest/latest-values.ts";
import { LiveHub, type LiveOptions } from "./features/live/live-hub.ts";
import { FleetCatalog } from "./features/machines/fleet-catalog.ts";
import { RegistrationThrottle } from "./features/users/registration-throttle.ts";
import { createUsersService } from "./features/users/users-service.ts";
import { ChangeFeed } from "./platform/change-feed.ts";
import { type Clock, systemClock } from "./platform/context.ts";
import type { Database } from "./platform/database.ts";

/** What every transport (HTTP, WebSocket, CLI) works through: one set of services per process. */
export interface Services {
  config: Config;
  registrations: RegistrationThrottle;
  db: Database;
  clock: Clock;
  changes: ChangeFeed;
  oauth: ReturnType<typeof createOAuthService>;
  users: ReturnType<typeof createUsersService>;
  partitions: AxisDataPartitions;
  catalog: FleetCatalog;
  latest: LatestValues;
  ingest: IngestPipeline;
  live: LiveHub;
  rollups: RollupMaintainer;
  /** Finished downsampled buckets, kept between history requests. */
  bucketCache: BucketCache;
  /** Drops raw samples and rollups past their retention. */
  applyRetention(): Promise<RetentionResult>;
}

export interface ServiceOptions {
  config: Config;
  db: Database;
  clock?: Clock;
  ingest?: Partial<IngestOptions>;
  live?: Partial<LiveOptions>;
  onError?: (error: unknown) => void;
}

export function createServices({
  config,
  db,
  clock = systemClock,
  ingest,
  live,
  onError,
}: ServiceOptions): Services {
  const loginThrottle = new LoginThrottle({
    attemptsPerUser: config.loginAttemptsPerUser,
    attemptsPerAddress: config.loginAttemptsPerAddress,
    windowSeconds: config.loginWindowSeconds,
  });
  const registrations = new RegistrationThrottle({
    perAddress: config.registrationsPerAddress,
    windowSeconds: config.loginWindowSeconds,
  });
  const changes = new ChangeFeed();
  const partitions = new AxisDataPartitions(db);
  const catalog = new FleetCatalog(db, changes);
  const latest = new LatestValues();
  const secondPartitions = new AxisDataPartitions(db, "axis_data_1s");
  const fiveSecondPartitions = new AxisDataPartitions(db, "axis_data_5s");
  const tenSecondPartitions = new AxisDataPartitions(db, "axis_data_10s");
  const bucketCache = new BucketCache();
  const oauth = createOAuthService({ db, clock, config, loginThrottle, changes });
  const pipeline = new IngestPipeline({
    db,
    clock,
    catalog,
    partitions,
    latest,
    retentionDays: config.retentionDays,
    ...(ingest ? { options: ingest } : {}),
    ...(onError ? { onError } : {}),
  });
  const rollups = new RollupMaintainer(
    db,
    secondPartitions,
    [fiveSecondPartitions, tenSecondPartitions],
    onError,
    (axisIds, fromMs, toMs) => bucketCache.invalidate(fromMs, toMs, axisIds),
  );
  pipeline.onCommitted((batch) => rollups.note(batch));
  return {
    config,
    db,
    clock,
    changes,
    oauth,
    rollups,
    bucketCache,
    applyRetention: () =>
      applyRetention(
        db,
        clock,
        {
          rawDays: config.retentionDays,
          secondDays: config.rollupSecondRetentionDays,
          fiveSecondDays: config.rollupFiveSecondRetentionDays,
          tenSecondDays: config.rollupTenSecondRetentionDays,
          minuteDays: config.rollupMinuteRetentionDays,
        },
        {
          raw: partitions,
          seconds: secondPartitions,
          fiveSeconds: fiveSecondPartitions,
          tenSeconds: tenSecondPartitions,
        },
        bucketCache,
      ),
    users: createUsersService({ db, changes }),
    registrations,
    partitions,
    catalog,
    latest,
    ingest: pipeline,
    live: new LiveHub({
      ingest: pipeline,
      catalog,
      latest,
      oauth,
      changes,
      clock,
      ...(live ? { options: live } : {}),
      ...(onError ? { onError } : {}),
    }),
  };
}
