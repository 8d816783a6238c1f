/**
 * Prometheus metrics (prom-client), one Registry per Server (tests run several Servers in one
 * process: no global prom-client state). docs/metrics.md lists every metric.
 *
 * Two kinds of values:
 * - observed when they happen (histograms of wait_lsn and storage operations, WAL received):
 *   the storage layers call the MetricsSink (src/types/metrics_sink.ts) that NodeMetrics is;
 * - read when /metrics is scraped (collect()): LSNs, layer counts and bytes, cache counters,
 *   worker pools, walreceiver lag. A scrape costs O(timelines) with constant work each (layer
 *   stats are cached per immutable layer map) except resident bytes, a sum over the timeline's
 *   layer array (residency changes without a new map); nothing reads files.
 *
 * metrics_per_timeline (PruningRegistry.perTimeline, read at each scrape): on, the per-timeline
 * families have one series per timeline (tenant_id, timeline_id); off, one per node instead:
 * the timelines' sum (sizes, layer counts, counters) or max (lags), and none for LSNs (a sum of
 * LSNs means nothing). At 10,000 timelines that is ~250k series against a few hundred.
 * The per-timeline gauges are TimelineFamily objects that render their text themselves
 * (rebuilt each scrape: prom-client's series bookkeeping would only add cost).
 *
 * A scrape whose client accepts gzip (Prometheus does) is compressed on libuv's thread pool
 * (metricsReply), not on the main thread.
 *
 * Series of deleted (or detached) tenants and timelines go: before each scrape every
 * prom-client metric of the registry, whoever registered it, loses the series whose tenant_id (and timeline_id) no
 * longer name a tenant (timeline) of this node (PruningRegistry), so create/delete cycles
 * leave nothing behind.
 *
 * Names are Neon's (pageserver/src/metrics.rs) where Neon has the metric; promtool's lint
 * forced a few changes (counters end in _total, gauges don't end in _count), listed in
 * docs/metrics.md.
 */
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { PAGE_KIND_NAMES, type PageCacheApi } from "../cache/api.js";
import { type MetricsSink, STORAGE_OPERATIONS, type StorageOperation } from "../types/metrics_sink.js";
import type { PoolStats } from "../workers/pools.js";
import type { Timeline } from "../tenant/timeline/index.js";
import { buildInfo } from "./build_info.js";
import { type DeltaSample, deltaCounter, nodeLabels } from "./delta_counter.js";
import type { RawReply } from "./http/exchange.js";
import { lastLogicalSize } from "./http/models.js";
import type { TenantManager } from "./tenant_manager.js";
import type { WalSources } from "./wal_source/wal_sources.js";

/** Neon's CRITICAL_OP_BUCKETS: operations on the read path, 1 µs … 100 s. */
const CRITICAL_OP_BUCKETS = [0.000_001, 0.000_01, 0.000_1, 0.001, 0.01, 0.1, 1, 10, 100];
/** Neon's STORAGE_OP_BUCKETS (10 ms … 1000 s) with 1 ms below: small tenants flush in ms. */
const STORAGE_OP_BUCKETS = [0.001, 0.01, 0.1, 1, 10, 100, 1000];

/** Neon's redo_histogram_time_buckets: 50 µs … 5 s. */
const REDO_BUCKETS = [0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5];

/**
 * gzip level of scrapes: 1 costs about a quarter of the default 6's CPU for a result ~1 %
 * larger (the text shrinks ~5x either way; bench/metrics.bench.ts measures both).
 */
export const METRICS_GZIP_LEVEL = 1;
const gzipAsync = promisify(gzip);

