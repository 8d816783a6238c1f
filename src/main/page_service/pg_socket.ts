/**
 * PgSocket: the server side of one PostgreSQL wire-protocol TCP connection, as frames.
 * Frames in (`next()` waits, `tryNext()` doesn't), bytes out (`send`), with flow control in
 * both directions:
 * - In: received bytes wait in the FrameReader; past `max_buffered_bytes` the socket is
 *   paused, and it resumes once the handler has taken frames below half of that. A handler
 *   that stops taking frames (its pipeline is full) thus stops the client within one read.
 * - Out: `drained()` resolves at once while less than `max_unwritten_bytes` wait in the
 *   socket's write buffer; else (socket.write returned false) reading pauses too, until
 *   'drain'. Handlers check `needsDrain` before each answer (batch) and await `drained()`
 *   then, so what a client that doesn't read its answers makes us queue stays below
 *   `max_unwritten_bytes` plus one answer. `peak_unwritten_bytes` records the most ever queued.
 * - Idle: with `setIdleTimeout(ms, onIdle)`, while the server waits on the client (for its
 *   next frame in `next()`, or for it to read in `drained()`) for `ms` straight, `onIdle` runs
 *   (it ends the connection, e.g. with `terminate`). Time spent working on a request (LSN
 *   waits, throttling, reads) is not idle.
 * - `terminate(sqlstate, message)` ends the connection from the server's side: a FATAL
 *   ErrorResponse is queued, then the socket is ended; from then on the socket is closed for
 *   the handlers (`next()` returns null, `drained()` resolves, `send` does nothing).
 *
 * - TLS: `startTls(context)` answers an SSLRequest with 'S' and moves the connection onto a
 *   TLSSocket over the TCP socket (server mode); every method above then works on it.
 *
 * The socket is half-open capable (the server is created with allowHalfOpen): a client that
 * sends its requests and then ends its side still gets every answer before the close.
 *
 * Invariants: a frame's body is valid until the next `next()`/`tryNext()` call that has to
 * wait for data (callers decode before awaiting); once closed, `next()` returns null and
 * `send` does nothing; a WireProtocolError from the reader is thrown to the caller (who
 * answers it and closes).
 */
import type { Socket } from "node:net";
import { type SecureContext, TLSSocket } from "node:tls";
import { errorResponse, type Frame, FrameReader, WireProtocolError } from "../../protocol/pg_wire.js";

export interface PgSocketLimits {
  /** The largest frame a client may send (startup packets: at most 10,000 bytes anyway). */
  max_frame_bytes: number;
  max_buffered_bytes: number;
  max_unwritten_bytes: number;
}

export class PgSocket {
  private sock_: Socket;
  private readonly reader: FrameReader;
  private readonly limits: PgSocketLimits;
  private dataWaiter: (() => void) | null = null;
  private drainWaiters: (() => void)[] = [];
  private closed_ = false;
  /** The client ended its side (FIN): frames already buffered are still served. */
  private inputEnded = false;
  private readPaused = false;
  private writeBlocked = false;
  /** Ended by the server (terminate): the handlers see a closed connection. */
  private terminated = false;
  private peakUnwritten = 0;
  private idleTimeoutMs = 0;
  private onIdle: (() => void) | null = null;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(sock: Socket, limits: PgSocketLimits) {
    this.sock_ = sock;
    this.limits = limits;
    this.reader = new FrameReader({ max_frame_bytes: limits.max_frame_bytes, startup: true });
    this.listen(sock);
  }

  /** The socket frames are read from: the TCP socket, or the TLSSocket over it after `startTls`. */
  get sock(): Socket {
    return this.sock_;
  }

  /** Whether the connection runs over TLS (`startTls` finished its handshake). */
  get tls(): boolean {
    return this.sock_ instanceof TLSSocket;
  }

  private listen(sock: Socket): void {
    sock.on("data", this.onData);
    sock.on("drain", this.onDrain);
    sock.on("end", this.onEnd);
    sock.on("close", this.onClose);
  }

  private readonly onData = (d: Buffer): void => {
    // The reader's views are invalidated by a push: a handler holding one mid-decode is
    // synchronous, so this never runs under it.
    this.reader.push(d);
    if (this.reader.buffered_bytes > this.limits.max_buffered_bytes) this.pauseReading();
    this.wake();
  };

  private readonly onDrain = (): void => {
    this.writeBlocked = false;
    this.maybeResume();
    for (const w of this.drainWaiters.splice(0)) w();
  };

  private readonly onEnd = (): void => {
    this.inputEnded = true;
    this.wake();
  };

  private readonly onClose = (): void => {
    this.closed_ = true;
    this.clearIdle();
    this.wake();
    for (const w of this.drainWaiters.splice(0)) w();
  };

