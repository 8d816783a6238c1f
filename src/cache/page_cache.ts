/**
 * PageCache: the process-wide page cache, entirely inside ONE SharedArrayBuffer so the main
 * thread and every worker thread share the same pages, mapping, clock and counters. This file
 * holds its API: create/attach, ids, block reads (copying and zero-copy) and materialized
 * page versions. Built on SlotTable (slot_table.ts: slots, mapping, clock sweep); the buffer's
 * layout is layout.ts, tag hashing tag_hash.ts, counters stats.ts.
 *
 * LOCK ORDER (PostgreSQL's and Neon's buffer managers do the same):
 *
 *     slot lock (reader-writer, per slot)  BEFORE  mapping stripe lock (mutex, per stripe)
 *
 *   - A thread holding a stripe lock never blocks on a slot lock (it only bumps pin counts).
 *   - A thread holding a slot write lock may take one stripe lock (evict, link, unlink).
 *   - A lookup takes the stripe lock, finds the slot, pins it, RELEASES the stripe lock. A
 *     pinned VALID slot is then read without any lock (see invariants); a slot still
 *     IO_IN_PROGRESS is waited for by taking its read lock, then its tag and state are
 *     re-checked (its fill may have failed).
 *   - Victims are taken with a try-lock only, so no thread ever waits for a slot write lock.
 *   No thread holds two stripe locks or two slot locks at once.
 *
 * Invariants (with SlotTable's):
 *   - A slot's tag, hash and page bytes change only while its writer holds its write lock and
 *     (for the tag) while it is unlinked; so under a stripe lock the tags in its chains are stable.
 *   - A pinned slot that is VALID keeps its tag and bytes until unpinned: hits copy it out (and
 *     pinBlock users read it) without taking its lock. A pinned slot goes from IO_IN_PROGRESS
 *     either to VALID (same tag) or, when its fill fails, to FREE.
 *   - A linked slot in IO_IN_PROGRESS is write-held by its filler until VALID (readers park on
 *     its read lock); a fill that throws unlinks the slot and frees it: nothing unverified stays.
 *   - Materialized slots are linked only once VALID.
 *
 * The hot path (a hit) allocates nothing: page views are made once per attach, tags are
 * integers, the hash is a few Math.imul mixes, LSNs are hi/lo u32 words.
 */
