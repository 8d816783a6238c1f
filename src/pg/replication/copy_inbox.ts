/**
 * The inbox of the CopyData payloads of one COPY (out or both): a bounded FIFO with one reader.
 *
 * Owns: the copies of the payloads not read yet, and the pause/resume of the socket that
 * bounds them.
 *
 * Invariants:
 * - pg's CopyData `chunk` is a view into the parser's buffer, which pg reuses for the next
 *   socket read. Every chunk is copied on arrival; what read() hands out is owned by the reader.
 * - At `max_bytes` buffered the socket is paused, and it resumes when the reader has drained
 *   half. Messages already parsed out of the current socket read still arrive after pause(),
 *   so the inbox may exceed its bound by at most one socket read (and one message).
 * - One reader at a time; a failure drops what is queued and is what every later read rejects
 *   with; after end() the queued payloads are read, then null.
 */
import type { Duplex } from "node:stream";
import { assert } from "../../types/assert.js";

/** Default bound of the inbound CopyData inbox. */
export const DEFAULT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** A bounded FIFO of CopyData payloads (see the module comment for the bound and its slack). */
export class CopyInbox {
  private chunks: Uint8Array[] = [];
  private head = 0;
  private bytes = 0;
  private paused = false;
  private ended = false;
  private failure: Error | null = null;
  private waiter: { resolve: (c: Uint8Array | null) => void; reject: (e: Error) => void } | null = null;
  /** When true, arriving data is dropped (the client sent CopyDone and waits for the end). */
  discarding = false;

  constructor(
    private readonly socket: Duplex,
    private readonly max_bytes: number,
  ) {
    assert(max_bytes > 0, "inbox bound must be positive");
  }

  push(view: Buffer): void {
    if (this.ended || this.failure !== null || this.discarding) return;
    // Copy: `view` points into pg's parser buffer, which is overwritten by later reads.
    const own = Uint8Array.prototype.slice.call(view) as Uint8Array;
    if (this.waiter !== null) {
      assert(this.bytes === 0, "a reader waits only on an empty inbox");
      const w = this.waiter;
      this.waiter = null;
      w.resolve(own);
      return;
    }
    this.chunks.push(own);
    this.bytes += own.length;
    if (!this.paused && this.bytes >= this.max_bytes) {
      this.paused = true;
      this.socket.pause();
    }
  }

  end(): void {
    if (this.ended || this.failure !== null) return;
    this.ended = true;
    this.resume();
    if (this.waiter !== null && this.bytes === 0) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve(null);
    }
  }

  fail(err: Error): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.chunks = [];
    this.head = 0;
    this.bytes = 0;
    this.resume();
    if (this.waiter !== null) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
  }

  /** Drop everything queued and all that arrives later; keep the socket flowing. */
  discard(): void {
    this.discarding = true;
    this.chunks = [];
    this.head = 0;
    this.bytes = 0;
    this.resume();
  }

  get bufferedBytes(): number {
    return this.bytes;
  }

  /** The next payload, or null after the server's CopyDone. */
  read(): Promise<Uint8Array | null> {
    assert(this.waiter === null, "CopyInbox has one reader at a time");
    if (this.head < this.chunks.length) {
      const c = this.chunks[this.head]!;
      this.chunks[this.head] = EMPTY;
      this.head++;
      this.bytes -= c.length;
      if (this.head === this.chunks.length) {
        this.chunks = [];
        this.head = 0;
      } else if (this.head >= 1024) {
        this.chunks = this.chunks.slice(this.head);
        this.head = 0;
      }
      if (this.paused && this.bytes <= this.max_bytes / 2) this.resume();
      return Promise.resolve(c);
    }
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  private resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.socket.resume();
  }
}

const EMPTY = new Uint8Array(0);
