/**
 * BackgroundLoops: the node's one scheduler for every tenant's periodic work (compaction,
 * GC, housekeeping), so that a thousand idle tenants cost one timer, not three thousand, and
 * no tenant's rounds crowd out another's.
 *
 * Each registered loop has a period (re-read from the tenant's config at every decision, so
 * config changes apply without a restart; 0 disables it) and a due time. One timer fires at
 * the earliest due time (at most TICK_MAX_MS away, at least TICK_MIN_MS after the last tick). A due loop is queued; queued rounds run
 * FIFO, at most `concurrency` at once across all tenants (Neon's background task semaphore).
 * A round that reports more work, or was woken while running, is queued again at the tail,
 * behind every tenant already waiting: that is the fairness. `inline` loops (housekeeping:
 * a few comparisons per timeline) run in the tick itself, outside the limit.
 *
 * Invariants: a loop is at most once in the queue and never runs twice at once; the queue
 * holds at most one entry per registered loop; a stopped loop never starts a round again.
 */
import { assert } from "../types/assert.js";

export interface LoopSpec {
  /** For logs: what the round does. */
  what: string;
  /** Current period in ms; 0 disables the loop (re-read at each decision). */
  period_ms: () => number;
  /** One round; true means "more to do now". Ignored for inline loops. */
  round: () => Promise<boolean> | boolean;
  /** Runs synchronously in the tick, not counted against the concurrency limit. */
  inline?: boolean;
  /** A round failed: the scheduler goes on (the owner logs). */
  onError: (e: unknown) => void;
}

interface Loop {
  spec: LoopSpec;
  due_ms: number;
  queued: boolean;
  running: boolean;
  again: boolean;
  stopped: boolean;
}

/** A disabled loop looks again after this long (enabling it needs no restart). */
const DISABLED_RECHECK_MS = 10_000;
/** The timer never sleeps longer than this (a new, shorter period is seen within it). */
const TICK_MAX_MS = 1000;
/**
 * Nor fires sooner than this after the last tick: loops fall due at scattered times, and
 * a tick per due time would be a tick per tenant. wake() does not wait for a tick.
 */
const TICK_MIN_MS = 100;
/** Loops one scheduler holds at most (3 per tenant × max_tenants, with room). */
const MAX_LOOPS = 100_000;

export interface LoopHandle {
  /** Run a round soon (or once more right after the running one). */
  wake(): void;
  stop(): void;
}

export class BackgroundLoops {
  readonly concurrency: number;
  private readonly loops = new Set<Loop>();
  private readonly queue: Loop[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | null = null;
  private timerAt_ms = Number.POSITIVE_INFINITY;
  private lastTick_ms = 0;
  private closed = false;

  constructor(concurrency: number) {
    assert(Number.isSafeInteger(concurrency) && concurrency > 0, "background concurrency must be a positive integer");
    this.concurrency = concurrency;
  }

  /** Rounds waiting for a slot (for metrics). */
  get queued(): number {
    return this.queue.length;
  }

  get active(): number {
    return this.running;
  }

  register(spec: LoopSpec): LoopHandle {
    assert(this.loops.size < MAX_LOOPS, "too many background loops");
    const loop: Loop = { spec, due_ms: Date.now() + this.delayOf(spec), queued: false, running: false, again: false, stopped: this.closed };
    this.loops.add(loop);
    this.arm(loop.due_ms);
    return {
      wake: () => this.wake(loop),
      stop: () => {
        loop.stopped = true;
        this.loops.delete(loop);
      },
    };
  }

  /** Stop scheduling (queued rounds are dropped; running ones finish on their own). */
  close(): void {
    this.closed = true;
    for (const l of this.loops) l.stopped = true;
    this.loops.clear();
    this.queue.length = 0;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private delayOf(spec: LoopSpec): number {
    const p = spec.period_ms();
    return p === 0 ? DISABLED_RECHECK_MS : p;
  }

  private wake(loop: Loop): void {
    if (loop.stopped || loop.spec.period_ms() === 0) return;
    if (loop.running) {
      loop.again = true;
      return;
    }
    loop.due_ms = 0;
    this.enqueue(loop);
    this.drain();
  }

  private enqueue(loop: Loop): void {
    if (loop.queued || loop.running || loop.stopped) return;
    if (loop.spec.inline === true) {
      this.runInline(loop);
      return;
    }
    loop.queued = true;
    this.queue.push(loop);
    assert(this.queue.length <= this.loops.size, "a loop is queued at most once");
  }

  private runInline(loop: Loop): void {
    try {
      void loop.spec.round();
    } catch (e) {
      loop.spec.onError(e);
    }
    loop.due_ms = Date.now() + this.delayOf(loop.spec);
  }

  private arm(at_ms: number): void {
    if (this.closed) return;
    const now = Date.now();
    const at = Math.max(at_ms, this.lastTick_ms + TICK_MIN_MS);
    if (at >= this.timerAt_ms) return;
    if (this.timer !== null) clearTimeout(this.timer);
    const delay_ms = Math.max(0, Math.min(TICK_MAX_MS, at - now));
    this.timerAt_ms = now + delay_ms;
    this.timer = setTimeout(() => this.tick(), delay_ms);
    this.timer.unref();
  }

  private tick(): void {
    this.timer = null;
    this.timerAt_ms = Number.POSITIVE_INFINITY;
    if (this.closed) return;
    const now = Date.now();
    this.lastTick_ms = now;
    let next_ms = now + TICK_MAX_MS;
    for (const loop of this.loops) {
      if (loop.queued || loop.running) continue;
      if (loop.due_ms <= now) {
        if (loop.spec.period_ms() === 0) loop.due_ms = now + DISABLED_RECHECK_MS;
        else this.enqueue(loop);
      }
      if (!loop.queued && !loop.running && loop.due_ms < next_ms) next_ms = loop.due_ms;
    }
    this.drain();
    this.arm(next_ms);
  }

  private drain(): void {
    while (this.running < this.concurrency && this.queue.length > 0) {
      const loop = this.queue.shift()!;
      loop.queued = false;
      if (loop.stopped) continue;
      this.start(loop);
    }
  }

  private start(loop: Loop): void {
    loop.running = true;
    loop.again = false;
    this.running++;
    const finish = (more: boolean): void => {
      loop.running = false;
      this.running--;
      assert(this.running >= 0, "running count below zero");
      if (!loop.stopped) {
        if (more || loop.again) {
          loop.due_ms = 0;
          this.enqueue(loop);
        } else {
          loop.due_ms = Date.now() + this.delayOf(loop.spec);
          this.arm(loop.due_ms);
        }
      }
      this.drain();
    };
    let p: Promise<boolean> | boolean;
    try {
      p = loop.spec.round();
    } catch (e) {
      loop.spec.onError(e);
      finish(false);
      return;
    }
    Promise.resolve(p).then(
      (more) => finish(more === true),
      (e: unknown) => {
        loop.spec.onError(e);
        finish(false);
      },
    );
  }
}
