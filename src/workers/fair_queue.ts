/**
 * FairQueue: runs jobs at most `slots` at a time, and when jobs wait, serves their owners
 * (tenants) in turn, FIFO within an owner. A pool's own queue is FIFO across everyone: one
 * tenant that queues ten compactions would put another tenant's one job behind all ten;
 * here it waits for at most one job of each other owner that has work.
 *
 * Invariants: running ≤ slots; queued ≤ maxQueued (a job beyond it is refused at once, not
 * buffered); an owner is in `owners` exactly when it has queued jobs; owners are served in
 * the order they became non-empty, and one served owner goes to the back.
 */
import { assert } from "../types/assert.js";
import { BadStateError } from "../types/errors.js";

interface Queued {
  start: () => void;
}

export class FairQueue {
  private readonly slots: number;
  private readonly maxQueued: number;
  /** Owner → its waiting jobs; Map order is the service order. */
  private readonly owners = new Map<string, Queued[]>();
  private running = 0;
  private queued = 0;

  constructor(slots: number, maxQueued: number) {
    assert(Number.isSafeInteger(slots) && slots > 0, "FairQueue needs at least one slot");
    this.slots = slots;
    this.maxQueued = maxQueued;
  }

  get runningCount(): number {
    return this.running;
  }
  get queuedCount(): number {
    return this.queued;
  }

  run<T>(owner: string, job: () => Promise<T>): Promise<T> {
    if (this.running < this.slots && this.queued === 0) return this.execute(job);
    if (this.queued >= this.maxQueued) return Promise.reject(new BadStateError(`job queue is full (${this.maxQueued} waiting)`));
    return new Promise<T>((resolve, reject) => {
      let q = this.owners.get(owner);
      if (q === undefined) {
        q = [];
        this.owners.set(owner, q);
      }
      q.push({ start: () => this.execute(job).then(resolve, reject) });
      this.queued++;
    });
  }

  private execute<T>(job: () => Promise<T>): Promise<T> {
    this.running++;
    let p: Promise<T>;
    try {
      p = job();
    } catch (e) {
      p = Promise.reject(e);
    }
    return p.finally(() => {
      this.running--;
      this.next();
    });
  }

  /** Start the next job: the first owner's oldest, then that owner goes to the back. */
  private next(): void {
    while (this.running < this.slots && this.queued > 0) {
      const first = this.owners.entries().next();
      assert(first.done !== true, "queued jobs but no owner");
      const [owner, q] = first.value;
      const j = q.shift()!;
      this.owners.delete(owner);
      if (q.length > 0) this.owners.set(owner, q);
      this.queued--;
      j.start();
    }
  }
}
