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
    return this.lsns.length === 0 ? (-1 as Lsn) : this.lsns[this.lsns.length - 1]!;
  }
}

/** What a reconstruction applies: `records` (oldest first, at `lsns`) on `base` (null: the oldest initializes). */
export interface ReconstructPlan {
  base: Uint8Array | null;
  baseAt: Lsn;
  records: Value[];
  lsns: Lsn[];
}

/**
 * The newest image below the records is the base; the records above it, in ascending LSN
 * order, are what redo applies. `fallbackBase`/`fallbackLsn`: a starting page from elsewhere
 * (materialized cache) when the collection is not complete.
 */
export function planReconstruct(rs: ReconstructState, fallbackBase: Uint8Array | null, fallbackLsn: Lsn): ReconstructPlan {
  const n = rs.values.length;
  let base: Uint8Array | null = null;
  let baseAt = -1 as Lsn;
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
  const records: Value[] = [];
  const lsns: Lsn[] = [];
  for (let i = firstRecord; i >= 0; i--) {
    records.push(rs.values[i]!);
    lsns.push(rs.lsns[i]!);
  }
  return { base, baseAt, records, lsns };
}

/**
 * Turn a completed (or based) collection into the value (planReconstruct, then redo).
 * Returns the payload (no tag byte).
 */
export function reconstructValue(
  key: Key,
  rs: ReconstructState,
  redo: WalRedoManager,
  fallbackBase: Uint8Array | null,
  fallbackLsn: Lsn,
): { value: Uint8Array; applied: number; lastLsn: Lsn } {
  const plan = planReconstruct(rs, fallbackBase, fallbackLsn);
  if (plan.records.length === 0) return { value: plan.base!, applied: 0, lastLsn: plan.baseAt };
  let value: Uint8Array;
  try {
    value = redo.apply(key, plan.base, plan.baseAt, plan.records, plan.lsns);
  } catch (e) {
    throw redoFailure(key, e);
  }
  return { value, applied: plan.records.length, lastLsn: plan.lsns[plan.lsns.length - 1]! };
}

/** A redo failure as a PageserverError (typed ones pass through). */
export function redoFailure(key: Key, e: unknown): PageserverError {
  if (e instanceof PageserverError) return e;
  return new PageserverError("internal", `redo of key ${keyToHex(key)} failed: ${(e as Error).message}`, { cause: e });
}
