/**
 * TimelineIngest: the write path of one timeline (put, finishWrite, when to freeze), its
 * backpressure (the ingest gate), and bulk import. Owns the ingest gate; the layers it
 * writes to are the core's, and freezing hands a layer to the flush (flush.ts).
 *
 * Invariants:
 * - LSNs handed to put never go below last_record_lsn nor below the open layer's start.
 * - finishWrite(lsn) never goes backwards and never below a value already put.
 * - a freeze happens only below the frozen limit (pendingFlushes < max_frozen_layers): at the
 *   limit the open layer keeps growing, and the gate holds ingest until a flush is recorded.
 * - a bulk import adopts image layers only into an empty, ancestor-less timeline, at its LSN.
 * - a record whose reads meet an evicted layer is applied again whole after the download
 *   (applyRecord): the caller never sees the eviction.
 *
 * Hot path: put and putTagged cost one check and one call into the open layer; finishWrite
 * one clock read per record. Nothing here allocates per value.
 *
 * Lock order: none (single-threaded).
 */
import { renameSync } from "node:fs";
import { join } from "node:path";
import { fsyncDirSync } from "../../layers/durable_file.js";
import { HistoricLayer, LayerEvictedError } from "../../layers/historic_layer.js";
import { InMemoryLayer } from "../../layers/inmemory_layer.js";
import type { LayerDesc } from "../../layers/layer_name.js";
import { assert } from "../../types/assert.js";
import { BadStateError, InvalidArgumentError } from "../../types/errors.js";
import type { Key } from "../../types/key.js";
import { type Lsn, lsnAdd, lsnMax, lsnToString, MAX_LSN } from "../../types/lsn.js";
import { isValueTag, type Value, type ValueTag } from "../../types/value.js";
import { BulkImport, IMPORT_TEMP_DIR } from "../bulk_import.js";
import { l0Thresholds } from "../config.js";
import { Backpressure, GATE_OPEN, type GateStats, type GateVerdict, IngestGate } from "../ingest_gate.js";
import { type TimelineCore, TimelineState } from "./core.js";
import type { TimelineFlush } from "./flush.js";
import type { TimelineLsnTime } from "./lsn_time.js";
import { type LayerResidency, MAX_DOWNLOADS_PER_READ } from "./residency.js";

/**
 * What applies one WAL record to a timeline (pgdata's WalIngest): synchronously, reading the
 * latest state and putting values. If it throws, nothing of the record may stay pending.
 */
export interface RecordApplier<R> {
  ingest(rec: R): void;
}

export class TimelineIngest {
  private readonly core: TimelineCore;
  private readonly flush: TimelineFlush;
  private readonly lsnTime: TimelineLsnTime;
  private readonly residency: LayerResidency;
  private readonly gate = new IngestGate(() => this.gateVerdict());

  constructor(core: TimelineCore, flush: TimelineFlush, lsnTime: TimelineLsnTime, residency: LayerResidency) {
    this.core = core;
    this.flush = flush;
    this.lsnTime = lsnTime;
    this.residency = residency;
  }

  /**
   * Apply one WAL record with `applier`. Undefined when it was applied synchronously (every
   * layer its reads visited is on local disk: the common case, no Promise); else a Promise
   * that downloads what the reads met (the applier dropped the record's pending changes when
   * it threw) and applies the record again.
   */
  applyRecord<R>(applier: RecordApplier<R>, rec: R): Promise<void> | undefined {
    try {
      applier.ingest(rec);
      return undefined;
    } catch (e) {
      if (!(e instanceof LayerEvictedError)) throw e;
      return this.applyAfterDownload(applier, rec, e);
    }
  }

