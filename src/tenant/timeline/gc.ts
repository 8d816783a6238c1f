/**
 * TimelineGc: the GC cutoff (space and PITR), garbage collection of layers below it, and the
 * checks that keep reads and branches above it. Owns no state of its own: the cutoffs are
 * the core's (every read checks them), the plan runs as a job on the GC pool.
 *
 * Invariants:
 * - latest_gc_cutoff_lsn only grows, and is durable (metadata) before any layer below it is
 *   deleted: after that no read or branch may go below it.
 * - the cutoff never passes disk_consistent_lsn nor a leased read's LSN (a base backup
 *   streaming at it reads on after GC).
 * - while a GC plans, plannedGcCutoff refuses branches below the cutoff it is planning.
 *
 * Lock order: the tenant's background mutex orders compaction and GC (never both at once for
 * a tenant); metadata writes go through the flush's one chain.
 */
import { existsSync, unlinkSync } from "node:fs";
import type { HistoricLayer } from "../../layers/historic_layer.js";
import { GcCutoffError, InvalidArgumentError } from "../../types/errors.js";
import { failpoint } from "../../types/failpoints.js";
import { INVALID_LSN, type Lsn, lsnAdd, lsnMax, lsnMin, lsnToString } from "../../types/lsn.js";
import { secondsSince } from "../../types/metrics_sink.js";
import type { TimelineCore } from "./core.js";
import type { TimelineFlush } from "./flush.js";
import type { TimelineLsnTime } from "./lsn_time.js";
import type { LayerResidency } from "./residency.js";

export class TimelineGc {
  private readonly core: TimelineCore;
  private readonly flush: TimelineFlush;
  private readonly residency: LayerResidency;
  private readonly lsnTime: TimelineLsnTime;

  constructor(core: TimelineCore, flush: TimelineFlush, residency: LayerResidency, lsnTime: TimelineLsnTime) {
    this.core = core;
    this.flush = flush;
    this.residency = residency;
    this.lsnTime = lsnTime;
  }

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
    const conf = this.core.deps.conf();
    const last = this.core.lastRecord.load();
    const space = lsnMax(INVALID_LSN, lsnAdd(last, -conf.gc_horizon_bytes));
    const pitr = conf.pitr_interval_ms > 0 ? this.pitrCutoff(now_ms - conf.pitr_interval_ms, last) : last;
    return lsnMin(lsnMin(space, pitr), this.core.diskConsistent.load());
  }

  /** The LSN whose history PITR keeps: everything committed after `limit_ms` stays readable. */
  private pitrCutoff(limit_ms: number, last: Lsn): Lsn {
    const found = this.lsnTime.lsnForTime(limit_ms);
    if (found.kind === "present" || found.kind === "past") return found.lsn;
    if (found.kind === "future") return last;
    return this.lsnTime.sampledLsnAt(limit_ms);
  }

  /**
   * Remove layers wholly below the cutoff that newer images cover and no child branch
   * point needs. `retainLsns`: branch points of this timeline's children.
   */
  async gc(retainLsns: Lsn[], cutoffOverride?: Lsn): Promise<number> {
    const core = this.core;
    core.checkActive();
    // Never above a leased read (a base backup streaming at that LSN reads on after this).
    const cutoff = lsnMin(lsnMin(cutoffOverride ?? this.gcCutoff(), core.diskConsistent.load()), this.residency.minLeasedLsn());
    if (cutoff <= core.latestGcCutoff) return 0;
    core.plannedGcCutoff = cutoff;
    const start_ms = performance.now();
    try {
      const plan = await core.deps.jobs.gc(
        { layers: core.layerMap.layers.map((l) => l.desc), cutoffLsn: cutoff, retainLsns },
        core.tenantId,
      );
      // A long read leased an LSN below the plan while it was made: not this round.
      if (this.residency.minLeasedLsn() < cutoff) return 0;
      // Publish the cutoff durably first: after that no read or branch may go below it.
      core.latestGcCutoff = cutoff;
      await this.flush.persistMetadata({});
      await this.lsnTime.trimCommitTimes(cutoff, retainLsns);
      // The cutoff is durable, nothing is deleted yet: the next GC above this cutoff plans again.
      await failpoint("gc-before-delete");
      const victims = plan.remove.map((n) => core.layerMap.get(n)).filter((l): l is HistoricLayer => l !== undefined);
      core.layerMap = core.layerMap.with(
        [],
        victims.map((l) => l.desc.fileName),
      );
      core.events.layersRemoved(victims.map((l) => l.desc.fileName));
      if (victims.some((l) => !l.resident)) await this.residency.saveEvictedManifest();
      for (const l of victims) {
        l.close();
        if (existsSync(l.path)) unlinkSync(l.path);
      }
      core.counters.gcLayersRemoved += victims.length;
      return victims.length;
    } finally {
      core.plannedGcCutoff = INVALID_LSN;
      core.metrics.storageOperation("gc", secondsSince(start_ms));
    }
  }

  /**
   * Refuse reads and branches below `lsn` from now on (a timeline bootstrapped from a fuzzy
   * base backup is consistent only from the backup's end LSN).
   */
  async raiseGcCutoff(lsn: Lsn): Promise<void> {
    if (lsn <= this.core.latestGcCutoff) return;
    this.core.latestGcCutoff = lsn;
    await this.flush.persistMetadata({});
  }

  /** Refuse a branch point this timeline can't serve (above its last LSN, below its GC cutoff). */
  checkBranchPoint(lsn: Lsn): void {
    const core = this.core;
    core.checkActive();
    if (lsn > core.lastRecord.load()) {
      throw new InvalidArgumentError(
        `invalid branch start lsn ${lsnToString(lsn)}: beyond the ancestor's last record LSN ${lsnToString(core.lastRecord.load())}`,
      );
    }
    if (lsn < core.latestGcCutoff) {
      throw new GcCutoffError(
        `invalid branch start lsn ${lsnToString(lsn)}: less than latest GC cutoff ${lsnToString(core.latestGcCutoff)}`,
      );
    }
    if (lsn < core.plannedGcCutoff) {
      throw new GcCutoffError(
        `invalid branch start lsn ${lsnToString(lsn)}: less than planned GC cutoff ${lsnToString(core.plannedGcCutoff)}`,
      );
    }
    if (core.ancestor !== null && lsn < core.ancestorLsn) {
      throw new InvalidArgumentError(
        `invalid branch start lsn ${lsnToString(lsn)}: below this timeline's own branch point ${lsnToString(core.ancestorLsn)}`,
      );
    }
  }
}
