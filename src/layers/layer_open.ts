/**
 * What delta and image layer files share at both ends of their life: sealing a finished file
 * (header block written last, then the durable rename), and opening one (the name must be a
 * layer name of the right kind, the header must verify and agree with the ranges in the
 * name, the index metadata must be consistent; the root node is read, verified, and kept).
 */
import * as path from "node:path";
import type { PageCacheApi } from "../cache/api.js";
import { CorruptionError, InvalidArgumentError } from "../types/errors.js";
import type { Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import { BlockFile, type BlockFileWriter } from "./block_file.js";
import { BLOCK_SIZE } from "./block_seal.js";
import { encodeLayerHeader, HEADER_BLK, readLayerHeader } from "./layer_header.js";
import { type BtreeMeta, validateBtreeMeta } from "./disk_btree.js";
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
  if (named === null || named.kind !== kind) throw new InvalidArgumentError(`${filePath}: not ${kind === "delta" ? "a delta" : "an image"} layer file name`);
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

/**
 * Write the header of a finished layer file (its values and index are written) and make the
 * file durable under its final name. Returns the file size in bytes.
 */
export function sealLayerFile(
  out: BlockFileWriter,
  h: { kind: LayerKind; keyStart: Key; keyEnd: Key; lsnStart: Lsn; lsnEnd: Lsn; valuesBytes: number; meta: BtreeMeta; keyWidth: number },
  finalPath: string,
): number {
  const header = new Uint8Array(BLOCK_SIZE);
  encodeLayerHeader(
    {
      kind: h.kind,
      keyStart: h.keyStart,
      keyEnd: h.keyEnd,
      lsnStart: h.lsnStart,
      lsnEnd: h.lsnEnd,
      entryCount: h.meta.numEntries,
      valuesBytes: h.valuesBytes,
      indexStartBlk: h.meta.startBlk,
      indexLeafEndBlk: h.meta.leafEndBlk,
      indexRootBlk: h.meta.rootBlk,
      indexDepth: h.meta.depth,
      totalBlocks: out.blocksWritten,
      indexKeyWidth: h.keyWidth,
    },
    header,
  );
  out.writeBlock(HEADER_BLK, header);
  return out.finish(finalPath);
}
