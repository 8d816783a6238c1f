/**
 * The registry of native redo: rmgr id → RmgrRedo. A static table, so what the pageserver
 * can redo is fixed at build time and readable here. Each rmgr module adds ONE import and ONE
 * entry to REDO_TABLE (one entry per rmid: asserted at load).
 *
 * The interface itself lives in ./rmgr_interface.ts (rmgr modules import it from there; importing
 * this registry back would be a cycle).
 *
 * PAGE_RMGRS names the rmgrs whose records change relation pages and that
 * wal_consistency_checking can cover: while one of them has no RmgrRedo, a source must run
 * with wal_consistency_checking including it, so that every block it touches carries an
 * image (rmgrsWithoutNativeRedo() says which).
 */
import { assert } from "../../types/assert.js";
import {
  RM_BRIN_ID,
  RM_BTREE_ID,
  RM_GENERIC_ID,
  RM_GIN_ID,
  RM_GIST_ID,
  RM_HASH_ID,
  RM_HEAP2_ID,
  RM_HEAP_ID,
  RM_SEQ_ID,
  RM_SPGIST_ID,
} from "../wal/rmgr_ids.js";
import { brinRedo } from "./brin.js";
import { btreeRmgrRedo } from "./btree.js";
import { genericRedo } from "./generic.js";
import { ginRedo } from "./gin.js";
import { gistRedo } from "./gist.js";
import { hashRedo } from "./hash.js";
import { heap2Redo, heapRedo } from "./heap.js";
import type { RmgrRedo } from "./rmgr_interface.js";
import { seqRedo } from "./seq.js";
import { spgistRedo } from "./spgist.js";
import { xlogRedo } from "./xlog.js";

export type { RmgrRedo } from "./rmgr_interface.js";

const REDO_TABLE: readonly RmgrRedo[] = [
  xlogRedo,
  heapRedo,
  heap2Redo,
  btreeRmgrRedo,
  hashRedo,
  ginRedo,
  gistRedo,
  seqRedo,
  spgistRedo,
  brinRedo,
  genericRedo,
];

/** Page-touching rmgrs, with their wal_consistency_checking names. */
export const PAGE_RMGRS: readonly { rmid: number; name: string }[] = [
  { rmid: RM_HEAP_ID, name: "heap" },
  { rmid: RM_HEAP2_ID, name: "heap2" },
  { rmid: RM_BTREE_ID, name: "btree" },
  { rmid: RM_HASH_ID, name: "hash" },
  { rmid: RM_GIN_ID, name: "gin" },
  { rmid: RM_GIST_ID, name: "gist" },
  { rmid: RM_SEQ_ID, name: "sequence" },
  { rmid: RM_SPGIST_ID, name: "spgist" },
  { rmid: RM_BRIN_ID, name: "brin" },
  { rmid: RM_GENERIC_ID, name: "generic" },
];

const byRmid: (RmgrRedo | undefined)[] = new Array(256).fill(undefined);
for (const r of REDO_TABLE) {
  assert(byRmid[r.rmid] === undefined, `two RmgrRedo entries for rmgr ${r.rmid}`);
  byRmid[r.rmid] = r;
}
for (const p of PAGE_RMGRS) {
  const r = byRmid[p.rmid];
  assert(r === undefined || r.name === p.name, `RmgrRedo for rmgr ${p.rmid} is named ${r?.name}, expected ${p.name}`);
}

/** The native redo of rmgr `rmid`, or undefined when its records can't be redone here yet. */
export function rmgrRedo(rmid: number): RmgrRedo | undefined {
  return byRmid[rmid];
}

/**
 * The wal_consistency_checking names of the page-touching rmgrs without native redo, in
 * PAGE_RMGRS order: the set a source's wal_consistency_checking must cover today. Empty
 * when every rmgr is redone natively.
 */
export function rmgrsWithoutNativeRedo(): string[] {
  const out: string[] = [];
  for (const p of PAGE_RMGRS) if (byRmid[p.rmid] === undefined) out.push(p.name);
  return out;
}
