import type { Config } from "./config.ts";
import { LoginThrottle } from "./features/auth/login-throttle.ts";
import { createOAuthService } from "./features/auth/oauth-service.ts";
import { AxisDataPartitions } from "./features/axis-data/partitions.ts";
import { createUsersService } from "./features/users/users-service.ts";
import { ChangeFeed } from "./platform/change-feed.ts";
import { type Clock, systemClock } from "./platform/context.ts";
import type { Database } from "./platform/database.ts";

/** What every transport (HTTP, WebSocket, CLI) works through: one set of services per process. */
export interface Services {
  config: Config;
  db: Database;
  clock: Clock;
  changes: ChangeFeed;
  oauth: ReturnType<typeof createOAuthService>;
  users: ReturnType<typeof createUsersService>;
  partitions: AxisDataPartitions;
}

export function createServices({
  config,
  db,
  clock = systemClock,
}: {
  config: Config;
  db: Database;
  clock?: Clock;
}): Services {
  const loginThrottle = new LoginThrottle({
    attemptsPerUser: config.loginAttemptsPerUser,
    attemptsPerAddress: config.loginAttemptsPerAddress,
    windowSeconds: config.loginWindowSeconds,
  });
  const changes = new ChangeFeed();
  return {
    config,
    db,
    clock,
    changes,
    oauth: createOAuthService({ db, clock, config, loginThrottle, changes }),
    users: createUsersService({ db, changes }),
    partitions: new AxisDataPartitions(db),
  };
}
