/**
 * ReconstructState: what a read of one key collects on its way down the layers: values
 * newest first, until an image or an initializing record ("will_init") completes it.
 * One instance is reused across reads (reset()) so a read allocates no arrays.
 */
import { assert } from "../types/assert.js";
import { PageserverError } from "../types/errors.js";
import { type Key, keyToHex } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import type { WalRedoManager } from "../types/redo.js";
import { type Value, ValueTag, valueWillInit } from "../types/value.js";

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

/**
 * Turn a completed (or based) collection into the value: the newest image below the records
 * is the base, records above it are applied in ascending LSN order by `redo`.
 * `fallbackBase`/`fallbackLsn`: a starting page from elsewhere (materialized cache) when the
 * collection is not complete. Returns the payload (no tag byte).
 */
export function reconstructValue(
  key: Key,
  rs: ReconstructState,
  redo: WalRedoManager,
  fallbackBase: Uint8Array | null,
  fallbackLsn: Lsn,
): { value: Uint8Array; applied: number; lastLsn: Lsn } {
  const n = rs.values.length;
  let base: Uint8Array | null = null;
  let baseAt = -1;
  let firstRecord = n - 1; // index (newest-first order) of the oldest record to apply
  if (rs.complete) {
    const oldest = rs.values[n - 1]!;
    if (oldest[0] === ValueTag.Image) {
      base = oldest.subarray(1);
      baseAt = rs.lsns[n - 1]!;
      firstRecord = n - 2;
    }
  } else {
    assert(fallbackBase !== null, "reconstruct without a base");
    base = fallbackBase;
    baseAt = fallbackLsn;
  }
  if (firstRecord < 0) return { value: base!, applied: 0, lastLsn: baseAt };
  const records: Value[] = [];
  const lsns: Lsn[] = [];
  for (let i = firstRecord; i >= 0; i--) {
    records.push(rs.values[i]!);
    lsns.push(rs.lsns[i]!);
  }
  let value: Uint8Array;
  try {
    value = redo.apply(key, base, baseAt, records, lsns);
  } catch (e) {
    if (e instanceof PageserverError) throw e;
    throw new PageserverError("internal", `redo of key ${keyToHex(key)} failed: ${(e as Error).message}`, { cause: e });
  }
  return { value, applied: records.length, lastLsn: lsns[lsns.length - 1]! };
}
