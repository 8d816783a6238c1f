/**
 * MetricsSink: what the storage layers observe at the moment something happens (a read that
 * waited for WAL, how long a flush took, WAL received). src/main implements it with
 * prom-client on the node's own registry; nothing below src/main imports prom-client.
 * Values that can be read at scrape time (LSNs, layer counts, cache counters) are pulled by
 * src/main/metrics.ts instead and never pass through here.
 *
 * Calls are cheap (a histogram observe or a counter add): once per operation or per WAL
 * message, never per page or per record.
 */

/**
 * Storage operations timed in `pageserver_storage_operations_seconds_global`. The label values are
 * Neon's (its StorageTimeOperation), so its dashboards' selectors match; `basebackup` is ours
 * (Neon times it in a metric of its own).
 */
export type StorageOperation = "layer flush" | "compact" | "create images" | "gc" | "logical size" | "basebackup";

export const STORAGE_OPERATIONS: readonly StorageOperation[] = [
  "layer flush",
  "compact",
  "create images",
  "gc",
  "logical size",
  "basebackup",
];

export interface MetricsSink {
  /** A read waited `seconds` for ingest to reach its LSN (successful or not). */
  waitLsn(seconds: number): void;
  /** A storage operation that did work took `seconds` (successful or not). */
  storageOperation(op: StorageOperation, seconds: number): void;
  /** One message of WAL from a source: `records` decoded records in `bytes` bytes. */
  walReceived(records: number, bytes: number): void;
  /** A read applied WAL records to rebuild a value (on the main thread or the redo pool): `seconds` it took. */
  walRedo(seconds: number): void;
}

/** The sink of a timeline or tenant built without metrics (tests of the storage layers alone). */
export const NO_METRICS: MetricsSink = {
  waitLsn: () => undefined,
  storageOperation: () => undefined,
  walReceived: () => undefined,
  walRedo: () => undefined,
};

/** Seconds since `start_ms` (a performance.now() reading). */
export function secondsSince(start_ms: number): number {
  return (performance.now() - start_ms) / 1000;
}