import { assert } from "../types/assert.js";
import { InvalidArgumentError, PageserverError } from "../types/errors.js";
import { KEY_SIZE, type Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import { type BlockSource, type CacheStats, PAGE_SIZE, type PageCacheApi, type PageKind } from "./api.js";
import {
  bump,
  createBuffer,
  DEFAULT_CACHE_SIZE_BYTES,
  DEFAULT_STRIPES,
  H_NEXT_FILE_ID,
  H_NEXT_NS_ID,
  KIND_EPHEMERAL,
  KIND_FILE,
  KIND_MATERIALIZED,
  MAX_ID,
  MAX_LOOKUP_ATTEMPTS,
  S_HASH,
  S_KIND,
  S_LOCK,
  S_NEXT,
  S_PIN,
  S_STATE,
  S_TAG,
  S_USAGE,
  SLOT_IO_IN_PROGRESS,
  SLOT_SHIFT,
  SLOT_VALID,
  ST_HITS,
  ST_MISSES,
  ST_PER_KIND,
  STRIPE_WORDS,
  slotPage,
  TWO_32,
  USAGE_MAX,
  word,
} from "./layout.js";
import { DEFAULT_LOCK_TIMEOUT_MS, mutexLock, mutexUnlock, rwReadLock, rwReadUnlock, rwWriteUnlock } from "./lock.js";
import { SlotTable } from "./slot_table.js";
import { sumStats } from "./stats.js";
import { hashBlock, hashMaterialized, keyWord } from "./tag_hash.js";

// ---- options -------------------------------------------------------------------------------

export interface PageCacheCreateOptions {
  /** Bytes of page data (a multiple of PAGE_SIZE); metadata comes on top. Default 64 MiB. */
  size_bytes?: number;
  /** Mapping lock stripes, a power of two in [1, 1024]. Default 128. */
  stripes?: number;
  /** Overall deadline of any lock wait of this handle. Default 10 s. */
  lock_timeout_ms?: number;
}

export interface PageCacheAttachOptions {
  lock_timeout_ms?: number;
}

function checkBlockArgs(what: string, kind: number, fileId: number, blkno: number): void {
  if (kind !== KIND_FILE && kind !== KIND_EPHEMERAL) throw new InvalidArgumentError(`${what}: kind ${kind} is not a block kind`);
  if (!(Number.isInteger(fileId) && fileId > 0 && fileId < MAX_ID)) throw new InvalidArgumentError(`${what}: bad file id ${fileId}`);
  if (!(Number.isInteger(blkno) && blkno >= 0 && blkno <= 0xffff_ffff))
    throw new InvalidArgumentError(`${what}: bad block number ${blkno}`);
}

export class PageCache extends SlotTable implements PageCacheApi {
  static create(options: PageCacheCreateOptions = {}): PageCache {
    const sab = createBuffer(options.size_bytes ?? DEFAULT_CACHE_SIZE_BYTES, options.stripes ?? DEFAULT_STRIPES);
    return new PageCache(sab, options.lock_timeout_ms ?? DEFAULT_LOCK_TIMEOUT_MS);
  }

  static attach(sab: SharedArrayBuffer, options: PageCacheAttachOptions = {}): PageCache {
    return new PageCache(sab, options.lock_timeout_ms ?? DEFAULT_LOCK_TIMEOUT_MS);
  }

  // Private: a cache is made only by create() (a new buffer) or attach() (an existing one).
  private constructor(sab: SharedArrayBuffer, lock_timeout_ms: number) {
    super(sab, lock_timeout_ms);
  }

  // ---- ids ---------------------------------------------------------------------------------

  allocFileId(): number {
    const id = Atomics.add(this.m, H_NEXT_FILE_ID, 1);
    if (id <= 0 || id >= MAX_ID) throw new PageserverError("internal", "page cache file ids exhausted");
    return id;
  }

  allocNamespaceId(): number {
    const id = Atomics.add(this.m, H_NEXT_NS_ID, 1);
    if (id <= 0 || id >= MAX_ID) throw new PageserverError("internal", "page cache namespace ids exhausted");
    return id;
  }

  // ---- file and ephemeral blocks -----------------------------------------------------------

  readBlock(kind: PageKind.FileBlock | PageKind.EphemeralBlock, fileId: number, blkno: number, source: BlockSource, dst: Uint8Array): void {
    checkBlockArgs("readBlock", kind, fileId, blkno);
    if (dst.length !== PAGE_SIZE) throw new InvalidArgumentError(`readBlock: dst is ${dst.length} bytes, not ${PAGE_SIZE}`);
    const blk = blkno | 0;
    for (let attempt = 0; attempt < MAX_LOOKUP_ATTEMPTS; attempt++) {
      const slot = this.pinBlockSlot(kind, fileId, blk, source);
      const at = this.slotsBase + (slot << SLOT_SHIFT);
      if (Atomics.load(this.m, at + S_STATE) === SLOT_VALID) {
        // Pinned and VALID: it stays so, with our tag and bytes, until we unpin. No lock needed.
        this.copyOutAndUnpin(slot, at, dst);
        return;
      }
      if (this.readPinned(slot, kind, fileId, blk, dst)) return;
      // Its fill failed between our pin and our read lock: look again (we may fill it).
    }
    throw new PageserverError("internal", `page cache: block ${fileId}/${blkno} changed under ${MAX_LOOKUP_ATTEMPTS} lookups in a row`);
  }

  /**
   * Zero-copy variant of readBlock (Neon's page read guard): returns the slot of block `blkno`,
   * pinned, VALID. While pinned the slot is never evicted and its bytes never change, so
   * `pageView(slot)` may be read without a lock. Every pin must be given back with
   * `unpinSlot(slot)`; pins left behind shrink the cache until "all page cache slots pinned".
   */
  pinBlock(kind: PageKind.FileBlock | PageKind.EphemeralBlock, fileId: number, blkno: number, source: BlockSource): number {
    checkBlockArgs("pinBlock", kind, fileId, blkno);
    const blk = blkno | 0;
    for (let attempt = 0; attempt < MAX_LOOKUP_ATTEMPTS; attempt++) {
      const slot = this.pinBlockSlot(kind, fileId, blk, source);
      if (Atomics.load(this.m, this.slotsBase + (slot << SLOT_SHIFT) + S_STATE) === SLOT_VALID) return slot;
      if (this.readPinned(slot, kind, fileId, blk, null)) return slot;
    }
    throw new PageserverError("internal", `page cache: block ${fileId}/${blkno} changed under ${MAX_LOOKUP_ATTEMPTS} lookups in a row`);
  }

  /** The page bytes of a slot this thread holds pinned (from pinBlock). */
  pageView(slot: number): Uint8Array {
    // Messages built only on failure: this is a hot path and must not allocate.
    if (!(Number.isInteger(slot) && slot >= 0 && slot < this.slots)) assert(false, `pageView: slot ${slot} out of range`);
    if (Atomics.load(this.m, this.slotsBase + (slot << SLOT_SHIFT) + S_PIN) <= 0) assert(false, `pageView: slot ${slot} is not pinned`);
    return slotPage(this.pages, slot);
  }

  unpinSlot(slot: number): void {
    if (!(Number.isInteger(slot) && slot >= 0 && slot < this.slots)) assert(false, `unpinSlot: slot ${slot} out of range`);
    const pinAt = this.slotsBase + (slot << SLOT_SHIFT) + S_PIN;
    // CAS, not Atomics.sub: a wrong unpin must fail without corrupting the count. A failed CAS
    // means another thread changed the count, i.e. made progress.
    for (let tries = 0; ; tries++) {
      assert(tries < 1_000_000, "unpinSlot: pin count never settled");
      const pins = Atomics.load(this.m, pinAt);
      if (pins <= 0) assert(false, `unpinSlot: slot ${slot} is not pinned`);
      if (Atomics.compareExchange(this.m, pinAt, pins, pins - 1) === pins) return;
    }
  }

  /**
   * The slot that holds or will hold block (kind, fileId, blk), pinned for the caller: found in
   * the mapping (a hit, possibly still being filled by another thread) or filled by us (a miss).
   */
  private pinBlockSlot(kind: number, fileId: number, blk: number, source: BlockSource): number {
    const m = this.m;
    const hash = hashBlock(kind, fileId, blk);
    const bucket = hash & this.bucketMask;
    const stripeAt = this.stripesBase + (bucket & this.stripeMask) * STRIPE_WORDS;
    mutexLock(m, stripeAt, this.lock_timeout_ms);
    const slot = this.findBlock(bucket, kind, fileId, blk);
    if (slot >= 0) Atomics.add(m, this.slotsBase + (slot << SLOT_SHIFT) + S_PIN, 1);
    mutexUnlock(m, stripeAt);
    if (slot >= 0) {
      bump(this.myStats, kind * ST_PER_KIND + ST_HITS);
      return slot;
    }
    bump(this.myStats, kind * ST_PER_KIND + ST_MISSES);
    return this.fillBlock(kind, fileId, blk, hash, bucket, stripeAt, source);
  }

  /** Under the stripe lock of `bucket`: the slot holding block (kind, fileId, blk), or -1. */
  private findBlock(bucket: number, kind: number, fileId: number, blk: number): number {
    const m = this.m;
    let slot = word(m, this.bucketsBase + bucket);
    for (let steps = 0; slot !== -1; steps++) {
      assert(steps < this.slots, "page cache hash chain has a cycle");
      const at = this.slotsBase + (slot << SLOT_SHIFT);
      if (m[at + S_TAG] === fileId && m[at + S_TAG + 1] === blk && m[at + S_KIND] === kind) return slot;
      slot = word(m, at + S_NEXT);
    }
    return -1;
  }

  private copyOutAndUnpin(slot: number, at: number, dst: Uint8Array): void {
    const m = this.m;
    dst.set(slotPage(this.pages, slot));
    const usage = word(m, at + S_USAGE);
    if (usage < USAGE_MAX) Atomics.store(m, at + S_USAGE, usage + 1);
    Atomics.sub(m, at + S_PIN, 1);
  }

  /**
   * Slow path of a hit on a slot that was IO_IN_PROGRESS when we pinned it.
   * Takes pinned `slot`'s read lock (parking while a filler holds it) and re-checks that it
   * still holds VALID block (kind, w0, w1). If so, copies it to `dst` and unpins, or with a null
   * `dst` keeps the pin for the caller. If not (its fill failed), unpins and returns false.
   */
  private readPinned(slot: number, kind: number, w0: number, w1: number, dst: Uint8Array | null): boolean {
    const m = this.m;
    const at = this.slotsBase + (slot << SLOT_SHIFT);
    try {
      rwReadLock(m, at + S_LOCK, this.lock_timeout_ms);
    } catch (e) {
      Atomics.sub(m, at + S_PIN, 1);
      throw e;
    }
    const ok = m[at + S_STATE] === SLOT_VALID && m[at + S_KIND] === kind && m[at + S_TAG] === w0 && m[at + S_TAG + 1] === w1;
    if (ok) {
      if (dst !== null) dst.set(slotPage(this.pages, slot));
      const usage = word(m, at + S_USAGE);
      if (usage < USAGE_MAX) Atomics.store(m, at + S_USAGE, usage + 1);
    }
    rwReadUnlock(m, at + S_LOCK);
    if (!ok || dst !== null) Atomics.sub(m, at + S_PIN, 1);
    return ok;
  }

  /**
   * Miss path. Returns a slot pinned for the caller: the one this thread filled, or one that
   * another thread linked for the same block meanwhile (then our victim goes back FREE).
   */
  private fillBlock(
    kind: number,
    fileId: number,
    blk: number,
    hash: number,
    bucket: number,
    stripeAt: number,
    source: BlockSource,
  ): number {
    const m = this.m;
    const victim = this.getVictim(); // write-locked, FREE, unlinked, unpinned
    const at = this.slotsBase + (victim << SLOT_SHIFT);
    this.lockStripeHoldingVictim(stripeAt, victim);
    const other = this.findBlock(bucket, kind, fileId, blk);
    if (other >= 0) {
      Atomics.add(m, this.slotsBase + (other << SLOT_SHIFT) + S_PIN, 1);
      mutexUnlock(m, stripeAt);
      this.releaseVictim(victim);
      return other;
    }
    m[at + S_KIND] = kind;
    m[at + S_TAG] = fileId;
    m[at + S_TAG + 1] = blk;
    m[at + S_HASH] = hash;
    Atomics.store(m, at + S_STATE, SLOT_IO_IN_PROGRESS);
    m[at + S_NEXT] = word(m, this.bucketsBase + bucket);
    m[this.bucketsBase + bucket] = victim;
    mutexUnlock(m, stripeAt);
    // Linked and IO_IN_PROGRESS: readers of this block now park on our write lock. (So a
    // source must not read the block it is filling through this cache: it would wait on
    // itself until the lock deadline. Other blocks are fine.)
    try {
      source.readBlockInto(blk >>> 0, slotPage(this.pages, victim));
    } catch (e) {
      // Nothing unverified stays cached: unlink, free, let the parked readers retry.
      mutexLock(m, stripeAt, this.lock_timeout_ms);
      this.unlink(victim, bucket);
      mutexUnlock(m, stripeAt);
      this.releaseVictim(victim);
      throw e;
    }
    Atomics.store(m, at + S_STATE, SLOT_VALID);
    Atomics.store(m, at + S_USAGE, 1);
    // Pinned before the write lock goes: no evictor can hold the write lock at the same time,
    // so this pin (taken without the stripe lock) cannot race an evictor's pin check.
    Atomics.add(m, at + S_PIN, 1);
    rwWriteUnlock(m, at + S_LOCK);
    return victim;
  }

  // ---- materialized pages ------------------------------------------------------------------

  lookupMaterialized(ns: number, key: Key, lsn: Lsn, dst: Uint8Array): Lsn {
    if (!(Number.isInteger(ns) && ns > 0 && ns < MAX_ID)) throw new InvalidArgumentError(`lookupMaterialized: bad namespace id ${ns}`);
    if (key.length !== KEY_SIZE) throw new InvalidArgumentError(`lookupMaterialized: key of ${key.length} bytes`);
    if (!(Number.isSafeInteger(lsn) && lsn >= 0)) throw new InvalidArgumentError(`lookupMaterialized: bad lsn ${lsn}`);
    if (dst.length !== PAGE_SIZE) throw new InvalidArgumentError(`lookupMaterialized: dst is ${dst.length} bytes, not ${PAGE_SIZE}`);
    const m = this.m;
    const k0 = keyWord(key, 0);
    const k1 = keyWord(key, 4);
    const k2 = keyWord(key, 8);
    const k3 = keyWord(key, 12);
    const k4 = (key.charCodeAt(16) << 8) | key.charCodeAt(17);
    const hash = hashMaterialized(ns, k0, k1, k2, k3, k4);
    const bucket = hash & this.bucketMask;
    const stripeAt = this.stripesBase + (bucket & this.stripeMask) * STRIPE_WORDS;
    mutexLock(m, stripeAt, this.lock_timeout_ms);
    // Inexact lookup: the newest version at or below `lsn` among this chain's versions.
    let best = -1;
    let bestLsn = -1 as Lsn;
    let slot = word(m, this.bucketsBase + bucket);
    for (let steps = 0; slot !== -1; steps++) {
      assert(steps < this.slots, "page cache hash chain has a cycle");
      const at = this.slotsBase + (slot << SLOT_SHIFT);
      if (
        m[at + S_TAG + 1] === k0 &&
        m[at + S_TAG + 2] === k1 &&
        m[at + S_TAG + 3] === k2 &&
        m[at + S_TAG + 4] === k3 &&
        m[at + S_TAG + 5] === k4 &&
        m[at + S_TAG] === ns &&
        m[at + S_KIND] === KIND_MATERIALIZED
      ) {
        const v = (word(m, at + S_TAG + 6) >>> 0) * TWO_32 + (word(m, at + S_TAG + 7) >>> 0);
        if (v <= lsn && v > bestLsn) {
          best = slot;
          bestLsn = v as Lsn;
        }
      }
      slot = word(m, at + S_NEXT);
    }
    if (best >= 0) Atomics.add(m, this.slotsBase + (best << SLOT_SHIFT) + S_PIN, 1);
    mutexUnlock(m, stripeAt);
    if (best < 0) {
      bump(this.myStats, KIND_MATERIALIZED * ST_PER_KIND + ST_MISSES);
      return -1 as Lsn;
    }
    // Materialized slots are linked only when VALID, and a pinned VALID slot keeps its tag
    // and bytes until unpinned: copy without a lock.
    const at = this.slotsBase + (best << SLOT_SHIFT);
    assert(Atomics.load(m, at + S_STATE) === SLOT_VALID, "pinned materialized slot is not VALID");
    this.copyOutAndUnpin(best, at, dst);
    bump(this.myStats, KIND_MATERIALIZED * ST_PER_KIND + ST_HITS);
    return bestLsn;
  }

  insertMaterialized(ns: number, key: Key, lsn: Lsn, page: Uint8Array): void {
    if (!(Number.isInteger(ns) && ns > 0 && ns < MAX_ID)) throw new InvalidArgumentError(`insertMaterialized: bad namespace id ${ns}`);
    if (key.length !== KEY_SIZE) throw new InvalidArgumentError(`insertMaterialized: key of ${key.length} bytes`);
    if (!(Number.isSafeInteger(lsn) && lsn >= 0)) throw new InvalidArgumentError(`insertMaterialized: bad lsn ${lsn}`);
    if (page.length !== PAGE_SIZE) throw new InvalidArgumentError(`insertMaterialized: page is ${page.length} bytes, not ${PAGE_SIZE}`);
    const m = this.m;
    const k0 = keyWord(key, 0);
    const k1 = keyWord(key, 4);
    const k2 = keyWord(key, 8);
    const k3 = keyWord(key, 12);
    const k4 = (key.charCodeAt(16) << 8) | key.charCodeAt(17);
    const hi = Math.floor(lsn / TWO_32) | 0;
    const lo = lsn | 0; // ToInt32 takes lsn mod 2^32: the low word, as a signed int
    const hash = hashMaterialized(ns, k0, k1, k2, k3, k4);
    const bucket = hash & this.bucketMask;
    const stripeAt = this.stripesBase + (bucket & this.stripeMask) * STRIPE_WORDS;

    // Cheap duplicate check first, so a duplicate never costs an eviction.
    mutexLock(m, stripeAt, this.lock_timeout_ms);
    let dup = this.findMaterialized(bucket, ns, k0, k1, k2, k3, k4, hi, lo);
    mutexUnlock(m, stripeAt);
    if (dup >= 0) return;

    const victim = this.getVictim();
    const at = this.slotsBase + (victim << SLOT_SHIFT);
    // Filled while unlinked and write-held: no reader can see it before it is VALID.
    slotPage(this.pages, victim).set(page);
    this.lockStripeHoldingVictim(stripeAt, victim);
    dup = this.findMaterialized(bucket, ns, k0, k1, k2, k3, k4, hi, lo);
    if (dup >= 0) {
      mutexUnlock(m, stripeAt);
      this.releaseVictim(victim);
      return;
    }
    m[at + S_KIND] = KIND_MATERIALIZED;
    m[at + S_TAG] = ns;
    m[at + S_TAG + 1] = k0;
    m[at + S_TAG + 2] = k1;
    m[at + S_TAG + 3] = k2;
    m[at + S_TAG + 4] = k3;
    m[at + S_TAG + 5] = k4;
    m[at + S_TAG + 6] = hi;
    m[at + S_TAG + 7] = lo;
    m[at + S_HASH] = hash;
    Atomics.store(m, at + S_STATE, SLOT_VALID);
    Atomics.store(m, at + S_USAGE, 1);
    m[at + S_NEXT] = word(m, this.bucketsBase + bucket);
    m[this.bucketsBase + bucket] = victim;
    mutexUnlock(m, stripeAt);
    rwWriteUnlock(m, at + S_LOCK);
  }

  private findMaterialized(
    bucket: number,
    ns: number,
    k0: number,
    k1: number,
    k2: number,
    k3: number,
    k4: number,
    hi: number,
    lo: number,
  ): number {
    const m = this.m;
    let slot = word(m, this.bucketsBase + bucket);
    for (let steps = 0; slot !== -1; steps++) {
      assert(steps < this.slots, "page cache hash chain has a cycle");
      const at = this.slotsBase + (slot << SLOT_SHIFT);
      if (
        m[at + S_TAG + 7] === lo &&
        m[at + S_TAG + 6] === hi &&
        m[at + S_TAG + 1] === k0 &&
        m[at + S_TAG + 2] === k1 &&
        m[at + S_TAG + 3] === k2 &&
        m[at + S_TAG + 4] === k3 &&
        m[at + S_TAG + 5] === k4 &&
        m[at + S_TAG] === ns &&
        m[at + S_KIND] === KIND_MATERIALIZED
      ) {
        return slot;
      }
      slot = word(m, at + S_NEXT);
    }
    return -1;
  }

  // ---- observation -------------------------------------------------------------------------

  stats(): CacheStats {
    return sumStats(this.statsAll, this.slots);
  }
}
