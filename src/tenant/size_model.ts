/**
 * The tenant size model (Neon's "synthetic size", simplified): what the tenant's retained
 * history costs to keep, in bytes, from a few inputs per timeline.
 *
 * Per timeline, its retention start R = max(latest_gc_cutoff_lsn, the cutoff GC would use now
 * (gc_horizon / PITR, Timeline.gcCutoff: PITR is where a branch at now − pitr_interval would
 * start, the exact commit-time lookup of get_lsn_by_timestamp)), never below its own start
 * (initdb LSN or branch point) nor above last_record_lsn. Its segment:
 * - a root: the logical size at R (a full copy of the database there) + the WAL from R to
 *   last_record_lsn;
 * - a branch at B of a parent whose retention starts at R_p ≤ B (the branch point lies in the
 *   parent's retained history: the parent's segment already pays for the state at B): only
 *   the WAL from B to its last_record_lsn; its logical size is not counted again;
 * - a branch whose point B is below R_p (the parent no longer keeps that history for itself),
 *   or whose parent is not in the inputs: counted as a root, at its own R.
 * size = Σ (counted logical sizes + WAL bytes). WAL bytes are LSN distances.
 *
 * Simplifications against Neon's model: no choice between "keep the WAL" and "take a new
 * image" per segment, and the history a parent keeps only for a branch point below R_p
 * (retain LSNs) is not counted.
 *
 * The logical sizes come from the caller (LogicalSizeAt): it reads pages and may be limited
 * in concurrency; this module does no I/O itself. One logical-size computation per counted
 * segment, in order, parents first.
 */
import { assert } from "../types/assert.js";
import type { TimelineId } from "../types/ids.js";
import { type Lsn, lsnMax, lsnMin } from "../types/lsn.js";
import type { Tenant } from "./tenant.js";
import { TimelineState } from "./timeline/index.js";

export interface SizeInputTimeline {
  timeline_id: TimelineId;
  ancestor_id: TimelineId | null;
  /** The branch point (null for a root). */
  ancestor_lsn: Lsn | null;
  last_record_lsn: Lsn;
  latest_gc_cutoff_lsn: Lsn;
  /** Where the timeline's retained history starts (see the header). */
  retention_start_lsn: Lsn;
}

export interface SizeInputs {
  gc_horizon_bytes: number;
  pitr_interval_ms: number;
  timelines: SizeInputTimeline[];
}

export interface SizeSegment {
  timeline_id: TimelineId;
  parent: TimelineId | null;
  lsn_start: Lsn;
  lsn_end: Lsn;
  /** The logical size at lsn_start when it is counted; null when the parent's history holds it. */
  logical_size_bytes: number | null;
  wal_bytes: number;
  size_bytes: number;
}

export interface TenantSize {
  size_bytes: number;
  segments: SizeSegment[];
}

/** The logical size of a timeline at an LSN (a computation that reads pages). */
export type LogicalSizeAt = (timeline_id: TimelineId, lsn: Lsn) => Promise<number>;

/** The model's inputs from the tenant's active timelines, as of `now_ms`. */
export function sizeInputs(tenant: Tenant, now_ms: number): SizeInputs {
  const timelines: SizeInputTimeline[] = [];
  for (const tl of tenant.listTimelines()) {
    if (tl.state !== TimelineState.Active) continue;
    const last = tl.lastRecordLsn;
    const own = tl.ancestor === null ? tl.initdbLsn : tl.ancestorLsn;
    const start = lsnMin(last, lsnMax(lsnMax(tl.latestGcCutoffLsn, tl.gcCutoff(now_ms)), own));
    timelines.push({
      timeline_id: tl.timelineId,
      ancestor_id: tl.ancestor?.timelineId ?? null,
      ancestor_lsn: tl.ancestor === null ? null : tl.ancestorLsn,
      last_record_lsn: last,
      latest_gc_cutoff_lsn: tl.latestGcCutoffLsn,
      retention_start_lsn: start,
    });
  }
  return { gc_horizon_bytes: tenant.conf.gc_horizon_bytes, pitr_interval_ms: tenant.conf.pitr_interval_ms, timelines };
}

/** The size and its segments (one per timeline, parents before children). */
export async function computeTenantSize(inputs: SizeInputs, logicalSizeAt: LogicalSizeAt): Promise<TenantSize> {
  const byId = new Map(inputs.timelines.map((t) => [t.timeline_id, t]));
  const depthOf = (t: SizeInputTimeline): number => {
    let d = 0;
    for (let a = t.ancestor_id; a !== null; a = byId.get(a)?.ancestor_id ?? null) {
      d++;
      assert(d <= inputs.timelines.length, "ancestry cycle in the size inputs");
    }
    return d;
  };
  const ordered = inputs.timelines.map((t) => ({ t, d: depthOf(t) })).sort((x, y) => x.d - y.d);
  const segments: SizeSegment[] = [];
  let total = 0;
  for (const { t } of ordered) {
    assert(t.retention_start_lsn <= t.last_record_lsn, "retention starts at or below last_record_lsn");
    const parent = t.ancestor_id === null ? undefined : byId.get(t.ancestor_id);
    const shared = parent !== undefined && t.ancestor_lsn !== null && t.ancestor_lsn >= parent.retention_start_lsn;
    let seg: SizeSegment;
    if (shared) {
      const wal = t.last_record_lsn - (t.ancestor_lsn as Lsn);
      seg = {
        timeline_id: t.timeline_id,
        parent: t.ancestor_id,
        lsn_start: t.ancestor_lsn as Lsn,
        lsn_end: t.last_record_lsn,
        logical_size_bytes: null,
        wal_bytes: wal,
        size_bytes: wal,
      };
    } else {
      const logical = await logicalSizeAt(t.timeline_id, t.retention_start_lsn);
      const wal = t.last_record_lsn - t.retention_start_lsn;
      seg = {
        timeline_id: t.timeline_id,
        parent: t.ancestor_id,
        lsn_start: t.retention_start_lsn,
        lsn_end: t.last_record_lsn,
        logical_size_bytes: logical,
        wal_bytes: wal,
        size_bytes: logical + wal,
      };
    }
    segments.push(seg);
    total += seg.size_bytes;
  }
  return { size_bytes: total, segments };
}
