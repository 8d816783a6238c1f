/**
 * Lock primitives on Atomics, for words inside a SharedArrayBuffer that several threads map.
 *
 * Owns: nothing but the protocol. Every lock is two consecutive Int32 words in the caller's
 * Int32Array: `words[at]` is the lock word, `words[at + 1]` counts threads parked in
 * Atomics.wait on it. An unlock calls Atomics.notify only when that count is non-zero, so an
 * uncontended lock/unlock pair is one CAS plus one store/sub plus one load (no syscall).
 *
 * - Mutex (mutexLock / mutexTryLock / mutexUnlock): lock word 0 = free, 1 = held.
 * - Reader-writer lock (rw*): lock word = reader count (bits 0..29) | RW_WRITER (bit 30).
 *   A writer holds the word at exactly RW_WRITER; readers count up while RW_WRITER is clear.
 *   Readers are not blocked by waiting writers (no writer preference): the page cache only
 *   ever try-locks for write, so writers cannot starve there.
 *
 * Bounds: a blocking acquire spins SPIN_LIMIT times, then parks in Atomics.wait for at most
 * WAIT_SLICE_MS at a time (so a lost wake-up costs a slice, never forever), and gives up with a
 * LockTimeoutError once `timeout_ms` have passed. No Atomics.wait here is ever unbounded, so
 * the main thread cannot hang on a lock, only fail.
 *
 * Why no lost wake-ups: a waiter increments the waiter count *before* Atomics.wait(word,
 * seen). An unlocker changes the word *before* reading the waiter count. All Atomics are
 * sequentially consistent, so either the unlocker sees the waiter (and notifies) or the
 * waiter's wait sees the changed word (and returns at once).
 *
 * The functions take (words, at) instead of being methods on an object so the page cache's
 * hot path allocates nothing; RwLock and Mutex are thin wrappers for callers that prefer one.
 */
import { assert } from "../types/assert.js";
import { PageserverError } from "../types/errors.js";

/** Writer bit of a reader-writer lock word. */
export const RW_WRITER = 0x4000_0000;
/** Reader count bits of a reader-writer lock word. */
export const RW_READERS = 0x3fff_ffff;
/** Int32 words one lock occupies (lock word, waiter count). */
export const LOCK_WORDS = 2;

/** Busy-wait iterations before parking: a holder of a cache lock keeps it for microseconds. */
export const SPIN_LIMIT = 100;
/** Longest single Atomics.wait; the deadline is re-checked after each slice. */
export const WAIT_SLICE_MS = 10;
/** Default overall deadline of a blocking acquire. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

/** A lock could not be acquired before its deadline: a deadlock or a holder that never released. */
export class LockTimeoutError extends PageserverError {
  readonly timeout_ms: number;
  constructor(what: string, timeout_ms: number) {
    super("internal", `timed out after ${timeout_ms} ms waiting for ${what}`);
    this.timeout_ms = timeout_ms;
  }
}

/** Parks the calling thread on words[at] while it still holds `seen`, for at most one slice. */
function park(words: Int32Array, at: number, seen: number): void {
  Atomics.add(words, at + 1, 1);
  Atomics.wait(words, at, seen, WAIT_SLICE_MS);
  Atomics.sub(words, at + 1, 1);
}

function wake(words: Int32Array, at: number, count: number): void {
  if (Atomics.load(words, at + 1) > 0) Atomics.notify(words, at, count);
}

/** Called once the spin is over: returns the deadline (first call) or throws when it passed. */
function checkDeadline(deadline_ms: number, timeout_ms: number, what: string): number {
  const now_ms = performance.now();
  if (deadline_ms === 0) return now_ms + timeout_ms;
  if (now_ms >= deadline_ms) throw new LockTimeoutError(what, timeout_ms);
  return deadline_ms;
}

// ---- mutex ---------------------------------------------------------------------------------

export function mutexTryLock(words: Int32Array, at: number): boolean {
  return Atomics.compareExchange(words, at, 0, 1) === 0;
}

export function mutexLock(words: Int32Array, at: number, timeout_ms = DEFAULT_LOCK_TIMEOUT_MS): void {
  if (Atomics.compareExchange(words, at, 0, 1) === 0) return;
  mutexLockSlow(words, at, timeout_ms);
}

function mutexLockSlow(words: Int32Array, at: number, timeout_ms: number): void {
  let deadline_ms = 0;
  for (let spin = 0; ; spin++) {
    const seen = Atomics.compareExchange(words, at, 0, 1);
    if (seen === 0) return;
    assert(seen === 1, "mutex word corrupt");
    if (spin < SPIN_LIMIT) continue;
    deadline_ms = checkDeadline(deadline_ms, timeout_ms, "mutex");
    park(words, at, seen);
  }
}

export function mutexUnlock(words: Int32Array, at: number): void {
  const prev = Atomics.exchange(words, at, 0);
  assert(prev === 1, "mutexUnlock of a mutex not held");
  wake(words, at, 1);
}

