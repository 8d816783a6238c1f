/**
 * The jobs the main thread hands to worker pools: plain data in (paths, ranges, LSNs), layer
 * descriptors out. A job never touches the layer map; the main thread applies its result in
 * one step. `JobRunner` is what timelines call; src/workers/pools.ts implements it on Piscina.
 */
import type { ErrorCode } from "../types/errors.js";
import type { Key, KeyRange } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import type { LayerDesc } from "../layers/layer_name.js";

/** Frozen in-memory layer → one L0 delta file. */
export interface FlushTask {
  ephemeralPath: string;
  lengthBytes: number;
  outDir: string;
  lsnStart: Lsn;
  lsnEnd: Lsn;
}
export interface FlushResult {
  /** null when the layer held no values. */
  desc: LayerDesc | null;
}

/** L0 deltas (a contiguous LSN chain) → L1 deltas cut by key at targetSizeBytes. */
export interface CompactTask {
  dir: string;
  l0: LayerDesc[];
  targetSizeBytes: number;
}
export interface CompactResult {
  added: LayerDesc[];
}

/** One timeline of a read chain: its layers, read strictly below endLsn. */
export interface ChainLink {
  dir: string;
  layers: LayerDesc[];
  endLsn: Lsn;
}

/** Image layers at `lsn` for each partition (tiling it exactly), keys limited to `keyspace`. */
export interface ImageTask {
  outDir: string;
  lsn: Lsn;
  chain: ChainLink[];
  partitions: KeyRange[];
  keyspace: KeyRange[];
  targetSizeBytes: number;
  /** URL of a module whose default export is a WalRedoManager. */
  redoModule: string;
}
export interface ImageResult {
  added: LayerDesc[];
}

export interface GcTask {
  layers: LayerDesc[];
  cutoffLsn: Lsn;
  /** Branch points of child timelines. */
  retainLsns: Lsn[];
}
export interface GcResult {
  remove: string[];
}

/** An import's spill file (ephemeral-file records, all at `lsn`) → sorted by key (import_job.ts). */
export interface ImportRunTask {
  spillPath: string;
  lengthBytes: number;
  outDir: string;
  lsn: Lsn;
  /** Final: image layers tiling the whole key space; else one sorted run. */
  final: boolean;
  targetSizeBytes: number;
}
/** Sorted runs (image layer files at `lsn`, ranked: a later run wins a key) → merged. */
export interface ImportMergeTask {
  runs: string[];
  outDir: string;
  lsn: Lsn;
  final: boolean;
  targetSizeBytes: number;
}
export interface ImportResult {
  added: LayerDesc[];
}

/**
 * One page reconstruction off the main thread: `records` (values, tag byte included, oldest
 * first, at `lsns`) applied on `base` (null when the oldest record initializes the page) by
 * the redo manager at `redoModule`. Everything is a copy: nothing points into the cache.
 */
export interface RedoTask {
  redoModule: string;
  key: Key;
  base: Uint8Array | null;
  baseLsn: Lsn;
  records: Uint8Array[];
  lsns: Lsn[];
}
/** The page, or the typed error redo threw (an Error crossing threads loses its class). */
export type RedoResult = { page: Uint8Array } | { error: { code: ErrorCode; message: string } };

/**
 * Runs jobs on worker threads. `owner` (the tenant id) is who the job is for: each pool
 * serves owners in turn, so one tenant's backlog never queues another's job behind all of it.
 */
export interface JobRunner {
  flush(task: FlushTask, owner: string): Promise<FlushResult>;
  compact(task: CompactTask, owner: string): Promise<CompactResult>;
  images(task: ImageTask, owner: string): Promise<ImageResult>;
  gc(task: GcTask, owner: string): Promise<GcResult>;
  importRun(task: ImportRunTask, owner: string): Promise<ImportResult>;
  importMerge(task: ImportMergeTask, owner: string): Promise<ImportResult>;
  redo(task: RedoTask, owner: string): Promise<RedoResult>;
}

export type { Key };
