/**
 * Which layers GC may delete (Neon's rule): a layer goes only if
 *   1. it lies wholly below the cutoff (lsn.end <= cutoff; an image at L has end L+1),
 *   2. it starts above every child branch point (a conservative test against the largest),
 *   3. newer image layers, at LSNs in [lsn.end, cutoff], cover its whole key range.
 * Reads at or above the cutoff then never reach it: the covering images complete them first.
 */
import type { Lsn } from "../types/lsn.js";
import { LayerMap } from "./layer_map.js";
import type { LayerDesc } from "./layer_name.js";

export function planGc(layers: readonly LayerDesc[], cutoffLsn: Lsn, retainLsns: readonly Lsn[]): string[] {
  const map = new LayerMap(layers.map((desc) => ({ desc })));
  const maxRetain = retainLsns.length === 0 ? -1 : Math.max(...retainLsns);
  const remove: string[] = [];
  for (const d of layers) {
    if (d.lsnRange.end > cutoffLsn) continue;
    if (d.lsnRange.start <= maxRetain) continue;
    if (!map.imageCoverageExists(d.keyRange, d.lsnRange.end, cutoffLsn)) continue;
    remove.push(d.fileName);
  }
  return remove;
}
