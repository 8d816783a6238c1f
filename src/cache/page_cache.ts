/**
 * PageCache: the process-wide page cache, entirely inside ONE SharedArrayBuffer so the main
 * thread and every worker thread share the same pages, mapping, clock and counters.
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
 * Layout of the buffer (Int32 words unless said otherwise):
 *
 *   header      HEADER_WORDS: magic, version, geometry, id counters, uid; the clock hand on its
 *               own 64-byte line (every evicting thread bumps it)
 *   stripes     nstripes × 16 words: a mutex (lock word, waiter count), one per 64-byte line
 *   slot meta   nslots × 16 words (SLOT_WORDS): lock word, lock waiters, pin count, usage count,
 *               state, kind, hash of the tag, next slot in the hash chain, 8 tag words
 *   buckets     nbuckets words: the head slot of each hash chain, or -1
 *   stat owners MAX_STATS_ROWS words: 0 = row free, 1 = claimed by a thread
 *   stats       MAX_STATS_ROWS rows × STATS_ROW_DOUBLES Float64: hits, misses, evictions per kind
 *   pages       nslots × PAGE_SIZE bytes, 4096-aligned
 *
 * Tags: file and ephemeral blocks are (kind, fileId, blkno) in tag words 0..1; a materialized
 * page is (ns, key as five big-endian words, lsn hi, lsn lo) in tag words 0..7. Materialized
 * versions of one (ns, key) hash alike (the LSN is not hashed), so one chain walk finds the
 * newest version at or below a requested LSN.
 *
 * Invariants:
 *   - A slot is linked in exactly one chain iff its state is not FREE; its chain is the bucket
 *     of its stored hash.
 *   - A slot's tag, hash and page bytes change only while its writer holds its write lock and
 *     (for the tag) while it is unlinked; so under a stripe lock the tags in its chains are stable.
 *   - Pins are taken only under the stripe lock of a linked slot (or by a filler that still
 *     write-holds it); an evictor write-holds the slot and re-checks the pin count under that
 *     same stripe lock before it unlinks, so a pinned slot is never evicted. A FREE slot is
 *     reused only with a pin count of 0 (checked while write-held; unlinked, it gains no pins).
 *     Hence a pinned slot that is VALID keeps its tag and bytes until unpinned: hits copy it
 *     out (and pinBlock users read it) without taking its lock. A pinned slot goes from
 *     IO_IN_PROGRESS either to VALID (same tag) or, when its fill fails, to FREE.
 *   - A linked slot in IO_IN_PROGRESS is write-held by its filler until VALID (readers park on
 *     its read lock); a fill that throws unlinks the slot and frees it: nothing unverified stays.
 *   - Materialized slots are linked only once VALID.
 *
 * The hot path (a hit) allocates nothing: page views are made once per attach, tags are
 * integers, the hash is a few Math.imul mixes, LSNs are hi/lo u32 words.
 */
