/**
 * InMemoryLayer: the newest values of a timeline, between the last flush and now. Values
 * live in an EphemeralFile; the index (key → its versions) lives in memory.
 *
 * LSN range [start, end): end is unset (Infinity) while the layer is open; freezing sets it
 * once, to freeze LSN + 1, and after that the layer only serves reads until its flush lands.
 * Per key, versions are kept in ascending LSN order (puts never go backwards); writing the
 * same (key, lsn) again replaces the version (last write wins), as in Neon.
 */
import { join } from "node:path";
import type { PageCacheApi } from "../cache/api.js";
import { assert } from "../types/assert.js";
import { BadStateError } from "../types/errors.js";
import type { Key } from "../types/key.js";
import { type Lsn, lsnAdd, lsnToString } from "../types/lsn.js";
import { type Value, type ValueTag, valueWillInit } from "../types/value.js";
import { EphemeralFile } from "./ephemeral_file.js";
import type { ReconstructState } from "./reconstruct_state.js";

/** Index entry stride: lsn, value offset, value length (will_init is read from the value tag). */
const STRIDE = 3;

export class InMemoryLayer {
  readonly start: Lsn;
  private end_ = Number.POSITIVE_INFINITY as Lsn;
  readonly file: EphemeralFile;
  /** key → flattened [lsn, offset, length]* ascending by lsn. */
  private readonly index = new Map<Key, number[]>();
  private valueCount_ = 0;
  /** Wall-clock time of the first write (checkpoint_timeout). */
  readonly created_ms: number;
  /** Highest LSN written into this layer. */
  private maxLsn_ = -1 as Lsn;

  constructor(cache: PageCacheApi, dir: string, ephemeralNo: number, start: Lsn) {
    this.start = start;
    this.file = new EphemeralFile(cache, join(dir, `ephemeral-${ephemeralNo}`));
    this.created_ms = Date.now();
  }

  get end(): Lsn {
    return this.end_;
  }
  get frozen(): boolean {
    return this.end_ !== Number.POSITIVE_INFINITY;
  }
  get sizeBytes(): number {
    return this.file.sizeBytes;
  }
  get valueCount(): number {
    return this.valueCount_;
  }
  get keyCount(): number {
    return this.index.size;
  }
  get maxLsn(): Lsn {
    return this.maxLsn_;
  }

  put(key: Key, lsn: Lsn, value: Value): void {
    this.checkPut(lsn);
    this.index_(key, lsn, this.file.append(key, lsn, value), value.length);
  }

  /** put() of the value `tag ‖ payload`, which is not built (see EphemeralFile.appendTagged). */
  putTagged(key: Key, lsn: Lsn, tag: ValueTag, payload: Uint8Array): void {
    this.checkPut(lsn);
    this.index_(key, lsn, this.file.appendTagged(key, lsn, tag, payload), payload.length + 1);
  }

  private checkPut(lsn: Lsn): void {
    if (this.frozen) throw new BadStateError(`put into frozen in-memory layer ${lsnToString(this.start)}-${lsnToString(this.end_)}`);
    assert(lsn >= this.start, "put below the layer's start LSN");
  }

  private index_(key: Key, lsn: Lsn, offset: number, length: number): void {
    let v = this.index.get(key);
    if (v === undefined) {
      v = [];
      this.index.set(key, v);
    }
    const n = v.length;
    if (n > 0 && v[n - STRIDE] === lsn) {
      v[n - 2] = offset;
      v[n - 1] = length;
    } else {
      assert(n === 0 || v[n - STRIDE]! < lsn, "per-key LSNs must ascend");
      v.push(lsn, offset, length);
      this.valueCount_++;
    }
    if (lsn > this.maxLsn_) this.maxLsn_ = lsn;
  }

  /** Freeze at `at` (inclusive): the layer's range becomes [start, at + 1). */
  freeze(at: Lsn): void {
    assert(!this.frozen, "freeze twice");
    assert(at >= this.start && at >= this.maxLsn_, "freeze below written LSNs");
    this.end_ = lsnAdd(at, 1);
    this.file.flushToOs();
  }

  /**
   * Collect versions of `key` with lsnFloor <= lsn < lsnEnd, newest first, until complete.
   * Returns state.complete.
   */
  getValues(key: Key, lsnFloor: Lsn, lsnEnd: Lsn, state: ReconstructState): boolean {
    const v = this.index.get(key);
    state.layersVisited++;
    if (v === undefined) return false;
    for (let i = v.length - STRIDE; i >= 0; i -= STRIDE) {
      const lsn = v[i]! as Lsn;
      if (lsn >= lsnEnd) continue;
      if (lsn < lsnFloor) break;
      const value = this.file.read(v[i + 1]!, v[i + 2]!);
      if (state.add(lsn, value)) return true;
    }
    return false;
  }

  /** Does any version of key lie in [floor, end)? (cheap: index only) */
  hasKey(key: Key): boolean {
    return this.index.has(key);
  }

  keys(): IterableIterator<Key> {
    return this.index.keys();
  }

  /** will_init of the newest version ≤ lsn, for tests and diagnostics. */
  newestWillInit(key: Key, lsn: Lsn): boolean | null {
    const v = this.index.get(key);
    if (v === undefined) return null;
    for (let i = v.length - STRIDE; i >= 0; i -= STRIDE) {
      if (v[i]! <= lsn) return valueWillInit(this.file.read(v[i + 1]!, v[i + 2]!));
    }
    return null;
  }

  close(remove: boolean): void {
    this.file.close(remove);
  }
}
