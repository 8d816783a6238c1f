/**
 * What delta and image layer files share when opened: the name must be a layer name of the
 * right kind, the header must verify and agree with the ranges in the name, the index
 * metadata must be consistent; the root node is read, verified, and kept. (Writing them is
 * layer_file_writer.ts.)
 */
import * as path from "node:path";
import type { PageCacheApi } from "../cache/api.js";
import { CorruptionError, InvalidArgumentError } from "../types/errors.js";
import { BlockFile } from "./block_file.js";
import { BLOCK_SIZE } from "./block_seal.js";
import { type BtreeMeta, validateBtreeMeta } from "./disk_btree.js";
import { HEADER_BLK, readLayerHeader } from "./layer_header.js";
import { type LayerDesc, type LayerKind, parseLayerName } from "./layer_name.js";

export interface OpenedLayerFile {
  file: BlockFile;
  desc: LayerDesc;
  meta: BtreeMeta;
  valuesBytes: number;
  rootNode: Uint8Array;
}

export function openLayerFile(cache: PageCacheApi, filePath: string, kind: LayerKind, keyWidth: number): OpenedLayerFile {
  const fileName = path.basename(filePath);
  const named = parseLayerName(fileName);
  if (named === null || named.kind !== kind)
    throw new InvalidArgumentError(`${filePath}: not ${kind === "delta" ? "a delta" : "an image"} layer file name`);
  const file = BlockFile.open(cache, filePath);
  try {
    const h = readLayerHeader(file, kind, new Uint8Array(BLOCK_SIZE));
    // An image's header holds its one LSN (and 0 as the end); a delta's holds its range.
    const lsnAgrees = h.lsnStart === named.lsnRange.start && (kind === "image" || h.lsnEnd === named.lsnRange.end);
    if (h.keyStart !== named.keyRange.start || h.keyEnd !== named.keyRange.end || !lsnAgrees) {
      throw new CorruptionError(filePath, HEADER_BLK, "key or LSN range in the header does not match the file name");
    }
    const meta: BtreeMeta = {
      startBlk: h.indexStartBlk,
      leafEndBlk: h.indexLeafEndBlk,
      rootBlk: h.indexRootBlk,
      depth: h.indexDepth,
      numEntries: h.entryCount,
    };
    validateBtreeMeta(file, HEADER_BLK, meta, keyWidth, h.indexKeyWidth);
    const rootNode = new Uint8Array(BLOCK_SIZE);
    file.read(meta.rootBlk, rootNode); // verified; parsed (and checked) on every use
    const desc: LayerDesc = { kind, keyRange: named.keyRange, lsnRange: named.lsnRange, fileName, fileSize: file.sizeBytes };
    return { file, desc, meta, valuesBytes: h.valuesBytes, rootNode };
  } catch (e) {
    file.close();
    throw e;
  }
}
