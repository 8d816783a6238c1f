/**
 * SlotTable: the slots of the page cache and their mapping (hash chains under striped
 * mutexes), attached to the cache's one SharedArrayBuffer; the clock sweep that frees a slot
 * for a miss or an insert; and the structural invariant check. PageCache (page_cache.ts)
 * builds its lookups and inserts on top of it.
 *
 * LOCK ORDER (see page_cache.ts): slot lock BEFORE mapping stripe lock. The sweep takes a
 * victim's write lock with a try-lock only (no thread ever waits for a slot write lock), then
 * at most one stripe lock while holding it (lockStripeHoldingVictim).
 *
 * Invariants:
 *   - A slot is linked in exactly one chain iff its state is not FREE; its chain is the bucket
 *     of its stored hash. unlink() runs only under that bucket's stripe lock.
 *   - Pins are taken only under the stripe lock of a linked slot (or by a filler that still
 *     write-holds it); an evictor write-holds the slot and re-checks the pin count under that
 *     same stripe lock before it unlinks, so a pinned slot is never evicted. A FREE slot is
 *     reused only with a pin count of 0 (checked while write-held; unlinked, it gains no pins).
 *   - getVictim() returns a slot write-locked, FREE, unlinked and unpinned; its caller links
 *     it or gives it back (releaseVictim) before unlocking it.
 *   - Fields are plain own fields set once in the constructor, so the hot path's reads of them
 *     (in this class and in PageCache) are direct loads.
 */
import { assert } from "../types/assert.js";
import { InvalidArgumentError, PageserverError } from "../types/errors.js";
import { PAGE_SIZE } from "./api.js";
import {
  H_CLOCK_HAND,
  H_UID_HI,
  H_UID_LO,
  KIND_MATERIALIZED,
  KIND_NONE,
  MAX_STATS_ROWS,
  NKINDS,
  S_HASH,
  S_KIND,
  S_LOCK,
  S_NEXT,
  S_PIN,
  S_STATE,
  S_TAG,
  S_USAGE,
  SLOT_FREE,
  SLOT_SHIFT,
  SLOT_VALID,
  ST_EVICTIONS,
  ST_PER_KIND,
  STATS_ROW_DOUBLES,
  STRIPE_WORDS,
  SWEEP_LIMIT_PER_SLOT,
  TAG_WORDS,
  USAGE_MAX,
  bump,
  readGeometry,
  word,
} from "./layout.js";
import { mutexLock, mutexUnlock, rwTryWriteLock, rwWriteUnlock } from "./lock.js";
import { claimStatsRow, releaseStatsRow } from "./stats.js";

/** The clock sweep found no unpinned slot: more pages are held at once than the cache has slots. */
export class AllSlotsPinnedError extends PageserverError {
  constructor(nslots: number, iterations: number) {
    super("internal", `all page cache slots pinned: no victim among ${nslots} slots after ${iterations} sweep steps`);
  }
}

export abstract class SlotTable {
  /** The one buffer holding everything: hand it to workers, which call PageCache.attach(). */
  readonly shared: SharedArrayBuffer;
  readonly slots: number;
  readonly lock_timeout_ms: number;

  protected readonly m: Int32Array;
  protected readonly pages: Uint8Array[];
  protected readonly statsAll: Float64Array;
  /** This thread's row of statsAll: only this thread writes it. */
  protected readonly myStats: Float64Array;
  private readonly statsRow: number;
  private readonly uidKey: string;
  protected readonly bucketMask: number;
  protected readonly stripeMask: number;
  protected readonly stripesBase: number;
  protected readonly slotsBase: number;
  protected readonly bucketsBase: number;
  private readonly ownersBase: number;
  private detached = false;

  protected constructor(sab: SharedArrayBuffer, lock_timeout_ms: number) {
    if (!(sab instanceof SharedArrayBuffer)) throw new InvalidArgumentError("PageCache.attach needs the SharedArrayBuffer of a PageCache");
    if (!(Number.isFinite(lock_timeout_ms) && lock_timeout_ms > 0))
      throw new InvalidArgumentError(`lock_timeout_ms ${lock_timeout_ms} must be > 0`);
    const g = readGeometry(sab);
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
    this.uidKey = `${this.m[H_UID_HI]}:${this.m[H_UID_LO]}:${sab.byteLength}`;
    this.statsRow = claimStatsRow(this.m, this.ownersBase, this.uidKey);
    this.myStats = this.statsAll.subarray(this.statsRow * STATS_ROW_DOUBLES, (this.statsRow + 1) * STATS_ROW_DOUBLES);
  }

  /**
   * Gives this handle's stats row back (its counts stay and keep being summed) once no other
   * handle of this thread uses it. A worker that is about to exit calls this; the handle must
   * not be used afterwards.
   */
  detach(): void {
    if (this.detached) return;
    this.detached = true;
    releaseStatsRow(this.m, this.ownersBase, this.uidKey, this.statsRow);
  }

  // ---- replacement -------------------------------------------------------------------------

  /**
   * Clock sweep. Returns a slot that this thread holds write-locked, FREE, unlinked and
   * unpinned (nobody can pin it: pins are taken only through the mapping).
   */
  protected getVictim(): number {
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
  protected lockStripeHoldingVictim(stripeAt: number, victim: number): void {
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
  protected releaseVictim(slot: number): void {
    const m = this.m;
    const at = this.slotsBase + (slot << SLOT_SHIFT);
    m[at + S_KIND] = KIND_NONE;
    m[at + S_NEXT] = -1;
    Atomics.store(m, at + S_STATE, SLOT_FREE);
    Atomics.store(m, at + S_USAGE, 0);
    rwWriteUnlock(m, at + S_LOCK);
  }

  /** Under the stripe lock of `bucket`: removes `slot` from its chain. */
  protected unlink(slot: number, bucket: number): void {
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
