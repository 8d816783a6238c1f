/**
 * The worker side of the shared page cache: each worker thread attaches once to the
 * SharedArrayBuffer the pool handed it in workerData. Jobs call workerCache().
 */
import { workerData } from "node:worker_threads";
import type { PageCacheApi } from "../cache/api.js";
import { PageCache } from "../cache/index.js";
import { assert } from "../types/assert.js";

let cache: PageCacheApi | null = null;

export interface PoolWorkerData {
  cacheSab: SharedArrayBuffer;
  /** Development only: the TypeScript job module dev_bootstrap.cjs loads. */
  tsJobModule?: string;
}

export function workerCache(): PageCacheApi {
  if (cache === null) {
    const wd = workerData as PoolWorkerData | undefined;
    assert(wd !== undefined && wd.cacheSab instanceof SharedArrayBuffer, "worker started without the page cache buffer");
    cache = PageCache.attach(wd.cacheSab);
  }
  return cache;
}
