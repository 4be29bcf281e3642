import type { Config } from "./config.ts";
import { LoginThrottle } from "./features/auth/login-throttle.ts";
import { createOAuthService } from "./features/auth/oauth-service.ts";
import { AxisDataPartitions, daysFrom } from "./features/axis-data/partitions.ts";
import { consoleClient } from "./features/console/console-client.ts";
import { BucketCache } from "./features/history/bucket-cache.ts";
import {
  applyRetention,
  type RetentionResult,
  retentionPolicy,
} from "./features/history/retention.ts";
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
  /**
   * The hourly upkeep: purges expired tokens, makes the day partitions of today and the next
   * two days (so ingest does not wait to make them at midnight), rolls up what the database
   * marks as waiting (a stopped process's backfill), then applies retention. Its
   * DDL gives up rather than wait long behind readers; the next run tries again. Every step
   * runs; if any failed, it throws them all together after the last.
   */
  maintain(): Promise<RetentionResult>;
  /**
   * Starts what runs beside the transports: caches hearing other processes' writes, and the
   * rollup maintainer. Every process that writes through `ingest` starts it, or what it writes
   * never reaches the rollups that downsampled history reads.
   */
  start(): Promise<void>;
  /**
   * Commits every row already accepted (its producer is answered, its rollups marked), then
   * the rollups' last recompute, then stops listening.
   */
  close(): Promise<void>;
}

/** Days of partitions maintenance makes beyond today: an hourly run has many tries at each. */
const partitionDaysAhead = 2;

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
    attemptsPerUserAllAddresses: config.loginAttemptsPerUserAllAddresses,
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
  const oauth = createOAuthService({
    db,
    clock,
    config,
    loginThrottle,
    changes,
    reservedClientIds: [consoleClient.clientId],
  });
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
  const retain = () =>
    applyRetention(
      db,
      clock,
      retentionPolicy(config),
      {
        raw: partitions,
        seconds: secondPartitions,
        fiveSeconds: fiveSecondPartitions,
        tenSeconds: tenSecondPartitions,
      },
      bucketCache,
    );
  return {
    config,
    db,
    clock,
    changes,
    oauth,
    rollups,
    bucketCache,
    applyRetention: retain,
    async maintain() {
      // Each step runs whatever another's outcome: partitions that cannot be made this hour
      // (their DDL gave up behind readers) must not keep retention from dropping old ones.
      const failures: unknown[] = [];
      const step = async <T>(work: () => Promise<T>): Promise<T | undefined> =>
        work().catch((error: unknown) => {
          failures.push(error);
          return undefined;
        });
      await step(() => oauth.purgeExpiredTokens());
      const days = daysFrom(clock.now(), partitionDaysAhead);
      for (const table of [partitions, secondPartitions, fiveSecondPartitions, tenSecondPartitions])
        await step(() => table.prepare(days));
      // What the database marks as waiting is rolled up before retention can drop its samples.
      await step(() => rollups.sweepMarked());
      const retained = await step(retain);
      if (failures.length > 0)
        throw new AggregateError(failures, `${failures.length} maintenance step(s) failed`);
      return retained!;
    },
    async start() {
      await changes.start(db);
      await bucketCache.listen(db);
      rollups.start();
    },
    async close() {
      await pipeline.close();
      await rollups.close();
      await bucketCache.close();
      await changes.close();
    },
    users: createUsersService({ db, changes, loginThrottle }),
    registrations,
    partitions,
    catalog,
    latest,
    ingest: pipeline,
    live: new LiveHub({
      db,
      ingest: pipeline,
      catalog,
      latest,
      oauth,
      changes,
      clock,
      options: { maxSocketsPerUser: config.liveSocketsPerUser, ...live },
      ...(onError ? { onError } : {}),
    }),
  };
}
