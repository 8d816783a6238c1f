/**
 * TimelineCore: the state every part of a timeline reads (Neon's `Timeline` struct, whose
 * `impl` blocks are spread over timeline/*.rs). It owns the identity (ids, directory, branch
 * point), the lifecycle state, the layers (open and frozen in-memory layers, the layer map of
 * historic layers, where the next open layer starts), last_record_lsn and
 * disk_consistent_lsn, the GC cutoffs, the commit-time index, the layer events and the
 * counters. The parts (read.ts, ingest.ts, flush.ts, residency.ts, compaction.ts, gc.ts,
 * lsn_time.ts) own their own fields and hold the core; Timeline (timeline.ts) extends it and
 * wires the parts together.
 *
 * Invariants:
 * - in-memory layers tile [first frozen start, ∞); historic layers end at or below it.
 * - the layer map is replaced, never mutated: a read sees one consistent set. Reads run
 *   synchronously once their LSN is reached, so no file is unlinked under a running read.
 * - nextOpenLayerAt only grows; a put below it is refused (its layer is frozen already).
 * - latestGcCutoff only grows; reads and branches below it are refused.
 *
 * Lock order: none (single-threaded). The parts import this file and each other in one
 * direction only (core ← residency ← read; core ← lsn_time; flush, lsn_time, residency ←
 * ingest; residency ← compaction; flush, lsn_time, residency ← gc): no part imports
 * timeline.ts, so the folder has no import cycle.
 */
import type { Logger } from "pino";
import type { PageCacheApi } from "../../cache/api.js";
import { HistoricLayer } from "../../layers/historic_layer.js";
import type { InMemoryLayer } from "../../layers/inmemory_layer.js";
import { LayerMap } from "../../layers/layer_map.js";
import type { LayerDesc } from "../../layers/layer_name.js";
import type { JobRunner } from "../../workers/jobs.js";
import { BadStateError, GcCutoffError, InvalidArgumentError } from "../../types/errors.js";
import type { TenantId, TimelineId } from "../../types/ids.js";
import { INVALID_LSN, type Lsn, lsnToString, MAX_LSN } from "../../types/lsn.js";
import { type MetricsSink, NO_METRICS } from "../../types/metrics_sink.js";
import type { WalRedoManager } from "../../types/redo.js";
import { CommitTimes } from "../commit_times.js";
import type { TenantConf } from "../config.js";
import { type LayerEvents, NO_LAYER_EVENTS } from "../layer_events.js";
import type { TimelineMetadata } from "../metadata.js";
import { SeqWait } from "../seqwait.js";

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

/** What the parts of a timeline use of the tenant (TimelineDeps without the keyspace provider). */
export interface CoreDeps {
  cache: PageCacheApi;
  jobs: JobRunner;
  redo: WalRedoManager;
  /** URL of the module whose default export is `redo`, for workers. */
  redoModule: string;
  conf: () => TenantConf;
  log: Logger;
  /** Asks the tenant's compaction loop to run soon (L0 files reached compaction_threshold). */
  wakeCompaction?: () => void;
  /** Observations at event time (wait_lsn, storage operation durations); none when absent. */
  metrics?: MetricsSink;
}

/** Ancestry walks stop here: a chain this deep is a bug (a cycle). */
export const MAX_ANCESTRY_DEPTH = 100_000;

export class TimelineCore {
  readonly tenantId: TenantId;
  readonly timelineId: TimelineId;
  readonly dir: string;
  readonly ancestor: TimelineCore | null;
  readonly ancestorLsn: Lsn;
  readonly initdbLsn: Lsn;
  readonly pgVersion: number;
  readonly deps: CoreDeps;
  /** Namespace of this timeline's materialized pages in the shared cache. */
  readonly ns: number;

  state: TimelineState = TimelineState.Loading;
  brokenReason: string | null = null;

  /** The open in-memory layer (created on the first put after a freeze). */
  open: InMemoryLayer | null = null;
  /** Frozen in-memory layers, oldest first, waiting for their flush. */
  readonly frozen: InMemoryLayer[] = [];
  /** The historic layers; replaced as a whole on every change (see the invariants). */
  layerMap: LayerMap<HistoricLayer>;
  nextOpenLayerAt: Lsn;
  ephemeralCounter = 0;

  readonly lastRecord: SeqWait;
  /** prev_record_lsn of the record at last_record_lsn (null: unknown), set by finishWrite. */
  prevRecord: Lsn | null;
  readonly diskConsistent: SeqWait;
  latestGcCutoff: Lsn;
  /** Set while a GC is planning: branches below it are refused too. */
  plannedGcCutoff: Lsn = INVALID_LSN;

  /** Where layer and metadata changes are reported (remote storage), once they are durable. */
  events: LayerEvents = NO_LAYER_EVENTS;
  /** Commit timestamps seen in this timeline's own WAL (above its branch point). */
  readonly commitTimes: CommitTimes;

  /** Counters for metrics and tests. */
  readonly counters = {
    reads: 0,
    materializedHits: 0,
    redos: 0,
    offloadedRedos: 0,
    layersVisited: 0,
    flushes: 0,
    compactions: 0,
    imageLayersCreated: 0,
    gcLayersRemoved: 0,
  };

  protected constructor(
    deps: CoreDeps,
    tenantId: TenantId,
    timelineId: TimelineId,
    dir: string,
    ancestor: TimelineCore | null,
    md: TimelineMetadata,
    layers: LayerDesc[],
    lastRecordLsn: Lsn,
    nextOpenLayerAt: Lsn,
    evicted: LayerDesc[],
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
    this.layerMap = new LayerMap([
      ...layers.map((d) => new HistoricLayer(deps.cache, dir, d)),
      ...evicted.map((d) => new HistoricLayer(deps.cache, dir, d, false)),
    ]);
    this.lastRecord = new SeqWait(lastRecordLsn);
    this.prevRecord = md.prev_record_lsn;
    this.diskConsistent = new SeqWait(md.disk_consistent_lsn);
    this.latestGcCutoff = md.latest_gc_cutoff_lsn;
    this.nextOpenLayerAt = nextOpenLayerAt;
    this.commitTimes = new CommitTimes(dir);
  }

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
    return this.prevRecord;
  }
  get diskConsistentLsn(): Lsn {
    return this.diskConsistent.load();
  }
  get latestGcCutoffLsn(): Lsn {
    return this.latestGcCutoff;
  }

  checkActive(): void {
    if (this.state !== TimelineState.Active) {
      throw new BadStateError(`timeline ${this.timelineId} is ${this.state}${this.brokenReason ? `: ${this.brokenReason}` : ""}`);
    }
  }

  /** Refuse a read at `lsn`: not Active, not an LSN, or below the GC cutoff. */
  checkReadable(lsn: Lsn): void {
    this.checkActive();
    if (!(lsn >= 0 && lsn <= MAX_LSN)) throw new InvalidArgumentError(`invalid LSN ${lsn}`);
    if (lsn < this.latestGcCutoff) {
      throw new GcCutoffError(
        `tried to request a page version that was garbage collected: requested ${lsnToString(lsn)}, gc cutoff ${lsnToString(this.latestGcCutoff)}`,
      );
    }
  }
}
