/**
 * src/pg: everything about PostgreSQL 15 itself. So far:
 * - wal: the WAL stream decoder, record/page formats, full-page images, rmgr names (./wal)
 * - compress: pglz, raw LZ4 block and zstd decompression (./compress)
 */
export * from "./compress/index.js";
export * from "./wal/index.js";