  /**
   * Answer an SSLRequest with 'S' and go on over TLS (server side, `context`'s certificate):
   * from here on frames are read from, and answers written to, the TLSSocket over the TCP
   * socket. Resolves true once the handshake is done; false when it failed or the connection
   * closed first (the connection is destroyed then; `reason` says why). A client that sent
   * bytes after its SSLRequest, before our 'S', is refused (a WireProtocolError): those bytes
   * would be taken as if they came over TLS (CVE-2021-23214, PostgreSQL refuses them too).
   */
  async startTls(context: SecureContext): Promise<{ ok: true } | { ok: false; reason: string }> {
    if (this.tls) throw new WireProtocolError("SSLRequest on a connection already over TLS");
    if (this.reader.buffered_bytes !== 0) throw new WireProtocolError("unencrypted data after SSLRequest");
    if (this.closed) return { ok: false, reason: "connection closed" };
    const raw = this.sock_;
    raw.off("data", this.onData);
    raw.off("drain", this.onDrain);
    raw.off("end", this.onEnd);
    raw.off("close", this.onClose);
    raw.write("S");
    const t = new TLSSocket(raw, { isServer: true, secureContext: context });
    this.sock_ = t;
    this.listen(t);
    // A failed handshake (garbage, an unknown CA on the client's side) errors the TLSSocket:
    // seen here, then the socket is destroyed; later errors end in 'close' the same way.
    let failure: string | null = null;
    t.on("error", (e: Error) => {
      failure ??= e.message;
      t.destroy();
    });
    const secure = await new Promise<boolean>((resolve) => {
      t.once("secure", () => resolve(true));
      t.once("close", () => resolve(false));
    });
    if (secure && !this.closed) return { ok: true };
    t.destroy();
    return { ok: false, reason: failure ?? "connection closed during the TLS handshake" };
  }

  get closed(): boolean {
    return this.closed_ || this.terminated || this.sock.destroyed;
  }

  /** The most bytes ever queued unwritten on this socket (after a send). */
  get peak_unwritten_bytes(): number {
    return this.peakUnwritten;
  }

  /** Whether the write buffer is above the limit: the handler must await `drained()` before answering more. */
  get needsDrain(): boolean {
    return !this.closed && this.sock.writableLength > this.limits.max_unwritten_bytes;
  }

  /** Call `onIdle` once the server has waited on the client for `timeout_ms` straight (see the header). */
  setIdleTimeout(timeout_ms: number, onIdle: () => void): void {
    if (!(Number.isSafeInteger(timeout_ms) && timeout_ms > 0))
      throw new RangeError(`idle timeout must be a positive integer of ms, got ${timeout_ms}`);
    this.idleTimeoutMs = timeout_ms;
    this.onIdle = onIdle;
  }

  /** Entering a wait on the client: arm the idle timer unless it runs (next() and drained() never overlap). */
  private armIdle(): void {
    const onIdle = this.onIdle;
    if (onIdle === null || this.idleTimer !== null || this.closed) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      onIdle();
    }, this.idleTimeoutMs);
  }

  private clearIdle(): void {
    if (this.idleTimer !== null) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
  }

  /**
   * End the connection from the server's side: queue a FATAL ErrorResponse, end the socket,
   * and wake every waiter (the handlers then see `closed`). The caller's run() destroys the
   * socket if the client never reads it.
   */
  terminate(sqlstate: string, message: string): void {
    if (this.closed) return;
    this.sock.write(errorResponse(sqlstate, message, "FATAL"));
    this.terminated = true;
    this.clearIdle();
    this.sock.end();
    this.wake();
    for (const w of this.drainWaiters.splice(0)) w();
  }

  endStartup(): void {
    this.reader.endStartup();
  }

  private wake(): void {
    const w = this.dataWaiter;
    if (w !== null) {
      this.dataWaiter = null;
      w();
    }
  }

  private pauseReading(): void {
    if (!this.readPaused) {
      this.readPaused = true;
      this.sock.pause();
    }
  }

  private maybeResume(): void {
    if (this.readPaused && !this.writeBlocked && this.reader.buffered_bytes <= this.limits.max_buffered_bytes / 2) {
      this.readPaused = false;
      this.sock.resume();
    }
  }

  /** The next frame if one is already buffered (throws WireProtocolError on a bad one). */
  tryNext(): Frame | null {
    const f = this.reader.next();
    if (this.readPaused) this.maybeResume();
    return f;
  }

  /** The next frame; null once the connection is closed or the client ended its side (bytes of a partial frame are dropped). */
  async next(): Promise<Frame | null> {
    try {
      for (;;) {
        const f = this.tryNext();
        if (f !== null) return f;
        if (this.closed || this.inputEnded) return null;
        // Armed once per frame: bytes of a frame trickling in don't restart the idle time.
        this.armIdle();
        await new Promise<void>((resolve) => {
          this.dataWaiter = resolve;
        });
      }
    } finally {
      this.clearIdle();
    }
  }

  send(...bufs: Uint8Array[]): void {
    if (this.closed) return;
    for (const b of bufs) {
      if (!this.sock.write(b)) this.writeBlocked = true;
    }
    const unwritten = this.sock.writableLength;
    if (unwritten > this.peakUnwritten) this.peakUnwritten = unwritten;
    if (unwritten > this.limits.max_unwritten_bytes) this.pauseReading();
  }

  /** Resolves when the write buffer is below the limit (or the connection closed). */
  async drained(): Promise<void> {
    if (!this.needsDrain) return;
    this.pauseReading();
    this.armIdle();
    try {
      await new Promise<void>((resolve) => this.drainWaiters.push(resolve));
    } finally {
      this.clearIdle();
    }
  }

  /** Send what is queued, then close. */
  end(): void {
    if (!this.sock.destroyed) this.sock.end();
  }

  destroy(): void {
    this.sock.destroy();
  }
}
