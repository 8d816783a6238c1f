/**
 * src/pg: everything about PostgreSQL 15 itself.
 * - wal: the WAL stream decoder, record/page formats, full-page images, rmgr names
 * - compress: pglz, raw LZ4 block and zstd decompression
 * - replication: physical replication client, WalReceiver, BASE_BACKUP client
 * - redo: pageserver records (CLOG, multixact, VM), PgRedo (the timelines' redo manager), native
 *   redo of PostgreSQL records rmgr by rmgr (registry: rmgrRedo, rmgrsWithoutNativeRedo; page
 *   primitives: redo/bufpage.ts, masks: redo/bufmask.ts)
 * - control, page: pg_control/CheckPoint, page LSN/checksum
 * It imports only src/types: the mapping onto timelines is src/pgdata.
 */
export * from "./compress/index.js";
export * from "./wal/index.js";
export * from "./replication/index.js";
export { PgRedo } from "./redo/pg_redo.js";
export * from "./redo/native.js";
export { PAGE_RMGRS, type RmgrRedo, rmgrRedo, rmgrsWithoutNativeRedo } from "./redo/redo_table.js";
export * from "./control.js";
export { pageChecksum, pageIsNew, pageLsn, setPageChecksum, setPageLsn } from "./page.js";
