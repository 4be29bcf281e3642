import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";

export interface LoginThrottleLimits {
  attemptsPerUser: number;
  attemptsPerAddress: number;
  windowSeconds: number;
}

/**
 * Counts failed logins per username and per client address; once either runs out, further
 * attempts are refused until the window passes, even with the right password, so guessing
 * gains nothing. Each attempt is counted before its password is checked and given back when it
 * was right; a successful login clears the username's count.
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

  /**
   * Takes one attempt from the username's and the address's allowance before the password is
   * checked, so that parallel guesses cannot all pass a check made before any of them failed.
   * Seconds to wait instead when either has none left (then nothing is taken).
   */
  async take(username: string, address: string): Promise<number> {
    const counts = [
      { limiter: this.perUser, key: username.toLowerCase() },
      { limiter: this.perAddress, key: address },
    ];
    const outcomes = await Promise.allSettled(counts.map((c) => c.limiter.consume(c.key)));
    let wait = 0;
    for (const outcome of outcomes) {
      if (outcome.status === "fulfilled") continue;
      // consume() rejects with the limiter's state once the points are spent.
      if (!(outcome.reason instanceof RateLimiterRes)) throw outcome.reason;
      wait = Math.max(wait, Math.ceil(outcome.reason.msBeforeNext / 1000), 1);
    }
    if (wait > 0)
      await Promise.all(
        outcomes.map((outcome, i) =>
          outcome.status === "fulfilled" ? counts[i]!.limiter.reward(counts[i]!.key, 1) : undefined,
        ),
      );
    return wait;
  }

  /** The password was right: the username's count starts again and the address gets its attempt back. */
  async succeeded(username: string, address: string): Promise<void> {
    await Promise.all([
      this.perUser.delete(username.toLowerCase()),
      this.perAddress.reward(address, 1),
    ]);
  }
}
