/**
 * A token bucket for a tenant's GetPage rate (`getpage_throttle_rps`, burst
 * `getpage_throttle_burst`). Pure: the caller passes the clock, the bucket answers how long
 * to wait; nothing here sleeps.
 *
 * Model: the bucket holds up to `burst` tokens and refills at `rps` per second. `take(n)`
 * always succeeds and may drive the balance negative: the debt is the wait, so callers on
 * several connections queue behind each other in arrival order (each is told to wait until
 * its own tokens have been refilled), and the long-run rate is `rps` whatever the batch sizes.
 *
 * Invariants: tokens ≤ burst; time never runs backwards (an older `now_ms` counts as no
 * elapsed time); rps > 0 and burst ≥ 1 (a disabled throttle has no bucket).
 */
import { assert } from "../types/assert.js";

export class TokenBucket {
  private rps: number;
  private burst: number;
  private tokens: number;
  private last_ms: number;

  constructor(rps: number, burst: number, now_ms: number) {
    assert(rps > 0 && burst >= 1, `throttle needs rps > 0 and burst >= 1 (rps ${rps}, burst ${burst})`);
    this.rps = rps;
    this.burst = burst;
    this.tokens = burst;
    this.last_ms = now_ms;
  }

  /** Change the rate and burst (a config change); the balance is kept, capped at the new burst. */
  reconfigure(rps: number, burst: number): void {
    assert(rps > 0 && burst >= 1, `throttle needs rps > 0 and burst >= 1 (rps ${rps}, burst ${burst})`);
    this.rps = rps;
    this.burst = burst;
    if (this.tokens > burst) this.tokens = burst;
  }

  matches(rps: number, burst: number): boolean {
    return this.rps === rps && this.burst === burst;
  }

  private refill(now_ms: number): void {
    if (now_ms > this.last_ms) {
      this.tokens = Math.min(this.burst, this.tokens + ((now_ms - this.last_ms) * this.rps) / 1000);
      this.last_ms = now_ms;
    }
  }

  /** Take `n` tokens at `now_ms`; returns how many ms the caller must wait before going on (0: none). */
  take(n: number, now_ms: number): number {
    assert(Number.isInteger(n) && n >= 1, `take ${n} tokens`);
    this.refill(now_ms);
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens * 1000) / this.rps;
  }

  /** Tokens available at `now_ms` (negative: debt). */
  available(now_ms: number): number {
    this.refill(now_ms);
    return this.tokens;
  }
}
