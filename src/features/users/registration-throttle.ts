import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { addressKey } from "../../platform/client-address.ts";

/**
 * Counts `POST /register/` calls per client address. Each one hashes a password with Argon2
 * (19 MiB, tens of milliseconds) and tells whether a username is taken, so an address gets a
 * few per window, whatever their outcome.
 */
export class RegistrationThrottle {
  private readonly perAddress: RateLimiterMemory;

  constructor(limits: { perAddress: number; windowSeconds: number }) {
    this.perAddress = new RateLimiterMemory({
      keyPrefix: "register-address",
      points: limits.perAddress,
      duration: limits.windowSeconds,
    });
  }

  /** Takes one call; seconds to wait instead when the address has none left. */
  async take(address: string): Promise<number> {
    try {
      // An IPv6 /64 is one address (`addressKey`).
      await this.perAddress.consume(addressKey(address));
      return 0;
    } catch (error) {
      if (!(error instanceof RateLimiterRes)) throw error;
      return Math.max(1, Math.ceil(error.msBeforeNext / 1000));
    }
  }
}
