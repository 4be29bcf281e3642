import type { Clock } from "../../src/platform/context.ts";

/** Real time plus an offset the test moves forward, so expiry is tested without waiting. */
export class TestClock implements Clock {
  private offset = 0;

  now(): Date {
    return new Date(Date.now() + this.offset);
  }

  advance(ms: number): void {
    this.offset += ms;
  }
}
