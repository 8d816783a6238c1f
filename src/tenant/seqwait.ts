/**
 * SeqWait: "wait until the timeline's last_record_lsn reaches X". Ingest advances a counter;
 * readers at a not-yet-ingested LSN park here until it passes, or time out with a clear error.
 *
 * Invariants: the counter never goes backwards; waiters are resolved in LSN order; at most
 * MAX_WAITERS are parked at once (a reader beyond that is refused, not queued: no unbounded
 * queue); shutdown() fails every waiter and every later wait.
 */
import { assert } from "../types/assert.js";
import { BadStateError, LsnTimeoutError, ShutdownError } from "../types/errors.js";
import { type Lsn, lsnToString } from "../types/lsn.js";

export const MAX_WAITERS = 10_000;

interface Waiter {
  lsn: Lsn;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

export class SeqWait {
  private current: Lsn;
  /** Sorted by lsn ascending: the front is the first to wake. */
  private waiters: Waiter[] = [];
  private shutdownReason: string | null = null;

  constructor(initial: Lsn) {
    this.current = initial;
  }

  load(): Lsn {
    return this.current;
  }

  advance(lsn: Lsn): void {
    // Not assert(cond, `…${…}`): the message would be built on every call of this hot path.
    if (lsn < this.current) assert(false, `SeqWait went backwards: ${lsnToString(lsn)} < ${lsnToString(this.current)}`);
    this.current = lsn;
    let n = 0;
    while (n < this.waiters.length && this.waiters[n]!.lsn <= lsn) n++;
    if (n === 0) return;
    const woken = this.waiters.splice(0, n);
    for (const w of woken) {
      clearTimeout(w.timer);
      w.resolve();
    }
  }

  /**
   * Resolves once load() >= lsn; rejects with LsnTimeoutError after timeout_ms. `describe`
   * adds context to the error; `signal` ends the wait early with its reason.
   */
  wait(lsn: Lsn, timeout_ms: number, describe?: () => string, signal?: AbortSignal): Promise<void> {
    if (this.shutdownReason !== null) return Promise.reject(new ShutdownError(this.shutdownReason));
    if (lsn <= this.current) return Promise.resolve();
    if (signal?.aborted === true) return Promise.reject(signal.reason);
    if (this.waiters.length >= MAX_WAITERS) {
      return Promise.reject(new BadStateError(`too many readers waiting for WAL (${MAX_WAITERS})`));
    }
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = {
        lsn,
        resolve,
        reject,
        timer: setTimeout(() => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          const extra = describe ? `; ${describe()}` : "";
          w.reject(
            new LsnTimeoutError(
              `timed out after ${timeout_ms} ms waiting for WAL to reach ${lsnToString(lsn)}: last_record_lsn is ${lsnToString(this.current)}${extra}`,
            ),
          );
        }, timeout_ms),
      };
      // Insert keeping the array sorted; waiters are few, a linear scan from the back is fine.
      let i = this.waiters.length;
      while (i > 0 && this.waiters[i - 1]!.lsn > lsn) i--;
      this.waiters.splice(i, 0, w);
      if (signal !== undefined) {
        const onAbort = (): void => {
          const j = this.waiters.indexOf(w);
          if (j < 0) return;
          this.waiters.splice(j, 1);
          clearTimeout(w.timer);
          reject(signal.reason);
        };
        signal.addEventListener("abort", onAbort, { once: true });
        // Settled otherwise: the listener goes (a signal may outlive many waits).
        const done = (): void => signal.removeEventListener("abort", onAbort);
        w.resolve = () => {
          done();
          resolve();
        };
        w.reject = (e) => {
          done();
          reject(e);
        };
      }
    });
  }

  shutdown(reason = "timeline is shutting down"): void {
    this.shutdownReason = reason;
    const all = this.waiters;
    this.waiters = [];
    for (const w of all) {
      clearTimeout(w.timer);
      w.reject(new ShutdownError(reason));
    }
  }

  waiterCount(): number {
    return this.waiters.length;
  }
}
