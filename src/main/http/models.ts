/**
 * Wire models of the HTTP API: the functions that build the snake_case JSON shapes from domain
 * objects (Tenant, Timeline, layer descriptors). The shapes themselves (TypeBox schemas, which
 * the route declarations, the validation, the OpenAPI document and the client share) live in
 * src/protocol/http_models.ts and are re-exported here for the routes. Domain objects know
 * nothing of these shapes.
 */
import type { SizeInputs, TenantSize as TenantSizeModel } from "../../tenant/size_model.js";
import type { Tenant } from "../../tenant/tenant.js";
import type { Timeline, TimelineState } from "../../tenant/timeline/index.js";
import { DatadirSnapshot } from "../../pgdata/reader.js";
import type { Backpressure } from "../../tenant/ingest_gate.js";
import type { TenantState } from "../../tenant/tenant.js";
import { KEY_MAX, KEY_MIN, keyToHex } from "../../types/key.js";
import { type Lsn, lsnToString } from "../../types/lsn.js";
import { secondsSince } from "../../types/metrics_sink.js";
import type { WalSources } from "../wal_source/wal_sources.js";
import type {
  BackpressureName,
  LayerInfo,
  TenantInfo,
  TenantListItem,
  TenantSize,
  TenantStateName,
  TimelineInfo,
  TimelineStateName,
  WalSourceStatus,
} from "../../protocol/http_models.js";

export * from "../../protocol/http_models.js";

/**
 * The wire spells the domain's state enums as literals (src/protocol may not import
 * src/tenant): they must be the same sets both ways, or this does not compile.
 */
type SameSet<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
true satisfies SameSet<`${TenantState}`, TenantStateName> &
  SameSet<`${TimelineState}`, TimelineStateName> &
  SameSet<`${Backpressure}`, BackpressureName>;

export function tenantSize(id: string, s: TenantSizeModel & { inputs: SizeInputs }): TenantSize {
  const opt = (l: Lsn | null): string | null => (l === null ? null : lsnToString(l));
  return {
    id,
    size: s.size_bytes,
    segments: s.segments.map((g) => ({ ...g, lsn_start: lsnToString(g.lsn_start), lsn_end: lsnToString(g.lsn_end) })),
    inputs: {
      gc_horizon_bytes: s.inputs.gc_horizon_bytes,
      pitr_interval_ms: s.inputs.pitr_interval_ms,
      timelines: s.inputs.timelines.map((t) => ({
        ...t,
        ancestor_lsn: opt(t.ancestor_lsn),
        last_record_lsn: lsnToString(t.last_record_lsn),
        latest_gc_cutoff_lsn: lsnToString(t.latest_gc_cutoff_lsn),
        retention_start_lsn: lsnToString(t.retention_start_lsn),
      })),
    },
  };
}

export function tenantListItem(t: Tenant, name: string | null): TenantListItem {
  return { id: t.id, state: t.state, name };
}

export function tenantInfo(t: Tenant, name: string | null): TenantInfo {
  const ids = t.listTimelines().map((tl) => tl.timelineId as string);
  ids.sort();
  return {
    id: t.id,
    state: t.state,
    name,
    ...(t.brokenReason ? { broken_reason: t.brokenReason } : {}),
    timelines: ids.length,
    timeline_ids: ids,
    config: t.configOverrides,
  };
}

/**
 * current_logical_size walks every relation's size: too much to do on each GET while a
 * client polls. It is recomputed at most every LOGICAL_SIZE_TTL_MS per timeline.
 */
const LOGICAL_SIZE_TTL_MS = 2000;
interface LogicalSize {
  at_ms: number;
  lsn: number;
  size: number | null;
  error: string | null;
}
const logicalSizes = new WeakMap<Timeline, LogicalSize>();
/** The computation under way per timeline: requests meanwhile share it. */
const logicalSizesComputing = new WeakMap<Timeline, Promise<LogicalSize>>();

/** The logical size last computed for the timeline (pageserver_current_logical_size); null: never computed, or failed. */
export function lastLogicalSize(tl: Timeline): number | null {
  return logicalSizes.get(tl)?.size ?? null;
}

/** The timeline's logical size, or null with the reason when it can't be computed (never a made-up 0). */
function logicalSizeNow(tl: Timeline): Promise<LogicalSize> {
  const now = Date.now();
  const c = logicalSizes.get(tl);
  if (c !== undefined && (c.lsn === tl.lastRecordLsn || now - c.at_ms < LOGICAL_SIZE_TTL_MS)) return Promise.resolve(c);
  const running = logicalSizesComputing.get(tl);
  if (running !== undefined) return running;
  const p = computeLogicalSize(tl, now).finally(() => logicalSizesComputing.delete(tl));
  logicalSizesComputing.set(tl, p);
  return p;
}

