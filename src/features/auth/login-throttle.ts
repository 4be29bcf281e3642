import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { addressKey } from "../../platform/client-address.ts";

export interface LoginThrottleLimits {
  /** Failures one address may make for one account (a username, or a client id). */
  attemptsPerUser: number;
  /** Failures for one username from all addresses together. */
  attemptsPerUserAllAddresses: number;
  /** Failures one address may make across accounts. */
  attemptsPerAddress: number;
  windowSeconds: number;
}

/**
 * Counts failed logins per (address, username) pair, per address, and per username across all
 * addresses; once any runs out, further attempts it covers are refused until the window passes,
 * even with the right password, so guessing gains nothing.
 *
 * The tight limit is the pair's: an address that keeps failing for a username is shut out of
 * that username, while its owner, elsewhere, still signs in. Counted per username alone, anyone
 * anywhere could lock any user out with a few wrong passwords. The per-username bound across
 * addresses is much higher (LOGIN_ATTEMPTS_PER_USER_ALL_ADDRESSES): it stops guessing spread over
 * many addresses, and locking a user out through it takes that many failures, each address
 * giving at most its pair's share.
 *
 * Each attempt is counted before its password is checked and given back when it was right, so
 * that parallel guesses cannot all pass a check made before any of them failed; a successful
 * login also clears its pair's count (not the username's across addresses: the owner signing in
 * must not hand a distributed guesser a fresh allowance).
 *
 * Addresses are counted as `addressKey` has them: an IPv6 /64 is one address.
 *
 * Failed OAuth2 client authentications (a wrong secret) are counted apart from logins, per
 * (address, client id) pair and per address, against the same two numbers. Not per client id
 * across addresses: secrets are at least 16 characters, too long to guess however spread out,
 * while such a bound would let a few strangers' addresses cut a fleet's adapters off their
 * tokens. Shared with logins, an adapter looping on a wrong secret would lock out every person
 * behind its address. They are counted once failed, not taken before: a fleet of adapters
 * behind one address starting together must not run the allowance out while their right
 * secrets are checked.
 */
export class LoginThrottle {
  private readonly perPair: RateLimiterMemory;
  private readonly perUser: RateLimiterMemory;
  private readonly perAddress: RateLimiterMemory;
  private readonly clientPairFailures: RateLimiterMemory;
  private readonly clientAddressFailures: RateLimiterMemory;

  constructor(limits: LoginThrottleLimits) {
    const limiter = (keyPrefix: string, points: number) =>
      new RateLimiterMemory({ keyPrefix, points, duration: limits.windowSeconds });
    this.perPair = limiter("login-pair", limits.attemptsPerUser);
    this.perUser = limiter("login-user", limits.attemptsPerUserAllAddresses);
    this.perAddress = limiter("login-address", limits.attemptsPerAddress);
    this.clientPairFailures = limiter("client-pair", limits.attemptsPerUser);
    this.clientAddressFailures = limiter("client-address", limits.attemptsPerAddress);
  }

  /**
   * Seconds a client authentication for `clientId` from `address` must wait: the pair's or the
   * address's failures ran out (else 0).
   */
  async clientWait(clientId: string, address: string): Promise<number> {
    const key = addressKey(address);
    const states = await Promise.all([
      this.clientPairFailures.get(pairKey(key, clientId)),
      this.clientAddressFailures.get(key),
    ]);
    let wait = 0;
    for (const state of states)
      if (state && state.remainingPoints <= 0)
        wait = Math.max(wait, Math.ceil(state.msBeforeNext / 1000), 1);
    return wait;
  }

  /** A client authentication for `clientId` from `address` failed. */
  async clientFailed(clientId: string, address: string): Promise<void> {
    const key = addressKey(address);
    await Promise.all([
      this.clientPairFailures.penalty(pairKey(key, clientId), 1),
      this.clientAddressFailures.penalty(key, 1),
    ]);
  }

  /**
   * Takes one attempt from the allowances of `account` (the username as the user lookup matches
   * it) from `address`, before the password is checked. Seconds to wait instead when any has
   * none left (then nothing is taken).
   */
  async take(account: string, address: string): Promise<number> {
    const key = addressKey(address);
    const counts = [
      { limiter: this.perPair, key: pairKey(key, account) },
      { limiter: this.perUser, key: account },
      { limiter: this.perAddress, key: key },
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

  /**
   * The password was right: the pair's count starts again, and the username and the address
   * get their attempt back.
   */
  async succeeded(account: string, address: string): Promise<void> {
    const key = addressKey(address);
    await Promise.all([
      this.perPair.delete(pairKey(key, account)),
      this.perUser.reward(account, 1),
      this.perAddress.reward(key, 1),
    ]);
  }
}

/** An address never holds a space, so the pair's key cannot be read as another pair's. */
const pairKey = (address: string, account: string) => `${address} ${account}`;
