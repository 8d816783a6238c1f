/**
 * Persistent layers: the delta and image layer files, opened by descriptor.
 *
 * Owns only the dispatch by kind; the formats live in delta_layer.ts, image_layer.ts,
 * disk_btree.ts, layer_header.ts, blob_io.ts, block_file.ts and block_seal.ts.
 */
import * as path from "node:path";
import type { PageCacheApi } from "../cache/api.js";
import { CorruptionError } from "../types/errors.js";
import { DeltaLayer } from "./delta_layer.js";
import { ImageLayer } from "./image_layer.js";
import type { LayerDesc } from "./layer_name.js";

export type PersistentLayer = DeltaLayer | ImageLayer;

/**
 * Open the layer file `desc` names in `dir`. A file whose size differs from a known
 * desc.fileSize (> 0) is refused as corrupt (truncated or replaced).
 */
export function openLayer(cache: PageCacheApi, dir: string, desc: LayerDesc): PersistentLayer {
  const filePath = path.join(dir, desc.fileName);
  const layer = desc.kind === "delta" ? DeltaLayer.open(cache, filePath) : ImageLayer.open(cache, filePath);
  if (desc.fileSize > 0 && layer.desc.fileSize !== desc.fileSize) {
    layer.close();
    const blkno = Math.floor(Math.min(desc.fileSize, layer.desc.fileSize) / 8192);
    throw new CorruptionError(filePath, blkno, `file is ${layer.desc.fileSize} bytes, expected ${desc.fileSize}`);
  }
  return layer;
}
