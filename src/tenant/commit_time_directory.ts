/**
 * The directory of a commit-time index's full blocks, in memory: per block its first and last
 * entry LSN, its entry count and the running maximum of the times in blocks 0..i (monotonic,
 * so "the first block holding an entry past T" is a binary search). One Float64Array per
 * field, grown by doubling up to MAX_BLOCKS: no object per block.
 *
 * Invariants: first[i] ≤ last[i] < first[i + 1]; runMax is non-decreasing; n ≤ MAX_BLOCKS.
 */
import { assert } from "../types/assert.js";
import type { Lsn } from "../types/lsn.js";
import { MAX_BLOCKS } from "./commit_time_format.js";

/** `a`, or a copy grown by doubling to hold `need` slots (bounded by MAX_BLOCKS). */
function growF64(a: Float64Array<ArrayBuffer>, need: number): Float64Array<ArrayBuffer> {
  if (need <= a.length) return a;
  assert(need <= MAX_BLOCKS, "commit-time index beyond its block bound");
  const b = new Float64Array(Math.min(MAX_BLOCKS, Math.max(need, a.length * 2)));
  b.set(a);
  return b;
}

export class BlockDirectory {
  /** Blocks in the directory (changed only by push, truncate and dropFirst). */
  n = 0;
  first: Float64Array<ArrayBuffer> = new Float64Array(4);
  last: Float64Array<ArrayBuffer> = new Float64Array(4);
  count: Float64Array<ArrayBuffer> = new Float64Array(4);
  /** Largest time in blocks 0..i. */
  runMax: Float64Array<ArrayBuffer> = new Float64Array(4);

  get memoryBytes(): number {
    return (this.first.length + this.last.length + this.count.length + this.runMax.length) * 8;
  }

  /** The last entry LSN of block i. */
  lastLsn(i: number): Lsn {
    return this.last[i]! as Lsn;
  }

  /** Append a block (entries after every block before it). */
  push(first: number, last: number, count: number, maxTime: number): void {
    const n = this.n;
    assert(n === 0 || first > this.last[n - 1]!, "commit-time directory: blocks must ascend by LSN");
    this.first = growF64(this.first, n + 1);
    this.last = growF64(this.last, n + 1);
    this.count = growF64(this.count, n + 1);
    this.runMax = growF64(this.runMax, n + 1);
    this.first[n] = first;
    this.last[n] = last;
    this.count[n] = count;
    this.runMax[n] = n > 0 ? Math.max(this.runMax[n - 1]!, maxTime) : maxTime;
    this.n = n + 1;
  }

  /** How many blocks start at or below `lsn` (the last of them is the one that may hold its floor). */
  startingAtOrBelow(lsn: Lsn): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.first[mid]! <= lsn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The first block whose running maximum passes `t_us` (it holds the first entry past it); n: none. */
  firstWithTimeAfter(t_us: number): number {
    let lo = 0;
    let hi = this.n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.runMax[mid]! > t_us) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** Entries in blocks [from, to). */
  entriesIn(from: number, to: number): number {
    let c = 0;
    for (let j = from; j < to; j++) c += this.count[j]!;
    return c;
  }

  /** Keep only the first `n` blocks (the ones above were cut off or cleared). */
  truncate(n: number): void {
    assert(n <= this.n, "commit-time directory: truncating beyond its end");
    this.n = n;
  }

  /** Drop the first `d` blocks (trimmed below the GC cutoff). */
  dropFirst(d: number): void {
    assert(d <= this.n, "commit-time directory: dropping more blocks than it holds");
    this.first.copyWithin(0, d, this.n);
    this.last.copyWithin(0, d, this.n);
    this.count.copyWithin(0, d, this.n);
    this.runMax.copyWithin(0, d, this.n);
    this.n -= d;
  }
}
