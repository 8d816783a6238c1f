/**
 * src/pg: everything about PostgreSQL 15 itself.
 * - wal: the WAL stream decoder, record/page formats, full-page images, rmgr names
 * - compress: pglz, raw LZ4 block and zstd decompression
 * - replication: physical replication client, WalReceiver, BASE_BACKUP client
 * - datadir: key mapping, directory values, DatadirWriter/Snapshot, import of data dirs and tars
 * - ingest: WalIngest, one decoded record → datadir modifications
 * - redo: pageserver records (CLOG, multixact, VM) and PgRedo, the timelines' redo manager
 * - control, page, basebackup: pg_control/CheckPoint, page LSN/checksum, base backup tars
 */
export * from "./compress/index.js";
export * from "./wal/index.js";
export * from "./replication/index.js";
export * as datadir from "./datadir/index.js";
export { WalIngest } from "./ingest/walingest.js";
export { PgRedo } from "./redo/pg_redo.js";
export * from "./redo/native.js";
export * from "./control.js";
export { pageChecksum, pageIsNew, pageLsn, setPageChecksum, setPageLsn } from "./page.js";
export { basebackupTar, checkpointLocation, checkpointRecordEnd, type BasebackupOptions } from "./basebackup.js";
