/**
 * RemoteTimelines: the node's remote storage side (config `remote_storage`). Every timeline
 * that becomes active (loaded or created: Tenant's onTimelineReady) gets a
 * RemoteTimelineClient: opened against the bucket, reconciled with the timeline's local
 * layers and metadata, and installed as the timeline's LayerEvents in one synchronous step,
 * so no change falls between the snapshot and the hook.
 *
 * - Generations: a tenant's comes from its directory (src/remote/attach.ts: the generation an
 *   attach wrote; FIRST_GENERATION for a tenant created here). A bucket that holds a newer
 *   generation of a timeline makes its tenant Broken ("superseded by generation N"), its WAL
 *   streams stop (onSuperseded), and nothing of it is uploaded or deleted.
 * - A bucket that can't be reached when a timeline starts: the open is retried with a backoff
 *   (capped at OPEN_RETRY_MAX_MS) until it works or the node stops; the timeline serves
 *   meanwhile, and its remote_consistent_lsn stays null.
 * - A queue that stops on a permanent error makes its timeline Broken with the reason.
 * - Deletion (dropTimeline / dropTenant, from the DELETE routes before the local data goes):
 *   the clients stop, then the objects leave the bucket (src/remote/remote_delete.ts), never
 *   those of a newer generation.
 * - shutdown(): after the tenants flushed, waits (bounded) for the queues to drain, then
 *   stops them.
 * - On-demand download: a connected timeline's evicted layers (all of them after an attach,
 *   which downloads no layer) are adopted into its layer map from the remote index, kept out
 *   of reconcile's deletions, and downloaded through the client when a read needs them
 *   (timed in pageserver_remote_ondemand_download_seconds).
 * - Metrics (pulled at scrape time): pageserver_projected_remote_consistent_lsn, and the queue
 *   depth, retries and uploaded bytes per timeline (docs/metrics.md).
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { readTenantGeneration } from "../remote/attach.js";
import type { Generation } from "../remote/generation.js";
import { deleteRemoteTenant, deleteRemoteTimeline, type RemoteDeletion } from "../remote/remote_delete.js";
import type { RemoteStorage } from "../remote/remote_storage.js";
import { RemoteTimelineClient, SupersededError } from "../remote/remote_timeline_client.js";
import { type Tenant, TenantState } from "../tenant/tenant.js";
import { type Timeline, TimelineState } from "../tenant/timeline.js";
import { BadStateError } from "../types/errors.js";
import type { Lsn } from "../types/lsn.js";
import { secondsSince } from "../types/metrics_sink.js";

const OPEN_RETRY_BASE_MS = 200;
const OPEN_RETRY_MAX_MS = 10_000;
/** How long shutdown waits for the queues to drain before it stops them anyway. */
const DRAIN_TIMEOUT_MS = 60_000;

export class RemoteTimelines {
  readonly storage: RemoteStorage;
  private readonly log: Logger;
  private readonly clients = new Map<Timeline, RemoteTimelineClient>();
  private readonly opening = new Set<Promise<void>>();
  /** Timelines being deleted: a connection that opens now must not hook them. */
  private readonly dropped = new WeakSet<Timeline>();
  private readonly abort = new AbortController();
  /** On-demand downloads: how long each took (successful or not); registered by registerMetrics. */
  private readonly downloadSeconds = new Histogram({
    name: "pageserver_remote_ondemand_download_seconds",
    help: "Time of on-demand layer downloads from remote storage (successful or not)",
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [],
  });
  /** On-demand downloads that completed, their bytes, and those that failed. */
  readonly ondemand = { downloads: 0, bytes: 0, failures: 0 };

  /** Called when a tenant is found superseded (after it is Broken): the node stops its WAL streams. */
  private readonly onSuperseded: (tenant: Tenant) => void;

  constructor(storage: RemoteStorage, log: Logger, onSuperseded: (tenant: Tenant) => void = () => undefined) {
    this.storage = storage;
    this.log = log.child({ remote_storage: storage.description });
    this.onSuperseded = onSuperseded;
  }

  private superseded(tenant: Tenant, reason: string): void {
    tenant.setBroken(reason);
    this.onSuperseded(tenant);
  }

  /** Tenant's onTimelineReady: connect the timeline to the bucket in the background. */
  timelineReady(tenant: Tenant, tl: Timeline): void {
    if (this.abort.signal.aborted) return;
    const p = this.connect(tenant, tl).finally(() => this.opening.delete(p));
    this.opening.add(p);
  }

  /** Nothing to connect any more: the node stops, or the timeline or its tenant can't serve. */
  private gone(tenant: Tenant, tl: Timeline): boolean {
    return this.abort.signal.aborted || this.dropped.has(tl) || tl.state !== TimelineState.Active || tenant.state === TenantState.Broken;
  }

