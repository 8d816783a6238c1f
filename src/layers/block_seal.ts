/**
 * The block of every layer file (and of the commit-times file): its size, the payload it
 * carries and the seal that ends it.
 *
 * Owns: BLOCK_SIZE, BLOCK_PAYLOAD, MAX_BLOCKS, sealBlock and blockSealOk.
 *
 * Block (PAGE_SIZE = 8192 bytes):
 *
 *   +-------------------------------+----------------------------------------------+
 *   | 0 .. 8187   payload           | 8188 .. 8191  u32 BE CRC32C(payload, seed =   |
 *   |             (BLOCK_PAYLOAD)   |               block number)                   |
 *   +-------------------------------+----------------------------------------------+
 *
 * Seeding the CRC with the block number also catches a block written or read at the wrong
 * position. Unused payload bytes are zero (and covered by the CRC, like everything else).
 *
 * Invariants: a block is exactly one page of the shared cache (BLOCK_SIZE = PAGE_SIZE), so a
 * verified block enters the cache as is; nothing read from disk is trusted before its seal
 * is checked (BlockFile.readBlockInto).
 */
import { crc32c } from "@node-rs/crc32";
import { PAGE_SIZE } from "../cache/api.js";
import { assert } from "../types/assert.js";
import { readU32BE, writeU32BE } from "../types/bytes.js";

export const BLOCK_SIZE = PAGE_SIZE;
/** Bytes of the seal at the end of every block: a u32 CRC32C. */
export const BLOCK_SEAL_BYTES = 4;
/** Bytes of a block available to its content; the last BLOCK_SEAL_BYTES hold the seal. */
export const BLOCK_PAYLOAD = BLOCK_SIZE - BLOCK_SEAL_BYTES;
/** Block numbers are u32 on disk (2^32 × 8 kB = 32 TiB: far beyond any layer file). */
export const MAX_BLOCKS = 0xffff_ffff;

// The layout ties: a block is one cache page, the seal is its last u32, and the payload is
// everything before it (offsets into a block are u16-sized in the B-tree nodes).
assert(BLOCK_SIZE === PAGE_SIZE, "a block is one page of the shared cache");
assert(BLOCK_PAYLOAD + BLOCK_SEAL_BYTES === BLOCK_SIZE && BLOCK_PAYLOAD > 0, "the seal ends the block");
assert(BLOCK_SIZE <= 0x1_0000, "offsets inside a block fit a u16");

/** Write the seal of `block` (BLOCK_SIZE bytes) in place, for block number `blkno`. */
export function sealBlock(block: Uint8Array, blkno: number): void {
  assert(block.length === BLOCK_SIZE, "sealBlock: not a block");
  const crc = crc32c(block.subarray(0, BLOCK_PAYLOAD), blkno >>> 0);
  writeU32BE(block, BLOCK_PAYLOAD, crc);
}

/** True when the seal of `block` matches its content and block number. */
export function blockSealOk(block: Uint8Array, blkno: number): boolean {
  return crc32c(block.subarray(0, BLOCK_PAYLOAD), blkno >>> 0) === readU32BE(block, BLOCK_PAYLOAD);
}
