/**
 * TimelineReader: the read path of one timeline, get@LSN. Owns the read scratch (the
 * reconstruct state, the walk's out-slot, the materialized base page).
 *
 * Read path: open layer → frozen layers (newest first) → historic layers (layer map) →
 * ancestor at the branch LSN, until an image or an initializing record; then redo. The
 * materialized page cache gives a starting point: only values above the cached version are
 * collected. Reads below the GC cutoff are refused; reads above last_record_lsn wait.
 *
 * Invariants:
 * - the scratch is shared by every read of the timeline: a collection and the reconstruction
 *   that uses it run with no await between them (reads are synchronous once started).
 * - a read meets an evicted layer as a LayerEvictedError, which never leaves src/tenant: get
 *   and readAt download it (residency.ts) and collect again (reads are pure, so a rerun is
 *   safe); a read that meets only resident layers stays synchronous (readAt returns the value).
 * - a chain of REDO_OFFLOAD_MIN_RECORDS values or more is redone on the redo pool; its plan is
 *   copied out of the layers and the cache first.
 *
 * Lock order: none (single-threaded).
 */
import { PAGE_SIZE } from "../../cache/api.js";
import { advanceAccessTick, LayerEvictedError } from "../../layers/historic_layer.js";
import { WalkStatus, walkHistoric } from "../../layers/read_path.js";
import { planReconstruct, ReconstructState, reconstructValue } from "../../layers/reconstruct_state.js";
import { assert } from "../../types/assert.js";
import { PageserverError } from "../../types/errors.js";
import type { Key } from "../../types/key.js";
import { type Lsn, lsnAdd, lsnMax, lsnMin, lsnToString } from "../../types/lsn.js";
import { secondsSince } from "../../types/metrics_sink.js";
import type { TimelineCore } from "./core.js";
import { type LayerResidency, MAX_DOWNLOADS_PER_READ } from "./residency.js";

/**
 * A read whose chain holds at least this many values is reconstructed on the redo pool, off
 * the main thread: native redo takes a few µs per record, so a chain this long costs the
 * event loop more than the hand-off to a worker (~0.1 ms) does. Shorter chains stay inline.
 */
export const REDO_OFFLOAD_MIN_RECORDS = 64;
/** collectRead: the key has no value at the LSN. */
const ABSENT = -2 as Lsn;

export class TimelineReader {
  private readonly core: TimelineCore;
  private readonly residency: LayerResidency;
  // Read-path scratch: reads are synchronous once started, so one set per timeline suffices.
  private readonly rs = new ReconstructState();
  private readonly walkOut = new Float64Array(1);
  private readonly basePage = new Uint8Array(PAGE_SIZE);

  constructor(core: TimelineCore, residency: LayerResidency) {
    this.core = core;
    this.residency = residency;
  }

  /**
   * Wait (up to wait_lsn_timeout) until WAL up to `lsn` is ingested. A wait that happens is
   * timed (pageserver_wait_lsn_seconds); an LSN already reached costs nothing.
   */
  waitLsn(lsn: Lsn, timeout_ms = this.core.deps.conf().wait_lsn_timeout_ms): Promise<void> {
    const core = this.core;
    const p = core.lastRecord.wait(
      lsn,
      timeout_ms,
      () => `disk_consistent_lsn is ${lsnToString(core.diskConsistent.load())}, timeline ${core.timelineId}`,
    );
    if (lsn <= core.lastRecord.load()) return p;
    const start_ms = performance.now();
    const observe = (): void => core.metrics.waitLsn(secondsSince(start_ms));
    return p.finally(observe);
  }

  /** The value of `key` at `lsn` (waiting for ingest to reach it); null when the key does not exist. */
  async get(key: Key, lsn: Lsn): Promise<Uint8Array | null> {
    this.core.checkReadable(lsn);
    if (lsn > this.core.lastRecord.load()) await this.waitLsn(lsn);
    // Collect, downloading each evicted layer the walk meets; the collection that succeeds
    // runs without an await after it (this.rs is shared by every read).
    let baseLsn: Lsn = ABSENT;
    for (let downloads = 0; ; downloads++) {
      try {
        baseLsn = this.collectRead(key, lsn);
        break;
      } catch (e) {
        if (!(e instanceof LayerEvictedError) || downloads >= MAX_DOWNLOADS_PER_READ) throw e;
        await this.residency.downloadEvicted(e);
      }
    }
    if (baseLsn === ABSENT) return null;
    if (this.rs.values.length < REDO_OFFLOAD_MIN_RECORDS) return this.reconstruct(key, baseLsn, true);
    return this.reconstructOffThread(key, baseLsn);
  }

  /**
   * get() for an LSN that is already ingested; synchronous from start to end. `fillCache`
   * false keeps a reconstructed page out of the materialized page cache (bulk reads). An
   * evicted layer on the way throws LayerEvictedError: callers outside src/tenant use readAt
   * (or a tenant API that reruns them, applyRecord) instead.
   */
  getNow(key: Key, lsn: Lsn, fillCache = true): Uint8Array | null {
    const baseLsn = this.collectRead(key, lsn);
    if (baseLsn === ABSENT) return null;
    return this.reconstruct(key, baseLsn, fillCache);
  }

  /**
   * The value of `key` at the ingested `lsn`, for readers that read many keys (a snapshot of
   * the datadir): the value itself when every layer the read visits is on local disk (today's
   * synchronous path, no Promise), else a Promise that downloads what the read meets and reads
   * again. Reconstruction stays on this thread (`fillCache` as for getNow).
   */
  readAt(key: Key, lsn: Lsn, fillCache = true): Uint8Array | null | Promise<Uint8Array | null> {
    try {
      return this.getNow(key, lsn, fillCache);
    } catch (e) {
      if (!(e instanceof LayerEvictedError)) throw e;
      return this.readAfterDownload(key, lsn, fillCache, e);
    }
  }

