/**
 * The header of delta and image layer files (block 0): encodeLayerHeader / readLayerHeader.
 *
 * Layer file:
 *
 *   block 0                 header (below)
 *   blocks 1 .. V-1         value stream: blobs back to back in the payloads, spanning blocks
 *                           (blob_io.ts)
 *   blocks V .. L-1         B-tree leaves, in key order (disk_btree.ts)
 *   blocks L .. R           B-tree internal nodes, level by level; R = root = last block
 *
 * Header (block 0 payload, integers big-endian, u64 as hi/lo u32 halves, no BigInt):
 *
 *   off  size  field
 *   0    4     magic: 'PSDL' delta / 'PSIL' image
 *   4    2     format version (1)
 *   6    2     header bytes used (LAYER_HEADER_BYTES)
 *   8    18    key range start
 *   26   18    key range end (exclusive)
 *   44   8     delta: LSN range start   image: the image's LSN
 *   52   8     delta: LSN range end     image: 0
 *   60   8     entry count
 *   68   8     value stream length in bytes (logical)
 *   76   4     index start block (= first block after the values = first leaf)
 *   80   4     index leaf end block (one past the last leaf)
 *   84   4     index root block
 *   88   4     index depth (1 = the root is a leaf)
 *   92   4     total blocks in the file
 *   96   4     index key width in bytes (26 delta, 18 image)
 *   100  ..    zero
 *   8188 4     block seal = the header's CRC32C
 *
 *
 * Invariants: nothing read from disk is trusted before its seal is checked; every number read
 * is range-checked against the others and the file's size before use; any failure is a
 * CorruptionError naming the file and the block.
 */
import { assert } from "../types/assert.js";
import { readU16BE, readU32BE, readU64BEOrNeg, writeU16BE, writeU32BE, writeU64BE } from "../types/bytes.js";
import { CorruptionError } from "../types/errors.js";
import { KEY_SIZE, type Key, keyFromBytes, keyToBytes } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import { BLOB_HEADER_BYTES, VALUES_START_BLK, valueBlocksFor } from "./blob_io.js";
import type { BlockFile } from "./block_file.js";
import { BLOCK_PAYLOAD, BLOCK_SIZE } from "./block_seal.js";

export const DELTA_MAGIC = 0x5053_444c; // 'PSDL'
export const IMAGE_MAGIC = 0x5053_494c; // 'PSIL'
export const LAYER_FORMAT_VERSION = 1;
export const LAYER_HEADER_BYTES = 100;
export const HEADER_BLK = 0;

// The header's fields end where LAYER_HEADER_BYTES says (the last is the u32 key width at
// 96), it fits the payload of block 0, and the value stream starts right after it.
assert(8 + 2 * KEY_SIZE === 44, "the two keys fill bytes 8..44 of the header");
assert(96 + 4 === LAYER_HEADER_BYTES, "the header fields end at LAYER_HEADER_BYTES");
assert(LAYER_HEADER_BYTES <= BLOCK_PAYLOAD, "the layer header fits one block's payload");
assert(VALUES_START_BLK === HEADER_BLK + 1, "the value stream follows the header block");

export interface LayerHeader {
  kind: "delta" | "image";
  keyStart: Key;
  keyEnd: Key;
  /** Delta: LSN range start. Image: the image's LSN. */
  lsnStart: Lsn;
  /** Delta: LSN range end (exclusive). Image: 0. */
  lsnEnd: Lsn;
  entryCount: number;
  /** Logical length of the value stream. */
  valuesBytes: number;
  /** Index (B-tree) location; see disk_btree.ts BtreeMeta. */
  indexStartBlk: number;
  indexLeafEndBlk: number;
  indexRootBlk: number;
  indexDepth: number;
  totalBlocks: number;
  indexKeyWidth: number;
}

/** Fill `block` (PAGE_SIZE bytes) with the header; the caller seals it as block 0. */
export function encodeLayerHeader(h: LayerHeader, block: Uint8Array): void {
  block.fill(0);
  writeU32BE(block, 0, h.kind === "delta" ? DELTA_MAGIC : IMAGE_MAGIC);
  writeU16BE(block, 4, LAYER_FORMAT_VERSION);
  writeU16BE(block, 6, LAYER_HEADER_BYTES);
  keyToBytes(h.keyStart, block, 8);
  keyToBytes(h.keyEnd, block, 8 + KEY_SIZE);
  writeU64BE(block, 44, h.lsnStart);
  writeU64BE(block, 52, h.lsnEnd);
  writeU64BE(block, 60, h.entryCount);
  writeU64BE(block, 68, h.valuesBytes);
  writeU32BE(block, 76, h.indexStartBlk);
  writeU32BE(block, 80, h.indexLeafEndBlk);
  writeU32BE(block, 84, h.indexRootBlk);
  writeU32BE(block, 88, h.indexDepth);
  writeU32BE(block, 92, h.totalBlocks);
  writeU32BE(block, 96, h.indexKeyWidth);
}

