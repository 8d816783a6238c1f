/**
 * IngestGate: ingest backpressure of one timeline. The ingest path asks `state()` before each
 * record (a few comparisons, no allocation) and, when it is not None, awaits `wait()`, which
 * returns once the timeline's flush and compaction have caught up.
 *
 *   None     ingest runs.
 *   Delayed  L0 files reached l0_flush_delay_threshold: ingest may not run ahead of the flush
 *            (it waits whenever a frozen layer is still being written), as Neon's "a roll
 *            waits for the flush".
 *   Stalled  the frozen queue reached max_frozen_layers, or L0 files reached
 *            l0_flush_stall_threshold: ingest stops until the flush (or compaction) lowers it.
 *
 * The state is computed from the timeline on every call (`evaluate`); the timeline calls
 * `notify()` whenever an input changes (a flush or compaction landed, a freeze, a config
 * change, shutdown), and every waiter re-evaluates. Time spent waiting is accounted per state
 * (delayed_ms / stalled_ms, including a wait still in progress) for metrics and timeline info.
 *
 * Invariants: at most MAX_GATE_WAITERS waiters (one ingest per timeline, plus checkpoints);
 * after close() every waiter and every later wait fails with the reason.
 */
import { BadStateError, ShutdownError } from "../types/errors.js";

export enum Backpressure {
  None = "none",
  Delayed = "delayed",
  Stalled = "stalled",
}

export interface GateVerdict {
  state: Backpressure;
  /** Why, for timeline info and logs; null when None. */
  reason: string | null;
}

export const GATE_OPEN: GateVerdict = { state: Backpressure.None, reason: null };

/** Waiters at once: the walreceiver's ingest and a few checkpoint requests. */
export const MAX_GATE_WAITERS = 64;

interface Waiter {
  wake: () => void;
  fail: (e: Error) => void;
}

export interface GateStats {
  state: Backpressure;
  reason: string | null;
  delayed_ms: number;
  stalled_ms: number;
  /** Waits that ended (or are in progress), for tests and metrics. */
  waits: number;
}

export class IngestGate {
  private readonly evaluate: () => GateVerdict;
  private waiters: Waiter[] = [];
  private closedReason: string | null = null;
  private delayed_ms = 0;
  private stalled_ms = 0;
  private waits = 0;
  /** The measured wait's current segment. */
  private current: { state: Backpressure; since_ms: number } | null = null;

  constructor(evaluate: () => GateVerdict) {
    this.evaluate = evaluate;
  }

  /** The state now: the ingest path's fast check. */
  state(): Backpressure {
    return this.evaluate().state;
  }

  /** Re-evaluate every waiter (an input changed). */
  notify(): void {
    if (this.waiters.length === 0) return;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.wake();
  }

  /**
   * Resolves when the gate is open; rejects on close() or when `signal` aborts. The time is
   * accounted to the state the gate was in, segment by segment (a stall can become a delay).
   */
  async wait(signal?: AbortSignal): Promise<void> {
    let v = this.evaluate();
    if (v.state === Backpressure.None) return;
    // Only one wait is measured at a time (the timeline's one ingest); others just wait.
    const measured = this.current === null;
    if (measured) this.waits++;
    try {
      for (; v.state !== Backpressure.None; v = this.evaluate()) {
        if (this.closedReason !== null) throw new ShutdownError(this.closedReason);
        if (signal?.aborted) throw new ShutdownError("ingest stopped while waiting for backpressure");
        if (measured && this.current?.state !== v.state) {
          this.account();
          this.current = { state: v.state, since_ms: performance.now() };
        }
        await this.park(signal);
      }
    } finally {
      if (measured) this.account();
    }
  }

  private park(signal?: AbortSignal): Promise<void> {
    if (this.waiters.length >= MAX_GATE_WAITERS) {
      return Promise.reject(new BadStateError(`too many waiters on the ingest gate (${MAX_GATE_WAITERS})`));
    }
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new ShutdownError("ingest stopped while waiting for backpressure"));
      };
      const w: Waiter = {
        wake: () => {
          signal?.removeEventListener("abort", onAbort);
          resolve();
        },
        fail: (e) => {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.push(w);
    });
  }

  /** Close the running measurement segment, attributing its time to its state. */
  private account(): void {
    const c = this.current;
    if (c === null) return;
    const d = performance.now() - c.since_ms;
    if (c.state === Backpressure.Delayed) this.delayed_ms += d;
    else this.stalled_ms += d;
    this.current = null;
  }

  /** Fail every waiter and every later wait (timeline stopping or broken). */
  close(reason: string): void {
    this.closedReason ??= reason;
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.fail(new ShutdownError(reason));
  }

  stats(): GateStats {
    const v = this.evaluate();
    let delayed = this.delayed_ms;
    let stalled = this.stalled_ms;
    const c = this.current;
    if (c !== null) {
      const d = performance.now() - c.since_ms;
      if (c.state === Backpressure.Delayed) delayed += d;
      else stalled += d;
    }
    return { state: v.state, reason: v.reason, delayed_ms: delayed, stalled_ms: stalled, waits: this.waits };
  }
}
