/**
 * The walk down one timeline's historic layers for one key: ask the layer map for the next
 * layer below the current LSN, read it within its window, repeat, until a value completes
 * the read, an image says the key does not exist, or no layer is left. Shared by the
 * timeline (main thread) and the image-creation job (workers).
 */
import { assert } from "../types/assert.js";
import type { Key } from "../types/key.js";
import { type Lsn, lsnMax } from "../types/lsn.js";
import type { HistoricLayer } from "./historic_layer.js";
import type { LayerMap } from "./layer_map.js";
import type { ReconstructState } from "./reconstruct_state.js";

export enum WalkStatus {
  /** A will_init value ended the read. */
  Complete = 0,
  /** An image layer covering the key at an LSN inside the window does not hold it: the key does not exist. */
  Absent = 1,
  /** Nothing more on this timeline above the floor; `WalkResult.end` says where the walk stopped. */
  Continue = 2,
}

/** Bound on layers visited by one read on one timeline (each step strictly lowers the LSN anyway). */
export const MAX_LAYERS_PER_READ = 100_000;

/**
 * Walk `map` for `key` over LSNs [floorLimit, endLsn). Returns the status; for Continue, the
 * LSN the walk got down to is written to `out[0]` (the caller continues below it, e.g. in
 * the ancestor). `out` is caller-owned scratch so the hot path allocates nothing.
 */
export function walkHistoric(
  map: LayerMap<HistoricLayer>,
  key: Key,
  endLsn: Lsn,
  floorLimit: Lsn,
  state: ReconstructState,
  out: Float64Array,
): WalkStatus {
  let end = endLsn;
  for (let steps = 0; ; steps++) {
    assert(steps < MAX_LAYERS_PER_READ, "read visited too many layers");
    if (end <= floorLimit) break;
    const r = map.search(key, end);
    if (r === null) break;
    const floor = lsnMax(r.floor, floorLimit);
    assert(floor < end, "layer window must not be empty");
    if (r.layer.getValues(key, floor, end, state)) return WalkStatus.Complete;
    if (r.layer.isImage && r.floor >= floorLimit) return WalkStatus.Absent;
    end = floor;
  }
  out[0] = end;
  return WalkStatus.Continue;
}