/** Does an Accept-Encoding header accept gzip (a `gzip` or `*` token whose q is not 0)? */
export function acceptsGzip(acceptEncoding: string | undefined): boolean {
  if (acceptEncoding === undefined) return false;
  // A header names a handful of codings; the split is bounded by the header's length (8 KiB).
  for (const part of acceptEncoding.split(",")) {
    const [coding, ...params] = part.split(";").map((x) => x.trim().toLowerCase());
    if (coding !== "gzip" && coding !== "*") continue;
    const q = params.find((p) => p.startsWith("q="));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/** GET /metrics' reply: the registry's text, gzipped when the client accepts it. */
export async function metricsReply(registry: Registry, acceptEncoding: string | undefined): Promise<RawReply> {
  const text = await registry.metrics();
  if (!acceptsGzip(acceptEncoding))
    return { status: 200, contentType: registry.contentType, headers: { vary: "Accept-Encoding" }, body: text };
  const body = await gzipAsync(text, { level: METRICS_GZIP_LEVEL });
  return { status: 200, contentType: registry.contentType, headers: { "content-encoding": "gzip", vary: "Accept-Encoding" }, body };
}

/** How a per-timeline family reads per node when metrics_per_timeline is off. */
export type PerNode = "sum" | "max" | "none";

export interface TimelineGaugeSpec {
  name: string;
  help: string;
  /** Per node: the timelines' sum, their max, or no series. */
  agg: PerNode;
  /** Labels besides tenant_id and timeline_id (kept per node). */
  extraLabels?: readonly string[];
  /** Emits each timeline's values (labels include tenant_id and timeline_id). */
  read: (emit: (labels: Record<string, string>, value: number) => void) => void;
}

/** A label value as the text format wants it (ids and our fixed values need no escape: checked first). */
function labelValue(v: string): string {
  return /[\\"\n]/.test(v) ? v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n") : v;
}

/** A sample value as prom-client writes it. */
function sampleText(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

/**
 * A gauge family of per-timeline values: one series per timeline when `registry.perTimeline`,
 * else one per node per `extraLabels` set, folded by `agg` (src/main/remote uses it too).
 *
 * Not a prom-client Gauge: its series are rebuilt from the timelines at every scrape, so
 * prom-client's per-series bookkeeping (a hashed labels key per set, then a generic
 * formatter) is pure cost; at 10,000 timelines it was most of a scrape's main-thread time.
 * PruningRegistry renders it with render(); get() serves prom-client's other readers (JSON).
 */
export class TimelineFamily {
  readonly name: string;
  readonly help: string;
  readonly type = "gauge";
  readonly aggregator = "sum";
  private readonly extraLabels: readonly string[];

  constructor(
    private readonly registry: PruningRegistry,
    private readonly spec: TimelineGaugeSpec,
  ) {
    this.name = spec.name;
    this.help = spec.help;
    this.extraLabels = spec.extraLabels ?? [];
    // prom-client's registry takes any object with its metric interface (name, get()).
    registry.registerMetric(this as unknown as Gauge);
  }

  /** The series now: per timeline, or folded per node (none for agg "none"). */
  private series(emit: (labels: Record<string, string | number>, value: number) => void): void {
    const { agg, read } = this.spec;
    if (this.registry.perTimeline) {
      read(emit);
      return;
    }
    if (agg === "none") return;
    // Keyed by the other labels' values: one string per sample, the labels object once per key.
    const folded = new Map<string, { labels: Record<string, string | number>; value: number }>();
    read((l, v) => {
      let key = "";
      for (const k of this.extraLabels) key += `${l[k]}\u0000`;
      const acc = folded.get(key);
      if (acc === undefined) folded.set(key, { labels: nodeLabels(l), value: v });
      else acc.value = agg === "sum" ? acc.value + v : Math.max(acc.value, v);
    });
    for (const { labels, value } of folded.values()) emit(labels, value);
  }

  /** The family in the text format, as prom-client's registry renders a metric (no trailing newline). */
  render(): string {
    const escHelp = this.help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
    const lines = [`# HELP ${this.name} ${escHelp}`, `# TYPE ${this.name} gauge`];
    this.series((labels, value) => {
      let text = "";
      for (const k in labels) text += `${text === "" ? "" : ","}${k}="${labelValue(String(labels[k]))}"`;
      lines.push(`${this.name}${text === "" ? "" : `{${text}}`} ${sampleText(value)}`);
    });
    return lines.join("\n");
  }

  /** prom-client's metric interface (getMetricsAsJSON). */
  async get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string | number>; value: number }[];
  }> {
    const values: { labels: Record<string, string | number>; value: number }[] = [];
    this.series((labels, value) => values.push({ labels, value }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

/** Our page kinds under Neon's label name key_kind, with Neon's values where it has the kind. */
const KEY_KIND: Record<(typeof PAGE_KIND_NAMES)[number], string> = {
  file: "immutable",
  ephemeral: "ephemeral",
  materialized: "materialized_page",
};

/** What the scrape-time metrics read. */
export interface MetricSources {
  cache: PageCacheApi;
  cacheSizeBytes: number;
  tenants: TenantManager;
  pools: { stats(): PoolStats[] };
  walSources: WalSources;
  loops: { readonly queued: number; readonly active: number; readonly concurrency: number };
}

/** prom-client's per-series storage (not in its typings): every series keeps its labels. */
type SeriesMap = Record<string, { labels: Record<string, string | number> }>;

/**
 * A Registry that, before each exposition, removes the series of tenants and timelines that
 * are gone (`live` says which are here: tenant id → its timeline ids).
 */
export class PruningRegistry extends Registry {
  live: (() => Map<string, Set<string>>) | null = null;
  /** metrics_per_timeline: series per timeline (true) or per node (false); read at each scrape. */
  perTimeline = true;

  override async metrics(): Promise<string> {
    this.prune();
    return super.metrics();
  }

  /** prom-client renders each metric here (not in its typings): a TimelineFamily renders itself. */
  async getMetricsAsString(metric: unknown): Promise<string> {
    if (metric instanceof TimelineFamily) return metric.render();
    return (Registry.prototype as unknown as { getMetricsAsString(m: unknown): Promise<string> }).getMetricsAsString.call(this, metric);
  }

  /** Remove every series naming a tenant or timeline `live` doesn't list; returns how many. */
  prune(): number {
    if (this.live === null) return 0;
    const live = this.live();
    let removed = 0;
    for (const m of this.getMetricsAsArray()) {
      const series = (m as unknown as { hashMap?: SeriesMap }).hashMap;
      if (series === undefined) continue;
      for (const { labels } of Object.values(series)) {
        const tenant = labels["tenant_id"];
        if (tenant === undefined) continue;
        const timelines = live.get(String(tenant));
        const timeline = labels["timeline_id"];
        if (timelines !== undefined && (timeline === undefined || timelines.has(String(timeline)))) continue;
        (m as unknown as { remove(l: Record<string, string | number>): void }).remove(labels);
        removed++;
      }
    }
    return removed;
  }
}

export class NodeMetrics implements MetricsSink {
  readonly registry = new PruningRegistry();
  private readonly waitLsnSeconds: Histogram<string>;
  private readonly storageSecondsGlobal: Histogram<string>;
  private readonly walRedoSeconds: Histogram;
  private readonly walRecords: Counter<string>;
  private readonly walBytes: Counter<string>;

  constructor() {
    const registers = [this.registry];
    this.waitLsnSeconds = new Histogram({
      name: "pageserver_wait_lsn_seconds",
      help: "Time reads waited for WAL ingest to reach their LSN (reads that did not wait are not observed)",
      buckets: CRITICAL_OP_BUCKETS,
      registers,
    });
    this.storageSecondsGlobal = new Histogram({
      name: "pageserver_storage_operations_seconds_global",
      help: "Time spent on storage operations that did work, by operation",
      labelNames: ["operation"],
      buckets: STORAGE_OP_BUCKETS,
      registers,
    });
    // Every operation shows (at 0) before it first runs: rate() and dashboards need the series.
    for (const operation of STORAGE_OPERATIONS) this.storageSecondsGlobal.zero({ operation });
    this.walRedoSeconds = new Histogram({
      name: "pageserver_wal_redo_seconds",
      help: "Time reads spent applying WAL records to rebuild a value (redo pool queueing included)",
      buckets: REDO_BUCKETS,
      registers,
    });
    this.walRecords = new Counter({
      name: "pageserver_wal_ingest_records_received_total",
      help: "WAL records received from sources and ingested",
      registers,
    });
    this.walBytes = new Counter({
      name: "pageserver_wal_ingest_bytes_received_total",
      help: "Bytes of WAL received from sources",
      registers,
    });
  }

  waitLsn(seconds: number): void {
    this.waitLsnSeconds.observe(seconds);
  }

  storageOperation(op: StorageOperation, seconds: number): void {
    this.storageSecondsGlobal.observe({ operation: op }, seconds);
  }

  walRedo(seconds: number): void {
    this.walRedoSeconds.observe(seconds);
  }

  walReceived(records: number, bytes: number): void {
    if (records > 0) this.walRecords.inc(records);
    if (bytes > 0) this.walBytes.inc(bytes);
  }

  /** Register the metrics read at scrape time. Called once, when the node's parts exist. */
  collectFrom(src: MetricSources): void {
    const register = this.registry;
    this.registry.live = () =>
      new Map(src.tenants.list().map((t) => [t.id as string, new Set(t.listTimelines().map((tl) => tl.timelineId as string))]));
    const registers = [register];
    collectDefaultMetrics({ register });
    // prom-client names three gauges *_total, which Prometheus reserves for counters (promtool
    // check metrics fails on them); the per-type nodejs_active_* gauges carry the same counts.
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
      register.removeSingleMetric(name);
    }

    const b = buildInfo();
    new Gauge({
      name: "pageserver_build_info",
      help: "Build of this pageserver (always 1)",
      labelNames: ["version", "revision"],
      registers,
    }).set({ version: b.version, revision: b.git_commit }, 1);

    this.cacheMetrics(src);
    this.timelineMetrics(src);
    this.poolMetrics(src);

    const readCounters = (): Timeline["counters"][] => {
      const out: Timeline["counters"][] = [];
      for (const t of src.tenants.list()) for (const tl of t.listTimelines()) out.push(tl.counters);
      return out;
    };
    // Sums over the timelines: a removed timeline lowers the sum (no increase; counting resumes).
    const sumOf = (name: string, help: string, pick: (c: Timeline["counters"]) => number): void => {
      const read = (): DeltaSample<never>[] => {
        let n = 0;
        for (const c of readCounters()) n += pick(c);
        return [{ labels: {}, total: n }];
      };
      deltaCounter({ name, help, registers, read });
    };
    sumOf("pageserver_getpage_reads_total", "Values read (get@LSN)", (c) => c.reads);
    sumOf(
      "pageserver_materialized_cache_hits_total",
      "Reads that started from a cached materialized page version",
      (c) => c.materializedHits,
    );
    sumOf("pageserver_wal_redo_total", "Reads that applied records", (c) => c.redos);
    sumOf(
      "pageserver_wal_redo_offloaded_total",
      "Reads whose long record chain was redone on the redo worker pool",
      (c) => c.offloadedRedos,
    );
    new Gauge({
      // Neon: pageserver_tenant_states_count (a gauge may not end in _count for promtool).
      name: "pageserver_tenant_states",
      help: "Tenants by state",
      labelNames: ["state"],
      registers,
      collect() {
        this.reset();
        for (const [state, n] of Object.entries(src.tenants.countByState())) this.set({ state }, n);
      },
    });
  }

  private cacheMetrics(src: MetricSources): void {
    const byKind = (name: string, help: string, pick: (s: { hits: number; misses: number; evictions: number }) => number): void => {
      const read = (): DeltaSample<"key_kind">[] => {
        const s = src.cache.stats();
        return PAGE_KIND_NAMES.map((kind) => ({ labels: { key_kind: KEY_KIND[kind] }, total: pick(s.byKind[kind]) }));
      };
      deltaCounter({ name, help, labelNames: ["key_kind"], registers: [this.registry], read });
    };
    byKind("pageserver_page_cache_read_accesses_total", "Page cache lookups", (s) => s.hits + s.misses);
    byKind("pageserver_page_cache_read_hits_total", "Page cache lookups that hit", (s) => s.hits);
    byKind("pageserver_page_cache_evictions_total", "Page cache slots taken from a page of this kind for another page", (s) => s.evictions);
    new Gauge({ name: "pageserver_page_cache_size_max_bytes", help: "Size of the shared page cache", registers: [this.registry] }).set(
      src.cacheSizeBytes,
    );
  }

  /**
   * Per-timeline families: one pass over the timelines per metric, constant work each. Per
   * node (registry.perTimeline off), each family keeps its other labels and sums or maxes
   * over the timelines, or has no series (PerNode).
   */
  private timelineMetrics(src: MetricSources): void {
    const registry = this.registry;
    const registers = [registry];
    const labelNames = ["tenant_id", "timeline_id"];
    type Labels = { tenant_id: string; timeline_id: string };
    const each = (f: (tl: Timeline, labels: Labels) => void): void => {
      for (const t of src.tenants.list()) for (const tl of t.listTimelines()) f(tl, { tenant_id: t.id, timeline_id: tl.timelineId });
    };
    const perNode = (): boolean => !registry.perTimeline;
    const timelineGauge = (
      name: string,
      help: string,
      agg: PerNode,
      read: (emit: (labels: Record<string, string>, value: number) => void) => void,
      extraLabels: readonly string[] = [],
    ): void => {
      new TimelineFamily(registry, { name, help, agg, read, extraLabels });
    };
    const perTimeline = (name: string, help: string, agg: PerNode, value: (tl: Timeline) => number): void =>
      timelineGauge(name, help, agg, (emit) => each((tl, l) => emit(l, value(tl))));

    perTimeline("pageserver_last_record_lsn", "Last ingested record LSN (bytes of WAL)", "none", (tl) => tl.lastRecordLsn);
    perTimeline(
      "pageserver_disk_consistent_lsn",
      "LSN up to which everything is in durable layer files",
      "none",
      (tl) => tl.diskConsistentLsn,
    );
    perTimeline(
      "pageserver_flush_lag_bytes",
      "WAL ingested but not yet in durable layer files (last_record_lsn - disk_consistent_lsn); per node: the largest",
      "max",
      (tl) => Math.max(0, tl.lastRecordLsn - tl.diskConsistentLsn),
    );
    perTimeline(
      "pageserver_resident_physical_size",
      "Bytes of the timeline's layer files on local disk (evicted layers not counted); per node: the sum",
      "sum",
      (tl) => tl.residentBytes(),
    );
    timelineGauge(
      "pageserver_current_logical_size",
      "Logical size (bytes of relations) as last computed (timeline info, tenant size); only computed timelines",
      "sum",
      (emit) =>
        each((tl, l) => {
          const size = lastLogicalSize(tl);
          if (size !== null) emit(l, size);
        }),
    );

    const layerGauge = (name: string, help: string, pick: (x: { count: number; bytes: number }) => number): void => {
      timelineGauge(
        name,
        help,
        "sum",
        (emit) =>
          each((tl, l) => {
            const s = tl.layerStats();
            emit({ ...l, level: "l0", kind: "delta" }, pick(s.l0Delta));
            emit({ ...l, level: "l1", kind: "delta" }, pick(s.l1Delta));
            emit({ ...l, level: "l1", kind: "image" }, pick(s.image));
            emit({ ...l, level: "frozen", kind: "delta" }, pick(s.frozen));
          }),
        ["level", "kind"],
      );
    };
    // Neon calls this pageserver_layer_count; a gauge named *_count fails promtool's lint.
    layerGauge(
      "pageserver_layers",
      "Layers per timeline by level and kind (frozen: in-memory layers waiting for their flush)",
      (x) => x.count,
    );
    layerGauge("pageserver_layer_bytes", "Bytes of the layers per timeline by level and kind (frozen: in-memory size)", (x) => x.bytes);

    // Ingest backpressure: seconds ingest waited, by stage (timeline info has the same in ms).
    // Every timeline's series shows (at 0) before its first wait.
    const waited = (name: string, help: string, pick: (s: { delayed_ms: number; stalled_ms: number }) => number): void => {
      const read = (): DeltaSample<string>[] => {
        const out: DeltaSample<string>[] = [];
        each((tl, labels) => out.push({ labels, total: pick(tl.backpressureStats) / 1000, owner: tl }));
        return out;
      };
      deltaCounter({ name, help, labelNames, registers, read, perNode });
    };
    waited(
      "pageserver_wal_ingest_delayed_seconds_total",
      "Time ingest waited for flushes because L0 files reached l0_flush_delay_threshold",
      (s) => s.delayed_ms,
    );
    waited(
      "pageserver_wal_ingest_stalled_seconds_total",
      "Time ingest stopped because the frozen layers reached max_frozen_layers or L0 files reached l0_flush_stall_threshold",
      (s) => s.stalled_ms,
    );

    // Per source object (a new source of the timeline counts from 0 again; the series goes on).
    deltaCounter({
      name: "pageserver_wal_ingest_errors_total",
      help: "WAL records ingest refused: each stopped the timeline's stream, which restarts after a backoff (wal_source.state error)",
      labelNames,
      registers,
      perNode,
      read: () =>
        src.walSources.list().map((source) => ({
          labels: { tenant_id: source.timeline.tenantId, timeline_id: source.timeline.timelineId },
          total: source.ingestErrors,
          owner: source,
        })),
    });

    timelineGauge(
      "pageserver_walreceiver_lag_bytes",
      "WAL the source has (its flush position as of its last message) that this timeline has not ingested yet; per node: the largest",
      "max",
      (emit) => {
        for (const source of src.walSources.list()) {
          const p = source.positions();
          const tl = source.timeline;
          // Before the source's first message its position is unknown: no sample, not a 0.
          if (p === null || p.serverWalEndLsn === 0) continue;
          emit({ tenant_id: tl.tenantId, timeline_id: tl.timelineId }, Math.max(0, p.serverWalEndLsn - tl.lastRecordLsn));
        }
      },
    );
  }

  private poolMetrics(src: MetricSources): void {
    const registers = [this.registry];
    const labelNames = ["pool"];
    const gauge = (name: string, help: string, pick: (s: PoolStats) => number): void => {
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          for (const s of src.pools.stats()) this.set({ pool: s.pool }, pick(s));
        },
      });
    };
    const loops = src.loops;
    new Gauge({
      name: "pageserver_background_loop_rounds",
      help: "Tenants' compaction / GC rounds by state: queued for a slot, or running (at most max_concurrent_background_tasks)",
      labelNames: ["state"],
      registers,
      collect() {
        this.set({ state: "queued" }, loops.queued);
        this.set({ state: "running" }, loops.active);
      },
    });
    gauge("pageserver_worker_pool_queued_jobs", "Jobs waiting for a thread of the pool", (s) => s.queued);
    gauge("pageserver_worker_pool_running_jobs", "Jobs running on the pool", (s) => s.running);
    gauge("pageserver_worker_pool_threads", "Worker threads alive in the pool", (s) => s.threads);
    gauge("pageserver_worker_pool_max_threads", "Worker threads the pool may run", (s) => s.maxThreads);
    gauge(
      "pageserver_worker_pool_utilization_ratio",
      "Piscina's utilization of the pool since it started: mean job run time over capacity (0..1)",
      (s) => s.utilization,
    );
    deltaCounter({
      name: "pageserver_worker_pool_jobs_completed_total",
      help: "Jobs the pool completed",
      labelNames,
      registers,
      read: () => src.pools.stats().map((s) => ({ labels: { pool: s.pool }, total: s.completed })),
    });
  }
}