/**
 * Read and check the header of `file`: seal, magic (must be `kind`), version, and that the
 * regions it names are consistent with each other and with the file's size. The B-tree's own
 * fields are checked further by the B-tree reader.
 */
export function readLayerHeader(file: BlockFile, kind: "delta" | "image", block: Uint8Array): LayerHeader {
  const p = file.path;
  const bad = (reason: string): CorruptionError => new CorruptionError(p, HEADER_BLK, reason);
  if (file.sizeBytes < BLOCK_SIZE) throw bad(`file of ${file.sizeBytes} bytes is shorter than its header block (truncated?)`);
  file.readBlockInto(HEADER_BLK, block); // direct: read once at open, no point caching it
  const magic = readU32BE(block, 0);
  const want = kind === "delta" ? DELTA_MAGIC : IMAGE_MAGIC;
  if (magic !== want) {
    const what = magic === DELTA_MAGIC ? "a delta layer" : magic === IMAGE_MAGIC ? "an image layer" : "not a layer file";
    throw bad(`bad magic 0x${magic.toString(16)} (${what}); expected ${kind} layer`);
  }
  const version = readU16BE(block, 4);
  if (version !== LAYER_FORMAT_VERSION) throw bad(`unsupported format version ${version}`);
  if (readU16BE(block, 6) !== LAYER_HEADER_BYTES) throw bad(`bad header size ${readU16BE(block, 6)}`);
  const h: LayerHeader = {
    kind,
    keyStart: keyFromBytes(block, 8),
    keyEnd: keyFromBytes(block, 8 + KEY_SIZE),
    lsnStart: readU64BEOrNeg(block, 44) as Lsn,
    lsnEnd: readU64BEOrNeg(block, 52) as Lsn,
    entryCount: readU64BEOrNeg(block, 60),
    valuesBytes: readU64BEOrNeg(block, 68),
    indexStartBlk: readU32BE(block, 76),
    indexLeafEndBlk: readU32BE(block, 80),
    indexRootBlk: readU32BE(block, 84),
    indexDepth: readU32BE(block, 88),
    totalBlocks: readU32BE(block, 92),
    indexKeyWidth: readU32BE(block, 96),
  };
  if (!(h.keyStart < h.keyEnd)) throw bad("empty key range");
  if (h.lsnStart < 0 || h.lsnEnd < 0) throw bad("LSN beyond 2^53");
  if (kind === "delta" ? !(h.lsnStart < h.lsnEnd) : h.lsnEnd !== 0) throw bad(`bad LSN range ${h.lsnStart}..${h.lsnEnd}`);
  if (h.entryCount < 0 || h.valuesBytes < 0) throw bad("count beyond 2^53");
  // Truncation first: it explains most of the inconsistencies below and names the missing block.
  if (h.totalBlocks * BLOCK_SIZE > file.sizeBytes) {
    throw new CorruptionError(p, file.numBlocks, `file truncated: ${file.sizeBytes} bytes, header says ${h.totalBlocks} blocks`);
  }
  if (h.totalBlocks * BLOCK_SIZE !== file.sizeBytes)
    throw new CorruptionError(p, h.totalBlocks, `${file.sizeBytes - h.totalBlocks * BLOCK_SIZE} bytes after the last block`);
  if (h.indexStartBlk !== VALUES_START_BLK + valueBlocksFor(h.valuesBytes)) {
    throw bad(`index start block ${h.indexStartBlk} does not follow a value stream of ${h.valuesBytes} bytes`);
  }
  if (h.entryCount > 0 && h.valuesBytes < h.entryCount * (BLOB_HEADER_BYTES + 1))
    throw bad(`${h.entryCount} entries cannot fit ${h.valuesBytes} bytes of values`);
  if (h.entryCount === 0 && h.valuesBytes !== 0) throw bad("values without entries");
  if (!(h.indexRootBlk + 1 === h.totalBlocks)) throw bad(`index root block ${h.indexRootBlk} is not the last block`);
  return h;
}
