/**
 * Timeline: one branch of a tenant's history, as the rest of the pageserver sees it. It is
 * the core state (core.ts) plus the parts that act on it, each owning its own fields:
 *
 *   read.ts        get@LSN: open → frozen → historic layers → ancestor, then redo
 *   ingest.ts      put, finishWrite, when to freeze, the ingest gate, bulk import
 *   flush.ts       freezing, the flush loop, checkpoints, disk_consistent_lsn and metadata
 *   residency.ts   evicted layers: on-demand download, eviction, read leases, the manifest
 *   compaction.ts  L0 → L1 compaction and image layer creation (jobs on the worker pools)
 *   gc.ts          the GC cutoff (space, PITR), layer GC, branch-point checks
 *   lsn_time.ts    LSN ↔ time: commit times along the ancestry, ingest's wall-clock samples
 *   load.ts        what a timeline directory holds at load, leftovers removed
 *
 * This class creates and loads a timeline, wires the parts, runs its lifecycle (activate,
 * setBroken, shutdown), and forwards the public API to the part that owns it (one property
 * access; the hot paths, put and the reads, add nothing else).
 *
 * Invariants: see each part. Across parts: a timeline becomes Active once (activate), and
 * leaves Active for Broken or Stopping only; every part refuses work when it is not Active.
 *
 * Lock order: none on this object (single-threaded); the tenant's background mutex orders
 * compaction and GC (never both at once for a tenant), and flushes are one at a time.
 */
import { join } from "node:path";
import type { HistoricLayer, LayerDownloader } from "../../layers/historic_layer.js";
import type { LayerStats } from "../../layers/layer_map.js";
import type { LayerDesc } from "../../layers/layer_name.js";
import { assert } from "../../types/assert.js";
import { BadStateError } from "../../types/errors.js";
import type { TenantId, TimelineId } from "../../types/ids.js";
import { KEY_MAX, KEY_MIN, type Key, type KeyRange } from "../../types/key.js";
import { INVALID_LSN, type Lsn, lsnAdd, lsnMax, lsnToString } from "../../types/lsn.js";
import type { Value, ValueTag } from "../../types/value.js";
import type { BulkImport } from "../bulk_import.js";
import type { LsnForTime } from "../lsn_for_time.js";
import type { Backpressure, GateStats } from "../ingest_gate.js";
import type { AddedLayer, LayerEvents } from "../layer_events.js";
import { readMetadata, type TimelineMetadata, writeMetadata } from "../metadata.js";
import { TimelineCompaction } from "./compaction.js";
import { type CoreDeps, type FlushLoopState, TimelineCore, TimelineState } from "./core.js";
import { TimelineFlush } from "./flush.js";
import { TimelineGc } from "./gc.js";
import { type RecordApplier, TimelineIngest } from "./ingest.js";
import { METADATA_FILE, scanTimelineDir } from "./load.js";
import { TimelineLsnTime } from "./lsn_time.js";
import { TimelineReader } from "./read.js";
import { LayerResidency } from "./residency.js";

/** Which keys exist at an LSN, as sorted half-open ranges (image creation copies only these). */
export type KeyspaceProvider = (timeline: Timeline, lsn: Lsn) => KeyRange[] | Promise<KeyRange[]>;

export const WHOLE_KEYSPACE: KeyspaceProvider = () => [{ start: KEY_MIN, end: KEY_MAX }];

export interface TimelineDeps extends CoreDeps {
  keyspace?: KeyspaceProvider;
}

/** An in-memory layer as the operator sees it: LSN range [start, end), bytes, frozen or open. */
export interface InMemoryLayerInfo {
  start: Lsn;
  end: Lsn;
  sizeBytes: number;
  frozen: boolean;
}

