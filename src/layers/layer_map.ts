/**
 * LayerMap: an immutable snapshot of a timeline's historic (on-disk) layers that answers
 * "which layer holds the next-older versions of key K below LSN L". A change (flush,
 * compaction, GC) builds a new map with `with(added, removed)`; the timeline swaps its
 * reference in one assignment, so a reader always sees one consistent set.
 *
 * Structure: the key space is cut at every boundary of every partial-range layer into
 * segments; each segment lists the deltas and the images covering it, newest first. L0
 * deltas (the whole key range) are kept in one list of their own instead of being copied
 * into every segment. A search is two binary searches and a short scan.
 *
 * Invariant relied on by readers (and kept by every writer of layers): a delta layer holds
 * every value of every key of its key range within its LSN range, and an image layer at L
 * holds every key of its key range that exists at L. So reading any one layer within an LSN
 * window that no other read covered is correct, even when layers overlap. search() asserts
 * what it returns: a layer covering the key, read from a floor inside its LSN range and below
 * the requested end.
 */
import { assert } from "../types/assert.js";
import { KEY_MAX, KEY_MIN, type Key, type KeyRange, keyToHex } from "../types/key.js";
import { type Lsn, lsnAdd, lsnMax } from "../types/lsn.js";
import type { LayerDesc } from "./layer_name.js";

export interface HasDesc {
  readonly desc: LayerDesc;
}

/** Layer files by level and kind: how many, and their bytes (as known to the descriptors). */
export interface LayerStats {
  l0Delta: { count: number; bytes: number };
  l1Delta: { count: number; bytes: number };
  image: { count: number; bytes: number };
}

export interface SearchResult<T> {
  layer: T;
  /** Read the layer within [floor, endLsn). */
  floor: Lsn;
}

function isL0(d: LayerDesc): boolean {
  return d.kind === "delta" && d.keyRange.start === KEY_MIN && d.keyRange.end === KEY_MAX;
}

/** Index of the last element of sorted `a` that is <= k, or -1. */
function floorIndex(a: readonly Key[], k: Key): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo - 1;
}

/**
 * search()'s postcondition: the layer covers `key`, and its window [floor, endLsn) is not
 * empty and starts inside the layer's LSN range (a reader reads the layer there, then goes on
 * below floor). A few compares per search; the message is built only on failure.
 */
function checkedWindow<T extends HasDesc>(r: SearchResult<T>, key: Key, endLsn: Lsn): SearchResult<T> {
  const d = r.layer.desc;
  if (!(d.keyRange.start <= key && key < d.keyRange.end && d.lsnRange.start <= r.floor && r.floor < d.lsnRange.end && r.floor < endLsn)) {
    assert(false, `LayerMap.search(${keyToHex(key)}, ${endLsn}) gave ${d.fileName} with floor ${r.floor}, outside the layer or the window`);
  }
  return r;
}

const byEndDesc = (a: HasDesc, b: HasDesc): number =>
  b.desc.lsnRange.end - a.desc.lsnRange.end || b.desc.lsnRange.start - a.desc.lsnRange.start;

export class LayerMap<T extends HasDesc> {
  readonly layers: readonly T[];
  private readonly l0: T[];
  /** Segment boundaries, ascending, always starting at KEY_MIN and ending at KEY_MAX. */
  private readonly bounds: Key[];
  private readonly segDeltas: T[][];
  private readonly segImages: T[][];
  private readonly byName: Map<string, T>;
  /** Computed on first use: a map never changes, so metrics read it once per map. */
  private stats_: LayerStats | null = null;

  constructor(layers: readonly T[]) {
    this.layers = layers;
    this.byName = new Map();
    const boundSet = new Set<Key>([KEY_MIN, KEY_MAX]);
    const l0: T[] = [];
    for (const l of layers) {
      assert(!this.byName.has(l.desc.fileName), `duplicate layer ${l.desc.fileName}`);
      this.byName.set(l.desc.fileName, l);
      if (isL0(l.desc)) l0.push(l);
      else {
        boundSet.add(l.desc.keyRange.start);
        boundSet.add(l.desc.keyRange.end);
      }
    }
    l0.sort(byEndDesc);
    this.l0 = l0;
    this.bounds = [...boundSet].sort();
    const nseg = this.bounds.length - 1;
    this.segDeltas = Array.from({ length: nseg }, () => []);
    this.segImages = Array.from({ length: nseg }, () => []);
    for (const l of layers) {
      if (isL0(l.desc)) continue;
      const first = floorIndex(this.bounds, l.desc.keyRange.start);
      const target = l.desc.kind === "delta" ? this.segDeltas : this.segImages;
      for (let s = first; s < nseg && this.bounds[s]! < l.desc.keyRange.end; s++) target[s]!.push(l);
    }
    for (const list of this.segDeltas) list.sort(byEndDesc);
    for (const list of this.segImages) list.sort(byEndDesc);
  }

  static empty<T extends HasDesc>(): LayerMap<T> {
    return new LayerMap<T>([]);
  }

  /** A new map with `added` and without the layers named in `removed`. */
  with(added: readonly T[], removed: readonly string[]): LayerMap<T> {
    const gone = new Set(removed);
    for (const name of removed) assert(this.byName.has(name), `removing unknown layer ${name}`);
    return new LayerMap<T>([...this.layers.filter((l) => !gone.has(l.desc.fileName)), ...added]);
  }

