/**
 * Decompressors for what PostgreSQL 15 compresses: pglz and raw LZ4 blocks (hand-written),
 * and zstd frames (libzstd through node:zlib, guarded). Each decodes to an exact, caller-known size and throws
 * DecompressError (code "corrupt") on anything else.
 */
export { DecompressError, pglzDecompress, pglzDecompressInto } from "./pglz.js";
export { lz4DecompressBlock, lz4DecompressBlockInto } from "./lz4.js";
export { zstdDecompress, zstdDecompressInto } from "./zstd.js";