  private async connect(tenant: Tenant, tl: Timeline): Promise<void> {
    let generation: Generation;
    try {
      generation = readTenantGeneration(tenant.dir);
    } catch (e) {
      tenant.setBroken(`cannot read the tenant's generation: ${(e as Error).message}`);
      return;
    }
    // Bounded by the node's life: every failed attempt sleeps a backoff that shutdown ends.
    for (let attempt = 0; ; attempt++) {
      if (this.gone(tenant, tl)) return;
      let client: RemoteTimelineClient;
      try {
        client = await RemoteTimelineClient.open(
          {
            storage: this.storage,
            tenant_id: tenant.id,
            timeline_id: tl.timelineId,
            generation,
            log: tl.log,
            onStopped: (status, reason) => {
              if (status === "superseded") this.superseded(tenant, reason);
              else tl.setBroken(`remote storage: ${reason}`);
            },
          },
          { signal: this.abort.signal },
        );
      } catch (e) {
        if (this.abort.signal.aborted) return;
        if (e instanceof SupersededError) {
          this.superseded(tenant, e.message);
          return;
        }
        const delay_ms = Math.min(OPEN_RETRY_MAX_MS, OPEN_RETRY_BASE_MS * 2 ** Math.min(attempt, 20));
        tl.log.warn({ err: e, attempt: attempt + 1, delay_ms }, "cannot open the timeline's remote state; retrying");
        try {
          await sleep(delay_ms, undefined, { signal: this.abort.signal });
        } catch {
          return;
        }
        continue;
      }
      if (this.gone(tenant, tl)) {
        await client.shutdown();
        return;
      }
      // One synchronous step: adopt the remote-only layers as evicted, snapshot, reconcile, hook.
      try {
        tl.adoptRemoteLayers(client.remoteLayerSizes());
        client.reconcile({ layers: tl.layerFiles(), metadata: tl.metadata(), evicted: tl.evictedLayerNames() });
      } catch (e) {
        await client.shutdown();
        tl.setBroken(`remote storage: ${(e as Error).message}`);
        return;
      }
      tl.setLayerEvents(client);
      tl.setLayerDownloader(async (layer) => {
        const start_ms = performance.now();
        try {
          await client.downloadLayer(layer.desc.fileName, layer.path, { signal: this.abort.signal });
          this.ondemand.downloads++;
          this.ondemand.bytes += layer.desc.fileSize;
        } catch (e) {
          this.ondemand.failures++;
          // Cut short by shutdown: nothing wrong with the layer or the bucket.
          if (this.abort.signal.aborted) tl.log.info({ layer: layer.desc.fileName }, "on-demand layer download stopped by shutdown");
          else tl.log.warn({ err: e, layer: layer.desc.fileName }, "on-demand layer download failed");
          throw e;
        } finally {
          this.downloadSeconds.observe(secondsSince(start_ms));
        }
      });
      this.clients.set(tl, client);
      return;
    }
  }

  /** The timeline's client, once connected. */
  clientOf(tl: Timeline): RemoteTimelineClient | undefined {
    return this.clients.get(tl);
  }

  remoteConsistentLsn(tl: Timeline): Lsn | null {
    return this.clients.get(tl)?.remote_consistent_lsn ?? null;
  }

  /**
   * Detach's last remote step, after the tenant shut down (flushed): waits until the bucket
   * holds everything its timelines reported (bounded), then stops their clients. Throws when
   * the uploads did not finish: the local data must then stay.
   */
  async release(tenant: Tenant): Promise<void> {
    await this.whenConnected();
    const mine = [...this.clients].filter(([tl]) => tl.tenantId === tenant.id);
    const drain = AbortSignal.timeout(DRAIN_TIMEOUT_MS);
    const failures: string[] = [];
    for (const [tl, c] of mine) {
      try {
        await c.waitUploaded({ signal: drain });
      } catch (e) {
        failures.push(`${tl.timelineId}: ${(e as Error).message}`);
      }
      await c.shutdown();
      tl.setLayerDownloader(null);
      this.clients.delete(tl);
    }
    if (failures.length > 0) throw new BadStateError(`uploads of tenant ${tenant.id} did not finish: ${failures.join("; ")}`);
  }

  /**
   * A deleted timeline (called before its local directory goes): it is marked dropped (a
   * connection still opening will not hook it), its client stops at once (nothing more is
   * uploaded), then its objects leave the bucket (src/remote/remote_delete.ts: never a newer
   * generation's). A superseded timeline deletes nothing remote and is no error: its local
   * copy is stale and may go. Any other failure throws: the deletion is refused, the objects
   * stay, and the DELETE may be retried.
   */
  async dropTimeline(tenant: Tenant, tl: Timeline): Promise<void> {
    this.dropped.add(tl);
    tl.setLayerDownloader(null);
    const c = this.clients.get(tl);
    this.clients.delete(tl);
    await c?.shutdown();
    const generation = readTenantGeneration(tenant.dir);
    await this.deleteRemote(tenant, () => deleteRemoteTimeline(this.storage, tenant.id, tl.timelineId, generation, { signal: this.abort.signal }));
  }