import { randomInt } from "node:crypto";
import { threadId } from "node:worker_threads";
import { assert } from "../types/assert.js";
import { InvalidArgumentError, PageserverError } from "../types/errors.js";
import { KEY_SIZE, type Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import { type BlockSource, type CacheStats, PAGE_KIND_NAMES, PAGE_SIZE, type PageCacheApi, PageKind } from "./api.js";
import { DEFAULT_LOCK_TIMEOUT_MS, LOCK_WORDS, mutexLock, mutexUnlock, rwReadLock, rwReadUnlock, rwTryWriteLock, rwWriteUnlock } from "./lock.js";

// ---- layout --------------------------------------------------------------------------------

const MAGIC = 0x50474341; // "PGCA"
const LAYOUT_VERSION = 1;

const H_MAGIC = 0;
const H_VERSION = 1;
const H_NSLOTS = 2;
const H_NBUCKETS = 3;
const H_NSTRIPES = 4;
const H_NEXT_FILE_ID = 5;
const H_NEXT_NS_ID = 6;
const H_UID_HI = 7;
const H_UID_LO = 8;
const H_CLOCK_HAND = 16;
const HEADER_WORDS = 32;

const STRIPE_WORDS = 16;

const SLOT_WORDS = 16;
const SLOT_SHIFT = 4;
const S_LOCK = 0; // + S_LOCK + 1: its waiter count (lock.ts)
const S_PIN = 2;
const S_USAGE = 3;
const S_STATE = 4;
const S_KIND = 5;
const S_HASH = 6;
const S_NEXT = 7;
const S_TAG = 8; // 8 words
const TAG_WORDS = 8;

/** Slot states. */
export const SLOT_FREE = 0;
export const SLOT_IO_IN_PROGRESS = 1;
export const SLOT_VALID = 2;

const KIND_NONE = -1;
const KIND_FILE = 0; // PageKind.FileBlock
const KIND_EPHEMERAL = 1; // PageKind.EphemeralBlock
const KIND_MATERIALIZED = 2; // PageKind.Materialized
const NKINDS = 3;

/** Clock usage count cap (Neon: 5): a hit adds one, a sweep pass takes one. */
export const USAGE_MAX = 5;

/** Threads (stats rows) that may be attached to one cache at once. */
export const MAX_STATS_ROWS = 64;
const STATS_ROW_DOUBLES = 16;
const ST_HITS = 0;
const ST_MISSES = 1;
const ST_EVICTIONS = 2;
const ST_PER_KIND = 3;

/** The clock sweep gives up after this many slots per slot of the cache (Neon: 10). */
const SWEEP_LIMIT_PER_SLOT = 10;
/** A lookup whose slot changed between pin and read lock (a failed fill) retries this often. */
const MAX_LOOKUP_ATTEMPTS = 64;

const MIN_SLOTS = 1;
const MAX_SLOTS = 1 << 24; // 128 GiB of pages
const MAX_STRIPES = 1024;
const DEFAULT_STRIPES = 128;
export const DEFAULT_CACHE_SIZE_BYTES = 64 * 1024 * 1024;
const MAX_ID = 0x7fff_ffff;

const TWO_32 = 0x1_0000_0000;
const PAGE_ALIGN_BYTES = 4096;
const CACHE_LINE_BYTES = 64;

// The layout constants tie together; checked once at load, so a change to one that breaks
// another fails every test that imports the cache instead of corrupting shared memory.
assert(H_UID_LO < H_CLOCK_HAND && H_CLOCK_HAND < HEADER_WORDS, "layout: header fields overlap the clock hand or the header");
assert((H_CLOCK_HAND * 4) % CACHE_LINE_BYTES === 0 && (HEADER_WORDS - H_CLOCK_HAND) * 4 >= CACHE_LINE_BYTES, "layout: the clock hand has its own cache line");
assert((HEADER_WORDS * 4) % CACHE_LINE_BYTES === 0, "layout: stripes start on a cache line");
assert(STRIPE_WORDS * 4 === CACHE_LINE_BYTES && LOCK_WORDS <= STRIPE_WORDS, "layout: one stripe mutex per cache line");
assert(SLOT_WORDS === 1 << SLOT_SHIFT && SLOT_WORDS * 4 === CACHE_LINE_BYTES, "layout: a slot's meta is one cache line, indexed by shift");
assert(S_LOCK + LOCK_WORDS <= S_PIN && S_PIN < S_USAGE && S_USAGE < S_STATE && S_STATE < S_KIND && S_KIND < S_HASH && S_HASH < S_NEXT && S_NEXT < S_TAG, "layout: slot fields in order, the lock's words before the pin count");
assert(S_TAG + TAG_WORDS <= SLOT_WORDS, "layout: the tag fits the slot");
assert(MAX_SLOTS * SLOT_WORDS < 2 ** 31 && Number.isSafeInteger(MAX_SLOTS * PAGE_SIZE), "layout: slot indexes fit an int32 shift, page offsets a safe integer");
assert((MAX_STRIPES & (MAX_STRIPES - 1)) === 0 && (DEFAULT_STRIPES & (DEFAULT_STRIPES - 1)) === 0 && DEFAULT_STRIPES <= MAX_STRIPES, "layout: stripe counts are powers of two");
assert(PAGE_SIZE % PAGE_ALIGN_BYTES === 0 && DEFAULT_CACHE_SIZE_BYTES % PAGE_SIZE === 0, "layout: every page starts aligned");
assert(NKINDS === PAGE_KIND_NAMES.length && KIND_FILE === PageKind.FileBlock && KIND_EPHEMERAL === PageKind.EphemeralBlock && KIND_MATERIALIZED === PageKind.Materialized, "layout: kinds are api.ts's PageKind");
assert(ST_HITS < ST_PER_KIND && ST_MISSES < ST_PER_KIND && ST_EVICTIONS < ST_PER_KIND && NKINDS * ST_PER_KIND <= STATS_ROW_DOUBLES, "layout: a stats row holds every kind's counters");
assert(TAG_WORDS === 8 && KEY_SIZE === 18, "layout: a materialized tag is ns, a key as 4 words + 2 bytes, lsn hi and lo");

// ---- errors --------------------------------------------------------------------------------

/** The clock sweep found no unpinned slot: more pages are held at once than the cache has slots. */
export class AllSlotsPinnedError extends PageserverError {
  constructor(nslots: number, iterations: number) {
    super("internal", `all page cache slots pinned: no victim among ${nslots} slots after ${iterations} sweep steps`);
  }
}

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

interface Geometry {
  nslots: number;
  nbuckets: number;
  nstripes: number;
  stripes_base: number;
  slots_base: number;
  buckets_base: number;
  owners_base: number;
  int_words: number;
  stats_offset_bytes: number;
  pages_offset_bytes: number;
  total_bytes: number;
}

function nextPow2(x: number): number {
  let p = 1;
  while (p < x) p *= 2;
  return p;
}

function geometry(nslots: number, nstripes: number): Geometry {
  const nbuckets = nextPow2(nslots * 2);
  const stripes_base = HEADER_WORDS;
  const slots_base = stripes_base + nstripes * STRIPE_WORDS;
  const buckets_base = slots_base + nslots * SLOT_WORDS;
  const owners_base = buckets_base + nbuckets;
  const int_words = owners_base + MAX_STATS_ROWS;
  const stats_offset_bytes = Math.ceil((int_words * 4) / 64) * 64;
  const stats_end = stats_offset_bytes + MAX_STATS_ROWS * STATS_ROW_DOUBLES * 8;
  const pages_offset_bytes = Math.ceil(stats_end / PAGE_ALIGN_BYTES) * PAGE_ALIGN_BYTES;
  const total_bytes = pages_offset_bytes + nslots * PAGE_SIZE;
  return { nslots, nbuckets, nstripes, stripes_base, slots_base, buckets_base, owners_base, int_words, stats_offset_bytes, pages_offset_bytes, total_bytes };
}

// ---- hashing -------------------------------------------------------------------------------

/** One murmur3 round: mixes word `w` into `h`. */
function mix(h: number, w: number): number {
  let k = Math.imul(w, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** murmur3 finalizer: every input bit reaches the low bits (bucket and stripe come from them). */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

function hashBlock(kind: number, fileId: number, blkno: number): number {
  return fmix(mix(mix(kind, fileId), blkno));
}

function hashMaterialized(ns: number, k0: number, k1: number, k2: number, k3: number, k4: number): number {
  return fmix(mix(mix(mix(mix(mix(mix(KIND_MATERIALIZED, ns), k0), k1), k2), k3), k4));
}

function keyWord(key: string, i: number): number {
  return (key.charCodeAt(i) << 24) | (key.charCodeAt(i + 1) << 16) | (key.charCodeAt(i + 2) << 8) | key.charCodeAt(i + 3);
}

function checkBlockArgs(what: string, kind: number, fileId: number, blkno: number): void {
  if (kind !== KIND_FILE && kind !== KIND_EPHEMERAL) throw new InvalidArgumentError(`${what}: kind ${kind} is not a block kind`);
  if (!(Number.isInteger(fileId) && fileId > 0 && fileId < MAX_ID)) throw new InvalidArgumentError(`${what}: bad file id ${fileId}`);
  if (!(Number.isInteger(blkno) && blkno >= 0 && blkno <= 0xffff_ffff)) throw new InvalidArgumentError(`${what}: bad block number ${blkno}`);
}

// ---- checked reads -------------------------------------------------------------------------
// Every index the cache computes lies inside the layout (a slot < nslots, a bucket ≤ the mask,
// a stats row < MAX_STATS_ROWS), so a read past the end is a bug: these assert it rather than
// let `undefined` flow on as a NaN count or a bogus slot. One compare, no allocation (the
// message is a constant). Comparisons of a word against a known value read it directly:
// `undefined` equals nothing, so they need no check.

/** Word `i` of the Int32 part of the buffer. */
function word(m: Int32Array, i: number): number {
  const v = m[i];
  assert(v !== undefined, "page cache: word index outside the layout");
  return v;
}

/** Double `i` of the stats part of the buffer. */
function double(stats: Float64Array, i: number): number {
  const v = stats[i];
  assert(v !== undefined, "page cache: stats index outside the layout");
  return v;
}

/** Adds one to counter `i` of this thread's stats row. */
function bump(stats: Float64Array, i: number): void {
  stats[i] = double(stats, i) + 1;
}

// ---- per-thread stats rows -----------------------------------------------------------------

/**
 * Stats rows this thread holds, by cache uid: a thread that attaches the same cache twice (a
 * Piscina worker gets the buffer with every job) keeps one row, so rows are bounded by threads.
 */
const threadRows = new Map<string, { row: number; refs: number }>();

// ---- the cache -----------------------------------------------------------------------------

export class PageCache implements PageCacheApi {
  /** The one buffer holding everything: hand it to workers, which call PageCache.attach(). */
  readonly shared: SharedArrayBuffer;
  readonly slots: number;
  readonly lock_timeout_ms: number;

  private readonly m: Int32Array;
  private readonly pages: Uint8Array[];
  private readonly statsAll: Float64Array;
  /** This thread's row of statsAll: only this thread writes it. */
  private readonly myStats: Float64Array;
  private readonly statsRow: number;
  private readonly uidKey: string;
  private readonly bucketMask: number;
  private readonly stripeMask: number;
  private readonly stripesBase: number;
  private readonly slotsBase: number;
  private readonly bucketsBase: number;
  private readonly ownersBase: number;
  private detached = false;

  static create(options: PageCacheCreateOptions = {}): PageCache {
    const size_bytes = options.size_bytes ?? DEFAULT_CACHE_SIZE_BYTES;
    if (!Number.isSafeInteger(size_bytes) || size_bytes % PAGE_SIZE !== 0) {
      throw new InvalidArgumentError(`page cache size_bytes ${size_bytes} is not a multiple of ${PAGE_SIZE}`);
    }
    const nslots = size_bytes / PAGE_SIZE;
    if (nslots < MIN_SLOTS || nslots > MAX_SLOTS) {
      throw new InvalidArgumentError(`page cache of ${nslots} slots is out of range [${MIN_SLOTS}, ${MAX_SLOTS}]`);
    }
    const nstripes = options.stripes ?? DEFAULT_STRIPES;
    if (!Number.isInteger(nstripes) || nstripes < 1 || nstripes > MAX_STRIPES || (nstripes & (nstripes - 1)) !== 0) {
      throw new InvalidArgumentError(`page cache stripes ${nstripes} is not a power of two in [1, ${MAX_STRIPES}]`);
    }
    const g = geometry(nslots, nstripes);
    const sab = new SharedArrayBuffer(g.total_bytes);
    const m = new Int32Array(sab, 0, g.int_words);
    m[H_NSLOTS] = nslots;
    m[H_NBUCKETS] = g.nbuckets;
    m[H_NSTRIPES] = nstripes;
    m[H_NEXT_FILE_ID] = 1;
    m[H_NEXT_NS_ID] = 1;
    m[H_UID_HI] = randomInt(0, 0x7fff_ffff);
    m[H_UID_LO] = randomInt(0, 0x7fff_ffff);
    m.fill(-1, g.buckets_base, g.buckets_base + g.nbuckets);
    for (let s = 0; s < nslots; s++) m[g.slots_base + (s << SLOT_SHIFT) + S_KIND] = KIND_NONE;
    // Magic last: a buffer is attachable only once fully initialized.
    Atomics.store(m, H_VERSION, LAYOUT_VERSION);
    Atomics.store(m, H_MAGIC, MAGIC);
    return new PageCache(sab, options.lock_timeout_ms ?? DEFAULT_LOCK_TIMEOUT_MS);
  }

  static attach(sab: SharedArrayBuffer, options: PageCacheAttachOptions = {}): PageCache {
    return new PageCache(sab, options.lock_timeout_ms ?? DEFAULT_LOCK_TIMEOUT_MS);
  }

  private constructor(sab: SharedArrayBuffer, lock_timeout_ms: number) {
    if (!(sab instanceof SharedArrayBuffer)) throw new InvalidArgumentError("PageCache.attach needs the SharedArrayBuffer of a PageCache");
    if (!(Number.isFinite(lock_timeout_ms) && lock_timeout_ms > 0)) throw new InvalidArgumentError(`lock_timeout_ms ${lock_timeout_ms} must be > 0`);
    if (sab.byteLength < HEADER_WORDS * 4) throw new InvalidArgumentError(`buffer of ${sab.byteLength} bytes is not a page cache`);
    const header = new Int32Array(sab, 0, HEADER_WORDS);
    if (Atomics.load(header, H_MAGIC) !== MAGIC || Atomics.load(header, H_VERSION) !== LAYOUT_VERSION) {
      throw new InvalidArgumentError("buffer is not a page cache (bad magic or layout version)");
    }
    // The header's geometry, checked as create() checked it before writing it.
    const nslots = word(header, H_NSLOTS);
    const nstripes = word(header, H_NSTRIPES);
    if (nslots < MIN_SLOTS || nslots > MAX_SLOTS || nstripes < 1 || nstripes > MAX_STRIPES || (nstripes & (nstripes - 1)) !== 0) {
      throw new InvalidArgumentError(`page cache header is corrupt: ${nslots} slots, ${nstripes} stripes`);
    }
    const g = geometry(nslots, nstripes);
    if (g.nbuckets !== word(header, H_NBUCKETS) || g.total_bytes !== sab.byteLength) {
      throw new InvalidArgumentError(`page cache buffer of ${sab.byteLength} bytes does not match its header (expected ${g.total_bytes})`);
    }
    this.shared = sab;
    this.slots = g.nslots;
    this.lock_timeout_ms = lock_timeout_ms;
    this.m = new Int32Array(sab, 0, g.int_words);
    this.bucketMask = g.nbuckets - 1;
    this.stripeMask = g.nstripes - 1;
    this.stripesBase = g.stripes_base;
    this.slotsBase = g.slots_base;
    this.bucketsBase = g.buckets_base;
    this.ownersBase = g.owners_base;
    // Created once per attach so a hit only indexes an array.
    this.pages = new Array<Uint8Array>(g.nslots);
    for (let s = 0; s < g.nslots; s++) this.pages[s] = new Uint8Array(sab, g.pages_offset_bytes + s * PAGE_SIZE, PAGE_SIZE);
    this.statsAll = new Float64Array(sab, g.stats_offset_bytes, MAX_STATS_ROWS * STATS_ROW_DOUBLES);
    this.uidKey = `${header[H_UID_HI]}:${header[H_UID_LO]}:${sab.byteLength}`;
    this.statsRow = this.claimStatsRow();
    this.myStats = this.statsAll.subarray(this.statsRow * STATS_ROW_DOUBLES, (this.statsRow + 1) * STATS_ROW_DOUBLES);
  }

  private claimStatsRow(): number {
    const held = threadRows.get(this.uidKey);
    if (held !== undefined) {
      held.refs++;
      return held.row;
    }
    for (let row = 0; row < MAX_STATS_ROWS; row++) {
      if (Atomics.compareExchange(this.m, this.ownersBase + row, 0, 1) === 0) {
        threadRows.set(this.uidKey, { row, refs: 1 });
        return row;
      }
    }
    throw new PageserverError("internal", `page cache: more than ${MAX_STATS_ROWS} threads attached at once (thread ${threadId})`);
  }

  /**
   * Gives this handle's stats row back (its counts stay and keep being summed) once no other
   * handle of this thread uses it. A worker that is about to exit calls this; the handle must
   * not be used afterwards.
   */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    const held = threadRows.get(this.uidKey);
    assert(held !== undefined && held.row === this.statsRow, "detach: stats row not held by this thread");
    held.refs--;
    if (held.refs === 0) {
      threadRows.delete(this.uidKey);
      const prev = Atomics.exchange(this.m, this.ownersBase + this.statsRow, 0);
      assert(prev === 1, "detach: stats row was not claimed");
    }
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

  /** The page view of `slot` (no pin check: the callers hold it pinned or write-locked). */
  private page(slot: number): Uint8Array {
    const p = this.pages[slot];
    assert(p !== undefined, "page cache: slot outside the page views");
    return p;
  }

  /** The page bytes of a slot this thread holds pinned (from pinBlock). */
  pageView(slot: number): Uint8Array {
    // Messages built only on failure: this is a hot path and must not allocate.
    if (!(Number.isInteger(slot) && slot >= 0 && slot < this.slots)) assert(false, `pageView: slot ${slot} out of range`);
    if (Atomics.load(this.m, this.slotsBase + (slot << SLOT_SHIFT) + S_PIN) <= 0) assert(false, `pageView: slot ${slot} is not pinned`);
    return this.page(slot);
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
    dst.set(this.page(slot));
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
      if (dst !== null) dst.set(this.page(slot));
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
  private fillBlock(kind: number, fileId: number, blk: number, hash: number, bucket: number, stripeAt: number, source: BlockSource): number {
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
      source.readBlockInto(blk >>> 0, this.page(victim));
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
    this.page(victim).set(page);
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

  private findMaterialized(bucket: number, ns: number, k0: number, k1: number, k2: number, k3: number, k4: number, hi: number, lo: number): number {
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

  // ---- replacement -------------------------------------------------------------------------

  /**
   * Clock sweep. Returns a slot that this thread holds write-locked, FREE, unlinked and
   * unpinned (nobody can pin it: pins are taken only through the mapping).
   */
  private getVictim(): number {
    const m = this.m;
    const nslots = this.slots;
    const limit = SWEEP_LIMIT_PER_SLOT * nslots;
    for (let step = 0; step < limit; step++) {
      const slot = (Atomics.add(m, H_CLOCK_HAND, 1) >>> 0) % nslots;
      const at = this.slotsBase + (slot << SLOT_SHIFT);
      if (Atomics.load(m, at + S_PIN) !== 0) continue;
      const usage = Atomics.load(m, at + S_USAGE);
      if (usage > 0) {
        Atomics.compareExchange(m, at + S_USAGE, usage, usage - 1);
        continue;
      }
      if (!rwTryWriteLock(m, at + S_LOCK)) continue;
      const state = m[at + S_STATE];
      if (state === SLOT_FREE) {
        // Unlinked: its pin count can only fall (readers left over from a failed fill).
        if (Atomics.load(m, at + S_PIN) === 0) return slot;
        rwWriteUnlock(m, at + S_LOCK);
        continue;
      }
      assert(state === SLOT_VALID, "write-locked linked slot is not VALID");
      const bucket = word(m, at + S_HASH) & this.bucketMask;
      const stripeAt = this.stripesBase + (bucket & this.stripeMask) * STRIPE_WORDS;
      this.lockStripeHoldingVictim(stripeAt, slot);
      // Pins happen only under this stripe lock: zero now means zero until we unlink.
      if (Atomics.load(m, at + S_PIN) !== 0) {
        mutexUnlock(m, stripeAt);
        rwWriteUnlock(m, at + S_LOCK);
        continue;
      }
      this.unlink(slot, bucket);
      mutexUnlock(m, stripeAt);
      const kind = word(m, at + S_KIND);
      assert(kind >= 0 && kind < NKINDS, "evicted slot has no kind");
      bump(this.myStats, kind * ST_PER_KIND + ST_EVICTIONS);
      m[at + S_KIND] = KIND_NONE;
      Atomics.store(m, at + S_STATE, SLOT_FREE);
      return slot;
    }
    throw new AllSlotsPinnedError(nslots, limit);
  }

  /** Takes a stripe lock while holding `victim` write-locked; on a timeout gives the victim back. */
  private lockStripeHoldingVictim(stripeAt: number, victim: number): void {
    try {
      mutexLock(this.m, stripeAt, this.lock_timeout_ms);
    } catch (e) {
      const at = this.slotsBase + (victim << SLOT_SHIFT);
      if (this.m[at + S_STATE] === SLOT_FREE) this.releaseVictim(victim);
      else rwWriteUnlock(this.m, at + S_LOCK);
      throw e;
    }
  }

  /** Gives back a write-held, unlinked slot as FREE. */
  private releaseVictim(slot: number): void {
    const m = this.m;
    const at = this.slotsBase + (slot << SLOT_SHIFT);
    m[at + S_KIND] = KIND_NONE;
    m[at + S_NEXT] = -1;
    Atomics.store(m, at + S_STATE, SLOT_FREE);
    Atomics.store(m, at + S_USAGE, 0);
    rwWriteUnlock(m, at + S_LOCK);
  }

  /** Under the stripe lock of `bucket`: removes `slot` from its chain. */
  private unlink(slot: number, bucket: number): void {
    const m = this.m;
    const headAt = this.bucketsBase + bucket;
    const next = word(m, this.slotsBase + (slot << SLOT_SHIFT) + S_NEXT);
    let cur = word(m, headAt);
    if (cur === slot) {
      m[headAt] = next;
      return;
    }
    for (let steps = 0; cur !== -1; steps++) {
      assert(steps < this.slots, "page cache hash chain has a cycle");
      const curAt = this.slotsBase + (cur << SLOT_SHIFT);
      const after = word(m, curAt + S_NEXT);
      if (after === slot) {
        m[curAt + S_NEXT] = next;
        return;
      }
      cur = after;
    }
    assert(false, `unlink: slot ${slot} not in its bucket ${bucket}`);
  }

  // ---- observation -------------------------------------------------------------------------

  stats(): CacheStats {
    const byKind = {} as CacheStats["byKind"];
    for (let kind = 0; kind < NKINDS; kind++) {
      let hits = 0;
      let misses = 0;
      let evictions = 0;
      for (let row = 0; row < MAX_STATS_ROWS; row++) {
        const base = row * STATS_ROW_DOUBLES + kind * ST_PER_KIND;
        hits += double(this.statsAll, base + ST_HITS);
        misses += double(this.statsAll, base + ST_MISSES);
        evictions += double(this.statsAll, base + ST_EVICTIONS);
      }
      const name = PAGE_KIND_NAMES[kind];
      assert(name !== undefined, "stats: a kind without a name");
      byKind[name] = { hits, misses, evictions };
    }
    return { slots: this.slots, byKind };
  }

  /**
   * Checks every structural invariant; throws an AssertionError naming the first one broken.
   * Only meaningful while no thread is using the cache (tests, after a stress run).
   * Returns the number of VALID slots.
   */
  checkInvariants(): { valid: number; free: number } {
    const m = this.m;
    const linked = new Uint8Array(this.slots);
    const tags = new Set<string>();
    for (let stripe = 0; stripe <= this.stripeMask; stripe++) {
      const at = this.stripesBase + stripe * STRIPE_WORDS;
      assert(m[at] === 0 && m[at + 1] === 0, `stripe ${stripe} is locked or has waiters while quiescent`);
    }
    for (let bucket = 0; bucket <= this.bucketMask; bucket++) {
      let slot = word(m, this.bucketsBase + bucket);
      for (let steps = 0; slot !== -1; steps++) {
        assert(steps < this.slots, `bucket ${bucket} has a cycle`);
        assert(slot >= 0 && slot < this.slots, `bucket ${bucket} links to slot ${slot}, out of range`);
        assert(linked[slot] === 0, `slot ${slot} is linked twice`);
        linked[slot] = 1;
        const at = this.slotsBase + (slot << SLOT_SHIFT);
        assert((word(m, at + S_HASH) & this.bucketMask) === bucket, `slot ${slot} is in bucket ${bucket}, not its hash's`);
        const kind = word(m, at + S_KIND);
        assert(kind >= 0 && kind < NKINDS, `linked slot ${slot} has kind ${kind}`);
        const words = kind === KIND_MATERIALIZED ? TAG_WORDS : 2;
        let tag = `${kind}`;
        for (let w = 0; w < words; w++) tag += `:${m[at + S_TAG + w]}`;
        assert(!tags.has(tag), `tag ${tag} is cached twice`);
        tags.add(tag);
        slot = word(m, at + S_NEXT);
      }
    }
    let valid = 0;
    let free = 0;
    for (let slot = 0; slot < this.slots; slot++) {
      const at = this.slotsBase + (slot << SLOT_SHIFT);
      const state = m[at + S_STATE];
      assert(m[at + S_LOCK] === 0, `slot ${slot} is locked while quiescent`);
      assert(m[at + S_LOCK + 1] === 0, `slot ${slot} has lock waiters while quiescent`);
      assert(m[at + S_PIN] === 0, `slot ${slot} is pinned (${m[at + S_PIN]}) while quiescent`);
      const usage = word(m, at + S_USAGE);
      assert(usage >= 0 && usage <= USAGE_MAX, `slot ${slot} usage ${usage} out of range`);
      if (state === SLOT_VALID) {
        assert(linked[slot] === 1, `VALID slot ${slot} is not linked`);
        valid++;
      } else {
        assert(state === SLOT_FREE, `slot ${slot} in state ${state} while quiescent`);
        assert(linked[slot] === 0, `FREE slot ${slot} is linked`);
        free++;
      }
    }
    return { valid, free };
  }
}
