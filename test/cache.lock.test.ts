/**
 * Lock primitives of src/cache/lock.ts: sharing and exclusion, try-locks, deadlines that throw
 * instead of hanging, misuse caught by assertions, and a writer in another thread that parks
 * this thread's reader until it releases.
 */
import { describe, expect, it } from "vitest";
import {
  LockTimeoutError,
  Mutex,
  mutexLock,
  mutexTryLock,
  mutexUnlock,
  RW_WRITER,
  RwLock,
  rwLockState,
  rwReadLock,
  rwReadUnlock,
  rwTryReadLock,
  rwTryWriteLock,
  rwWriteLock,
  rwWriteUnlock,
} from "../src/cache/lock.js";
import { AssertionError } from "../src/types/assert.js";
import { type LockHolderData, startTsWorker } from "./support/cache_stress_worker.js";

function words(n = 8): Int32Array {
  return new Int32Array(new SharedArrayBuffer(n * 4));
}

describe("reader-writer lock", () => {
  it("readers share the lock and keep writers out", () => {
    const w = words();
    rwReadLock(w, 0);
    rwReadLock(w, 0);
    expect(rwLockState(w, 0)).toEqual({ readers: 2, writer: false });
    expect(rwTryReadLock(w, 0)).toBe(true);
    expect(rwTryWriteLock(w, 0)).toBe(false);
    rwReadUnlock(w, 0);
    rwReadUnlock(w, 0);
    expect(rwTryWriteLock(w, 0)).toBe(false);
    rwReadUnlock(w, 0);
    expect(rwTryWriteLock(w, 0)).toBe(true);
    expect(w[0]).toBe(RW_WRITER);
    rwWriteUnlock(w, 0);
    expect(w[0]).toBe(0);
  });

  it("a writer excludes readers and other writers", () => {
    const w = words();
    rwWriteLock(w, 2);
    expect(rwLockState(w, 2)).toEqual({ readers: 0, writer: true });
    expect(rwTryReadLock(w, 2)).toBe(false);
    expect(rwTryWriteLock(w, 2)).toBe(false);
    rwWriteUnlock(w, 2);
    expect(rwTryReadLock(w, 2)).toBe(true);
    rwReadUnlock(w, 2);
  });

  it("blocking acquires throw LockTimeoutError at their deadline instead of hanging", () => {
    const w = words();
    rwWriteLock(w, 0);
    expect(() => rwReadLock(w, 0, 30)).toThrow(LockTimeoutError);
    expect(() => rwWriteLock(w, 0, 30)).toThrow(LockTimeoutError);
    // The failed waiters left nothing behind: no waiter count, lock still held once.
    expect(w[1]).toBe(0);
    rwWriteUnlock(w, 0);
    rwReadLock(w, 0);
    expect(() => rwWriteLock(w, 0, 30)).toThrow(/timed out after 30 ms/);
    rwReadUnlock(w, 0);
    expect(w[0]).toBe(0);
    expect(w[1]).toBe(0);
  });

  it("unlocking a lock that is not held is an assertion failure", () => {
    const w = words();
    expect(() => rwReadUnlock(w, 0)).toThrow(AssertionError);
    w[0] = 0;
    expect(() => rwWriteUnlock(w, 0)).toThrow(AssertionError);
    w[0] = 0;
    rwReadLock(w, 0);
    expect(() => rwWriteUnlock(w, 0)).toThrow(AssertionError);
  });

  it("the RwLock wrapper works on the same words", () => {
    const w = words();
    const lock = new RwLock(w, 4, 20);
    lock.readLock();
    expect(lock.tryWriteLock()).toBe(false);
    expect(() => lock.writeLock()).toThrow(LockTimeoutError);
    lock.readUnlock();
    lock.writeLock();
    expect(lock.tryReadLock()).toBe(false);
    lock.writeUnlock();
    expect(() => new RwLock(w, 7)).toThrow(AssertionError);
  });

  it("a reader parks while another thread holds the write lock and gets in after it releases", async () => {
    const sab = new SharedArrayBuffer(8 * 4);
    const w = new Int32Array(sab);
    const data: LockHolderData = { role: "lock-holder", words: sab, at: 0, hold_ms: 200 };
    const worker = startTsWorker(new URL("./support/cache_stress_worker.ts", import.meta.url), data);
    try {
      await new Promise<void>((resolve, reject) => {
        worker.on("message", (msg: { type: string; message?: string }) => {
          if (msg.type === "locked") resolve();
          else if (msg.type === "error") reject(new Error(msg.message));
        });
        worker.on("error", reject);
      });
      expect(w[2]).toBe(1);
      expect(rwTryReadLock(w, 0)).toBe(false);
      rwReadLock(w, 0, 10_000); // parks on Atomics.wait until the holder's notify
      expect(w[3]).toBe(1); // the holder had started releasing before we got in
      expect(rwLockState(w, 0)).toEqual({ readers: 1, writer: false });
      rwReadUnlock(w, 0);
      expect(w[1]).toBe(0);
    } finally {
      await worker.terminate();
    }
  });
});

describe("mutex", () => {
  it("excludes, times out, and releases", () => {
    const w = words();
    mutexLock(w, 0);
    expect(mutexTryLock(w, 0)).toBe(false);
    expect(() => mutexLock(w, 0, 25)).toThrow(LockTimeoutError);
    mutexUnlock(w, 0);
    expect(mutexTryLock(w, 0)).toBe(true);
    mutexUnlock(w, 0);
    expect(() => mutexUnlock(w, 0)).toThrow(AssertionError);
  });

  it("the Mutex wrapper works on the same words", () => {
    const w = words();
    const m = new Mutex(w, 2, 20);
    m.lock();
    expect(mutexTryLock(w, 2)).toBe(false);
    expect(() => m.lock()).toThrow(LockTimeoutError);
    m.unlock();
    expect(m.tryLock()).toBe(true);
    m.unlock();
  });
});