  private async readAfterDownload(key: Key, lsn: Lsn, fillCache: boolean, first: LayerEvictedError): Promise<Uint8Array | null> {
    let evicted = first;
    for (let downloads = 1; ; downloads++) {
      await this.residency.downloadEvicted(evicted);
      try {
        return this.getNow(key, lsn, fillCache);
      } catch (e) {
        if (!(e instanceof LayerEvictedError) || downloads >= MAX_DOWNLOADS_PER_READ) throw e;
        evicted = e;
      }
    }
  }

  /**
   * Collect what a read of `key` at `lsn` needs into this.rs (reused: a caller uses it before
   * its next await). Returns the LSN of the materialized version it starts from (in
   * this.basePage; -1: none, the collection is complete) or ABSENT.
   */
  private collectRead(key: Key, lsn: Lsn): Lsn {
    const core = this.core;
    core.checkReadable(lsn);
    assert(lsn <= core.lastRecord.load(), "read above last_record_lsn");
    const rs = this.rs;
    rs.reset();
    core.counters.reads++;
    advanceAccessTick();
    const conf = core.deps.conf();
    let baseLsn = -1 as Lsn;
    if (conf.materialized_page_cache) baseLsn = core.deps.cache.lookupMaterialized(core.ns, key, lsn, this.basePage);
    const floorLimit = lsnAdd(baseLsn, 1);

    let status = WalkStatus.Continue;
    let tl: TimelineCore = core;
    let end = lsnAdd(lsn, 1);
    for (;;) {
      status = collectLayers(tl, key, end, floorLimit, rs, this.walkOut);
      if (status !== WalkStatus.Continue) break;
      end = this.walkOut[0]! as Lsn;
      if (tl.ancestor === null || end <= floorLimit) break;
      end = lsnMin(end, lsnAdd(tl.ancestorLsn, 1));
      tl = tl.ancestor;
    }
    core.counters.layersVisited += rs.layersVisited;
    if (status === WalkStatus.Absent) return ABSENT;
    if (status !== WalkStatus.Complete && baseLsn < 0) return ABSENT;
    return baseLsn;
  }

  /**
   * A long chain is redone on the redo pool: the plan is copied out of the layers (and the
   * cache) first, so nothing it points to can change while the main thread serves others.
   */
  private async reconstructOffThread(key: Key, baseLsn: Lsn): Promise<Uint8Array> {
    const core = this.core;
    const fromCache = !this.rs.complete;
    if (fromCache) core.counters.materializedHits++;
    const plan = planReconstruct(this.rs, fromCache ? this.basePage : null, baseLsn);
    const start_ms = performance.now();
    const res = await core.deps.jobs.redo(
      {
        redoModule: core.deps.redoModule,
        key,
        base: plan.base === null ? null : plan.base.slice(),
        baseLsn: plan.baseAt,
        records: plan.records.map((v) => v.slice()),
        lsns: plan.lsns,
      },
      core.tenantId,
    );
    // Queueing for a redo thread included: it is part of what the read waited for redo.
    core.metrics.walRedo(secondsSince(start_ms));
    if ("error" in res) throw new PageserverError(res.error.code, res.error.message);
    core.counters.redos++;
    core.counters.offloadedRedos++;
    if (core.deps.conf().materialized_page_cache && res.page.length === PAGE_SIZE) {
      core.deps.cache.insertMaterialized(core.ns, key, plan.lsns[plan.lsns.length - 1]!, res.page);
    }
    return res.page;
  }

  private reconstruct(key: Key, baseLsn: Lsn, fillCache: boolean): Uint8Array {
    const core = this.core;
    const rs = this.rs;
    const fromCache = !rs.complete;
    if (fromCache) core.counters.materializedHits++;
    const start_ms = performance.now();
    const r = reconstructValue(key, rs, core.deps.redo, fromCache ? this.basePage.slice() : null, baseLsn);
    if (r.applied > 0) {
      core.metrics.walRedo(secondsSince(start_ms));
      core.counters.redos++;
      if (fillCache && core.deps.conf().materialized_page_cache && r.value.length === PAGE_SIZE) {
        core.deps.cache.insertMaterialized(core.ns, key, r.lastLsn, r.value);
      }
    }
    return r.value;
  }
}

/** The in-memory and historic layers of timeline `tl`, for key, within [floorLimit, end). */
function collectLayers(tl: TimelineCore, key: Key, end: Lsn, floorLimit: Lsn, rs: ReconstructState, out: Float64Array): WalkStatus {
  let top = end;
  const open = tl.open;
  if (open !== null && open.start < top) {
    const floor = lsnMax(open.start, floorLimit);
    if (floor < top && open.getValues(key, floor, top, rs)) return WalkStatus.Complete;
    top = lsnMin(top, open.start);
  }
  for (let i = tl.frozen.length - 1; i >= 0; i--) {
    const f = tl.frozen[i]!;
    if (f.start >= top) continue;
    const floor = lsnMax(f.start, floorLimit);
    const ceil = lsnMin(top, f.end);
    if (floor < ceil && f.getValues(key, floor, ceil, rs)) return WalkStatus.Complete;
    top = lsnMin(top, f.start);
  }
  if (top <= floorLimit) {
    out[0] = top;
    return WalkStatus.Continue;
  }
  return walkHistoric(tl.layerMap, key, top, floorLimit, rs, out);
}
