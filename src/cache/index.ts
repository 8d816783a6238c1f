/**
 * src/cache: the shared page cache. Offers the contract (api.ts: PageCacheApi, BlockSource,
 * PageKind, PAGE_SIZE, stats types), its implementation over one SharedArrayBuffer
 * (PageCache: create in the main thread, attach in workers) and the Atomics lock primitives
 * it is built on (lock.ts), which other modules may reuse for their own shared words.
 */
export * from "./api.js";
export * from "./lock.js";
export * from "./page_cache.js";
