/**
 * The layout of the page cache's one SharedArrayBuffer: its constants (tied together by
 * module-level asserts), the geometry computed from a slot and stripe count, writing and
 * checking the header, and the checked accessors every index into the buffer goes through.
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
 * page is (ns, key as five big-endian words, lsn hi, lsn lo) in tag words 0..7 (tag_hash.ts).
 *
 * Invariants: a buffer is attachable only once fully initialized (magic written last); a
 * header read back must describe a geometry create() could have written and the buffer's size.
 * No locks here: the header's geometry words are written once, before the magic.
 */
import { randomInt } from "node:crypto";
import { assert } from "../types/assert.js";
import { InvalidArgumentError } from "../types/errors.js";
import { KEY_SIZE } from "../types/key.js";
import { PAGE_KIND_NAMES, PAGE_SIZE, PageKind } from "./api.js";
import { LOCK_WORDS } from "./lock.js";

export const MAGIC = 0x50474341; // "PGCA"
export const LAYOUT_VERSION = 1;

export const H_MAGIC = 0;
export const H_VERSION = 1;
export const H_NSLOTS = 2;
export const H_NBUCKETS = 3;
export const H_NSTRIPES = 4;
export const H_NEXT_FILE_ID = 5;
export const H_NEXT_NS_ID = 6;
export const H_UID_HI = 7;
export const H_UID_LO = 8;
export const H_CLOCK_HAND = 16;
export const HEADER_WORDS = 32;

export const STRIPE_WORDS = 16;

export const SLOT_WORDS = 16;
export const SLOT_SHIFT = 4;
export const S_LOCK = 0; // + S_LOCK + 1: its waiter count (lock.ts)
export const S_PIN = 2;
export const S_USAGE = 3;
export const S_STATE = 4;
export const S_KIND = 5;
export const S_HASH = 6;
export const S_NEXT = 7;
export const S_TAG = 8; // 8 words
export const TAG_WORDS = 8;

/** Slot states. */
export const SLOT_FREE = 0;
export const SLOT_IO_IN_PROGRESS = 1;
export const SLOT_VALID = 2;

export const KIND_NONE = -1;
export const KIND_FILE = 0; // PageKind.FileBlock
export const KIND_EPHEMERAL = 1; // PageKind.EphemeralBlock
export const KIND_MATERIALIZED = 2; // PageKind.Materialized
export const NKINDS = 3;

/** Clock usage count cap (Neon: 5): a hit adds one, a sweep pass takes one. */
export const USAGE_MAX = 5;

/** Threads (stats rows) that may be attached to one cache at once. */
export const MAX_STATS_ROWS = 64;
export const STATS_ROW_DOUBLES = 16;
export const ST_HITS = 0;
export const ST_MISSES = 1;
export const ST_EVICTIONS = 2;
export const ST_PER_KIND = 3;

/** The clock sweep gives up after this many slots per slot of the cache (Neon: 10). */
export const SWEEP_LIMIT_PER_SLOT = 10;
/** A lookup whose slot changed between pin and read lock (a failed fill) retries this often. */
export const MAX_LOOKUP_ATTEMPTS = 64;

export const MIN_SLOTS = 1;
export const MAX_SLOTS = 1 << 24; // 128 GiB of pages
export const MAX_STRIPES = 1024;
export const DEFAULT_STRIPES = 128;
export const DEFAULT_CACHE_SIZE_BYTES = 64 * 1024 * 1024;
export const MAX_ID = 0x7fff_ffff;

export const TWO_32 = 0x1_0000_0000;
const PAGE_ALIGN_BYTES = 4096;
const CACHE_LINE_BYTES = 64;

// The layout constants tie together; checked once at load, so a change to one that breaks
// another fails every test that imports the cache instead of corrupting shared memory.
assert(H_UID_LO < H_CLOCK_HAND && H_CLOCK_HAND < HEADER_WORDS, "layout: header fields overlap the clock hand or the header");
assert(
  (H_CLOCK_HAND * 4) % CACHE_LINE_BYTES === 0 && (HEADER_WORDS - H_CLOCK_HAND) * 4 >= CACHE_LINE_BYTES,
  "layout: the clock hand has its own cache line",
);
assert((HEADER_WORDS * 4) % CACHE_LINE_BYTES === 0, "layout: stripes start on a cache line");
assert(STRIPE_WORDS * 4 === CACHE_LINE_BYTES && LOCK_WORDS <= STRIPE_WORDS, "layout: one stripe mutex per cache line");
assert(SLOT_WORDS === 1 << SLOT_SHIFT && SLOT_WORDS * 4 === CACHE_LINE_BYTES, "layout: a slot's meta is one cache line, indexed by shift");
assert(
  S_LOCK + LOCK_WORDS <= S_PIN &&
    S_PIN < S_USAGE &&
    S_USAGE < S_STATE &&
    S_STATE < S_KIND &&
    S_KIND < S_HASH &&
    S_HASH < S_NEXT &&
    S_NEXT < S_TAG,
  "layout: slot fields in order, the lock's words before the pin count",
);
assert(S_TAG + TAG_WORDS <= SLOT_WORDS, "layout: the tag fits the slot");
assert(
  MAX_SLOTS * SLOT_WORDS < 2 ** 31 && Number.isSafeInteger(MAX_SLOTS * PAGE_SIZE),
  "layout: slot indexes fit an int32 shift, page offsets a safe integer",
);
assert(
  (MAX_STRIPES & (MAX_STRIPES - 1)) === 0 && (DEFAULT_STRIPES & (DEFAULT_STRIPES - 1)) === 0 && DEFAULT_STRIPES <= MAX_STRIPES,
  "layout: stripe counts are powers of two",
);
assert(PAGE_SIZE % PAGE_ALIGN_BYTES === 0 && DEFAULT_CACHE_SIZE_BYTES % PAGE_SIZE === 0, "layout: every page starts aligned");
assert(
  NKINDS === PAGE_KIND_NAMES.length &&
    KIND_FILE === PageKind.FileBlock &&
    KIND_EPHEMERAL === PageKind.EphemeralBlock &&
    KIND_MATERIALIZED === PageKind.Materialized,
  "layout: kinds are api.ts's PageKind",
);
assert(
  ST_HITS < ST_PER_KIND && ST_MISSES < ST_PER_KIND && ST_EVICTIONS < ST_PER_KIND && NKINDS * ST_PER_KIND <= STATS_ROW_DOUBLES,
  "layout: a stats row holds every kind's counters",
);
assert(TAG_WORDS === 8 && KEY_SIZE === 18, "layout: a materialized tag is ns, a key as 4 words + 2 bytes, lsn hi and lo");