async function computeLogicalSize(tl: Timeline, now: number): Promise<LogicalSize> {
  const lsn = tl.lastRecordLsn;
  let entry: LogicalSize;
  const start_ms = performance.now();
  try {
    entry = { at_ms: now, lsn, size: await new DatadirSnapshot(tl, lsn).logicalSize(), error: null };
  } catch (e) {
    tl.log.warn({ err: e }, "could not compute the logical size");
    entry = { at_ms: now, lsn, size: null, error: e instanceof Error ? e.message : String(e) };
  }
  tl.metrics.storageOperation("logical size", secondsSince(start_ms));
  logicalSizes.set(tl, entry);
  return entry;
}

/** Where remote_consistent_lsn comes from (the node's RemoteTimelines, when remote storage is on). */
export interface RemoteLsnSource {
  remoteConsistentLsn(tl: Timeline): Lsn | null;
}

export async function timelineInfo(
  tl: Timeline,
  name: string | null,
  walSources?: WalSources,
  remote?: RemoteLsnSource | null,
): Promise<TimelineInfo> {
  const size = await logicalSizeNow(tl);
  const remoteLsn = remote?.remoteConsistentLsn(tl) ?? null;
  const st = tl.layerStats();
  const bp = tl.backpressureStats;
  const prev = tl.prevRecordLsn;
  return {
    tenant_id: tl.tenantId,
    timeline_id: tl.timelineId,
    name,
    ancestor_timeline_id: tl.ancestor?.timelineId ?? null,
    ancestor_lsn: tl.ancestor === null ? null : lsnToString(tl.ancestorLsn),
    last_record_lsn: lsnToString(tl.lastRecordLsn),
    prev_record_lsn: prev === null ? null : lsnToString(prev),
    disk_consistent_lsn: lsnToString(tl.diskConsistentLsn),
    remote_consistent_lsn: remoteLsn === null ? null : lsnToString(remoteLsn),
    latest_gc_cutoff_lsn: lsnToString(tl.latestGcCutoffLsn),
    initdb_lsn: lsnToString(tl.initdbLsn),
    current_logical_size: size.size,
    ...(size.error === null ? {} : { current_logical_size_error: size.error }),
    state: tl.state,
    wal_source: (walSources?.status(tl) as WalSourceStatus | undefined) ?? null,
    layers: { delta: st.l0Delta.count + st.l1Delta.count, image: st.image.count, l0: st.l0Delta.count, frozen: st.frozen.count },
    ingest_backpressure: {
      state: bp.state,
      reason: bp.reason,
      delayed_ms: Math.round(bp.delayed_ms),
      stalled_ms: Math.round(bp.stalled_ms),
      waits: bp.waits,
    },
  };
}

// -----------------------------------------------------------------------------------------
// Layers

/** The timeline's layer files (by LSN, then key) and then its frozen and open in-memory layers. */
export function layerList(tl: Timeline): LayerInfo[] {
  const layers = [...tl.layerMap.layers];
  layers.sort((x, y) => {
    const a = x.desc;
    const b = y.desc;
    return a.lsnRange.start - b.lsnRange.start || (a.keyRange.start < b.keyRange.start ? -1 : a.keyRange.start > b.keyRange.start ? 1 : 0);
  });
  const out: LayerInfo[] = layers.map(({ desc: d, resident }) => ({
    name: d.fileName,
    kind: d.kind,
    level: d.kind === "image" ? "image" : d.keyRange.start === KEY_MIN && d.keyRange.end === KEY_MAX ? "l0" : "l1",
    in_memory: null,
    key_start: keyToHex(d.keyRange.start),
    key_end: keyToHex(d.keyRange.end),
    lsn_start: lsnToString(d.lsnRange.start),
    lsn_end: lsnToString(d.lsnRange.end),
    size_bytes: d.fileSize,
    remote: !resident,
  }));
  for (const m of tl.inMemoryLayers()) {
    out.push({
      name: `inmem-${lsnToString(m.start)}-${m.frozen ? lsnToString(m.end) : "open"}`,
      kind: "delta",
      level: "l0",
      in_memory: m.frozen ? "frozen" : "open",
      key_start: keyToHex(KEY_MIN),
      key_end: keyToHex(KEY_MAX),
      lsn_start: lsnToString(m.start),
      lsn_end: lsnToString(m.end),
      size_bytes: m.sizeBytes,
      remote: false,
    });
  }
  return out;
}
