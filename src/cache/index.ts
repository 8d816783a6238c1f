/**
 * src/cache: the shared page cache. Offers the contract (api.ts: PageCacheApi, BlockSource,
 * PageKind, PAGE_SIZE, stats types), its implementation over one SharedArrayBuffer
 * (PageCache: create in the main thread, attach in workers; built from layout.ts, tag_hash.ts,
 * stats.ts and slot_table.ts, which stay internal) and the Atomics lock primitives it is built
 * on (lock.ts), which other modules may reuse for their own shared words.
 */
export * from "./api.js";
export { DEFAULT_CACHE_SIZE_BYTES, MAX_STATS_ROWS, SLOT_FREE, SLOT_IO_IN_PROGRESS, SLOT_VALID, USAGE_MAX } from "./layout.js";
export * from "./lock.js";
export * from "./page_cache.js";
export { AllSlotsPinnedError } from "./slot_table.js";
