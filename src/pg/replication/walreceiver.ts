/**
 * WalReceiver: streams WAL from a PostgreSQL 15 primary through a physical replication slot
 * and hands it, contiguous and in order, to a consumer; reports the consumer's durable
 * position back so the slot keeps exactly the WAL the pageserver still needs (DESIGN.md,
 * "Durability, crash safety").
 *
 *   connect ─► IDENTIFY_SYSTEM (check system id, timeline) ─► CREATE_REPLICATION_SLOT (ok if
 *   exists) ─► START_REPLICATION SLOT s PHYSICAL <next> TIMELINE t ─► 'w' … 'k' … ─┐
 *        ▲                                                                          │ loss
 *        └──────────── backoff 100 ms, 200 ms, … ≤ 10 s (bounded count) ◄───────────┘
 *
 * States: connecting → streaming → (backoff → connecting …) → stopped | failed.
 *
 * Invariants:
 * - `next_lsn` is the LSN after the last byte handed to onWal. Every onWal(start, bytes) has
 *   start === next_lsn: a reconnect starts streaming at next_lsn, and bytes the server sends
 *   again (dataStart < next_lsn) are trimmed, so there is no gap and no duplicate. A gap
 *   (dataStart > next_lsn) is a protocol error and leads to a reconnect at next_lsn.
 * - Backpressure: the next message is read only after onWal's promise settles; meanwhile the
 *   connection's inbox (bounded, see connection.ts) fills and the socket is paused.
 * - Status ('r'): write = next_lsn, flush = flushLsn() (the slot's restart_lsn follows it),
 *   apply = applyLsn() or flush. Sent every status_interval_ms, at once when a keepalive asks
 *   for a reply, when the consumer calls reportNow() (its flush position moved), and once
 *   more before a clean stop.
 * - Liveness: when the stream is idle (we wait for a message) for half of
 *   receive_timeout_ms, a status with replyRequested makes the server answer; after the whole
 *   timeout the connection is dropped and re-established.
 * - Not retried: a system id or timeline mismatch, non-retryable server errors (WAL removed,
 *   wrong slot kind, …), an exception from onWal, more than max_consecutive_failures failed
 *   attempts in a row. Those end in state "failed"; `finished` rejects with the error.
 */
import { assert } from "../../types/assert.js";
import { INVALID_LSN, isValidLsn, type Lsn, lsnAdd, lsnToString } from "../../types/lsn.js";
import { ReplicationConnection } from "./connection.js";
import type { PhysicalReplicationStream } from "./copy_streams.js";
import { ReplicationError, toReplicationError } from "./errors.js";
import type { StandbyStatus } from "./messages.js";

export type WalReceiverStateName = "connecting" | "streaming" | "backoff" | "stopped" | "failed";

export interface WalReceiverState {
  state: WalReceiverStateName;
  /** LSN after the last WAL byte delivered to onWal. */
  last_received_lsn: Lsn;
  /** The server's flush position as of its last message. */
  server_wal_end_lsn: Lsn;
  /** The flush LSN in the last status update sent. */
  last_reported_flush_lsn: Lsn;
  last_error: string | null;
  /** In backoff: when the next connection attempt starts (epoch ms); otherwise null. */
  next_attempt_at_ms: number | null;
  connect_attempts: number;
  status_updates_sent: number;
  /** Received and not yet delivered (bounded by max_buffered_bytes plus one socket read). */
  buffered_bytes: number;
}

export interface WalReceiverCallbacks {
  /**
   * Contiguous raw WAL in order: `startLsn` is the LSN after the previous call's bytes. The
   * array is owned by the callee. May return a promise; no more WAL is read until it settles.
   * A throw or rejection stops the receiver (state "failed").
   */
  onWal(startLsn: Lsn, bytes: Uint8Array): void | Promise<void>;
  /** The LSN to report as flush: everything before it is durable (disk_consistent_lsn). */
  flushLsn(): Lsn;
  /** The LSN to report as apply; default flushLsn(). */
  applyLsn?(): Lsn;
  /** Told of every state change (for logs and metrics). */
  onStateChange?(state: WalReceiverState): void;
}

export interface WalReceiverOptions {
  /** postgresql:// URL of the source. */
  connstr: string;
  slot_name: string;
  /** Where to start streaming the first time; later connections resume after the last byte. */
  start_lsn: Lsn;
  /** pg_control system identifier (decimal) the source must have. */
  expected_system_id?: string;
  /** Timeline the source must be on, and to stream. */
  timeline: number;
  status_interval_ms?: number;
  backoff_initial_ms?: number;
  backoff_max_ms?: number;
  /** Failed attempts in a row before giving up; default 8640 (a day at the 10 s cap). */
  max_consecutive_failures?: number;
  /** Drop and re-establish a connection silent this long; default 60 s. */
  receive_timeout_ms?: number;
  connect_timeout_ms?: number;
  /** Bound of the inbound message buffer; default 4 MiB. */
  max_buffered_bytes?: number;
  application_name?: string;
}

