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
 *
 * Failed OAuth2 client authentications (a wrong secret) are counted apart, per address only:
 * per client id a stranger could lock a machine adapter out of its tokens, and shared with
 * logins an adapter looping on a wrong secret would lock out every person behind its address.
 * They are counted once failed, not taken before: a fleet of adapters behind one address
 * starting together must not run the allowance out while their right secrets are checked.
 */
export class LoginThrottle {
  private readonly perUser: RateLimiterMemory;
  private readonly perAddress: RateLimiterMemory;
  private readonly clientFailures: RateLimiterMemory;

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
    this.clientFailures = new RateLimiterMemory({
      keyPrefix: "client-address",
      points: limits.attemptsPerAddress,
      duration: limits.windowSeconds,
    });
  }

  /** Seconds a client authentication from `address` must wait: its failures ran out (else 0). */
  async clientWait(address: string): Promise<number> {
    const state = await this.clientFailures.get(address);
    if (!state || state.remainingPoints > 0) return 0;
    return Math.max(Math.ceil(state.msBeforeNext / 1000), 1);
  }

  /** A client authentication from `address` failed. */
  async clientFailed(address: string): Promise<void> {
    await this.clientFailures.penalty(address, 1);
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
