/**
 * src/pgdata: PostgreSQL 15 mapped onto a timeline (above src/tenant; PostgreSQL's own formats
 * are in src/pg, which knows nothing of timelines).
 * - keys: the dense key map (relations, databases, SLRUs, two-phase, control, checkpoint)
 * - directories: encodings of the directory values
 * - writer: DatadirWriter, batched changes at one LSN (pending_values: its pending data;
 *   pending_directories: its directories and sizes, read-your-writes over a cache)
 * - reader: DatadirSnapshot / DatadirReader reads at an LSN, collectKeyspace, logical size
 * - import: a shut-down data directory (or a base.tar stream) into an empty timeline
 * - walingest: WalIngest, one decoded record → datadir modifications (applied through
 *   Timeline.applyRecord; stored_state: the few whole-datadir reads a record makes), the
 *   records by concern in ingest_relations, ingest_databases, ingest_transactions and
 *   ingest_checkpoint
 * - basebackup: a base backup tar at any LSN
 */
export * from "./directories.js";
export * from "./import.js";
export * from "./keys.js";
export * from "./reader.js";
export * from "./writer.js";
export { WalIngest } from "./walingest.js";
export { basebackupTar, checkpointLocation, checkpointRecordEnd, type BasebackupOptions } from "./basebackup.js";
