/**
 * The contract between the shared page cache and its users (layer readers, the ephemeral
 * file, the timeline's materialized-page lookups). Implemented by PageCache in page_cache.ts.
 */
import type { Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";

export const PAGE_SIZE = 8192;

/** Kinds of cached pages; also the label of the per-kind counters. */
export enum PageKind {
  /** An immutable block of a layer file: (file id, block number). */
  FileBlock = 0,
  /** A full (hence immutable) block of an ephemeral file: (file id, block number). */
  EphemeralBlock = 1,
  /** A reconstructed page version: (namespace id of a timeline, key, lsn). */
  Materialized = 2,
}
export const PAGE_KIND_NAMES = ["file", "ephemeral", "materialized"] as const;

/** Where a missing block comes from. An object (not a closure) so the hot path allocates nothing. */
export interface BlockSource {
  /**
   * Fill `dst` (exactly PAGE_SIZE bytes) with block `blkno`. Must verify the block (checksum)
   * before returning and throw a CorruptionError otherwise: nothing unverified enters the cache.
   */
  readBlockInto(blkno: number, dst: Uint8Array): void;
}

export interface CacheKindStats {
  hits: number;
  misses: number;
  evictions: number;
}

export interface CacheStats {
  slots: number;
  byKind: Record<(typeof PAGE_KIND_NAMES)[number], CacheKindStats>;
}

/** What every user of the cache calls; PageCache implements it, in any thread. */
export interface PageCacheApi {
  /** A process-wide unique id for a file (shared Atomics counter: workers allocate too). Never reused. */
  allocFileId(): number;
  /** A process-wide unique id for a timeline's materialized pages. Never reused. */
  allocNamespaceId(): number;
  /**
   * Copy block `blkno` of file `fileId` into `dst` (PAGE_SIZE bytes). On a miss, reads it
   * through `source` into a cache slot first. Allocation-free on a hit.
   */
  readBlock(kind: PageKind.FileBlock | PageKind.EphemeralBlock, fileId: number, blkno: number, source: BlockSource, dst: Uint8Array): void;
  /**
   * Materialized page versions, looked up by inexact LSN: copies the newest cached version of
   * (ns, key) with lsn <= `lsn` into `dst` and returns its LSN, or returns -1.
   */
  lookupMaterialized(ns: number, key: Key, lsn: Lsn, dst: Uint8Array): Lsn;
  /** Remember `page` (PAGE_SIZE bytes) as the version of (ns, key) at `lsn`. A duplicate is a no-op. */
  insertMaterialized(ns: number, key: Key, lsn: Lsn, page: Uint8Array): void;
  stats(): CacheStats;
}
