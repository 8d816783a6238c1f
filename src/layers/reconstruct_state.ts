/**
 * ReconstructState: what a read of one key collects on its way down the layers: values
 * newest first, until an image or an initializing record ("will_init") completes it.
 * One instance is reused across reads (reset()) so a read allocates no arrays.
 */
import { assert } from "../types/assert.js";
import type { Lsn } from "../types/lsn.js";
import { type Value, valueWillInit } from "../types/value.js";

/** Longest chain of values one read may collect before it is refused (a bound, not a tuning knob). */
export const MAX_VALUES_PER_READ = 1_000_000;

export class ReconstructState {
  readonly lsns: Lsn[] = [];
  readonly values: Value[] = [];
  complete = false;
  /** Number of layers visited (metrics: layers per read). */
  layersVisited = 0;

  reset(): void {
    this.lsns.length = 0;
    this.values.length = 0;
    this.complete = false;
    this.layersVisited = 0;
  }

  /** Add the next-older value. Returns true when the read is complete. */
  add(lsn: Lsn, value: Value): boolean {
    assert(!this.complete, "add after complete");
    const n = this.lsns.length;
    assert(n === 0 || lsn < this.lsns[n - 1]!, "values must arrive newest first, strictly decreasing LSN");
    assert(n < MAX_VALUES_PER_READ, "reconstruct chain too long");
    this.lsns.push(lsn);
    this.values.push(value);
    if (valueWillInit(value)) this.complete = true;
    return this.complete;
  }

  /** LSN of the oldest value collected so far (the walk continues strictly below it). */
  oldestLsn(): Lsn {
    return this.lsns.length === 0 ? -1 : this.lsns[this.lsns.length - 1]!;
  }
}