  private async applyAfterDownload<R>(applier: RecordApplier<R>, rec: R, first: LayerEvictedError): Promise<void> {
    let evicted = first;
    for (let downloads = 1; ; downloads++) {
      await this.residency.downloadEvicted(evicted);
      try {
        applier.ingest(rec);
        return;
      } catch (e) {
        if (!(e instanceof LayerEvictedError) || downloads >= MAX_DOWNLOADS_PER_READ) throw e;
        evicted = e;
      }
    }
  }

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
    const core = this.core;
    core.checkActive();
    const last = core.lastRecord.load();
    if (!(lsn >= last))
      throw new InvalidArgumentError(`put at ${lsnToString(lsn)} goes backwards: last_record_lsn is ${lsnToString(last)}`);
    if (!(lsn >= core.nextOpenLayerAt)) {
      throw new InvalidArgumentError(
        `put at ${lsnToString(lsn)} is below the open layer start ${lsnToString(core.nextOpenLayerAt)} (already frozen)`,
      );
    }
    if (!(lsn <= MAX_LSN)) throw new InvalidArgumentError("LSN beyond 2^53");
  }

  /** The open layer (created on the first put after a freeze). */
  private openLayer(): InMemoryLayer {
    const core = this.core;
    if (core.open === null) core.open = new InMemoryLayer(core.deps.cache, core.dir, core.ephemeralCounter++, core.nextOpenLayerAt);
    return core.open;
  }

  /**
   * Everything up to `lsn` is written: advance last_record_lsn (waking readers), and freeze
   * the open layer when it reached checkpoint_distance or checkpoint_timeout.
   */
  finishWrite(lsn: Lsn, prevRecordLsn: Lsn | null = null): void {
    const core = this.core;
    core.checkActive();
    const last = core.lastRecord.load();
    if (lsn < last) throw new InvalidArgumentError(`finishWrite at ${lsnToString(lsn)} goes backwards from ${lsnToString(last)}`);
    if (core.open !== null && core.open.maxLsn > lsn)
      throw new InvalidArgumentError(`finishWrite at ${lsnToString(lsn)} below values already put`);
    core.prevRecord = prevRecordLsn;
    core.lastRecord.advance(lsn);
    // One clock read per record for both (Date.now() is a visible share of ingest's cost).
    const now_ms = Date.now();
    this.lsnTime.sample(lsn, now_ms);
    if (this.shouldFreeze(now_ms)) this.flush.freezeAt(lsn);
  }

  /**
   * Freeze when the open layer holds checkpoint_distance bytes, or spans that much WAL (as
   * Neon's should_roll: the flush lag in WAL bytes stays bounded even when records carry
   * little data), or its first write is checkpoint_timeout old; never beyond the frozen limit.
   */
  private shouldFreeze(now_ms: number): boolean {
    const open = this.core.open;
    if (open === null || open.valueCount === 0) return false;
    const conf = this.core.deps.conf();
    if (this.flush.pendingFlushes >= conf.max_frozen_layers) return false;
    return (
      open.sizeBytes >= conf.checkpoint_distance_bytes ||
      open.maxLsn - open.start >= conf.checkpoint_distance_bytes ||
      now_ms - open.created_ms >= conf.checkpoint_timeout_ms
    );
  }

  /**
   * Housekeeping: freeze an idle open layer whose checkpoint_timeout passed; start a new flush
   * round for frozen layers a failed round left behind (no sooner than FLUSH_ROUND_RETRY_MS).
   */
  checkTimeout(): void {
    if (this.core.state !== TimelineState.Active) return;
    const now_ms = Date.now();
    if (this.shouldFreeze(now_ms)) this.flush.freezeAt(this.core.lastRecord.load());
    else this.flush.retryIfDue(now_ms);
  }

  // ---------------------------------------------------------------------------------------
  // Ingest backpressure

  private gateVerdict(): GateVerdict {
    const core = this.core;
    if (core.state !== TimelineState.Active) return GATE_OPEN;
    const conf = core.deps.conf();
    const frozen = this.flush.pendingFlushes;
    if (frozen >= conf.max_frozen_layers) {
      return {
        state: Backpressure.Stalled,
        reason: `${frozen} frozen layers wait for their flush (max_frozen_layers ${conf.max_frozen_layers})`,
      };
    }
    // Without the compaction loop nothing lowers the L0 count: waiting for it would never end.
    if (conf.compaction_period_ms === 0) return GATE_OPEN;
    const l0 = core.layerMap.l0Layers().length;
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

  /** Thresholds, the frozen count or the L0 count may have moved: the gate looks again. */
  notifyGate(): void {
    this.gate.notify();
  }

  /** Ingest stops for good (broken or stopping): waiters fail with `reason`. */
  closeGate(reason: string): void {
    this.gate.close(reason);
  }

  get backpressureStats(): GateStats {
    return this.gate.stats();
  }

  // ---------------------------------------------------------------------------------------
  // Bulk import

  /**
   * Start a bulk import at `lsn` into this empty, ancestor-less timeline: its values go to
   * image layers at `lsn` (bulk_import.ts), which finish() adds here.
   */
  bulkImport(lsn: Lsn): BulkImport {
    const core = this.core;
    core.checkActive();
    if (core.ancestor !== null) throw new BadStateError("cannot bulk import into a branch");
    if (core.layerMap.size > 0 || core.frozen.length > 0 || (core.open?.valueCount ?? 0) > 0) {
      throw new BadStateError(`timeline ${core.timelineId} is not empty: cannot bulk import`);
    }
    if (lsn < core.lastRecord.load()) throw new InvalidArgumentError(`bulk import at ${lsnToString(lsn)} is below last_record_lsn`);
    const conf = core.deps.conf();
    return new BulkImport({
      cache: core.deps.cache,
      jobs: core.deps.jobs,
      owner: core.tenantId,
      tempDir: join(core.dir, IMPORT_TEMP_DIR),
      lsn,
      runSizeBytes: conf.checkpoint_distance_bytes,
      targetSizeBytes: conf.compaction_target_size_bytes,
      adopt: (layers, dir, prev) => this.adoptImport(layers, dir, lsn, prev),
    });
  }

  /** A finished bulk import's image layers (files in `fromDir`) become this timeline's data at `lsn`. */
  private async adoptImport(layers: LayerDesc[], fromDir: string, lsn: Lsn, prevRecordLsn: Lsn | null): Promise<void> {
    const core = this.core;
    core.checkActive();
    assert(
      core.layerMap.size === 0 && core.frozen.length === 0 && (core.open?.valueCount ?? 0) === 0,
      "bulk import into a timeline that got other data",
    );
    for (const l of layers) {
      assert(l.kind === "image" && l.lsnRange.start === lsn, "a bulk import adopts image layers at its LSN");
      renameSync(join(fromDir, l.fileName), join(core.dir, l.fileName));
    }
    fsyncDirSync(core.dir);
    core.layerMap = core.layerMap.with(
      layers.map((d) => new HistoricLayer(core.deps.cache, core.dir, d)),
      [],
    );
    core.events.layersAdded(layers.map((d) => ({ name: d.fileName, path: join(core.dir, d.fileName) })));
    // WAL values come after the import: the open layer starts above the images' LSN.
    core.nextOpenLayerAt = lsnMax(core.nextOpenLayerAt, lsnAdd(lsn, 1));
    if (core.lastRecord.load() < lsn || prevRecordLsn !== null) this.finishWrite(lsn, prevRecordLsn);
    await this.flush.setDiskConsistent(lsn);
  }
}