  get(fileName: string): T | undefined {
    return this.byName.get(fileName);
  }

  get size(): number {
    return this.layers.length;
  }

  l0Layers(): readonly T[] {
    return this.l0;
  }

  stats(): LayerStats {
    if (this.stats_ !== null) return this.stats_;
    const st: LayerStats = { l0Delta: { count: 0, bytes: 0 }, l1Delta: { count: 0, bytes: 0 }, image: { count: 0, bytes: 0 } };
    for (const l of this.layers) {
      const d = l.desc;
      const slot = d.kind === "image" ? st.image : isL0(d) ? st.l0Delta : st.l1Delta;
      slot.count++;
      slot.bytes += d.fileSize;
    }
    this.stats_ = st;
    return st;
  }

  private segmentOf(key: Key): number {
    const s = floorIndex(this.bounds, key);
    return s >= 0 && s < this.bounds.length - 1 ? s : -1;
  }

  /**
   * The layer to read next for `key` strictly below `endLsn`, and the floor down to which to
   * read it; null when no layer holds anything for key below endLsn. An image wins when it
   * is at least as new as the newest delta's last LSN; otherwise the delta is read only down
   * to just above the image, so the image is not skipped.
   */
  search(key: Key, endLsn: Lsn): SearchResult<T> | null {
    let delta: T | null = null;
    for (const l of this.l0) {
      if (l.desc.lsnRange.start < endLsn) {
        delta = l;
        break;
      }
    }
    let image: T | null = null;
    const s = this.segmentOf(key);
    if (s >= 0) {
      for (const l of this.segDeltas[s]!) {
        if (l.desc.lsnRange.start < endLsn) {
          if (delta === null || l.desc.lsnRange.end > delta.desc.lsnRange.end) delta = l;
          break;
        }
      }
      for (const l of this.segImages[s]!) {
        if (l.desc.lsnRange.start < endLsn) {
          image = l;
          break;
        }
      }
    }
    if (image !== null) {
      const imgLsn = image.desc.lsnRange.start;
      // Compare with the top of the window we would read the delta in, not its nominal end:
      // otherwise a delta above the window could make us read an empty window forever.
      if (delta === null || imgLsn + 1 >= Math.min(delta.desc.lsnRange.end, endLsn))
        return checkedWindow({ layer: image, floor: imgLsn }, key, endLsn);
      return checkedWindow({ layer: delta, floor: lsnMax(delta.desc.lsnRange.start, lsnAdd(imgLsn, 1)) }, key, endLsn);
    }
    if (delta !== null) return checkedWindow({ layer: delta, floor: delta.desc.lsnRange.start }, key, endLsn);
    return null;
  }

  /** Is every key of `range` covered by image layers with fromLsn <= lsn <= toLsn? (GC) */
  imageCoverageExists(range: KeyRange, fromLsn: Lsn, toLsn: Lsn): boolean {
    let s = floorIndex(this.bounds, range.start);
    if (s < 0) return false;
    for (; s < this.bounds.length - 1 && this.bounds[s]! < range.end; s++) {
      let found = false;
      for (const l of this.segImages[s]!) {
        const lsn = l.desc.lsnRange.start;
        if (lsn >= fromLsn && lsn <= toLsn) {
          found = true;
          break;
        }
      }
      if (!found) return false;
    }
    return true;
  }

  /** LSN of the newest image covering every key of `range` at or below `lsn`, or -1 (image creation). */
  newestImageCovering(range: KeyRange, lsn: Lsn): Lsn {
    let s = floorIndex(this.bounds, range.start);
    if (s < 0) return -1 as Lsn;
    let result = Number.POSITIVE_INFINITY;
    for (; s < this.bounds.length - 1 && this.bounds[s]! < range.end; s++) {
      let segBest = -1;
      for (const l of this.segImages[s]!) {
        if (l.desc.lsnRange.start <= lsn) {
          segBest = l.desc.lsnRange.start;
          break;
        }
      }
      if (segBest < result) result = segBest;
      if (result < 0) return -1 as Lsn;
    }
    return (result === Number.POSITIVE_INFINITY ? -1 : result) as Lsn;
  }

  /**
   * The tallest stack of deltas over any key of `range` holding LSNs in (aboveLsn, uptoLsn]
   * (image creation: how many deltas a read would cross).
   */
  countDeltas(range: KeyRange, aboveLsn: Lsn, uptoLsn: Lsn): number {
    let l0count = 0;
    for (const l of this.l0) if (l.desc.lsnRange.end - 1 > aboveLsn && l.desc.lsnRange.start <= uptoLsn) l0count++;
    let best = 0;
    let s = floorIndex(this.bounds, range.start);
    if (s < 0) s = 0;
    for (; s < this.bounds.length - 1 && this.bounds[s]! < range.end; s++) {
      let n = 0;
      for (const l of this.segDeltas[s]!) if (l.desc.lsnRange.end - 1 > aboveLsn && l.desc.lsnRange.start <= uptoLsn) n++;
      if (n > best) best = n;
    }
    return best + l0count;
  }
}