// ---- reader-writer lock --------------------------------------------------------------------

export function rwTryReadLock(words: Int32Array, at: number): boolean {
  const seen = Atomics.load(words, at);
  if ((seen & RW_WRITER) !== 0) return false;
  return Atomics.compareExchange(words, at, seen, seen + 1) === seen;
}

export function rwReadLock(words: Int32Array, at: number, timeout_ms = DEFAULT_LOCK_TIMEOUT_MS): void {
  const seen = Atomics.load(words, at);
  if ((seen & RW_WRITER) === 0 && Atomics.compareExchange(words, at, seen, seen + 1) === seen) return;
  rwReadLockSlow(words, at, timeout_ms);
}

function rwReadLockSlow(words: Int32Array, at: number, timeout_ms: number): void {
  let deadline_ms = 0;
  for (let spin = 0; ; spin++) {
    const seen = Atomics.load(words, at);
    const writer = (seen & RW_WRITER) !== 0;
    if (!writer) {
      assert(seen < RW_READERS, "reader count overflow");
      // A failed CAS means another reader changed the count first: retry at once.
      if (Atomics.compareExchange(words, at, seen, seen + 1) === seen) return;
    }
    if (spin < SPIN_LIMIT) continue;
    // Past the spin, every round checks the deadline, even one lost only to other readers.
    deadline_ms = checkDeadline(deadline_ms, timeout_ms, "read lock");
    if (writer) park(words, at, seen);
  }
}

export function rwReadUnlock(words: Int32Array, at: number): void {
  const prev = Atomics.sub(words, at, 1);
  assert((prev & RW_WRITER) === 0 && (prev & RW_READERS) > 0, "rwReadUnlock of a lock not read-held");
  // Only writers wait on readers, and only the last reader out can let one in.
  if (prev === 1) wake(words, at, 1);
}

export function rwTryWriteLock(words: Int32Array, at: number): boolean {
  return Atomics.compareExchange(words, at, 0, RW_WRITER) === 0;
}

export function rwWriteLock(words: Int32Array, at: number, timeout_ms = DEFAULT_LOCK_TIMEOUT_MS): void {
  if (Atomics.compareExchange(words, at, 0, RW_WRITER) === 0) return;
  let deadline_ms = 0;
  for (let spin = 0; ; spin++) {
    const seen = Atomics.compareExchange(words, at, 0, RW_WRITER);
    if (seen === 0) return;
    if (spin < SPIN_LIMIT) continue;
    deadline_ms = checkDeadline(deadline_ms, timeout_ms, "write lock");
    park(words, at, seen);
  }
}

export function rwWriteUnlock(words: Int32Array, at: number): void {
  const prev = Atomics.exchange(words, at, 0);
  assert(prev === RW_WRITER, "rwWriteUnlock of a lock not write-held");
  // Every parked reader may proceed now (and at most one writer wins the race).
  wake(words, at, Number.POSITIVE_INFINITY);
}

/** Current reader count and writer bit (diagnostics and tests only: stale as soon as read). */
export function rwLockState(words: Int32Array, at: number): { readers: number; writer: boolean } {
  const w = Atomics.load(words, at);
  return { readers: w & RW_READERS, writer: (w & RW_WRITER) !== 0 };
}

// ---- object wrappers -----------------------------------------------------------------------

/** A reader-writer lock at words[at], words[at + 1]. Stateless: any thread may make one. */
export class RwLock {
  constructor(
    readonly words: Int32Array,
    readonly at: number,
    readonly timeout_ms = DEFAULT_LOCK_TIMEOUT_MS,
  ) {
    assert(Number.isInteger(at) && at >= 0 && at + LOCK_WORDS <= words.length, "RwLock index out of range");
  }
  readLock(): void {
    rwReadLock(this.words, this.at, this.timeout_ms);
  }
  tryReadLock(): boolean {
    return rwTryReadLock(this.words, this.at);
  }
  readUnlock(): void {
    rwReadUnlock(this.words, this.at);
  }
  writeLock(): void {
    rwWriteLock(this.words, this.at, this.timeout_ms);
  }
  tryWriteLock(): boolean {
    return rwTryWriteLock(this.words, this.at);
  }
  writeUnlock(): void {
    rwWriteUnlock(this.words, this.at);
  }
}

/** A mutex at words[at], words[at + 1]. Stateless: any thread may make one. */
export class Mutex {
  constructor(
    readonly words: Int32Array,
    readonly at: number,
    readonly timeout_ms = DEFAULT_LOCK_TIMEOUT_MS,
  ) {
    assert(Number.isInteger(at) && at >= 0 && at + LOCK_WORDS <= words.length, "Mutex index out of range");
  }
  lock(): void {
    mutexLock(this.words, this.at, this.timeout_ms);
  }
  tryLock(): boolean {
    return mutexTryLock(this.words, this.at);
  }
  unlock(): void {
    mutexUnlock(this.words, this.at);
  }
}
