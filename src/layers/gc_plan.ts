/**
 * Which layers GC may delete (Neon's rule): a layer goes only if
 *   1. its last LSN is at or below the cutoff,
 *   2. it starts above every child branch point (a conservative test against the largest),
 *   3. image layers at LSNs in [its last LSN, cutoff] cover its whole key range (for an image
 *      layer: strictly newer images). Our images at L hold every value up to and including L,
 *      so an image at a delta's last LSN supersedes the delta.
 * Reads at or above the cutoff then never reach it: the covering images complete them first.
 */
import { type Lsn, lsnAdd } from "../types/lsn.js";
import { LayerMap } from "./layer_map.js";
import type { LayerDesc } from "./layer_name.js";

export function planGc(layers: readonly LayerDesc[], cutoffLsn: Lsn, retainLsns: readonly Lsn[]): string[] {
  const map = new LayerMap(layers.map((desc) => ({ desc })));
  const maxRetain = retainLsns.length === 0 ? -1 : Math.max(...retainLsns);
  const remove: string[] = [];
  for (const d of layers) {
    const lastLsn = lsnAdd(d.lsnRange.end, -1);
    if (lastLsn > cutoffLsn) continue;
    if (d.lsnRange.start <= maxRetain) continue;
    const from = d.kind === "image" ? lsnAdd(lastLsn, 1) : lastLsn;
    if (!map.imageCoverageExists(d.keyRange, from, cutoffLsn)) continue;
    remove.push(d.fileName);
  }
  return remove;
}
