/**
 * Semaphore: at most `permits` holders at once; further acquirers wait FIFO. The waiting
 * queue is bounded (MAX_SEMAPHORE_WAITERS): past it an acquire is refused (BadStateError), so
 * a flood of requests can't grow memory without limit.
 *
 * Invariant: 0 ≤ held ≤ permits; a waiter exists only while held === permits.
 */
import { assert } from "./assert.js";
import { BadStateError } from "./errors.js";

export const MAX_SEMAPHORE_WAITERS = 10_000;

export class Semaphore {
  private held_ = 0;
  private readonly waiters: (() => void)[] = [];
  readonly permits: number;

  constructor(permits: number) {
    assert(Number.isSafeInteger(permits) && permits > 0, "a semaphore needs at least one permit");
    this.permits = permits;
  }

  get held(): number {
    return this.held_;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Run `fn` holding one permit; the permit is returned whatever `fn` does. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  private async acquire(): Promise<void> {
    if (this.held_ < this.permits) {
      this.held_++;
      return;
    }
    if (this.waiters.length >= MAX_SEMAPHORE_WAITERS)
      throw new BadStateError(`too many waiters (${MAX_SEMAPHORE_WAITERS}) for a semaphore of ${this.permits}`);
    // The releaser hands its permit over: held_ stays as it is.
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  private release(): void {
    assert(this.held_ > 0, "release without a permit held");
    const next = this.waiters.shift();
    if (next !== undefined) next();
    else this.held_--;
  }
}
