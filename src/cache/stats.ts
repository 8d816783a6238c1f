/**
 * The page cache's counters: one row of hits, misses and evictions per kind for each attached
 * thread (in the buffer, see layout.ts), summed on demand.
 *
 * Invariants: a row is claimed by CAS on its owner word (0 → 1) and only its thread writes it,
 * so counting needs no atomics; a thread that attaches the same cache twice (a Piscina worker
 * gets the buffer with every job) keeps one row (threadRows), so rows are bounded by threads;
 * a row given back keeps its counts, which keep being summed. No locks.
 */
import { threadId } from "node:worker_threads";
import { assert } from "../types/assert.js";
import { PageserverError } from "../types/errors.js";
import { type CacheStats, PAGE_KIND_NAMES } from "./api.js";
import { double, MAX_STATS_ROWS, NKINDS, ST_EVICTIONS, ST_HITS, ST_MISSES, ST_PER_KIND, STATS_ROW_DOUBLES } from "./layout.js";

/** Stats rows this thread holds, by cache uid (see the header). */
const threadRows = new Map<string, { row: number; refs: number }>();

/** This thread's stats row of the cache `uidKey`, claimed in the owner words at `ownersBase` of `m`. */
export function claimStatsRow(m: Int32Array, ownersBase: number, uidKey: string): number {
  const held = threadRows.get(uidKey);
  if (held !== undefined) {
    held.refs++;
    return held.row;
  }
  for (let row = 0; row < MAX_STATS_ROWS; row++) {
    if (Atomics.compareExchange(m, ownersBase + row, 0, 1) === 0) {
      threadRows.set(uidKey, { row, refs: 1 });
      return row;
    }
  }
  throw new PageserverError("internal", `page cache: more than ${MAX_STATS_ROWS} threads attached at once (thread ${threadId})`);
}

/** Gives back one claim of `row`; the row is free again once this thread's last claim goes. */
export function releaseStatsRow(m: Int32Array, ownersBase: number, uidKey: string, row: number): void {
  const held = threadRows.get(uidKey);
  assert(held !== undefined && held.row === row, "detach: stats row not held by this thread");
  held.refs--;
  if (held.refs === 0) {
    threadRows.delete(uidKey);
    const prev = Atomics.exchange(m, ownersBase + row, 0);
    assert(prev === 1, "detach: stats row was not claimed");
  }
}

/** Every row's counters summed per kind. */
export function sumStats(statsAll: Float64Array, slots: number): CacheStats {
  const byKind = {} as CacheStats["byKind"];
  for (let kind = 0; kind < NKINDS; kind++) {
    let hits = 0;
    let misses = 0;
    let evictions = 0;
    for (let row = 0; row < MAX_STATS_ROWS; row++) {
      const base = row * STATS_ROW_DOUBLES + kind * ST_PER_KIND;
      hits += double(statsAll, base + ST_HITS);
      misses += double(statsAll, base + ST_MISSES);
      evictions += double(statsAll, base + ST_EVICTIONS);
    }
    const name = PAGE_KIND_NAMES[kind];
    assert(name !== undefined, "stats: a kind without a name");
    byKind[name] = { hits, misses, evictions };
  }
  return { slots, byKind };
}
