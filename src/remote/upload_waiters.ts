/**
 * Who waits on an upload queue: waitUploaded() callers (until every op scheduled before their
 * call is done) and waitForRoom() callers (backpressure: until the queue holds fewer ops than
 * its room threshold, or a deadline).
 *
 * Invariants: at most MAX_WAITERS waits of each sort at once (beyond, a done-wait is a
 * LimitReachedError and a room-wait answers "no room" at once); every done-wait ends exactly
 * once: resolved when the ops before it are done, rejected when the queue stops or its signal
 * aborts; every room-wait ends by its deadline at the latest. No locks (one event loop).
 */
import { LimitReachedError, ShutdownError } from "../types/errors.js";

const MAX_WAITERS = 10_000;

interface Waiter {
  seq: number;
  resolve: () => void;
  reject: (e: Error) => void;
}

export class UploadWaiters {
  private waiters: Waiter[] = [];
  /** waitForRoom calls waiting: each checks for room when an op completes or the queue stops. */
  private readonly roomWaiters = new Set<() => void>();

  /** Resolves once doneBefore() passes a seq above `seq`; rejects on rejectAll() or when `signal` aborts. */
  untilDone(seq: number, signal?: AbortSignal): Promise<void> {
    if (this.waiters.length >= MAX_WAITERS)
      return Promise.reject(new LimitReachedError(`more than ${MAX_WAITERS} waits on one upload queue`));
    return new Promise<void>((resolve, reject) => {
      const w: Waiter = { seq, resolve, reject };
      this.waiters.push(w);
      signal?.addEventListener(
        "abort",
        () => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(signal.reason instanceof Error ? signal.reason : new ShutdownError("wait aborted"));
        },
        { once: true },
      );
    });
  }

  /** Every op with a seq below `first` (the oldest undone op's) is done: resolves their waits. */
  doneBefore(first: number): void {
    const ready = this.waiters.filter((w) => w.seq < first);
    if (ready.length > 0) {
      this.waiters = this.waiters.filter((w) => w.seq >= first);
      for (const w of ready) w.resolve();
    }
  }

  /** The queue stopped: rejects every done-wait with `err`. */
  rejectAll(err: Error): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(err);
  }

  /** Whether a new room-wait would exceed MAX_WAITERS. */
  get roomFull(): boolean {
    return this.roomWaiters.size >= MAX_WAITERS;
  }

  /** Resolves with hasRoom() once it is true (checked at each wakeRoom()) or after timeout_ms. */
  untilRoom(hasRoom: () => boolean, timeout_ms: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.roomWaiters.delete(check);
        resolve(hasRoom());
      };
      const check = (): void => {
        if (hasRoom()) done();
      };
      const timer = setTimeout(done, timeout_ms);
      this.roomWaiters.add(check);
    });
  }

  /** An op completed or the queue stopped: every room-wait checks again. */
  wakeRoom(): void {
    for (const w of [...this.roomWaiters]) w();
  }
}