export class Timeline extends TimelineCore {
  declare readonly ancestor: Timeline | null;
  private readonly residency: LayerResidency;
  private readonly reader: TimelineReader;
  private readonly lsnTime: TimelineLsnTime;
  private readonly flusher: TimelineFlush;
  private readonly ingester: TimelineIngest;
  private readonly compactor: TimelineCompaction;
  private readonly collector: TimelineGc;

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
    super(deps, tenantId, timelineId, dir, ancestor, md, layers, lastRecordLsn, nextOpenLayerAt, evicted);
    this.residency = new LayerResidency(this, ancestor?.residency ?? null);
    this.reader = new TimelineReader(this, this.residency);
    this.lsnTime = new TimelineLsnTime(this);
    this.flusher = new TimelineFlush(this, { progressed: () => this.ingester.notifyGate(), setBroken: (reason) => this.setBroken(reason) });
    this.ingester = new TimelineIngest(this, this.flusher, this.lsnTime, this.residency);
    const keyspace = deps.keyspace ?? WHOLE_KEYSPACE;
    this.compactor = new TimelineCompaction(this, this.residency, {
      keyspaceAt: async (lsn) => keyspace(this, lsn),
      progressed: () => this.ingester.notifyGate(),
    });
    this.collector = new TimelineGc(this, this.flusher, this.residency, this.lsnTime);
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
      ancestor_lsn: ancestor === null ? INVALID_LSN : startLsn,
      latest_gc_cutoff_lsn: startLsn,
      initdb_lsn: startLsn,
      pg_version: pgVersion,
    };
    await writeMetadata(join(dir, METADATA_FILE), md);
    // A bootstrap writes its initial data at startLsn itself; a branch's own values start above
    // the branch point, so that reading the branch at the branch point equals the ancestor.
    return new Timeline(deps, tenantId, timelineId, dir, ancestor, md, [], startLsn, ancestor === null ? startLsn : lsnAdd(startLsn, 1));
  }

  /**
   * Load a timeline from its directory: metadata, then the layer files named in it. Temp and
   * ephemeral leftovers are deleted, as are "future" layers (flushed after the last durable
   * metadata write: their WAL is re-ingested); see load.ts.
   */
  static load(deps: TimelineDeps, tenantId: TenantId, timelineId: TimelineId, dir: string, ancestor: Timeline | null): Timeline {
    const md = readMetadata(join(dir, METADATA_FILE));
    if ((md.ancestor_timeline_id ?? null) !== (ancestor?.timelineId ?? null)) {
      throw new BadStateError(`timeline ${timelineId}: ancestor mismatch (metadata says ${md.ancestor_timeline_id})`);
    }
    const { resident, evicted } = scanTimelineDir(deps.log, dir, md, ancestor !== null);
    const dcl = md.disk_consistent_lsn;
    const first = ancestor === null && dcl === md.initdb_lsn && resident.length === 0 && evicted.length === 0 ? dcl : lsnAdd(dcl, 1);
    const tl = new Timeline(deps, tenantId, timelineId, dir, ancestor, md, resident, dcl, first, evicted);
    try {
      const note = tl.commitTimes.load(dcl);
      if (note !== null) deps.log.warn({ disk_consistent_lsn: lsnToString(dcl) }, note);
    } catch (e) {
      // An index of commit times is no reason to refuse the timeline's data: keep the bad files
      // aside and start it at disk_consistent_lsn (times before the next commits answer `past`).
      deps.log.warn(
        { err: e, disk_consistent_lsn: lsnToString(dcl) },
        "commit-time index corrupt: kept aside as *.corrupt, restarted at disk_consistent_lsn",
      );
      tl.commitTimes.reset(dcl);
    }
    return tl;
  }

  // ---------------------------------------------------------------------------------------
  // State and lifecycle

  get frozenCount(): number {
    return this.frozen.length;
  }
  /** Layers by level and kind, with bytes, and the frozen in-memory layers: O(1) once per layer map. */
  layerStats(): LayerStats & { frozen: { count: number; bytes: number } } {
    let bytes = 0;
    for (const f of this.frozen) bytes += f.sizeBytes;
    return { ...this.layerMap.stats(), frozen: { count: this.frozen.length, bytes } };
  }
  get l0Count(): number {
    return this.layerMap.l0Layers().length;
  }
  get openLayerSizeBytes(): number {
    return this.open?.sizeBytes ?? 0;
  }
  get flushLoopState(): FlushLoopState {
    return this.flusher.loopState;
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
    return this.layerMap.layers.filter((l) => l.resident).map((l) => ({ name: l.desc.fileName, path: l.path }));
  }

  activate(): void {
    assert(this.state === TimelineState.Loading, `activate from ${this.state}`);
    this.flusher.start();
    this.state = TimelineState.Active;
  }

  setBroken(reason: string): void {
    this.log.error({ reason }, "timeline is broken");
    this.state = TimelineState.Broken;
    this.brokenReason = reason;
    this.flusher.stop();
    this.ingester.closeGate(`timeline ${this.timelineId} is broken: ${reason}`);
    this.lastRecord.shutdown(`timeline ${this.timelineId} is broken: ${reason}`);
    this.diskConsistent.shutdown(`timeline ${this.timelineId} is broken: ${reason}`);
  }

  /** Stop: optionally flush what is in memory first; then no more writes or reads. */
  async shutdown(flush: boolean): Promise<void> {
    // The last flush goes to disk even while the remote upload queue is full.
    this.flusher.beginShutdown();
    if (this.state === TimelineState.Active && flush) {
      try {
        await this.checkpoint();
      } catch (e) {
        this.log.warn({ err: e }, "flush at shutdown failed");
      }
    }
    if (this.state !== TimelineState.Broken) this.state = TimelineState.Stopping;
    this.flusher.stop();
    this.ingester.closeGate(`timeline ${this.timelineId} is stopping`);
    await this.flusher.drain();
    this.lastRecord.shutdown();
    this.diskConsistent.shutdown();
    this.open?.close(true);
    this.open = null;
    for (const f of this.frozen.splice(0)) f.close(true);
    for (const l of this.layerMap.layers) l.close();
  }

  /** The frozen in-memory layers (oldest first), then the open one; an open layer ends past last_record_lsn. */
  inMemoryLayers(): InMemoryLayerInfo[] {
    const out: InMemoryLayerInfo[] = this.frozen.map((f) => ({ start: f.start, end: f.end, sizeBytes: f.sizeBytes, frozen: true }));
    const open = this.open;
    if (open !== null)
      out.push({ start: open.start, end: lsnAdd(lsnMax(open.start, this.lastRecord.load()), 1), sizeBytes: open.sizeBytes, frozen: false });
    return out;
  }

  // ---------------------------------------------------------------------------------------
  // Read path (read.ts)

  /** Wait (up to wait_lsn_timeout) until WAL up to `lsn` is ingested (timed when it waits). */
  waitLsn(lsn: Lsn, timeout_ms?: number): Promise<void> {
    return this.reader.waitLsn(lsn, timeout_ms);
  }
  /** The value of `key` at `lsn` (waiting for ingest to reach it, downloading evicted layers); null when the key does not exist. */
  get(key: Key, lsn: Lsn): Promise<Uint8Array | null> {
    return this.reader.get(key, lsn);
  }
  /**
   * get() at an ingested LSN, synchronously; `fillCache` false keeps the page out of the
   * materialized cache. Only for data that can't be evicted (a timeline being imported, the
   * ingest path under applyRecord): other readers use readAt.
   */
  getNow(key: Key, lsn: Lsn, fillCache = true): Uint8Array | null {
    return this.reader.getNow(key, lsn, fillCache);
  }
  /** The value at an ingested LSN: at once when its layers are on local disk, else a Promise (read.ts). */
  readAt(key: Key, lsn: Lsn, fillCache = true): Uint8Array | null | Promise<Uint8Array | null> {
    return this.reader.readAt(key, lsn, fillCache);
  }

  // ---------------------------------------------------------------------------------------
  // Write path and backpressure (ingest.ts)

  put(key: Key, lsn: Lsn, value: Value): void {
    this.ingester.put(key, lsn, value);
  }
  /** put() of `tag ‖ payload` without building it (the payload is copied once). */
  putTagged(key: Key, lsn: Lsn, tag: ValueTag, payload: Uint8Array): void {
    this.ingester.putTagged(key, lsn, tag, payload);
  }
  /** Everything up to `lsn` is written: advance last_record_lsn, freeze when due. */
  finishWrite(lsn: Lsn, prevRecordLsn: Lsn | null = null): void {
    this.ingester.finishWrite(lsn, prevRecordLsn);
  }
  /** The ingest path's check before each record: None, or wait with waitIngestCapacity(). */
  ingestBackpressure(): Backpressure {
    return this.ingester.ingestBackpressure();
  }
  /** Wait until flush and compaction let ingest go on (see ingest_gate.ts). */
  waitIngestCapacity(signal?: AbortSignal): Promise<void> {
    return this.ingester.waitIngestCapacity(signal);
  }
  /** The tenant config changed: thresholds may have moved. */
  configChanged(): void {
    this.ingester.notifyGate();
  }
  get backpressureStats(): GateStats {
    return this.ingester.backpressureStats;
  }
  /** Housekeeping: freeze an idle open layer past checkpoint_timeout; retry a failed flush round when due. */
  checkTimeout(): void {
    this.ingester.checkTimeout();
  }
  /** Apply one WAL record (undefined: done; a Promise: done once what its reads need is downloaded). */
  applyRecord<R>(applier: RecordApplier<R>, rec: R): Promise<void> | undefined {
    return this.ingester.applyRecord(applier, rec);
  }
  /** Start a bulk import at `lsn` into this empty, ancestor-less timeline (bulk_import.ts). */
  bulkImport(lsn: Lsn): BulkImport {
    return this.ingester.bulkImport(lsn);
  }

  // ---------------------------------------------------------------------------------------
  // Flush and durability (flush.ts)

  /** Freeze what is open and wait until everything up to last_record_lsn is durable. */
  checkpoint(): Promise<void> {
    return this.flusher.checkpoint();
  }
  /** The metadata as it would be written now, with `overrides`. */
  metadata(overrides: Partial<TimelineMetadata> = {}): TimelineMetadata {
    return this.flusher.metadata(overrides);
  }

  // ---------------------------------------------------------------------------------------
  // Layer residency (residency.ts)

  setLayerDownloader(d: LayerDownloader | null): void {
    this.residency.setLayerDownloader(d);
  }
  evictedLayerNames(): string[] {
    return this.residency.evictedLayerNames();
  }
  residentLayers(): HistoricLayer[] {
    return this.residency.residentLayers();
  }
  residentBytes(): number {
    return this.residency.residentBytes();
  }
  adoptRemoteLayers(remote: ReadonlyMap<string, number>): { added: number; dropped: number } {
    return this.residency.adoptRemoteLayers(remote);
  }
  downloadLayer(layer: HistoricLayer): Promise<void> {
    return this.residency.downloadLayer(layer);
  }
  /** Run the synchronous read `fn`, downloading what it meets evicted and running it again (for src/tenant and its tests). */
  withResidentLayers<T>(fn: () => T): Promise<T> {
    return this.residency.withResidentLayers(fn);
  }
  leaseReadsAt(lsn: Lsn): () => void {
    return this.residency.leaseReadsAt(lsn);
  }
  get readLeaseCount(): number {
    return this.residency.readLeaseCount;
  }
  evictable(layer: HistoricLayer): boolean {
    return this.residency.evictable(layer);
  }
  /**
   * Hold what a read at `lsn` needs until the returned release runs: GC keeps the LSN, and
   * every layer such a read visits is local and stays so (for long streams: base backups).
   */
  holdReadsAt(lsn: Lsn): Promise<() => void> {
    return this.residency.holdReadsAt(lsn);
  }
  evictLayer(layer: HistoricLayer): Promise<boolean> {
    return this.residency.evictLayer(layer);
  }

  // ---------------------------------------------------------------------------------------
  // Compaction and image layers (compaction.ts)

  compactL0(): Promise<number> {
    return this.compactor.compactL0();
  }
  createImageLayers(force = false, signal?: AbortSignal): Promise<number> {
    return this.compactor.createImageLayers(force, signal);
  }

  // ---------------------------------------------------------------------------------------
  // GC and branching (gc.ts)

  gcCutoff(now_ms?: number): Lsn {
    return this.collector.gcCutoff(now_ms);
  }
  gc(retainLsns: Lsn[], cutoffOverride?: Lsn): Promise<number> {
    return this.collector.gc(retainLsns, cutoffOverride);
  }
  raiseGcCutoff(lsn: Lsn): Promise<void> {
    return this.collector.raiseGcCutoff(lsn);
  }
  checkBranchPoint(lsn: Lsn): void {
    this.collector.checkBranchPoint(lsn);
  }

  // ---------------------------------------------------------------------------------------
  // LSN ↔ time (lsn_time.ts)

  noteCommit(lsn: Lsn, xactTime_us: number): void {
    this.lsnTime.noteCommit(lsn, xactTime_us);
  }
  commitTimesSnapshot(): Promise<Uint8Array | null> {
    return this.lsnTime.commitTimesSnapshot();
  }
  earliestBranchLsn(): Lsn {
    return this.lsnTime.earliestBranchLsn();
  }
  lsnForTime(time_ms: number): LsnForTime {
    return this.lsnTime.lsnForTime(time_ms);
  }
  trimCommitTimes(cutoff: Lsn, retainLsns: readonly Lsn[]): Promise<void> {
    return this.lsnTime.trimCommitTimes(cutoff, retainLsns);
  }
  timeForLsn(lsn: Lsn): number | null {
    return this.lsnTime.timeForLsn(lsn);
  }
}