/** Longest stretch of WAL handling before the receive loop lets the event loop run. */
const YIELD_EVERY_MS = 5;

const DEFAULTS = {
  status_interval_ms: 1_000,
  backoff_initial_ms: 100,
  backoff_max_ms: 10_000,
  max_consecutive_failures: 8_640,
  receive_timeout_ms: 60_000,
  connect_timeout_ms: 10_000,
  max_buffered_bytes: 4 * 1024 * 1024,
};

/** The consumer (onWal) failed: never retried, the consumer's state is unknown. */
export class WalConsumerError extends ReplicationError {
  constructor(lsn: Lsn, cause: unknown) {
    super("stopped", `WAL consumer failed at ${lsnToString(lsn)}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      retryable: false,
      cause,
    });
  }
}

function positiveInt(name: string, v: number): number {
  if (!(Number.isSafeInteger(v) && v > 0))
    throw new ReplicationError("protocol", `${name} must be a positive integer, got ${v}`, { retryable: false });
  return v;
}

export class WalReceiver {
  private readonly opts: Required<Omit<WalReceiverOptions, "expected_system_id">> & { expected_system_id: string | undefined };
  private readonly cb: WalReceiverCallbacks;
  private nextLsn: Lsn;
  private st: WalReceiverState;
  private stopping = false;
  private started = false;
  private conn: ReplicationConnection | null = null;
  private stream: PhysicalReplicationStream | null = null;
  private wakeSleep: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private resolveFinished!: () => void;
  private rejectFinished!: (e: Error) => void;
  /** Settles when the receiver ends: resolves after stop(), rejects with the error on failure. */
  readonly finished: Promise<void>;

  // Liveness bookkeeping (monotonic ms); see the module comment.
  private waitingForMessage = false;
  private lastActivity_ms = 0;
  private pingSent = false;

  constructor(opts: WalReceiverOptions, callbacks: WalReceiverCallbacks) {
    if (!isValidLsn(opts.start_lsn)) throw new ReplicationError("protocol", `invalid start LSN ${opts.start_lsn}`, { retryable: false });
    if (!(Number.isInteger(opts.timeline) && opts.timeline > 0))
      throw new ReplicationError("protocol", `invalid timeline ${opts.timeline}`, { retryable: false });
    this.opts = {
      connstr: opts.connstr,
      slot_name: opts.slot_name,
      start_lsn: opts.start_lsn,
      expected_system_id: opts.expected_system_id,
      timeline: opts.timeline,
      status_interval_ms: positiveInt("status_interval_ms", opts.status_interval_ms ?? DEFAULTS.status_interval_ms),
      backoff_initial_ms: positiveInt("backoff_initial_ms", opts.backoff_initial_ms ?? DEFAULTS.backoff_initial_ms),
      backoff_max_ms: positiveInt("backoff_max_ms", opts.backoff_max_ms ?? DEFAULTS.backoff_max_ms),
      max_consecutive_failures: positiveInt("max_consecutive_failures", opts.max_consecutive_failures ?? DEFAULTS.max_consecutive_failures),
      receive_timeout_ms: positiveInt("receive_timeout_ms", opts.receive_timeout_ms ?? DEFAULTS.receive_timeout_ms),
      connect_timeout_ms: positiveInt("connect_timeout_ms", opts.connect_timeout_ms ?? DEFAULTS.connect_timeout_ms),
      max_buffered_bytes: positiveInt("max_buffered_bytes", opts.max_buffered_bytes ?? DEFAULTS.max_buffered_bytes),
      application_name: opts.application_name ?? "pageserver",
    };
    this.cb = callbacks;
    this.nextLsn = opts.start_lsn;
    this.st = {
      state: "connecting",
      last_received_lsn: opts.start_lsn,
      server_wal_end_lsn: INVALID_LSN,
      last_reported_flush_lsn: INVALID_LSN,
      last_error: null,
      next_attempt_at_ms: null,
      connect_attempts: 0,
      status_updates_sent: 0,
      buffered_bytes: 0,
    };
    this.finished = new Promise<void>((resolve, reject) => {
      this.resolveFinished = resolve;
      this.rejectFinished = reject;
    });
    // Callers may never await `finished`; a failure is also visible in `state`.
    this.finished.catch(() => {});
  }

  /** A snapshot of the state, for metrics and the HTTP API. */
  get state(): WalReceiverState {
    return { ...this.st, buffered_bytes: this.stream?.bufferedBytes ?? 0 };
  }

  /** Start the receive loop (once). */
  start(): void {
    assert(!this.started, "WalReceiver.start called twice");
    this.started = true;
    this.loop = this.run();
  }

  /**
   * Stop cleanly: a last status update, CopyDone, close. Resolves when the loop has ended,
   * which includes waiting for an onWal call in progress to settle.
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeSleep?.();
    const stream = this.stream;
    if (stream !== null) {
      this.sendStatus(false);
      await stream.stop();
    } else {
      // Connecting: don't wait for IDENTIFY_SYSTEM & co, the session fails and the loop ends.
      this.conn?.destroy();
    }
    if (this.loop !== null) {
      await this.loop;
    } else {
      this.setState("stopped");
      this.resolveFinished();
    }
  }

  /** Send a status update now (the consumer's flush position moved); a no-op unless streaming. */
  reportNow(): void {
    if (!this.stopping) this.sendStatus(false);
  }

  private setState(s: WalReceiverStateName): void {
    if (this.st.state === s) return;
    this.st.state = s;
    this.cb.onStateChange?.(this.state);
  }

  private async run(): Promise<void> {
    let failures = 0;
    let backoff_ms = this.opts.backoff_initial_ms;
    for (;;) {
      if (this.stopping) break;
      this.setState("connecting");
      try {
        await this.session();
        if (this.stopping) break;
        // The server ended the COPY: our timeline ended on the source (it was promoted to a
        // new one). Following it is the caller's decision.
        throw new ReplicationError("timeline_mismatch", `the source ended timeline ${this.opts.timeline} at ${lsnToString(this.nextLsn)}`, {
          retryable: false,
        });
      } catch (e) {
        if (this.stopping) break;
        // Consumer failures arrive as WalConsumerError (deliver, sendStatus); anything else
        // that is not a ReplicationError is a bug here: not retried either.
        const err =
          e instanceof ReplicationError
            ? e
            : new ReplicationError(
                "protocol",
                `internal error at ${lsnToString(this.nextLsn)}: ${e instanceof Error ? e.message : String(e)}`,
                { retryable: false, cause: e },
              );
        this.st.last_error = err.message;
        if (e instanceof StreamedThenFailed) {
          failures = 0;
          backoff_ms = this.opts.backoff_initial_ms;
        }
        failures++;
        if (!err.retryable || failures >= this.opts.max_consecutive_failures) {
          this.setState("failed");
          this.rejectFinished(err);
          return;
        }
        this.st.next_attempt_at_ms = Date.now() + backoff_ms;
        this.setState("backoff");
        await this.sleep(backoff_ms);
        this.st.next_attempt_at_ms = null;
        backoff_ms = Math.min(backoff_ms * 2, this.opts.backoff_max_ms);
      }
    }
    this.setState("stopped");
    this.resolveFinished();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => done(), ms);
      const done = () => {
        clearTimeout(t);
        this.wakeSleep = null;
        resolve();
      };
      this.wakeSleep = done;
    });
  }

  /**
   * One connection. Returns normally on stop or when the server ends the COPY; throws on
   * errors (StreamedThenFailed when messages had arrived, so the failure count starts over).
   */
  private async session(): Promise<void> {
    this.st.connect_attempts++;
    let conn: ReplicationConnection;
    try {
      conn = await ReplicationConnection.connect({
        connstr: this.opts.connstr,
        application_name: this.opts.application_name,
        connect_timeout_ms: this.opts.connect_timeout_ms,
        max_buffered_bytes: this.opts.max_buffered_bytes,
      });
    } catch (e) {
      throw toReplicationError(e, "connect");
    }
    this.conn = conn;
    let timer: NodeJS.Timeout | null = null;
    let gotMessage = false;
    try {
      if (this.stopping) return;
      const id = await conn.identifySystem();
      if (this.opts.expected_system_id !== undefined && id.systemId !== this.opts.expected_system_id) {
        throw new ReplicationError(
          "system_id_mismatch",
          `source system id ${id.systemId} differs from the expected ${this.opts.expected_system_id}`,
          { retryable: false },
        );
      }
      if (id.timeline !== this.opts.timeline) {
        throw new ReplicationError("timeline_mismatch", `source is on timeline ${id.timeline}, expected ${this.opts.timeline}`, {
          retryable: false,
        });
      }
      await conn.createPhysicalSlot(this.opts.slot_name, { reserveWal: true });
      if (this.stopping) return;
      const stream = await conn.startReplication({ slot: this.opts.slot_name, startLsn: this.nextLsn, timeline: this.opts.timeline });
      this.stream = stream;
      this.setState("streaming");
      this.lastActivity_ms = performance.now();
      this.pingSent = false;
      timer = setInterval(() => this.tick(), this.opts.status_interval_ms);
      timer.unref();
      // A first status at once: the slot learns our flush position without waiting a tick.
      this.sendStatus(false);
      let lastYield_ms = performance.now();
      for (;;) {
        this.waitingForMessage = true;
        this.lastActivity_ms = performance.now();
        const msg = await stream.next();
        this.waitingForMessage = false;
        if (msg === null) return;
        gotMessage = true;
        this.pingSent = false;
        this.st.server_wal_end_lsn = msg.walEnd;
        if (msg.kind === "keepalive") {
          if (msg.replyRequested) this.sendStatus(false);
          continue;
        }
        if (this.stopping) continue; // drain until the server's CopyDone
        await this.deliver(msg.dataStart, msg.data);
        // With messages already buffered every await above resumes at once, so a catch-up
        // would hold the event loop (HTTP, timers, status updates) for seconds: yield to it
        // every YIELD_EVERY_MS of work.
        if (performance.now() - lastYield_ms >= YIELD_EVERY_MS) {
          await new Promise<void>((r) => setImmediate(r));
          lastYield_ms = performance.now();
        }
      }
    } catch (e) {
      // Report whether we streamed; the caller resets the backoff on that.
      if (gotMessage && e instanceof ReplicationError && e.retryable) {
        this.st.last_error = e.message;
        throw new StreamedThenFailed(e);
      }
      throw e;
    } finally {
      this.waitingForMessage = false;
      if (timer !== null) clearInterval(timer);
      const stream = this.stream;
      this.stream = null;
      this.conn = null;
      if (this.stopping && stream !== null && !conn.closed) {
        await stream.stop();
        await conn.close();
      } else {
        conn.destroy();
      }
    }
  }

  private async deliver(dataStart: Lsn, data: Uint8Array): Promise<void> {
    let start = dataStart;
    let bytes = data;
    if (start + bytes.length <= this.nextLsn) return; // all seen before (resent after reconnect)
    if (start < this.nextLsn) {
      bytes = bytes.subarray(this.nextLsn - start);
      start = this.nextLsn;
    }
    if (start > this.nextLsn) {
      throw new ReplicationError(
        "protocol",
        `gap in the WAL stream: expected ${lsnToString(this.nextLsn)}, got data at ${lsnToString(start)}`,
      );
    }
    if (bytes.length === 0) return;
    assert(start === this.nextLsn, "delivered WAL must be contiguous");
    try {
      await this.cb.onWal(start, bytes);
    } catch (e) {
      throw new WalConsumerError(start, e);
    }
    this.nextLsn = lsnAdd(start, bytes.length);
    this.st.last_received_lsn = this.nextLsn;
  }

  /** Timer: the periodic status update and the liveness check. */
  private tick(): void {
    if (this.waitingForMessage) {
      const idle_ms = performance.now() - this.lastActivity_ms;
      if (idle_ms >= this.opts.receive_timeout_ms) {
        const msg = `no message from the source in ${Math.round(idle_ms)} ms`;
        this.st.last_error = msg;
        this.conn?.destroy(new ReplicationError("connection", msg));
        return;
      }
      if (idle_ms >= this.opts.receive_timeout_ms / 2 && !this.pingSent) {
        this.pingSent = true;
        this.sendStatus(true);
        return;
      }
    }
    this.sendStatus(false);
  }

  private sendStatus(replyRequested: boolean): void {
    const stream = this.stream;
    if (stream === null) return;
    let flush: Lsn;
    let apply: Lsn;
    try {
      flush = this.cb.flushLsn();
      apply = this.cb.applyLsn?.() ?? flush;
      if (!isValidLsn(flush) || !isValidLsn(apply)) throw new Error(`flushLsn()/applyLsn() returned an invalid LSN (${flush}, ${apply})`);
    } catch (e) {
      // Runs from a timer too: a throw here would be uncaught. Fail the receiver instead.
      this.conn?.destroy(new WalConsumerError(this.nextLsn, e));
      return;
    }
    const s: StandbyStatus = { write: this.nextLsn, flush, apply, replyRequested };
    try {
      stream.sendStatus(s);
      this.st.status_updates_sent++;
      this.st.last_reported_flush_lsn = flush;
    } catch {
      // The connection is gone; the receive loop sees the failure and reconnects.
    }
  }
}

/** A retryable failure after messages were received: the failure count starts over. */
class StreamedThenFailed extends ReplicationError {
  constructor(inner: ReplicationError) {
    super(inner.kind, inner.message, {
      retryable: true,
      ...(inner.sqlstate === undefined ? {} : { sqlstate: inner.sqlstate }),
      cause: inner,
    });
  }
}