  /** A deleted tenant: every client of its timelines stops, then all its timelines' objects go (see dropTimeline). */
  async dropTenant(tenant: Tenant): Promise<void> {
    for (const tl of [...this.clients.keys()]) {
      if (tl.tenantId !== tenant.id) continue;
      const c = this.clients.get(tl);
      this.clients.delete(tl);
      await c?.shutdown();
    }
    for (const tl of tenant.listTimelines()) this.dropped.add(tl);
    const generation = readTenantGeneration(tenant.dir);
    await this.deleteRemote(tenant, () => deleteRemoteTenant(this.storage, tenant.id, generation, { signal: this.abort.signal }));
  }

  private async deleteRemote(tenant: Tenant, run: () => Promise<RemoteDeletion>): Promise<void> {
    try {
      const r = await run();
      if (r.left.length > 0) this.log.warn({ tenant_id: tenant.id, left: r.left.slice(0, 10), n_left: r.left.length }, "remote deletion left objects it does not own");
      this.log.info({ tenant_id: tenant.id, deleted: r.deleted }, "remote objects deleted");
    } catch (e) {
      if (!(e instanceof SupersededError)) throw e;
      this.log.warn({ tenant_id: tenant.id, err: e }, "a newer generation holds the tenant: nothing remote deleted");
    }
  }

  /** Resolves when every timeline that is connecting now is connected (or gave up). */
  async whenConnected(): Promise<void> {
    while (this.opening.size > 0) await Promise.allSettled([...this.opening]);
  }

  /** After the tenants shut down (flushed): drain the queues (bounded), then stop them. */
  async shutdown(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.opening]);
    const drain = AbortSignal.timeout(DRAIN_TIMEOUT_MS);
    await Promise.all(
      [...this.clients.values()].map(async (c) => {
        try {
          await c.waitUploaded({ signal: drain });
        } catch (e) {
          this.log.warn({ err: e }, "remote uploads not drained at shutdown");
        }
        await c.shutdown();
      }),
    );
    for (const tl of this.clients.keys()) tl.setLayerDownloader(null);
    this.clients.clear();
    this.storage.close();
  }

  /** Scrape-time metrics on the node's registry. */
  registerMetrics(registry: Registry): void {
    const clients = this.clients;
    const registers = [registry];
    registry.registerMetric(this.downloadSeconds);
    const ondemand = this.ondemand;
    const downloadedLast = { downloads: 0, bytes: 0 };
    new Counter({
      name: "pageserver_remote_ondemand_downloaded_layers_total",
      help: "Layers downloaded on demand from remote storage",
      registers,
      collect() {
        this.inc(ondemand.downloads - downloadedLast.downloads);
        downloadedLast.downloads = ondemand.downloads;
      },
    });
    new Counter({
      name: "pageserver_remote_ondemand_downloaded_bytes_total",
      help: "Bytes of layers downloaded on demand from remote storage",
      registers,
      collect() {
        this.inc(ondemand.bytes - downloadedLast.bytes);
        downloadedLast.bytes = ondemand.bytes;
      },
    });
    const labelNames = ["tenant_id", "timeline_id"];
    const labels = (tl: Timeline) => ({ tenant_id: tl.tenantId, timeline_id: tl.timelineId });
    new Gauge({
      name: "pageserver_projected_remote_consistent_lsn",
      help: "disk_consistent_lsn of the last index uploaded to remote storage",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const [tl, c] of clients) {
          const lsn = c.remote_consistent_lsn;
          if (lsn !== null) this.set(labels(tl), lsn);
        }
      },
    });
    new Gauge({
      name: "pageserver_remote_upload_queue_ops",
      help: "Operations in a timeline's upload queue, by kind (upload_layer, upload_index, delete_layers) and state (queued, inflight)",
      labelNames: [...labelNames, "op_kind", "state"],
      registers,
      collect() {
        this.reset();
        for (const [tl, c] of clients) {
          const s = c.stats();
          for (const state of ["queued", "inflight"] as const) {
            for (const [op_kind, n] of Object.entries(s[state])) this.set({ ...labels(tl), op_kind, state }, n);
          }
        }
      },
    });
    const counter = (name: string, help: string, pick: (c: RemoteTimelineClient) => number): void => {
      const last = new Map<RemoteTimelineClient, number>();
      new Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          for (const [tl, c] of clients) {
            const total = pick(c);
            this.inc(labels(tl), Math.max(0, total - (last.get(c) ?? 0)));
            last.set(c, total);
          }
          for (const c of last.keys()) if (![...clients.values()].includes(c)) last.delete(c);
        },
      });
    };
    counter("pageserver_remote_upload_retries_total", "Remote storage operations retried after a transient error", (c) => c.stats().retries_total);
    counter("pageserver_remote_uploaded_layer_bytes_total", "Bytes of layer files uploaded to remote storage", (c) => c.stats().uploaded_layer_bytes_total);
    counter("pageserver_remote_deleted_layers_total", "Layer objects deleted from remote storage", (c) => c.stats().deleted_layers_total);
  }
}
