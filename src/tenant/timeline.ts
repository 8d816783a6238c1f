/**
 * Timeline: one branch of a tenant's history. Owns put/get@LSN, the open and frozen
 * in-memory layers, the layer map of its files, its metadata file, and the flush loop;
 * compaction, image creation and GC are run by the tenant through the same methods.
 *
 * Read path: open layer → frozen layers (newest first) → historic layers (layer map) →
 * ancestor at the branch LSN, until an image or an initializing record; then redo. The
 * materialized page cache gives a starting point: only values above the cached version are
 * collected. Reads below the GC cutoff are refused; reads above last_record_lsn wait.
 *
 * Invariants:
 * - LSNs handed to put never go below last_record_lsn nor below the open layer's start.
 * - in-memory layers tile [first frozen start, ∞); historic layers end at or below it.
 * - disk_consistent_lsn moves forward only after the L0 file holding data up to it is
 *   durable, and metadata is written after that; a crash in between leaves a "future" L0
 *   that load() deletes.
 * - the layer map is replaced, never mutated: a read sees one consistent set. Reads run
 *   synchronously once their LSN is reached, so no file is unlinked under a running read.
 * - frozen layers, counting flushed ones whose disk_consistent_lsn is not yet recorded, never
 *   exceed max_frozen_layers: at the limit the open layer keeps growing instead, and the
 *   ingest gate (ingest_gate.ts) stops ingest until a flush is recorded. So the flush lag
 *   (last_record_lsn − disk_consistent_lsn) stays below about
 *   (max_frozen_layers + 1) × checkpoint_distance plus one record (an XLOG_SWITCH record
 *   spans the rest of its segment).
 * - a layer whose flush fails stays frozen (and readable) until a later round writes it: the
 *   checkpoints waiting fail with the error, the timeline stays Active (as in Neon).
 * - residency: a historic layer is resident (on local disk) or evicted (held in remote
 *   storage only; evicted_layers.ts keeps the list across restarts). The synchronous read
 *   (getNow, collectRead) throws LayerEvictedError on an evicted layer; the async read (get,
 *   withResidentLayers) downloads it and reads again. Jobs that read files in workers
 *   (compaction, image creation) download and pin their inputs first. A long read that runs
 *   synchronously in steps over the whole datadir (a base backup) leases its LSN
 *   (leaseReadsAt): every layer a read at that LSN may visit, on this timeline and its
 *   ancestors, including layers a flush or compaction creates while it runs, stays resident,
 *   and GC keeps its cutoff at or below the LSN. Eviction (evictLayer) takes only resident,
 *   unpinned, unleased layers, between reads.
 *
 * Lock order: none on this object (single-threaded); the tenant's background mutex orders
 * compaction and GC (never both at once for a tenant), and flushes are one at a time.
 */
