/**
 * The commit-time index before the block format: `commit_times.json`, {version: 1, lsns,
 * times_ms}, at most 8,192 entries, thinned to 6,144 when full. CommitTimes.load migrates a
 * file that never thinned (it is then complete) and starts afresh from one that did. This
 * file only reads and checks it: the whole file is validated before anything is migrated,
 * so a bad entry leaves the index empty.
 */
import { readFileSync } from "node:fs";
import { CorruptionError } from "../types/errors.js";
import type { Lsn } from "../types/lsn.js";

/** A legacy index with fewer entries never thinned (it thinned 8,192 down to 6,144): it is complete. */
const LEGACY_NEVER_THINNED = 6144;

export type LegacyCommitTimes = { kind: "thinned"; entries: number } | { kind: "complete"; lsns: Lsn[]; times_ms: number[] };

/** Read and check a legacy index: a CorruptionError names what is wrong. */
export function readLegacyCommitTimes(path: string): LegacyCommitTimes {
  let f: { version?: unknown; lsns?: unknown; times_ms?: unknown };
  try {
    f = JSON.parse(readFileSync(path, "utf8")) as typeof f;
  } catch (e) {
    throw new CorruptionError(path, 0, `unreadable commit-time index: ${(e as Error).message}`);
  }
  const lsns = f?.lsns;
  const times = f?.times_ms;
  if (f?.version !== 1 || !Array.isArray(lsns) || !Array.isArray(times) || lsns.length !== times.length) {
    throw new CorruptionError(path, 0, "commit-time index is not {version: 1, lsns, times_ms} of equal lengths");
  }
  if (lsns.length >= LEGACY_NEVER_THINNED) return { kind: "thinned", entries: lsns.length };
  let prev = -1;
  for (let i = 0; i < lsns.length; i++) {
    const lsn = lsns[i] as unknown;
    const t = times[i] as unknown;
    if (typeof lsn !== "number" || !Number.isSafeInteger(lsn) || lsn <= prev || typeof t !== "number" || !Number.isFinite(t)) {
      throw new CorruptionError(path, 0, `commit-time index entry ${i} is not an ascending LSN with a finite time`);
    }
    prev = lsn;
  }
  return { kind: "complete", lsns: lsns as Lsn[], times_ms: times as number[] };
}
