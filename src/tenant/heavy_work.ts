/**
 * Heavy work per tenant: requests that read or rewrite much of a tenant (forced image
 * compaction, remote_check with checksums, the tenant size model, base backups over HTTP and
 * the page service, do_gc). Used by the HTTP API and the page service alike.
 *
 * - TenantWorkLimiter: at most `max_per_tenant` heavy requests of one tenant run at once;
 *   one more is refused at once (LimitReachedError → 429 / a page-service error), never
 *   queued, so a tenant can't pile work up on the node.
 * - FairQueue: `permits` units of a node-wide resource (the logical-size computations) shared
 *   among tenants round-robin: a waiter of tenant B is served before a second waiter of
 *   tenant A. A waiter whose AbortSignal fires leaves the queue.
 *
 * Invariants: a tenant's count is > 0 exactly while it has a map entry (an idle tenant costs
 * nothing, a deleted one leaves nothing); a permit is released once (its release is
 * idempotent). FairQueue: 0 ≤ held ≤ permits; waiters exist only while held === permits; the
 * waiters are bounded by MAX_FAIR_WAITERS.
 */
import { assert } from "../types/assert.js";
import { BadStateError, LimitReachedError } from "../types/errors.js";

/** A slot of heavy work: released once when the work ends (a second release does nothing). */
export interface WorkPermit {
  release(): void;
}

export class TenantWorkLimiter {
  readonly max_per_tenant: number;
  private readonly running = new Map<string, number>();

  constructor(max_per_tenant: number) {
    assert(Number.isSafeInteger(max_per_tenant) && max_per_tenant > 0, "max_per_tenant must be a positive integer");
    this.max_per_tenant = max_per_tenant;
  }

  /** Heavy requests of `tenant` running now. */
  runningFor(tenant: string): number {
    return this.running.get(tenant) ?? 0;
  }

  /** A permit for one heavy request of `tenant`, or LimitReachedError naming `what`. */
  acquire(tenant: string, what: string): WorkPermit {
    const n = this.runningFor(tenant);
    if (n >= this.max_per_tenant) {
      throw new LimitReachedError(
        `tenant ${tenant} already runs ${n} heavy requests (max_heavy_requests_per_tenant ${this.max_per_tenant}): ${what} refused, retry later`,
      );
    }
    this.running.set(tenant, n + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        const left = this.runningFor(tenant) - 1;
        assert(left >= 0, "heavy work released more often than acquired");
        if (left === 0) this.running.delete(tenant);
        else this.running.set(tenant, left);
      },
    };
  }

  /** Run `fn` holding a permit of `tenant` (refused at once beyond the limit). */
  async run<T>(tenant: string, what: string, fn: () => Promise<T>): Promise<T> {
    const permit = this.acquire(tenant, what);
    try {
      return await fn();
    } finally {
      permit.release();
    }
  }
}

/** FairQueue waiters across all tenants, at most (each tenant brings at most max_per_tenant of them through the limiter). */
export const MAX_FAIR_WAITERS = 100_000;

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class FairQueue {
  readonly permits: number;
  private held_ = 0;
  private waiting_ = 0;
  /** Waiters by tenant, FIFO within a tenant; Map order is the round-robin order. */
  private readonly queues = new Map<string, Waiter[]>();

  constructor(permits: number) {
    assert(Number.isSafeInteger(permits) && permits > 0, "a fair queue needs at least one permit");
    this.permits = permits;
  }

  get held(): number {
    return this.held_;
  }

  get waiting(): number {
    return this.waiting_;
  }

  /** Run `fn` holding one permit, queued fairly among tenants; `signal` takes a waiter out of the queue. */
  async run<T>(tenant: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    await this.acquire(tenant, signal);
    try {
      signal?.throwIfAborted();
      return await fn();
    } finally {
      this.release();
    }
  }

  private acquire(tenant: string, signal: AbortSignal | undefined): Promise<void> {
    signal?.throwIfAborted();
    if (this.held_ < this.permits) {
      this.held_++;
      return Promise.resolve();
    }
    if (this.waiting_ >= MAX_FAIR_WAITERS)
      return Promise.reject(new BadStateError(`too many waiters (${MAX_FAIR_WAITERS}) for ${this.permits} permits`));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { resolve, reject };
      const onAbort = (): void => {
        if (!this.remove(tenant, w)) return;
        reject(signal!.reason);
      };
      w.resolve = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      let q = this.queues.get(tenant);
      if (q === undefined) {
        q = [];
        this.queues.set(tenant, q);
      }
      q.push(w);
      this.waiting_++;
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private remove(tenant: string, w: Waiter): boolean {
    const q = this.queues.get(tenant);
    const i = q?.indexOf(w) ?? -1;
    if (q === undefined || i < 0) return false;
    q.splice(i, 1);
    this.waiting_--;
    if (q.length === 0) this.queues.delete(tenant);
    return true;
  }

  private release(): void {
    assert(this.held_ > 0, "release without a permit held");
    // The tenant first in line gets the permit and goes to the back of the round.
    const first = this.queues.entries().next();
    if (first.done === true) {
      this.held_--;
      return;
    }
    const [tenant, q] = first.value;
    const w = q.shift()!;
    this.waiting_--;
    this.queues.delete(tenant);
    if (q.length > 0) this.queues.set(tenant, q);
    w.resolve();
  }
}
