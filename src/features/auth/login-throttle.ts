import { RateLimiterMemory, type RateLimiterRes } from "rate-limiter-flexible";

export interface LoginThrottleLimits {
  attemptsPerUser: number;
  attemptsPerAddress: number;
  windowSeconds: number;
}

/**
 * Counts failed logins per username and per client address; once either runs out, further
 * attempts are refused until the window passes, even with the right password, so guessing
 * gains nothing. A successful login clears the username's count.
 */
export class LoginThrottle {
  private readonly perUser: RateLimiterMemory;
  private readonly perAddress: RateLimiterMemory;

  constructor(limits: LoginThrottleLimits) {
    this.perUser = new RateLimiterMemory({
      keyPrefix: "login-user",
      points: limits.attemptsPerUser,
      duration: limits.windowSeconds,
    });
    this.perAddress = new RateLimiterMemory({
      keyPrefix: "login-address",
      points: limits.attemptsPerAddress,
      duration: limits.windowSeconds,
    });
  }

  /** Seconds to wait before trying again, or 0 when an attempt may be made now. */
  async retryAfter(username: string, address: string): Promise<number> {
    const [user, client] = await Promise.all([
      this.perUser.get(username.toLowerCase()),
      this.perAddress.get(address),
    ]);
    const wait = (res: RateLimiterRes | null, points: number) =>
      res && res.consumedPoints >= points ? Math.ceil(res.msBeforeNext / 1000) : 0;
    return Math.max(wait(user, this.perUser.points), wait(client, this.perAddress.points));
  }

  async failed(username: string, address: string): Promise<void> {
    // consume() rejects once the points are spent; being over the limit is the point here.
    await Promise.allSettled([
      this.perUser.consume(username.toLowerCase()),
      this.perAddress.consume(address),
    ]);
  }

  async succeeded(username: string): Promise<void> {
    await this.perUser.delete(username.toLowerCase());
  }
}