import { existsSync, readdirSync, renameSync, rmSync, statSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import { PAGE_SIZE, type PageCacheApi } from "../cache/api.js";
import { advanceAccessTick, HistoricLayer, type LayerDownloader, LayerEvictedError } from "../layers/historic_layer.js";
import { InMemoryLayer } from "../layers/inmemory_layer.js";
import { LayerMap, type LayerStats } from "../layers/layer_map.js";
import { fsyncDirSync as fsyncDir } from "../layers/durable_file.js";
import { type LayerDesc, parseLayerName, TEMP_SUFFIX } from "../layers/layer_name.js";
import { WalkStatus, walkHistoric } from "../layers/read_path.js";
import { planReconstruct, ReconstructState, reconstructValue } from "../layers/reconstruct_state.js";
import type { ChainLink, JobRunner } from "../workers/jobs.js";
import { assert } from "../types/assert.js";
import { BadStateError, GcCutoffError, InvalidArgumentError, PageserverError } from "../types/errors.js";
import { failpoint } from "../types/failpoints.js";
import { type MetricsSink, NO_METRICS, secondsSince } from "../types/metrics_sink.js";
import type { TenantId, TimelineId } from "../types/ids.js";
import { KEY_MAX, KEY_MIN, type Key, type KeyRange } from "../types/key.js";
import { type Lsn, lsnToString, MAX_LSN } from "../types/lsn.js";
import { isValueTag, type Value, type ValueTag } from "../types/value.js";
import { BulkImport, IMPORT_TEMP_DIR } from "./bulk_import.js";
import { CommitTimes, isCommitTimesFile, type LsnForTime, msToPgTimestamp, pgTimestampToMs, resolveLsnForTime, type TimeProbe } from "./commit_times.js";
import { l0Thresholds, type TenantConf } from "./config.js";
import { Backpressure, GATE_OPEN, type GateStats, type GateVerdict, IngestGate } from "./ingest_gate.js";
import { readEvictedLayers, writeEvictedLayers } from "./evicted_layers.js";
import { type AddedLayer, type LayerEvents, NO_LAYER_EVENTS } from "./layer_events.js";
import { readMetadata, type TimelineMetadata, writeMetadata } from "./metadata.js";
import type { WalRedoManager } from "../types/redo.js";
import { SeqWait } from "./seqwait.js";

export enum TimelineState {
  Loading = "Loading",
  Active = "Active",
  Stopping = "Stopping",
  Broken = "Broken",
}

export enum FlushLoopState {
  NotStarted = "not started",
  Running = "running",
  Exited = "exited",
}

/** Which keys exist at an LSN, as sorted half-open ranges (image creation copies only these). */
export type KeyspaceProvider = (timeline: Timeline, lsn: Lsn) => KeyRange[];

export const WHOLE_KEYSPACE: KeyspaceProvider = () => [{ start: KEY_MIN, end: KEY_MAX }];

export interface TimelineDeps {
  cache: PageCacheApi;
  jobs: JobRunner;
  redo: WalRedoManager;
  /** URL of the module whose default export is `redo`, for workers. */
  redoModule: string;
  conf: () => TenantConf;
  log: Logger;
  keyspace?: KeyspaceProvider;
  /** Asks the tenant's compaction loop to run soon (L0 files reached compaction_threshold). */
  wakeCompaction?: () => void;
  /** Observations at event time (wait_lsn, storage operation durations); none when absent. */
  metrics?: MetricsSink;
}

/** PITR bookkeeping: (wall time, LSN) samples, at most this many, one per second at most. */
const MAX_LSN_TIME_SAMPLES = 4096;
const METADATA_FILE = "metadata";
/** Attempts of one flush round; a round that fails them all fails the checkpoints waiting on it. */
const FLUSH_RETRY_LIMIT = 3;
/** After a failed flush round, housekeeping starts the next one no sooner than this. */
const FLUSH_ROUND_RETRY_MS = 10_000;
/**
 * A read whose chain holds at least this many values is reconstructed on the redo pool, off
 * the main thread: native redo takes a few µs per record, so a chain this long costs the
 * event loop more than the hand-off to a worker (~0.1 ms) does. Shorter chains stay inline.
 */
export const REDO_OFFLOAD_MIN_RECORDS = 64;
/** collectRead: the key has no value at the LSN. */
const ABSENT = -2;
/** L0 files one compaction job takes at most (Neon's compaction_upper_limit): bounds a job's length. */
const COMPACTION_UPPER_LIMIT = 10;
/** One bounded wait of a flush for room in the remote upload queue (it asks again while it runs). */
const ROOM_WAIT_MS = 10_000;
/** Checkpoints waiting on one timeline at once (each is an HTTP request or a shutdown). */
const MAX_FLUSH_WAITERS = 100_000;
/** Downloads one async read may wait for before it gives up (each makes one more layer resident). */
const MAX_DOWNLOADS_PER_READ = 10_000;
/** Reads waiting at once for remote storage to connect (each is a request). */
const MAX_DOWNLOADER_WAITERS = 100_000;
/** Read leases held at once on one timeline (each is a base backup in flight). */
const MAX_READ_LEASES = 100_000;

/** An in-memory layer as the operator sees it: LSN range [start, end), bytes, frozen or open. */
export interface InMemoryLayerInfo {
  start: Lsn;
  end: Lsn;
  sizeBytes: number;
  frozen: boolean;
}


export class Timeline {
  readonly tenantId: TenantId;
  readonly timelineId: TimelineId;
  readonly dir: string;
  readonly ancestor: Timeline | null;
  readonly ancestorLsn: Lsn;
  readonly initdbLsn: Lsn;
  readonly pgVersion: number;
  private readonly deps: TimelineDeps;
  /** Namespace of this timeline's materialized pages in the shared cache. */
  private readonly ns: number;

  state: TimelineState = TimelineState.Loading;
  brokenReason: string | null = null;

  private open: InMemoryLayer | null = null;
  private readonly frozen: InMemoryLayer[] = [];
  private layerMap_: LayerMap<HistoricLayer>;
  private nextOpenLayerAt: Lsn;
  private ephemeralCounter = 0;

  private readonly lastRecord: SeqWait;
  private prevRecordLsn_: Lsn | null;
  private readonly diskConsistent: SeqWait;
  private latestGcCutoff_: Lsn;
  /** Set while a GC is planning: branches below it are refused too. */
  plannedGcCutoff: Lsn = 0;

  private flushLoop: FlushLoopState = FlushLoopState.NotStarted;
  private flushing: Promise<void> | null = null;
  /**
   * Checkpoints waiting for disk_consistent_lsn: aborted with the error when a flush round
   * fails, so they report it instead of waiting for a flush that is not running.
   */
  private readonly flushWaiters = new Set<AbortController>();
  /** The last failed flush round: its error, and when housekeeping may start the next round. */
  private flushFailure: { error: Error; retry_at_ms: number } | null = null;
  /** The newest LSN flushes made durable, and the metadata writer recording it (advanceDiskConsistent). */
  private dclTarget: Lsn = 0;
  /** End LSNs of flushed layers not yet recorded as disk_consistent_lsn: they still count as frozen for backpressure. */
  private readonly unrecorded: Lsn[] = [];
  private dclWriter: Promise<void> | null = null;
  private metadataWrite: Promise<void> = Promise.resolve();
  /** disk_consistent_lsn of the last metadata write that landed. */
  private persistedDcl: Lsn;

  private readonly lsnTimeSamples: { time_ms: number; lsn: Lsn }[] = [];
  /** Where layer and metadata changes are reported (remote storage), once they are durable. */
  private events: LayerEvents = NO_LAYER_EVENTS;
  /** Set by shutdown: its flush no longer waits for room in the remote upload queue. */
  private shuttingDown = false;
  /** Commit timestamps seen in this timeline's own WAL (above its branch point). */
  private readonly commitTimes: CommitTimes;
  private readonly gate = new IngestGate(() => this.gateVerdict());
  /** Brings evicted layers back (remote storage); null: none can be downloaded. */
  private downloader: LayerDownloader | null = null;
  /** Reads that wait for a downloader (remote storage connects in the background after load). */
  private readonly downloaderWaiters = new Set<() => void>();
  /** The evicted-layer manifest writes, one at a time in order. */
  private manifestWrite: Promise<void> = Promise.resolve();
  /** Read leases (leaseReadsAt): LSN → how many long reads hold it, here or on a descendant at its branch point. */
  private readonly readLeases = new Map<Lsn, number>();

  // Read-path scratch: reads are synchronous once started, so one set per timeline suffices.
  private readonly rs = new ReconstructState();
  private readonly walkOut = new Float64Array(1);
  private readonly basePage = new Uint8Array(PAGE_SIZE);

  /** Counters for metrics and tests. */
  readonly counters = { reads: 0, materializedHits: 0, redos: 0, offloadedRedos: 0, layersVisited: 0, flushes: 0, compactions: 0, imageLayersCreated: 0, gcLayersRemoved: 0 };

  private constructor(
    deps: TimelineDeps,
    tenantId: TenantId,
    timelineId: TimelineId,
    dir: string,
    ancestor: Timeline | null,
    md: TimelineMetadata,
    layers: LayerDesc[],
    lastRecordLsn: Lsn,
    nextOpenLayerAt: Lsn,
    evicted: LayerDesc[] = [],
  ) {
    this.deps = deps;
    this.tenantId = tenantId;
    this.timelineId = timelineId;
    this.dir = dir;
    this.ancestor = ancestor;
    this.ancestorLsn = md.ancestor_lsn;
    this.initdbLsn = md.initdb_lsn;
    this.pgVersion = md.pg_version;
    this.ns = deps.cache.allocNamespaceId();
    this.layerMap_ = new LayerMap([
      ...layers.map((d) => new HistoricLayer(deps.cache, dir, d)),
      ...evicted.map((d) => new HistoricLayer(deps.cache, dir, d, false)),
    ]);
    this.lastRecord = new SeqWait(lastRecordLsn);
    this.prevRecordLsn_ = md.prev_record_lsn;
    this.diskConsistent = new SeqWait(md.disk_consistent_lsn);
    this.persistedDcl = md.disk_consistent_lsn;
    this.latestGcCutoff_ = md.latest_gc_cutoff_lsn;
    this.nextOpenLayerAt = nextOpenLayerAt;
    this.commitTimes = new CommitTimes(dir);
  }

  /** A new, empty timeline: bootstrap at `startLsn`, or a branch of `ancestor` at `startLsn`. */
  static async create(
    deps: TimelineDeps,
    tenantId: TenantId,
    timelineId: TimelineId,
    dir: string,
    ancestor: Timeline | null,
    startLsn: Lsn,
    pgVersion: number,
  ): Promise<Timeline> {
    const md: TimelineMetadata = {
      disk_consistent_lsn: startLsn,
      prev_record_lsn: null,
      ancestor_timeline_id: ancestor?.timelineId ?? null,
      ancestor_lsn: ancestor === null ? 0 : startLsn,
      latest_gc_cutoff_lsn: startLsn,
      initdb_lsn: startLsn,
      pg_version: pgVersion,
    };
    await writeMetadata(join(dir, METADATA_FILE), md);
    // A bootstrap writes its initial data at startLsn itself; a branch's own values start above
    // the branch point, so that reading the branch at the branch point equals the ancestor.
    const tl = new Timeline(deps, tenantId, timelineId, dir, ancestor, md, [], startLsn, ancestor === null ? startLsn : startLsn + 1);
    return tl;
  }

  /**
   * Load a timeline from its directory: metadata, then the layer files named in it. Temp and
   * ephemeral leftovers are deleted, as are "future" layers (flushed after the last durable
   * metadata write: their WAL is re-ingested).
   */
  static load(deps: TimelineDeps, tenantId: TenantId, timelineId: TimelineId, dir: string, ancestor: Timeline | null): Timeline {
    const md = readMetadata(join(dir, METADATA_FILE));
    if ((md.ancestor_timeline_id ?? null) !== (ancestor?.timelineId ?? null)) {
      throw new BadStateError(`timeline ${timelineId}: ancestor mismatch (metadata says ${md.ancestor_timeline_id})`);
    }
    const layers: LayerDesc[] = [];
    // A bulk import that never finished: its temp directory is still there, and any layer it
    // had moved in is part of an incomplete import. The timeline is empty again.
    const importDir = join(dir, IMPORT_TEMP_DIR);
    const importInterrupted = existsSync(importDir);
    if (importInterrupted) {
      deps.log.warn({ dir: importDir }, "removing an interrupted bulk import");
      rmSync(importDir, { recursive: true, force: true });
    }
    const emptyAgain = importInterrupted && ancestor === null && md.disk_consistent_lsn === md.initdb_lsn;
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (name.endsWith(TEMP_SUFFIX) || name.startsWith("ephemeral-")) {
        unlinkSync(path);
        continue;
      }
      // Our metadata, and JSON files other layers keep beside it (wal_source.json).
      if (name === METADATA_FILE || name.endsWith(".json") || isCommitTimesFile(name)) continue;
      const parsed = parseLayerName(name);
      if (parsed === null) {
        deps.log.warn({ file: name }, "unknown file in timeline directory, ignoring");
        continue;
      }
      if (emptyAgain) {
        unlinkSync(path);
        continue;
      }
      if (parsed.lsnRange.end - 1 > md.disk_consistent_lsn) {
        deps.log.info({ layer: name, disk_consistent_lsn: lsnToString(md.disk_consistent_lsn) }, "deleting future layer");
        unlinkSync(path);
        continue;
      }
      // The size from the directory: layer_bytes metrics, and open() refuses a file that changed.
      layers.push({ ...parsed, fileSize: statSync(path).size });
    }
    // Layers held only remotely: those of the manifest whose file is not here (a file wins).
    const evicted: LayerDesc[] = [];
    if (!emptyAgain) {
      const present = new Set(layers.map((d) => d.fileName));
      for (const [name, size] of readEvictedLayers(dir)) {
        const parsed = parseLayerName(name);
        if (parsed === null || present.has(name) || parsed.lsnRange.end - 1 > md.disk_consistent_lsn) continue;
        evicted.push({ ...parsed, fileSize: size });
      }
    }
    const dcl = md.disk_consistent_lsn;
    const first = ancestor === null && dcl === md.initdb_lsn && layers.length === 0 && evicted.length === 0 ? dcl : dcl + 1;
    const tl = new Timeline(deps, tenantId, timelineId, dir, ancestor, md, layers, dcl, first, evicted);
    try {
      const note = tl.commitTimes.load(dcl);
      if (note !== null) deps.log.warn({ disk_consistent_lsn: lsnToString(dcl) }, note);
    } catch (e) {
      // An index of commit times is no reason to refuse the timeline's data: keep the bad files
      // aside and start it at disk_consistent_lsn (times before the next commits answer `past`).
      deps.log.warn({ err: e, disk_consistent_lsn: lsnToString(dcl) }, "commit-time index corrupt: kept aside as *.corrupt, restarted at disk_consistent_lsn");
      tl.commitTimes.reset(dcl);
    }
    return tl;
  }

  // ---------------------------------------------------------------------------------------
  // State

  /** This timeline's logger: tenant_id and timeline_id bound once, for every line about it. */
  get log(): Logger {
    return this.deps.log;
  }

  /** Where observations about this timeline go (the node's metrics). */
  get metrics(): MetricsSink {
    return this.deps.metrics ?? NO_METRICS;
  }

  get lastRecordLsn(): Lsn {
    return this.lastRecord.load();
  }
  get prevRecordLsn(): Lsn | null {
    return this.prevRecordLsn_;
  }
  get diskConsistentLsn(): Lsn {
    return this.diskConsistent.load();
  }
  get latestGcCutoffLsn(): Lsn {
    return this.latestGcCutoff_;
  }
  get layerMap(): LayerMap<HistoricLayer> {
    return this.layerMap_;
  }
  get frozenCount(): number {
    return this.frozen.length;
  }
  /** Layers by level and kind, with bytes, and the frozen in-memory layers: O(1) once per layer map. */
  layerStats(): LayerStats & { frozen: { count: number; bytes: number } } {
    let bytes = 0;
    for (const f of this.frozen) bytes += f.sizeBytes;
    return { ...this.layerMap_.stats(), frozen: { count: this.frozen.length, bytes } };
  }
  get l0Count(): number {
    return this.layerMap_.l0Layers().length;
  }
  get openLayerSizeBytes(): number {
    return this.open?.sizeBytes ?? 0;
  }
  get flushLoopState(): FlushLoopState {
    return this.flushLoop;
  }

  /**
   * Reports every later layer and metadata change to `events` (see layer_events.ts). The
   * owner takes the current state (layerFiles(), metadata()) in the same synchronous step,
   * so no change falls between the two.
   */
  setLayerEvents(events: LayerEvents): void {
    this.events = events;
  }

  /** This timeline's resident layer files, as layer events name them. */
  layerFiles(): AddedLayer[] {
    return this.layerMap_.layers.filter((l) => l.resident).map((l) => ({ name: l.desc.fileName, path: l.path }));
  }

  // ---------------------------------------------------------------------------------------
  // Layer residency (on-demand download, eviction)

  /** Where evicted layers of this timeline are downloaded from; null: nowhere (no remote storage). */
  setLayerDownloader(d: LayerDownloader | null): void {
    this.downloader = d;
    if (d === null) return;
    for (const w of this.downloaderWaiters) w();
    this.downloaderWaiters.clear();
  }

  /** The downloader, waiting (up to wait_lsn_timeout) for remote storage to connect; null if it does not. */
  private async awaitDownloader(): Promise<LayerDownloader | null> {
    if (this.downloader !== null) return this.downloader;
    if (this.downloaderWaiters.size >= MAX_DOWNLOADER_WAITERS) return null;
    let timer: NodeJS.Timeout | undefined;
    let wake: (() => void) | undefined;
    await new Promise<void>((resolve) => {
      wake = resolve;
      this.downloaderWaiters.add(resolve);
      timer = setTimeout(resolve, this.deps.conf().wait_lsn_timeout_ms);
    });
    clearTimeout(timer);
    if (wake !== undefined) this.downloaderWaiters.delete(wake);
    return this.downloader;
  }

  /** The names of this timeline's evicted layers. */
  evictedLayerNames(): string[] {
    return this.layerMap_.layers.filter((l) => !l.resident).map((l) => l.desc.fileName);
  }

  /** The resident historic layers (eviction candidates, among others). */
  residentLayers(): HistoricLayer[] {
    return this.layerMap_.layers.filter((l) => l.resident);
  }

  /** Bytes of the resident layer files. */
  residentBytes(): number {
    let n = 0;
    for (const l of this.layerMap_.layers) if (l.resident) n += l.desc.fileSize;
    return n;
  }

  /**
   * Make the layer map match the remote index (`remote`: name → size) for what is not on
   * local disk: index layers we lack become evicted layers (an attach downloads none), and
   * evicted layers the index no longer names are dropped (GC or compaction removed them
   * while they were evicted). Layers above disk_consistent_lsn are left out, as load does.
   */
  adoptRemoteLayers(remote: ReadonlyMap<string, number>): { added: number; dropped: number } {
    const added: HistoricLayer[] = [];
    const dropped: string[] = [];
    const dcl = this.diskConsistent.load();
    for (const [name, size] of remote) {
      if (this.layerMap_.get(name) !== undefined) continue;
      const parsed = parseLayerName(name);
      if (parsed === null || parsed.lsnRange.end - 1 > dcl) continue;
      added.push(new HistoricLayer(this.deps.cache, this.dir, { ...parsed, fileSize: size }, false));
    }
    for (const l of this.layerMap_.layers) if (!l.resident && !remote.has(l.desc.fileName)) dropped.push(l.desc.fileName);
    if (added.length > 0 || dropped.length > 0) {
      this.layerMap_ = this.layerMap_.with(added, dropped);
      this.saveEvictedManifest().catch((e: unknown) => this.log.warn({ err: e }, "cannot write the evicted-layer manifest"));
    }
    return { added: added.length, dropped: dropped.length };
  }

  /** Writes the manifest of the evicted layers as the map has them when the write starts (plus `also`). */
  private saveEvictedManifest(also: HistoricLayer | null = null): Promise<void> {
    const p = this.manifestWrite.then(() => {
      const m = new Map<string, number>();
      for (const l of this.layerMap_.layers) if (!l.resident || l === also) m.set(l.desc.fileName, l.desc.fileSize);
      return writeEvictedLayers(this.dir, m);
    });
    this.manifestWrite = p.catch(() => undefined);
    return p;
  }

  /** Layers a job wrote again under names the map holds (an interrupted run's output): their files are here now. */
  private markRewritten(written: readonly LayerDesc[]): void {
    for (const d of written) {
      const l = this.layerMap_.get(d.fileName);
      if (l !== undefined && !l.resident) l.markRewritten();
    }
  }

  /** The timeline (this or an ancestor) whose map holds `layer`, for its downloader. */
  private ownerOf(layer: HistoricLayer): Timeline | null {
    let depth = 0;
    for (let t: Timeline | null = this; t !== null; t = t.ancestor) {
      assert(depth++ < 100_000, "ancestry too deep");
      if (t.layerMap_.get(layer.desc.fileName) === layer) return t;
    }
    return null;
  }

  /** Download `layer` (of this timeline or an ancestor) if it is evicted; one download per layer at a time. */
  async downloadLayer(layer: HistoricLayer): Promise<void> {
    if (layer.resident) return;
    const owner = this.ownerOf(layer) ?? this;
    const d = await owner.awaitDownloader();
    if (layer.resident) return;
    if (d === null) throw new BadStateError(`layer ${layer.desc.fileName} of timeline ${owner.timelineId} is evicted and remote storage is not connected (yet)`);
    await layer.fetch(d);
    // GC or compaction dropped the layer while it came down: its file must not stay, or the
    // next load would take it for one of the timeline's layers.
    if (owner.layerMap_.get(layer.desc.fileName) === undefined) {
      layer.close();
      rmSync(layer.path, { force: true });
    }
  }

  /**
   * Download the layer `e` names, if a map of this timeline or an ancestor still holds it
   * (the error carries names only). When none does, a compaction or GC replaced it meanwhile:
   * nothing to download, the caller's rerun walks the new map.
   */
  async downloadEvicted(e: LayerEvictedError): Promise<void> {
    let depth = 0;
    for (let t: Timeline | null = this; t !== null; t = t.ancestor) {
      assert(depth++ < 100_000, "ancestry too deep");
      if (t.dir !== e.timeline_dir) continue;
      const layer = t.layerMap_.get(e.layer_name);
      if (layer !== undefined) await this.downloadLayer(layer);
      return;
    }
  }

  /**
   * Run the synchronous read `fn`; each time it meets an evicted layer, download that layer
   * and run `fn` again (reads are pure, so a rerun is safe). The async face of every
   * synchronous reader (DatadirSnapshot, ingest lookups, keyspace walks).
   */
  async withResidentLayers<T>(fn: () => T): Promise<T> {
    for (let downloads = 0; ; downloads++) {
      try {
        return fn();
      } catch (e) {
        if (!(e instanceof LayerEvictedError) || downloads >= MAX_DOWNLOADS_PER_READ) throw e;
        await this.downloadEvicted(e);
      }
    }
  }

  /**
   * Lease `lsn` for a long read (a base backup) until the returned release function runs
   * (idempotent; call it in a finally). While the lease is held, eviction leaves every layer
   * a read at `lsn` may visit: this timeline's layers that start at or below it, the
   * ancestors' at or below their branch points, and layers created later (a flush of the
   * in-memory layer that held `lsn`, a compaction's output) as much as those there now. GC
   * keeps the cutoff at or below a leased LSN (an LSN below the cutoff already: GcCutoffError).
   * Synchronous: no eviction can come between the caller's check and the lease.
   */
  leaseReadsAt(lsn: Lsn): () => void {
    this.checkReadable(lsn);
    const held: { t: Timeline; at: Lsn }[] = [];
    let at = lsn;
    let depth = 0;
    for (let t: Timeline | null = this; t !== null; t = t.ancestor) {
      assert(depth++ < 100_000, "ancestry too deep");
      if (t.readLeases.size >= MAX_READ_LEASES && !t.readLeases.has(at)) {
        for (const h of held) h.t.dropLease(h.at);
        throw new BadStateError(`timeline ${t.timelineId} has ${MAX_READ_LEASES} read leases already`);
      }
      t.readLeases.set(at, (t.readLeases.get(at) ?? 0) + 1);
      held.push({ t, at });
      at = Math.min(at, t.ancestorLsn);
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const h of held) h.t.dropLease(h.at);
    };
  }

  private dropLease(at: Lsn): void {
    const n = this.readLeases.get(at);
    assert(n !== undefined && n > 0, "read lease released twice");
    if (n === 1) this.readLeases.delete(at);
    else this.readLeases.set(at, n - 1);
  }

  /** The highest leased LSN on this timeline (-1: none): layers starting at or below it stay. */
  private maxLeasedLsn(): Lsn {
    let max = -1;
    for (const at of this.readLeases.keys()) if (at > max) max = at;
    return max;
  }

  /** The lowest leased LSN on this timeline (MAX_LSN: none): GC's cutoff stays at or below it. */
  private minLeasedLsn(): Lsn {
    let min = MAX_LSN;
    for (const at of this.readLeases.keys()) if (at < min) min = at;
    return min;
  }

  /** Number of read leases held on this timeline (its own long reads and its descendants'). */
  get readLeaseCount(): number {
    let n = 0;
    for (const c of this.readLeases.values()) n += c;
    return n;
  }

  /**
   * Whether eviction may take `layer` of this timeline now: in the map, resident, not pinned
   * by a job, not being downloaded, and no leased read may visit it.
   */
  evictable(layer: HistoricLayer): boolean {
    return (
      this.layerMap_.get(layer.desc.fileName) === layer &&
      layer.resident &&
      layer.pins === 0 &&
      !layer.downloadInFlight &&
      layer.desc.lsnRange.start > this.maxLeasedLsn()
    );
  }

  /**
   * Lease `lsn` (leaseReadsAt), then download every evicted layer a read at it may visit: for
   * readers that read everything synchronously in steps (base backups). Returns the release
   * function. A layer that shows up evicted later anyway (remote storage connecting adopts
   * layers of the index) is still a LayerEvictedError: such readers read under
   * withResidentLayers as well.
   */
  async pinLayersAt(lsn: Lsn): Promise<() => void> {
    const release = this.leaseReadsAt(lsn);
    try {
      for (let round = 0; ; round++) {
        assert(round < MAX_DOWNLOADS_PER_READ, "lease downloads did not settle");
        const missing = this.evictedAt(lsn);
        if (missing.length === 0) return release;
        for (const l of missing) await this.downloadLayer(l);
      }
    } catch (e) {
      release();
      throw e;
    }
  }

  /** The evicted layers a read at `lsn` may visit (this timeline's, the ancestors' below their branch points). */
  private evictedAt(lsn: Lsn): HistoricLayer[] {
    const out: HistoricLayer[] = [];
    let at = lsn;
    let depth = 0;
    for (let t: Timeline | null = this; t !== null; t = t.ancestor) {
      assert(depth++ < 100_000, "ancestry too deep");
      for (const l of t.layerMap_.layers) if (!l.resident && l.desc.lsnRange.start <= at) out.push(l);
      at = Math.min(at, t.ancestorLsn);
    }
    return out;
  }

  /** Pin `layers` (so eviction leaves them), then download those that are evicted. Returns the unpin function. */
  private async pinAndFetch(layers: HistoricLayer[]): Promise<() => void> {
    for (const l of layers) l.pins++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      for (const l of layers) l.pins--;
    };
    try {
      for (const l of layers) if (!l.resident) await this.downloadLayer(l);
    } catch (e) {
      release();
      throw e;
    }
    return release;
  }

  /**
   * Evict one resident layer of this timeline: recorded in the manifest first, then closed
   * and unlinked. False when it can't be now (see evictable: not in the map any more, pinned,
   * leased, downloading, already evicted). The caller decides it is safe remotely (uploaded,
   * no upload pending).
   */
  async evictLayer(layer: HistoricLayer): Promise<boolean> {
    if (!this.evictable(layer)) return false;
    await this.saveEvictedManifest(layer);
    // The manifest write awaited: a read, a pin, a lease or a map change may have come meanwhile.
    if (!this.evictable(layer)) return false;
    layer.markEvicted();
    try {
      unlinkSync(layer.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
    }
    return true;
  }

  activate(): void {
    assert(this.state === TimelineState.Loading, `activate from ${this.state}`);
    this.flushLoop = FlushLoopState.Running;
    this.state = TimelineState.Active;
  }

  setBroken(reason: string): void {
    this.deps.log.error({ reason }, "timeline is broken");
    this.state = TimelineState.Broken;
    this.brokenReason = reason;
    this.flushLoop = FlushLoopState.Exited;
    this.gate.close(`timeline ${this.timelineId} is broken: ${reason}`);
    this.lastRecord.shutdown(`timeline ${this.timelineId} is broken: ${reason}`);
    this.diskConsistent.shutdown(`timeline ${this.timelineId} is broken: ${reason}`);
  }

  private checkActive(): void {
    if (this.state !== TimelineState.Active) {
      throw new BadStateError(`timeline ${this.timelineId} is ${this.state}${this.brokenReason ? `: ${this.brokenReason}` : ""}`);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Write path

  put(key: Key, lsn: Lsn, value: Value): void {
    this.checkPut(lsn);
    if (value.length === 0) throw new InvalidArgumentError("empty value");
    this.openLayer().put(key, lsn, value);
  }

  /**
   * put() of the value `tag ‖ payload` without building it: the payload (e.g. a WAL record
   * that several block references store) is copied once, into the open layer.
   */
  putTagged(key: Key, lsn: Lsn, tag: ValueTag, payload: Uint8Array): void {
    this.checkPut(lsn);
    if (!isValueTag(tag)) throw new InvalidArgumentError(`invalid value tag ${tag}`);
    this.openLayer().putTagged(key, lsn, tag, payload);
  }

  private checkPut(lsn: Lsn): void {
    this.checkActive();
    const last = this.lastRecord.load();
    if (!(lsn >= last)) throw new InvalidArgumentError(`put at ${lsnToString(lsn)} goes backwards: last_record_lsn is ${lsnToString(last)}`);
    if (!(lsn >= this.nextOpenLayerAt)) {
      throw new InvalidArgumentError(`put at ${lsnToString(lsn)} is below the open layer start ${lsnToString(this.nextOpenLayerAt)} (already frozen)`);
    }
    if (!(lsn <= MAX_LSN)) throw new InvalidArgumentError("LSN beyond 2^53");
  }

  /** The open layer (created on the first put after a freeze). */
  private openLayer(): InMemoryLayer {
    if (this.open === null) this.open = new InMemoryLayer(this.deps.cache, this.dir, this.ephemeralCounter++, this.nextOpenLayerAt);
    return this.open;
  }

  /**
   * Everything up to `lsn` is written: advance last_record_lsn (waking readers), and freeze
   * the open layer when it reached checkpoint_distance or checkpoint_timeout.
   */
  finishWrite(lsn: Lsn, prevRecordLsn: Lsn | null = null): void {
    this.checkActive();
    const last = this.lastRecord.load();
    if (lsn < last) throw new InvalidArgumentError(`finishWrite at ${lsnToString(lsn)} goes backwards from ${lsnToString(last)}`);
    if (this.open !== null && this.open.maxLsn > lsn) throw new InvalidArgumentError(`finishWrite at ${lsnToString(lsn)} below values already put`);
    this.prevRecordLsn_ = prevRecordLsn;
    this.lastRecord.advance(lsn);
    // One clock read per record for both (Date.now() is a visible share of ingest's cost).
    const now_ms = Date.now();
    this.samplePitr(lsn, now_ms);
    if (this.shouldFreeze(now_ms)) this.freezeAt(lsn);
  }

  /**
   * Freeze when the open layer holds checkpoint_distance bytes, or spans that much WAL (as
   * Neon's should_roll: the flush lag in WAL bytes stays bounded even when records carry
   * little data), or its first write is checkpoint_timeout old; never beyond the frozen limit.
   */
  private shouldFreeze(now_ms: number): boolean {
    const open = this.open;
    if (open === null || open.valueCount === 0) return false;
    const conf = this.deps.conf();
    if (this.pendingFlushes >= conf.max_frozen_layers) return false;
    return (
      open.sizeBytes >= conf.checkpoint_distance_bytes ||
      open.maxLsn - open.start >= conf.checkpoint_distance_bytes ||
      now_ms - open.created_ms >= conf.checkpoint_timeout_ms
    );
  }

  // ---------------------------------------------------------------------------------------
  // Ingest backpressure

  /**
   * Frozen layers plus flushed ones whose disk_consistent_lsn is not yet recorded: what the
   * frozen limit counts, so the reported flush lag stays bounded even while metadata writes lag.
   */
  private get pendingFlushes(): number {
    return this.frozen.length + this.unrecorded.length;
  }

  private gateVerdict(): GateVerdict {
    if (this.state !== TimelineState.Active) return GATE_OPEN;
    const conf = this.deps.conf();
    const frozen = this.pendingFlushes;
    if (frozen >= conf.max_frozen_layers) {
      return { state: Backpressure.Stalled, reason: `${frozen} frozen layers wait for their flush (max_frozen_layers ${conf.max_frozen_layers})` };
    }
    // Without the compaction loop nothing lowers the L0 count: waiting for it would never end.
    if (conf.compaction_period_ms === 0) return GATE_OPEN;
    const l0 = this.layerMap_.l0Layers().length;
    const t = l0Thresholds(conf);
    if (t.stall > 0 && l0 >= t.stall) {
      return { state: Backpressure.Stalled, reason: `${l0} L0 files wait for compaction (l0_flush_stall_threshold ${t.stall})` };
    }
    if (t.delay > 0 && l0 >= t.delay && frozen > 0) {
      return { state: Backpressure.Delayed, reason: `${l0} L0 files: ingest waits for each flush (l0_flush_delay_threshold ${t.delay})` };
    }
    return GATE_OPEN;
  }

  /** The ingest path's check before each record: None, or wait with waitIngestCapacity(). */
  ingestBackpressure(): Backpressure {
    return this.gate.state();
  }

  /** Wait until flush and compaction let ingest go on (see ingest_gate.ts). */
  waitIngestCapacity(signal?: AbortSignal): Promise<void> {
    return this.gate.wait(signal);
  }

  /** The tenant config changed: thresholds may have moved. */
  configChanged(): void {
    this.gate.notify();
  }

  get backpressureStats(): GateStats {
    return this.gate.stats();
  }

  /**
   * Housekeeping: freeze an idle open layer whose checkpoint_timeout passed; start a new flush
   * round for frozen layers a failed round left behind (no sooner than FLUSH_ROUND_RETRY_MS).
   */
  checkTimeout(): void {
    if (this.state !== TimelineState.Active) return;
    const now_ms = Date.now();
    if (this.shouldFreeze(now_ms)) this.freezeAt(this.lastRecord.load());
    else if (this.flushFailure !== null && now_ms >= this.flushFailure.retry_at_ms && this.frozen.length > 0) this.kickFlush();
  }

  private samplePitr(lsn: Lsn, now: number): void {
    const s = this.lsnTimeSamples;
    if (s.length > 0 && now - s[s.length - 1]!.time_ms < 1000) return;
    if (s.length >= MAX_LSN_TIME_SAMPLES) {
      // Keep the bound by thinning: drop every other sample of the older half.
      const half = s.length >>> 1;
      const kept = s.slice(0, half).filter((_, i) => i % 2 === 0);
      s.splice(0, half, ...kept);
    }
    s.push({ time_ms: now, lsn });
  }

  /** Freeze the open layer at `at` and hand it to the flush loop. */
  private freezeAt(at: Lsn): void {
    if (this.flushLoop !== FlushLoopState.Running) {
      throw new BadStateError(`cannot freeze timeline ${this.timelineId}: flush loop is ${this.flushLoop}`);
    }
    const open = this.open;
    if (open === null) return;
    open.freeze(at);
    this.frozen.push(open);
    this.open = null;
    this.nextOpenLayerAt = at + 1;
    this.kickFlush();
    this.gate.notify();
  }

  // ---------------------------------------------------------------------------------------
  // Bulk import

  /**
   * Start a bulk import at `lsn` into this empty, ancestor-less timeline: its values go to
   * image layers at `lsn` (bulk_import.ts), which finish() adds here.
   */
  bulkImport(lsn: Lsn): BulkImport {
    this.checkActive();
    if (this.ancestor !== null) throw new BadStateError("cannot bulk import into a branch");
    if (this.layerMap_.size > 0 || this.frozen.length > 0 || (this.open?.valueCount ?? 0) > 0) {
      throw new BadStateError(`timeline ${this.timelineId} is not empty: cannot bulk import`);
    }
    if (lsn < this.lastRecord.load()) throw new InvalidArgumentError(`bulk import at ${lsnToString(lsn)} is below last_record_lsn`);
    const conf = this.deps.conf();
    return new BulkImport({
      cache: this.deps.cache,
      jobs: this.deps.jobs,
      owner: this.tenantId,
      tempDir: join(this.dir, IMPORT_TEMP_DIR),
      lsn,
      runSizeBytes: conf.checkpoint_distance_bytes,
      targetSizeBytes: conf.compaction_target_size_bytes,
      adopt: (layers, dir, prev) => this.adoptImport(layers, dir, lsn, prev),
    });
  }

  /** A finished bulk import's image layers (files in `fromDir`) become this timeline's data at `lsn`. */
  private async adoptImport(layers: LayerDesc[], fromDir: string, lsn: Lsn, prevRecordLsn: Lsn | null): Promise<void> {
    this.checkActive();
    assert(this.layerMap_.size === 0 && this.frozen.length === 0 && (this.open?.valueCount ?? 0) === 0, "bulk import into a timeline that got other data");
    for (const l of layers) {
      assert(l.kind === "image" && l.lsnRange.start === lsn, "a bulk import adopts image layers at its LSN");
      renameSync(join(fromDir, l.fileName), join(this.dir, l.fileName));
    }
    fsyncDir(this.dir);
    this.layerMap_ = this.layerMap_.with(
      layers.map((d) => new HistoricLayer(this.deps.cache, this.dir, d)),
      [],
    );
    this.events.layersAdded(layers.map((d) => ({ name: d.fileName, path: join(this.dir, d.fileName) })));
    // WAL values come after the import: the open layer starts above the images' LSN.
    this.nextOpenLayerAt = Math.max(this.nextOpenLayerAt, lsn + 1);
    if (this.lastRecord.load() < lsn || prevRecordLsn !== null) this.finishWrite(lsn, prevRecordLsn);
    await this.setDiskConsistent(lsn);
  }

  /**
   * Freeze what is open and wait until everything up to last_record_lsn is durable. A flush
   * round that fails while this waits fails the checkpoint with its error (the frozen layers
   * stay queued: the next checkpoint, or housekeeping, tries again).
   */
  async checkpoint(): Promise<void> {
    this.checkActive();
    if (this.flushLoop !== FlushLoopState.Running) throw new BadStateError(`flush requested but the flush loop is ${this.flushLoop}`);
    // Layers a failed round left behind: a checkpoint is the request to try again.
    if (this.frozen.length > 0) this.kickFlush();
    // Keep the frozen limit: wait for room (flushes are running whenever the queue is full).
    for (let i = 0; this.pendingFlushes >= this.deps.conf().max_frozen_layers && (this.flushing !== null || this.dclWriter !== null); i++) {
      assert(i < 1_000_000, "checkpoint waited for frozen-queue room too often");
      await (this.flushing ?? this.dclWriter);
    }
    this.checkActive();
    if (this.pendingFlushes >= this.deps.conf().max_frozen_layers && this.flushFailure !== null) throw this.flushFailedError(this.flushFailure.error);
    const target = this.lastRecord.load();
    if (this.open !== null && this.open.valueCount > 0) this.freezeAt(target);
    else if (this.open !== null) {
      this.open.close(true);
      this.open = null;
    }
    if (this.frozen.length === 0 && this.diskConsistent.load() < target) {
      // Nothing unflushed: WAL without values (e.g. records that touch no page) is durable as is.
      await this.setDiskConsistent(target);
      this.nextOpenLayerAt = Math.max(this.nextOpenLayerAt, target + 1);
    }
    const waiter = new AbortController();
    assert(this.flushWaiters.size < MAX_FLUSH_WAITERS, "too many checkpoints waiting");
    this.flushWaiters.add(waiter);
    try {
      await this.diskConsistent.wait(target, 24 * 3_600_000, undefined, waiter.signal);
    } finally {
      this.flushWaiters.delete(waiter);
    }
  }

  private flushFailedError(e: Error): BadStateError {
    return new BadStateError(`layer flush failed on timeline ${this.timelineId}: ${e.message}`);
  }

  private kickFlush(): void {
    if (this.flushing !== null) return;
    this.flushing = this.flushFrozen().finally(() => {
      this.flushing = null;
      if (this.frozen.length > 0 && this.flushLoop === FlushLoopState.Running && this.flushFailure === null) this.kickFlush();
    });
  }

  /**
   * One flush round: the frozen layers, oldest first. A layer is tried FLUSH_RETRY_LIMIT
   * times; then the round stops, the layer stays frozen (its data is still readable and its
   * WAL still held by the source), and the checkpoints waiting fail with the error. The
   * timeline stays Active, as in Neon: a flush that fails (a failpoint, a full disk) may
   * succeed later, and ingest waits at the frozen limit meanwhile.
   */
  private async flushFrozen(): Promise<void> {
    this.flushFailure = null;
    while (this.frozen.length > 0 && this.flushLoop === FlushLoopState.Running) {
      const layer = this.frozen[0]!;
      // A full remote upload queue holds the flush (and so ingest) back, in bounded waits, until shutdown.
      if (!(await this.roomForLayer())) return;
      let attempt = 0;
      for (;;) {
        try {
          await this.flushOne(layer);
          break;
        } catch (e) {
          attempt++;
          const error = e instanceof Error ? e : new Error(String(e));
          if (attempt >= FLUSH_RETRY_LIMIT || this.flushLoop !== FlushLoopState.Running) {
            this.deps.log.error({ err: error, attempts: attempt }, "layer flush failed; the layer stays frozen until the next flush request");
            this.flushFailure = { error, retry_at_ms: Date.now() + FLUSH_ROUND_RETRY_MS };
            const failed = this.flushFailedError(error);
            for (const w of this.flushWaiters) w.abort(failed);
            return;
          }
          this.deps.log.warn({ err: error, attempt }, "layer flush failed; retrying");
          await new Promise((r) => setTimeout(r, 100 * attempt));
        }
      }
    }
  }

  /** Waits while the layer events' queue is full (LayerEvents.waitForRoom); false: the flush loop stopped meanwhile. */
  private async roomForLayer(): Promise<boolean> {
    for (let waits = 0; this.flushLoop === FlushLoopState.Running; waits++) {
      if (this.shuttingDown || ((await this.events.waitForRoom?.(ROOM_WAIT_MS)) ?? true)) return true;
      if (waits % 6 === 0) this.deps.log.warn({ waited_ms: (waits + 1) * ROOM_WAIT_MS }, "flush waits for room in the remote upload queue");
    }
    return false;
  }

  private async flushOne(layer: InMemoryLayer): Promise<void> {
    const start_ms = performance.now();
    try {
      await this.flushOneTimed(layer);
    } finally {
      this.metrics.storageOperation("layer flush", secondsSince(start_ms));
    }
  }

  private async flushOneTimed(layer: InMemoryLayer): Promise<void> {
    const res = await this.deps.jobs.flush(
      {
        ephemeralPath: layer.file.path,
        lengthBytes: layer.file.sizeBytes,
        outDir: this.dir,
        lsnStart: layer.start,
        lsnEnd: layer.end,
      },
      this.tenantId,
    );
    // The file is durable under its final name but in no layer map: a crash here leaves a
    // "future" layer that load() deletes; an error here leaves the layer frozen.
    await failpoint("flush-before-layer-map");
    if (res.desc !== null && this.layerMap_.get(res.desc.fileName) === undefined) {
      this.layerMap_ = this.layerMap_.with([new HistoricLayer(this.deps.cache, this.dir, res.desc)], []);
      this.events.layersAdded([{ name: res.desc.fileName, path: join(this.dir, res.desc.fileName) }]);
    }
    assert(this.frozen[0] === layer, "frozen queue changed under a flush");
    this.frozen.shift();
    layer.close(true);
    this.counters.flushes++;
    // The next flush starts now, not after this one's metadata write (an fsync or two): the
    // flush worker stays busy, and disk_consistent_lsn follows in order (advanceDiskConsistent).
    if (layer.end - 1 > this.diskConsistent.load()) {
      assert(this.unrecorded.length < 1_000_000, "unrecorded flushes pile up");
      this.unrecorded.push(layer.end - 1);
    }
    this.advanceDiskConsistent(layer.end - 1);
    if (this.layerMap_.l0Layers().length >= this.deps.conf().compaction_threshold) this.deps.wakeCompaction?.();
    this.gate.notify();
  }

  /**
   * Layers are durable up to `lsn`: persist it in the metadata, then advance
   * disk_consistent_lsn. Writes are one at a time and coalesce (the newest target wins); a
   * failed write breaks the timeline (what is durable can't be recorded).
   */
  private advanceDiskConsistent(lsn: Lsn): void {
    if (lsn > this.dclTarget) this.dclTarget = lsn;
    if (this.dclWriter !== null || this.dclTarget <= this.diskConsistent.load()) return;
    const w = this.writeDiskConsistent();
    this.dclWriter = w;
    void w.finally(() => {
      if (this.dclWriter === w) this.dclWriter = null;
      // A target that arrived after the writer's last check is picked up here.
      if (this.state === TimelineState.Active) this.advanceDiskConsistent(this.dclTarget);
    });
  }

  private async writeDiskConsistent(): Promise<void> {
    try {
      for (let i = 0; this.dclTarget > this.diskConsistent.load(); i++) {
        assert(i < 1_000_000, "disk_consistent_lsn writer looped too often");
        await this.setDiskConsistent(this.dclTarget);
      }
    } catch (e) {
      if (this.state === TimelineState.Active) this.setBroken(`cannot record disk_consistent_lsn: ${(e as Error).message}`);
    }
  }

  private async setDiskConsistent(lsn: Lsn): Promise<void> {
    // A checkpoint with nothing left to flush may advance it past a flush whose metadata write
    // is still in flight: the later (smaller) value is then already covered.
    if (lsn <= this.diskConsistent.load()) return;
    await this.persistMetadata({ disk_consistent_lsn: lsn });
    if (lsn > this.diskConsistent.load()) this.diskConsistent.advance(lsn);
    const dcl = this.diskConsistent.load();
    let n = 0;
    while (n < this.unrecorded.length && this.unrecorded[n]! <= dcl) n++;
    if (n > 0) {
      this.unrecorded.splice(0, n);
      this.gate.notify();
    }
  }

  metadata(overrides: Partial<TimelineMetadata> = {}): TimelineMetadata {
    const dcl = overrides.disk_consistent_lsn ?? this.diskConsistent.load();
    return {
      disk_consistent_lsn: dcl,
      prev_record_lsn: dcl === this.lastRecord.load() ? this.prevRecordLsn_ : null,
      ancestor_timeline_id: this.ancestor?.timelineId ?? null,
      ancestor_lsn: this.ancestorLsn,
      // Never persist a cutoff above what is durable: after a crash the timeline restarts at
      // disk_consistent_lsn and must still read there (raiseGcCutoff can run ahead of it).
      latest_gc_cutoff_lsn: Math.min(this.latestGcCutoff_, dcl),
      initdb_lsn: this.initdbLsn,
      pg_version: this.pgVersion,
      ...overrides,
    };
  }

  /** Metadata writes are serialized so an older one never lands after a newer one. */
  private persistMetadata(overrides: Partial<TimelineMetadata>): Promise<void> {
    // The metadata is built when its turn in the chain comes, and disk_consistent_lsn never
    // goes below what is already on disk: the source drops WAL below what we reported.
    const p = this.metadataWrite.then(async () => {
      const dcl = Math.max(overrides.disk_consistent_lsn ?? this.diskConsistent.load(), this.persistedDcl);
      // Before the metadata: a crash in between leaves entries above the old
      // disk_consistent_lsn in the file, which load() drops (their WAL comes again).
      await this.commitTimes.save(dcl);
      const md = this.metadata({ ...overrides, disk_consistent_lsn: dcl });
      await writeMetadata(join(this.dir, METADATA_FILE), md);
      this.persistedDcl = dcl;
      this.events.metadataChanged(md);
    });
    this.metadataWrite = p.catch(() => undefined);
    return p;
  }

  // ---------------------------------------------------------------------------------------
  // Read path

  /**
   * Wait (up to wait_lsn_timeout) until WAL up to `lsn` is ingested. A wait that happens is
   * timed (pageserver_wait_lsn_seconds); an LSN already reached costs nothing.
   */
  waitLsn(lsn: Lsn, timeout_ms = this.deps.conf().wait_lsn_timeout_ms): Promise<void> {
    const p = this.lastRecord.wait(lsn, timeout_ms, () => `disk_consistent_lsn is ${lsnToString(this.diskConsistent.load())}, timeline ${this.timelineId}`);
    if (lsn <= this.lastRecord.load()) return p;
    const start_ms = performance.now();
    const observe = (): void => this.metrics.waitLsn(secondsSince(start_ms));
    return p.finally(observe);
  }

  /** The value of `key` at `lsn` (waiting for ingest to reach it); null when the key does not exist. */
  async get(key: Key, lsn: Lsn): Promise<Uint8Array | null> {
    this.checkReadable(lsn);
    if (lsn > this.lastRecord.load()) await this.waitLsn(lsn);
    // Collect, downloading each evicted layer the walk meets; the collection that succeeds
    // runs without an await after it (this.rs is shared by every read).
    let baseLsn: Lsn = ABSENT;
    for (let downloads = 0; ; downloads++) {
      try {
        baseLsn = this.collectRead(key, lsn);
        break;
      } catch (e) {
        if (!(e instanceof LayerEvictedError) || downloads >= MAX_DOWNLOADS_PER_READ) throw e;
        await this.downloadEvicted(e);
      }
    }
    if (baseLsn === ABSENT) return null;
    if (this.rs.values.length < REDO_OFFLOAD_MIN_RECORDS) return this.reconstruct(key, this.rs, baseLsn, true);
    return this.reconstructOffThread(key, baseLsn);
  }

  private checkReadable(lsn: Lsn): void {
    this.checkActive();
    if (!(lsn >= 0 && lsn <= MAX_LSN)) throw new InvalidArgumentError(`invalid LSN ${lsn}`);
    if (lsn < this.latestGcCutoff_) {
      throw new GcCutoffError(
        `tried to request a page version that was garbage collected: requested ${lsnToString(lsn)}, gc cutoff ${lsnToString(this.latestGcCutoff_)}`,
      );
    }
  }

  /**
   * get() for an LSN that is already ingested; synchronous from start to end. `fillCache`
   * false keeps a reconstructed page out of the materialized page cache (bulk reads).
   */
  getNow(key: Key, lsn: Lsn, fillCache = true): Uint8Array | null {
    const baseLsn = this.collectRead(key, lsn);
    if (baseLsn === ABSENT) return null;
    return this.reconstruct(key, this.rs, baseLsn, fillCache);
  }

  /**
   * Collect what a read of `key` at `lsn` needs into this.rs (reused: a caller uses it before
   * its next await). Returns the LSN of the materialized version it starts from (in
   * this.basePage; -1: none, the collection is complete) or ABSENT.
   */
  private collectRead(key: Key, lsn: Lsn): Lsn {
    this.checkReadable(lsn);
    assert(lsn <= this.lastRecord.load(), "read above last_record_lsn");
    const rs = this.rs;
    rs.reset();
    this.counters.reads++;
    advanceAccessTick();
    const conf = this.deps.conf();
    let baseLsn = -1;
    if (conf.materialized_page_cache) baseLsn = this.deps.cache.lookupMaterialized(this.ns, key, lsn, this.basePage);
    const floorLimit = baseLsn + 1;

    let status = WalkStatus.Continue;
    let tl: Timeline = this;
    let end = lsn + 1;
    for (;;) {
      status = tl.collect(key, end, floorLimit, rs, this.walkOut);
      if (status !== WalkStatus.Continue) break;
      end = this.walkOut[0]!;
      if (tl.ancestor === null || end <= floorLimit) break;
      end = Math.min(end, tl.ancestorLsn + 1);
      tl = tl.ancestor;
    }
    this.counters.layersVisited += rs.layersVisited;
    if (status === WalkStatus.Absent) return ABSENT;
    if (status !== WalkStatus.Complete && baseLsn < 0) return ABSENT;
    return baseLsn;
  }

  /**
   * A long chain is redone on the redo pool: the plan is copied out of the layers (and the
   * cache) first, so nothing it points to can change while the main thread serves others.
   */
  private async reconstructOffThread(key: Key, baseLsn: Lsn): Promise<Uint8Array> {
    const fromCache = !this.rs.complete;
    if (fromCache) this.counters.materializedHits++;
    const plan = planReconstruct(this.rs, fromCache ? this.basePage : null, baseLsn);
    const res = await this.deps.jobs.redo(
      {
        redoModule: this.deps.redoModule,
        key,
        base: plan.base === null ? null : plan.base.slice(),
        baseLsn: plan.baseAt,
        records: plan.records.map((v) => v.slice()),
        lsns: plan.lsns,
      },
      this.tenantId,
    );
    if ("error" in res) throw new PageserverError(res.error.code, res.error.message);
    this.counters.redos++;
    this.counters.offloadedRedos++;
    if (this.deps.conf().materialized_page_cache && res.page.length === PAGE_SIZE) {
      this.deps.cache.insertMaterialized(this.ns, key, plan.lsns[plan.lsns.length - 1]!, res.page);
    }
    return res.page;
  }

  /** The in-memory and historic layers of this timeline, for key, within [floorLimit, end). */
  private collect(key: Key, end: Lsn, floorLimit: Lsn, rs: ReconstructState, out: Float64Array): WalkStatus {
    let top = end;
    const open = this.open;
    if (open !== null && open.start < top) {
      const floor = Math.max(open.start, floorLimit);
      if (floor < top && open.getValues(key, floor, top, rs)) return WalkStatus.Complete;
      top = Math.min(top, open.start);
    }
    for (let i = this.frozen.length - 1; i >= 0; i--) {
      const f = this.frozen[i]!;
      if (f.start >= top) continue;
      const floor = Math.max(f.start, floorLimit);
      const ceil = Math.min(top, f.end);
      if (floor < ceil && f.getValues(key, floor, ceil, rs)) return WalkStatus.Complete;
      top = Math.min(top, f.start);
    }
    if (top <= floorLimit) {
      out[0] = top;
      return WalkStatus.Continue;
    }
    return walkHistoric(this.layerMap_, key, top, floorLimit, rs, out);
  }

  private reconstruct(key: Key, rs: ReconstructState, baseLsn: Lsn, fillCache: boolean): Uint8Array {
    const fromCache = !rs.complete;
    if (fromCache) this.counters.materializedHits++;
    const r = reconstructValue(key, rs, this.deps.redo, fromCache ? this.basePage.slice() : null, baseLsn);
    if (r.applied > 0) {
      this.counters.redos++;
      if (fillCache && this.deps.conf().materialized_page_cache && r.value.length === PAGE_SIZE) {
        this.deps.cache.insertMaterialized(this.ns, key, r.lastLsn, r.value);
      }
    }
    return r.value;
  }

  /**
   * Refuse reads and branches below `lsn` from now on (a timeline bootstrapped from a fuzzy
   * base backup is consistent only from the backup's end LSN).
   */
  async raiseGcCutoff(lsn: Lsn): Promise<void> {
    if (lsn <= this.latestGcCutoff_) return;
    this.latestGcCutoff_ = lsn;
    await this.persistMetadata({});
  }

  // ---------------------------------------------------------------------------------------
  // Branching support

  /** Refuse a branch point this timeline can't serve (above its last LSN, below its GC cutoff). */
  checkBranchPoint(lsn: Lsn): void {
    this.checkActive();
    if (lsn > this.lastRecord.load()) {
      throw new InvalidArgumentError(
        `invalid branch start lsn ${lsnToString(lsn)}: beyond the ancestor's last record LSN ${lsnToString(this.lastRecord.load())}`,
      );
    }
    if (lsn < this.latestGcCutoff_) {
      throw new GcCutoffError(`invalid branch start lsn ${lsnToString(lsn)}: less than latest GC cutoff ${lsnToString(this.latestGcCutoff_)}`);
    }
    if (lsn < this.plannedGcCutoff) {
      throw new GcCutoffError(`invalid branch start lsn ${lsnToString(lsn)}: less than planned GC cutoff ${lsnToString(this.plannedGcCutoff)}`);
    }
    if (this.ancestor !== null && lsn < this.ancestorLsn) {
      throw new InvalidArgumentError(`invalid branch start lsn ${lsnToString(lsn)}: below this timeline's own branch point ${lsnToString(this.ancestorLsn)}`);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Compaction

  /**
   * L0 → L1 when at least compaction_threshold L0 files exist: the oldest contiguous chain,
   * at most max(compaction_threshold, COMPACTION_UPPER_LIMIT) files, so one job stays short
   * (the loop runs again while L0 files remain). A chain of one (a gap after it: a checkpoint
   * with nothing to flush) is rewritten alone, so no L0 file is ever stuck. Returns the
   * number of L0 files compacted.
   */
  async compactL0(): Promise<number> {
    this.checkActive();
    const conf = this.deps.conf();
    const l0 = [...this.layerMap_.l0Layers()].sort((a, b) => a.desc.lsnRange.start - b.desc.lsnRange.start);
    if (l0.length === 0 || l0.length < conf.compaction_threshold) return 0;
    // Only a contiguous chain (each end == next start) may merge into one LSN range.
    const limit = Math.max(conf.compaction_threshold, COMPACTION_UPPER_LIMIT);
    const chain = [l0[0]!];
    for (let i = 1; i < l0.length && chain.length < limit && chain[chain.length - 1]!.desc.lsnRange.end === l0[i]!.desc.lsnRange.start; i++) {
      chain.push(l0[i]!);
    }
    const start_ms = performance.now();
    // The job reads the files in a worker: they must be here, and stay until it is done.
    const release = await this.pinAndFetch(chain);
    try {
      await this.compactChain(chain, conf);
    } finally {
      release();
      this.metrics.storageOperation("compact", secondsSince(start_ms));
    }
    return chain.length;
  }

  private async compactChain(chain: HistoricLayer[], conf: TenantConf): Promise<void> {
    const res = await this.deps.jobs.compact(
      {
        dir: this.dir,
        l0: chain.map((l) => l.desc),
        targetSizeBytes: conf.checkpoint_distance_bytes,
      },
      this.tenantId,
    );
    // The L1 files are durable, the map still has the L0 files: a crash here loads both (they
    // overlap, which reads allow), and the next compaction writes the same L1 files again.
    await failpoint("compact-before-map-swap");
    const removed = chain.map((l) => l.desc.fileName);
    // An L1 file of an interrupted compaction of the same chain is in the map already.
    const added = res.added.filter((d) => this.layerMap_.get(d.fileName) === undefined).map((d) => new HistoricLayer(this.deps.cache, this.dir, d));
    this.markRewritten(res.added);
    const gone = removed.filter((n) => !res.added.some((d) => d.fileName === n));
    this.layerMap_ = this.layerMap_.with(added, gone);
    // New layers first: the index that drops the L0 files names the L1 files that replace them.
    this.events.layersAdded(added.map((l) => ({ name: l.desc.fileName, path: l.path })));
    this.events.layersRemoved(gone);
    for (const l of chain) {
      if (res.added.some((d) => d.fileName === l.desc.fileName)) continue;
      l.close();
      unlinkSync(l.path);
    }
    this.counters.compactions++;
    this.gate.notify();
  }

  /**
   * Partitions for image creation: they tile the whole key space [KEY_MIN, KEY_MAX), cut where
   * existing image layers are cut. Tiling everything (not just the keyspace's extent) is what
   * lets images cover L0 deltas completely, and puts keys that left the keyspace inside an
   * image's range, where their absence reads as "does not exist".
   */
  private partitions(): KeyRange[] {
    const cuts = new Set<Key>();
    for (const l of this.layerMap_.layers) {
      if (l.desc.kind !== "image") continue;
      const r = l.desc.keyRange;
      if (r.start !== KEY_MIN) cuts.add(r.start);
      if (r.end !== KEY_MAX) cuts.add(r.end);
    }
    const points = [KEY_MIN, ...[...cuts].sort(), KEY_MAX];
    const parts: KeyRange[] = [];
    for (let i = 0; i + 1 < points.length; i++) parts.push({ start: points[i]!, end: points[i + 1]! });
    return parts;
  }

  /**
   * Create image layers at disk_consistent_lsn for every partition over which at least
   * image_creation_threshold deltas lie above the newest image. Returns layers created.
   */
  async createImageLayers(force = false, signal?: AbortSignal): Promise<number> {
    this.checkActive();
    const conf = this.deps.conf();
    const lsn = this.diskConsistent.load();
    // Every ancestor must have its branch point on disk: workers read files only.
    const chain: ChainLink[] = [{ dir: this.dir, layers: this.layerMap_.layers.map((l) => l.desc), endLsn: lsn + 1 }];
    for (let t: Timeline = this; t.ancestor !== null; t = t.ancestor) {
      if (t.ancestor.diskConsistentLsn < t.ancestorLsn) return 0;
      chain.push({ dir: t.ancestor.dir, layers: t.ancestor.layerMap_.layers.map((l) => l.desc), endLsn: t.ancestorLsn + 1 });
    }
    if (lsn < this.latestGcCutoff_) return 0;
    const todo: KeyRange[] = [];
    for (const p of this.partitions()) {
      const imgLsn = this.layerMap_.newestImageCovering(p, lsn);
      if (imgLsn === lsn) continue;
      const deltas = this.layerMap_.countDeltas(p, imgLsn, lsn);
      if (deltas >= conf.image_creation_threshold || (force && (deltas > 0 || this.ancestor !== null))) todo.push(p);
    }
    if (todo.length === 0) return 0;
    const start_ms = performance.now();
    // The jobs read the chain's files in workers: download what is evicted, and keep it.
    const inputs: HistoricLayer[] = [...this.layerMap_.layers];
    for (let t: Timeline = this; t.ancestor !== null; t = t.ancestor) inputs.push(...t.ancestor.layerMap_.layers);
    const release = await this.pinAndFetch(inputs);
    try {
      return await this.createImagesFor(todo, chain, lsn, conf, signal);
    } finally {
      release();
      this.metrics.storageOperation("create images", secondsSince(start_ms));
    }
  }

  private async createImagesFor(todo: KeyRange[], chain: ChainLink[], lsn: Lsn, conf: TenantConf, signal: AbortSignal | undefined): Promise<number> {
    // Only now: walking the keyspace reads every relation's size on the main thread.
    const provider = this.deps.keyspace ?? WHOLE_KEYSPACE;
    const keyspace = await this.withResidentLayers(() => provider(this, lsn));
    // One job per partition: between them the pool serves other tenants' jobs (fair queue).
    let created = 0;
    for (const part of todo) {
      // Stopped between partitions (an operator request whose client went away): each
      // partition's images are in the map already, the rest wait for the next round.
      signal?.throwIfAborted();
      const res = await this.deps.jobs.images(
        {
          outDir: this.dir,
          lsn,
          chain,
          partitions: [part],
          keyspace,
          targetSizeBytes: conf.compaction_target_size_bytes,
          redoModule: this.deps.redoModule,
        },
        this.tenantId,
      );
      const existing = new Set(this.layerMap_.layers.map((l) => l.desc.fileName));
      const fresh = res.added.filter((d) => !existing.has(d.fileName));
      this.markRewritten(res.added);
      this.layerMap_ = this.layerMap_.with(
        fresh.map((d) => new HistoricLayer(this.deps.cache, this.dir, d)),
        [],
      );
      this.events.layersAdded(fresh.map((d) => ({ name: d.fileName, path: join(this.dir, d.fileName) })));
      this.counters.imageLayersCreated += fresh.length;
      created += fresh.length;
    }
    return created;
  }

  // ---------------------------------------------------------------------------------------
  // GC

  /**
   * The cutoff GC would use now: min(space cutoff, PITR cutoff), capped at disk_consistent_lsn.
   * - space: last_record_lsn − gc_horizon.
   * - PITR (pitr_interval > 0): where a branch at now − pitr_interval would start
   *   (lsnForTime: PostgreSQL's recovery_target_time rule over every transaction end kept in
   *   the commit-time index, this timeline's and, below its branch point, its ancestors').
   *   Every commit known is older → no PITR limit (the space cutoff decides); the time is
   *   before the history kept → the earliest branchable LSN (nothing more is collected). Only when no commit time is known at all do the wall-clock samples
   *   taken at ingest stand in (the last sample at or before the limit; 0 without one).
   */
  gcCutoff(now_ms = Date.now()): Lsn {
    const conf = this.deps.conf();
    const last = this.lastRecord.load();
    const space = Math.max(0, last - conf.gc_horizon_bytes);
    const pitr = conf.pitr_interval_ms > 0 ? this.pitrCutoff(now_ms - conf.pitr_interval_ms, last) : last;
    return Math.min(space, pitr, this.diskConsistent.load());
  }

  /** The LSN whose history PITR keeps: everything committed after `limit_ms` stays readable. */
  private pitrCutoff(limit_ms: number, last: Lsn): Lsn {
    const found = this.lsnForTime(limit_ms);
    if (found.kind === "present" || found.kind === "past") return found.lsn;
    if (found.kind === "future") return last;
    let pitr = 0;
    for (const s of this.lsnTimeSamples) {
      if (s.time_ms <= limit_ms) pitr = s.lsn;
      else break;
    }
    return pitr;
  }

  /**
   * Remove layers wholly below the cutoff that newer images cover and no child branch
   * point needs. `retainLsns`: branch points of this timeline's children.
   */
  async gc(retainLsns: Lsn[], cutoffOverride?: Lsn): Promise<number> {
    this.checkActive();
    // Never above a leased read (a base backup streaming at that LSN reads on after this).
    const cutoff = Math.min(cutoffOverride ?? this.gcCutoff(), this.diskConsistent.load(), this.minLeasedLsn());
    if (cutoff <= this.latestGcCutoff_) return 0;
    this.plannedGcCutoff = cutoff;
    const start_ms = performance.now();
    try {
      const plan = await this.deps.jobs.gc({ layers: this.layerMap_.layers.map((l) => l.desc), cutoffLsn: cutoff, retainLsns }, this.tenantId);
      // A long read leased an LSN below the plan while it was made: not this round.
      if (this.minLeasedLsn() < cutoff) return 0;
      // Publish the cutoff durably first: after that no read or branch may go below it.
      this.latestGcCutoff_ = cutoff;
      await this.persistMetadata({});
      await this.trimCommitTimes(cutoff, retainLsns);
      // The cutoff is durable, nothing is deleted yet: the next GC above this cutoff plans again.
      await failpoint("gc-before-delete");
      const victims = plan.remove.map((n) => this.layerMap_.get(n)).filter((l): l is HistoricLayer => l !== undefined);
      this.layerMap_ = this.layerMap_.with([], victims.map((l) => l.desc.fileName));
      this.events.layersRemoved(victims.map((l) => l.desc.fileName));
      if (victims.some((l) => !l.resident)) await this.saveEvictedManifest();
      for (const l of victims) {
        l.close();
        if (existsSync(l.path)) unlinkSync(l.path);
      }
      this.counters.gcLayersRemoved += victims.length;
      return victims.length;
    } finally {
      this.plannedGcCutoff = 0;
      this.metrics.storageOperation("gc", secondsSince(start_ms));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Lifecycle

  /** Stop: optionally flush what is in memory first; then no more writes or reads. */
  async shutdown(flush: boolean): Promise<void> {
    // The last flush goes to disk even while the remote upload queue is full.
    this.shuttingDown = true;
    if (this.state === TimelineState.Active && flush) {
      try {
        await this.checkpoint();
      } catch (e) {
        this.deps.log.warn({ err: e }, "flush at shutdown failed");
      }
    }
    if (this.state !== TimelineState.Broken) this.state = TimelineState.Stopping;
    this.flushLoop = FlushLoopState.Exited;
    this.gate.close(`timeline ${this.timelineId} is stopping`);
    if (this.flushing !== null) await this.flushing.catch(() => undefined);
    await this.dclWriter;
    await this.metadataWrite;
    this.lastRecord.shutdown();
    this.diskConsistent.shutdown();
    this.open?.close(true);
    this.open = null;
    for (const f of this.frozen.splice(0)) f.close(true);
    for (const l of this.layerMap_.layers) l.close();
  }

  // ---------------------------------------------------------------------------------------
  // Operator views

  /** The frozen in-memory layers (oldest first), then the open one; an open layer ends past last_record_lsn. */
  inMemoryLayers(): InMemoryLayerInfo[] {
    const out: InMemoryLayerInfo[] = this.frozen.map((f) => ({ start: f.start, end: f.end, sizeBytes: f.sizeBytes, frozen: true }));
    const open = this.open;
    if (open !== null) out.push({ start: open.start, end: Math.max(open.start, this.lastRecord.load()) + 1, sizeBytes: open.sizeBytes, frozen: false });
    return out;
  }

  // ---------------------------------------------------------------------------------------
  // Commit timestamps (commit_times.ts): LSN ↔ time

  /**
   * Ingest saw a transaction-end record (COMMIT, COMMIT_PREPARED, ABORT, ABORT_PREPARED: the
   * records recovery_target_time is checked against) ending at `lsn` with PostgreSQL timestamp
   * `xactTime_us` (µs since 2000-01-01).
   */
  noteCommit(lsn: Lsn, xactTime_us: number): void {
    this.commitTimes.add(lsn, xactTime_us);
  }

  /** The commit-time index's files as one object for remote storage (CommitTimes.snapshot). */
  commitTimesSnapshot(): Promise<Uint8Array | null> {
    return this.commitTimes.snapshot();
  }

  /** The lowest LSN a branch of this timeline may start at now. */
  earliestBranchLsn(): Lsn {
    return Math.max(this.latestGcCutoff_, this.plannedGcCutoff, this.initdbLsn, this.ancestor === null ? 0 : this.ancestorLsn);
  }

  /**
   * Where a branch at `time_ms` (Unix ms, taken to the µs) starts, by PostgreSQL's rule for
   * recovery_target_time with recovery_target_inclusive: before the first transaction-end
   * record, in LSN order, whose time is later (resolveLsnForTime, commit_times.ts). This
   * timeline's history is its ancestors' records below the branch points, then its own.
   * `present`: the first LSN at or above the earliest branchable one holding exactly the
   * transactions that ended by then; `past`: that state is below the earliest branchable LSN
   * (or before the first record known); `future`: no record is later (last_record_lsn);
   * `nodata`: no record known. The answer is always an LSN this timeline can be branched at.
   */
  lsnForTime(time_ms: number): LsnForTime {
    const t_us = msToPgTimestamp(time_ms);
    const chain: Timeline[] = [];
    for (let t: Timeline | null = this; t !== null; t = t.ancestor) {
      assert(chain.length < 100_000, "ancestry too deep");
      chain.push(t);
    }
    // Root first, each up to its child's branch point; a probe's object is reused: copy it.
    const probes: TimeProbe[] = [];
    for (let i = chain.length - 1; i >= 0; i--) {
      const maxLsn = i === 0 ? Number.MAX_SAFE_INTEGER : chain[i - 1]!.ancestorLsn;
      probes.push({ ...chain[i]!.commitTimes.probe(t_us, maxLsn) });
    }
    return resolveLsnForTime(probes, this.earliestBranchLsn(), this.lastRecord.load());
  }

  /**
   * Drop commit times that no reader needs any more: below the GC cutoff and below every
   * child's branch point (a child reads this timeline's commit times up to its branch point).
   */
  async trimCommitTimes(cutoff: Lsn, retainLsns: readonly Lsn[]): Promise<void> {
    let below = cutoff;
    for (const l of retainLsns) below = Math.min(below, l);
    await this.commitTimes.trimBelow(below);
  }

  /** The time (Unix ms) of the last transaction end (commit or abort) at or before `lsn` on this timeline's history, or null. */
  timeForLsn(lsn: Lsn): number | null {
    let at = lsn;
    let depth = 0;
    for (let t: Timeline | null = this; t !== null; t = t.ancestor) {
      assert(depth++ < 100_000, "ancestry too deep");
      const time = t.commitTimes.timeAt(at);
      if (time !== null) return pgTimestampToMs(time);
      at = Math.min(at, t.ancestorLsn);
    }
    return null;
  }
}
