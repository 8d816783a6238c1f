/**
 * PgSocket: the server side of one PostgreSQL wire-protocol TCP connection, as frames.
 * Frames in (`next()` waits, `tryNext()` doesn't), bytes out (`send`), with flow control in
 * both directions:
 * - In: received bytes wait in the FrameReader; past `max_buffered_bytes` the socket is
 *   paused, and it resumes once the handler has taken frames below half of that. A handler
 *   that stops taking frames (its pipeline is full) thus stops the client within one read.
 * - Out: `drained()` resolves at once while less than `max_unwritten_bytes` wait in the
 *   socket's write buffer; else (socket.write returned false) reading pauses too, until
 *   'drain'. Handlers await it between batches, so a client that doesn't read its answers
 *   can't grow our memory.
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
import { type Frame, FrameReader } from "../client/pg_wire.js";

export interface PgSocketLimits {
  /** The largest frame a client may send (startup packets: at most 10,000 bytes anyway). */
  max_frame_bytes: number;
  max_buffered_bytes: number;
  max_unwritten_bytes: number;
}

export class PgSocket {
  readonly sock: Socket;
  private readonly reader: FrameReader;
  private readonly limits: PgSocketLimits;
  private dataWaiter: (() => void) | null = null;
  private drainWaiters: (() => void)[] = [];
  private closed_ = false;
  /** The client ended its side (FIN): frames already buffered are still served. */
  private inputEnded = false;
  private readPaused = false;
  private writeBlocked = false;

  constructor(sock: Socket, limits: PgSocketLimits) {
    this.sock = sock;
    this.limits = limits;
    this.reader = new FrameReader({ max_frame_bytes: limits.max_frame_bytes, startup: true });
    sock.on("data", (d: Buffer) => {
      // The reader's views are invalidated by a push: a handler holding one mid-decode is
      // synchronous, so this never runs under it.
      this.reader.push(d);
      if (this.reader.buffered_bytes > this.limits.max_buffered_bytes) this.pauseReading();
      this.wake();
    });
    sock.on("drain", () => {
      this.writeBlocked = false;
      this.maybeResume();
      for (const w of this.drainWaiters.splice(0)) w();
    });
    sock.on("end", () => {
      this.inputEnded = true;
      this.wake();
    });
    sock.on("close", () => {
      this.closed_ = true;
      this.wake();
      for (const w of this.drainWaiters.splice(0)) w();
    });
  }

  get closed(): boolean {
    return this.closed_ || this.sock.destroyed;
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
    for (;;) {
      const f = this.tryNext();
      if (f !== null) return f;
      if (this.closed || this.inputEnded) return null;
      await new Promise<void>((resolve) => {
        this.dataWaiter = resolve;
      });
    }
  }

  send(...bufs: Uint8Array[]): void {
    if (this.closed) return;
    for (const b of bufs) {
      if (!this.sock.write(b)) this.writeBlocked = true;
    }
    if (this.sock.writableLength > this.limits.max_unwritten_bytes) this.pauseReading();
  }

  /** Resolves when the write buffer is below the limit (or the connection closed). */
  drained(): Promise<void> {
    if (this.closed || this.sock.writableLength <= this.limits.max_unwritten_bytes) return Promise.resolve();
    this.pauseReading();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Send what is queued, then close. */
  end(): void {
    if (!this.sock.destroyed) this.sock.end();
  }

  destroy(): void {
    this.sock.destroy();
  }
}
