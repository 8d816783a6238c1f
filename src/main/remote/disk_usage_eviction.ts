/**
 * DiskUsageEviction: keeps the bytes of resident layer files on this node at or below
 * `max_local_disk_bytes`, and the free space of the workdir's filesystem at or above
 * `min_free_disk_bytes` (node config; 0: off). A node loop (BackgroundLoops, every
 * EVICTION_PERIOD_MS) sums the resident layer files of every active timeline and reads the
 * filesystem's free space (statfs); while either limit is passed it evicts the coldest layers
 * first (the smallest last-access tick, set by reads) until both hold again, or nothing more
 * can go (then it tries again next round).
 *
 * Only a layer that is safe to drop locally is a candidate: its timeline is connected to
 * remote storage, the uploaded index names it with the same size and no upload of it is
 * pending (RemoteTimelineClient.isUploaded), it is not pinned by a job, no leased read (a
 * base backup streaming) may visit it, and it is not being downloaded (Timeline.evictable;
 * evictLayer checks it again after its manifest write).
 * In-memory layers (open, frozen) are no historic layers and never candidates. An evicted
 * layer comes back when a read needs it (on-demand download).
 *
 * Metrics: pageserver_layer_evictions_total, pageserver_layer_evicted_bytes_total,
 * pageserver_resident_layer_bytes (pulled at scrape time).
 */
import { statfsSync } from "node:fs";
import type { Logger } from "pino";
import { Gauge, type Registry } from "prom-client";
import { deltaCounter } from "../delta_counter.js";
import type { HistoricLayer } from "../../layers/historic_layer.js";
import type { LoopHandle, BackgroundLoops } from "../../tenant/background_loops.js";
import { TenantState } from "../../tenant/tenant.js";
import { type Timeline, TimelineState } from "../../tenant/timeline/index.js";
import { assert } from "../../types/assert.js";
import type { TenantManager } from "../tenant_manager.js";

/** How often the loop compares the resident bytes with the limit. */
export const EVICTION_PERIOD_MS = 1000;
/** Layers one round evicts at most (the next round goes on). */
const MAX_EVICTIONS_PER_ROUND = 10_000;

/** What eviction asks remote storage about a timeline's layer. */
export interface UploadedCheck {
  isUploaded(name: string, size_bytes: number): boolean;
}

export class DiskUsageEviction {
  readonly max_local_disk_bytes: number;
  readonly min_free_disk_bytes: number;
  private readonly workdir: string;
  private readonly tenants: TenantManager;
  private readonly remoteOf: (tl: Timeline) => UploadedCheck | undefined;
  private readonly log: Logger;
  private handle: LoopHandle | null = null;
  readonly counters = { evictions: 0, evicted_bytes: 0, rounds: 0 };

  constructor(o: {
    max_local_disk_bytes: number;
    min_free_disk_bytes?: number;
    workdir?: string;
    tenants: TenantManager;
    remoteOf: (tl: Timeline) => UploadedCheck | undefined;
    log: Logger;
  }) {
    this.max_local_disk_bytes = o.max_local_disk_bytes;
    this.min_free_disk_bytes = o.min_free_disk_bytes ?? 0;
    this.workdir = o.workdir ?? ".";
    assert(this.min_free_disk_bytes === 0 || o.workdir !== undefined, "a free-space floor needs the workdir");
    this.tenants = o.tenants;
    this.remoteOf = o.remoteOf;
    this.log = o.log;
  }

  private get enabled(): boolean {
    return this.max_local_disk_bytes > 0 || this.min_free_disk_bytes > 0;
  }

  /** Free bytes of the workdir's filesystem for an unprivileged writer (statfs: bavail × bsize). */
  freeDiskBytes(): number {
    const st = statfsSync(this.workdir);
    return st.bavail * st.bsize;
  }

  /** Starts the loop (nothing when both limits are 0). */
  start(loops: BackgroundLoops): void {
    if (!this.enabled || this.handle !== null) return;
    this.handle = loops.register({
      what: "disk usage eviction",
      period_ms: () => EVICTION_PERIOD_MS,
      round: () => this.round(),
      onError: (e) => this.log.warn({ err: e }, "disk usage eviction round failed"),
    });
  }

  stop(): void {
    this.handle?.stop();
    this.handle = null;
  }

  private timelines(): Timeline[] {
    const out: Timeline[] = [];
    for (const t of this.tenants.list()) {
      if (t.state !== TenantState.Active) continue;
      for (const tl of t.listTimelines()) if (tl.state === TimelineState.Active) out.push(tl);
    }
    return out;
  }

  /** Bytes of every resident layer file of the node's active timelines. */
  residentBytes(): number {
    let n = 0;
    for (const tl of this.timelines()) n += tl.residentBytes();
    return n;
  }

  /** One round: evict the coldest uploaded layers while a limit is passed. Returns whether it should run again now. */
  async round(): Promise<boolean> {
    if (!this.enabled) return false;
    this.counters.rounds++;
    let total = this.residentBytes();
    // Bytes to give back: the larger of what each limit asks for.
    const overLimit = this.max_local_disk_bytes > 0 ? total - this.max_local_disk_bytes : 0;
    const underFloor = this.min_free_disk_bytes > 0 ? this.min_free_disk_bytes - this.freeDiskBytes() : 0;
    let needed = Math.max(overLimit, underFloor);
    if (needed <= 0) return false;
    const candidates: { tl: Timeline; layer: HistoricLayer }[] = [];
    for (const tl of this.timelines()) {
      const remote = this.remoteOf(tl);
      if (remote === undefined) continue;
      for (const layer of tl.residentLayers()) {
        if (!tl.evictable(layer) || !remote.isUploaded(layer.desc.fileName, layer.desc.fileSize)) continue;
        candidates.push({ tl, layer });
      }
    }
    candidates.sort((a, b) => a.layer.lastAccess - b.layer.lastAccess);
    let evicted = 0;
    for (const c of candidates) {
      if (needed <= 0 || evicted >= MAX_EVICTIONS_PER_ROUND) break;
      if (!(await c.tl.evictLayer(c.layer))) continue;
      total -= c.layer.desc.fileSize;
      needed -= c.layer.desc.fileSize;
      evicted++;
      this.counters.evictions++;
      this.counters.evicted_bytes += c.layer.desc.fileSize;
    }
    if (evicted > 0) {
      this.log.info(
        { evicted, resident_bytes: total, max_local_disk_bytes: this.max_local_disk_bytes, min_free_disk_bytes: this.min_free_disk_bytes },
        "evicted layers for disk usage",
      );
    }
    // More to do only if this round hit its bound: otherwise what is left can't go now.
    return evicted >= MAX_EVICTIONS_PER_ROUND;
  }

  registerMetrics(registry: Registry): void {
    const registers = [registry];
    const counters = this.counters;
    deltaCounter({
      name: "pageserver_layer_evictions_total",
      help: "Layer files evicted from local disk for disk usage (max_local_disk_bytes)",
      registers,
      read: () => [{ labels: {}, total: counters.evictions }],
    });
    deltaCounter({
      name: "pageserver_layer_evicted_bytes_total",
      help: "Bytes of layer files evicted from local disk for disk usage",
      registers,
      read: () => [{ labels: {}, total: counters.evicted_bytes }],
    });
    const self = this;
    new Gauge({
      name: "pageserver_resident_layer_bytes",
      help: "Bytes of layer files on local disk (resident), over every active timeline",
      registers,
      collect() {
        this.set(self.residentBytes());
      },
    });
  }
}