// ---- geometry ------------------------------------------------------------------------------

export interface Geometry {
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

export function geometry(nslots: number, nstripes: number): Geometry {
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
  return {
    nslots,
    nbuckets,
    nstripes,
    stripes_base,
    slots_base,
    buckets_base,
    owners_base,
    int_words,
    stats_offset_bytes,
    pages_offset_bytes,
    total_bytes,
  };
}

// ---- header --------------------------------------------------------------------------------

/** A new, initialized cache buffer of `size_bytes` of pages and `nstripes` stripes (checked). */
export function createBuffer(size_bytes: number, nstripes: number): SharedArrayBuffer {
  if (!Number.isSafeInteger(size_bytes) || size_bytes % PAGE_SIZE !== 0) {
    throw new InvalidArgumentError(`page cache size_bytes ${size_bytes} is not a multiple of ${PAGE_SIZE}`);
  }
  const nslots = size_bytes / PAGE_SIZE;
  if (nslots < MIN_SLOTS || nslots > MAX_SLOTS) {
    throw new InvalidArgumentError(`page cache of ${nslots} slots is out of range [${MIN_SLOTS}, ${MAX_SLOTS}]`);
  }
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
  return sab;
}

/** The geometry a cache buffer's header describes; throws unless `sab` is a whole, initialized cache. */
export function readGeometry(sab: SharedArrayBuffer): Geometry {
  if (sab.byteLength < HEADER_WORDS * 4) throw new InvalidArgumentError(`buffer of ${sab.byteLength} bytes is not a page cache`);
  const header = new Int32Array(sab, 0, HEADER_WORDS);
  if (Atomics.load(header, H_MAGIC) !== MAGIC || Atomics.load(header, H_VERSION) !== LAYOUT_VERSION) {
    throw new InvalidArgumentError("buffer is not a page cache (bad magic or layout version)");
  }
  // The header's geometry, checked as createBuffer() checked it before writing it.
  const nslots = word(header, H_NSLOTS);
  const nstripes = word(header, H_NSTRIPES);
  if (nslots < MIN_SLOTS || nslots > MAX_SLOTS || nstripes < 1 || nstripes > MAX_STRIPES || (nstripes & (nstripes - 1)) !== 0) {
    throw new InvalidArgumentError(`page cache header is corrupt: ${nslots} slots, ${nstripes} stripes`);
  }
  const g = geometry(nslots, nstripes);
  if (g.nbuckets !== word(header, H_NBUCKETS) || g.total_bytes !== sab.byteLength) {
    throw new InvalidArgumentError(`page cache buffer of ${sab.byteLength} bytes does not match its header (expected ${g.total_bytes})`);
  }
  return g;
}

// ---- checked reads -------------------------------------------------------------------------
// Every index the cache computes lies inside the layout (a slot < nslots, a bucket ≤ the mask,
// a stats row < MAX_STATS_ROWS), so a read past the end is a bug: these assert it rather than
// let `undefined` flow on as a NaN count or a bogus slot. One compare, no allocation (the
// message is a constant). Comparisons of a word against a known value read it directly:
// `undefined` equals nothing, so they need no check.

/** Word `i` of the Int32 part of the buffer. */
export function word(m: Int32Array, i: number): number {
  const v = m[i];
  assert(v !== undefined, "page cache: word index outside the layout");
  return v;
}

/** Double `i` of the stats part of the buffer. */
export function double(stats: Float64Array, i: number): number {
  const v = stats[i];
  assert(v !== undefined, "page cache: stats index outside the layout");
  return v;
}

/** Adds one to counter `i` of this thread's stats row. */
export function bump(stats: Float64Array, i: number): void {
  stats[i] = double(stats, i) + 1;
}

/** The page view of `slot` (no pin check: the callers hold it pinned or write-locked). */
export function slotPage(pages: readonly Uint8Array[], slot: number): Uint8Array {
  const p = pages[slot];
  assert(p !== undefined, "page cache: slot outside the page views");
  return p;
}
