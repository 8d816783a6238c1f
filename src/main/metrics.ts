/**
 * Prometheus metrics (prom-client). Nothing here sits on a hot path: values are pulled from
 * the cache's lock-free counters and from tenants/timelines when /metrics is scraped.
 * Names follow Neon's where a Neon metric exists (pageserver_*).
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { PAGE_KIND_NAMES, type PageCacheApi } from "../cache/api.js";
import type { TenantManager } from "./tenant_manager.js";

export function createMetrics(cache: PageCacheApi, tenants: TenantManager, cacheSizeBytes: number): Registry {
  const register = new Registry();
  collectDefaultMetrics({ register });
  // prom-client names three gauges *_total, which Prometheus reserves for counters (promtool
  // check metrics fails on them); the per-type nodejs_active_* gauges carry the same counts.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
    register.removeSingleMetric(name);
  }

  // Cache counters live in the shared buffer; expose them as counters by adding the deltas.
  const last = new Map<string, number>();
  const bump = (c: Counter<string>, name: string, kind: string, total: number): void => {
    const k = `${name}/${kind}`;
    const d = total - (last.get(k) ?? 0);
    if (d > 0) c.inc({ kind }, d);
    last.set(k, total);
  };
  const accesses = new Counter({ name: "pageserver_page_cache_read_accesses_total", help: "Page cache lookups", labelNames: ["kind"], registers: [register] });
  const hits = new Counter({ name: "pageserver_page_cache_read_hits_total", help: "Page cache lookups that hit", labelNames: ["kind"], registers: [register] });
  const evictions = new Counter({ name: "pageserver_page_cache_evictions_total", help: "Page cache evictions", labelNames: ["kind"], registers: [register] });
  new Gauge({
    name: "pageserver_page_cache_size_max_bytes",
    help: "Size of the shared page cache",
    registers: [register],
    collect() {
      this.set(cacheSizeBytes);
      const s = cache.stats();
      for (const kind of PAGE_KIND_NAMES) {
        const ks = s.byKind[kind];
        bump(accesses, "accesses", kind, ks.hits + ks.misses);
        bump(hits, "hits", kind, ks.hits);
        bump(evictions, "evictions", kind, ks.evictions);
      }
    },
  });

  const tlLabels = ["tenant_id", "timeline_id"];
  const forTimelines = (g: Gauge<string>, f: (tl: ReturnType<ReturnType<TenantManager["list"]>[number]["listTimelines"]>[number]) => number): void => {
    g.reset();
    for (const t of tenants.list()) for (const tl of t.listTimelines()) g.set({ tenant_id: t.id, timeline_id: tl.timelineId }, f(tl));
  };
  new Gauge({
    name: "pageserver_last_record_lsn",
    help: "Last ingested record LSN (bytes of WAL)",
    labelNames: tlLabels,
    registers: [register],
    collect() {
      forTimelines(this, (tl) => tl.lastRecordLsn);
    },
  });
  new Gauge({
    name: "pageserver_disk_consistent_lsn",
    help: "LSN up to which everything is in durable layer files",
    labelNames: tlLabels,
    registers: [register],
    collect() {
      forTimelines(this, (tl) => tl.diskConsistentLsn);
    },
  });
  new Gauge({
    // Neon calls this pageserver_layer_count; a gauge named *_count fails promtool's lint.
    name: "pageserver_layers",
    help: "Layer files per timeline",
    labelNames: [...tlLabels, "kind", "level"],
    registers: [register],
    collect() {
      this.reset();
      for (const t of tenants.list()) {
        for (const tl of t.listTimelines()) {
          const i = tl.info().layers;
          const l = { tenant_id: t.id, timeline_id: tl.timelineId };
          this.set({ ...l, kind: "delta", level: "l0" }, i.l0);
          this.set({ ...l, kind: "delta", level: "l1" }, i.delta - i.l0);
          this.set({ ...l, kind: "image", level: "l1" }, i.image);
          this.set({ ...l, kind: "delta", level: "frozen" }, i.frozen);
        }
      }
    },
  });
  new Gauge({
    name: "pageserver_flush_lag_bytes",
    help: "WAL ingested but not yet in durable layer files (last_record_lsn - disk_consistent_lsn)",
    labelNames: tlLabels,
    registers: [register],
    collect() {
      forTimelines(this, (tl) => Math.max(0, tl.lastRecordLsn - tl.diskConsistentLsn));
    },
  });
  // Ingest backpressure: seconds ingest waited, by stage (timeline info has the same in ms).
  const waited = (name: string, help: string, pick: (s: { delayed_ms: number; stalled_ms: number }) => number): void => {
    const seen = new Map<string, number>();
    new Counter({
      name,
      help,
      labelNames: tlLabels,
      registers: [register],
      collect() {
        for (const t of tenants.list()) {
          for (const tl of t.listTimelines()) {
            const labels = { tenant_id: t.id, timeline_id: tl.timelineId };
            const k = `${t.id}/${tl.timelineId}`;
            const total_s = pick(tl.backpressureStats) / 1000;
            const d = total_s - (seen.get(k) ?? 0);
            // Touch every series so it shows (at 0) before the first wait.
            this.inc(labels, Math.max(d, 0));
            seen.set(k, Math.max(total_s, seen.get(k) ?? 0));
          }
        }
      },
    });
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
  const reads = new Counter({ name: "pageserver_getpage_reads_total", help: "Values read (get@LSN)", registers: [register] });
  const matHits = new Counter({
    name: "pageserver_materialized_page_hits_total",
    help: "Reads that started from a cached materialized page version",
    registers: [register],
  });
  const redos = new Counter({ name: "pageserver_wal_redo_total", help: "Reads that applied records", registers: [register] });
  const offloaded = new Counter({
    name: "pageserver_wal_redo_offloaded_total",
    help: "Reads whose long record chain was redone on the redo worker pool",
    registers: [register],
  });
  new Gauge({
    // Neon: pageserver_tenant_states_count (renamed for promtool, as above).
    name: "pageserver_tenant_states",
    help: "Tenants by state",
    labelNames: ["state"],
    registers: [register],
    collect() {
      this.reset();
      for (const [state, n] of Object.entries(tenants.countByState())) this.set({ state }, n);
      let r = 0;
      let m = 0;
      let w = 0;
      let o = 0;
      for (const t of tenants.list())
        for (const tl of t.listTimelines()) {
          r += tl.counters.reads;
          m += tl.counters.materializedHits;
          w += tl.counters.redos;
          o += tl.counters.offloadedRedos;
        }
      const set = (c: Counter<string>, k: string, v: number): void => {
        const d = v - (last.get(k) ?? 0);
        if (d > 0) c.inc(d);
        last.set(k, v);
      };
      set(reads, "reads", r);
      set(matHits, "mat", m);
      set(redos, "redos", w);
      set(offloaded, "offloaded", o);
    },
  });
  return register;
}
