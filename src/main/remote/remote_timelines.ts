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
 * - A queue that stops on a local error (every remote error is retried: upload_queue.ts) makes
 *   its timeline Broken with the reason.
 * - Deletion (dropTimeline / dropTenant, from the DELETE routes before the local data goes):
 *   the clients stop, then the objects leave the bucket (src/remote/remote_delete.ts), never
 *   those of a newer generation. A timeline whose remote deletion fails stays, connected again.
 * - Detach (checkDetachable before anything stops, release after the flush): refused, naming
 *   the timelines, unless every timeline of the tenant has a connected client whose uploaded
 *   index reaches its disk_consistent_lsn; every wait is bounded by detach_timeout_ms and
 *   concerns only that tenant's timelines.
 * - One client per timeline id: a timeline object loaded again (a failed detach or deletion
 *   reloads its tenant) first stops the client of the old object, then opens its own.
 * - Flush positions for WAL sources (feedbackLsn): a timeline's remote_consistent_lsn is
 *   reported only once a generation check that started after it was reached found no newer
 *   generation of the tenant (src/remote/generation_check.ts, at most one check per tenant
 *   every generation_check_interval_ms); until then the last confirmed position is. A newer
 *   generation found: the tenant is Broken ("superseded …"), its clients stop (no upload
 *   more) and its WAL streams stop.
 * - shutdown(): after the tenants flushed, waits (bounded) for the queues to drain, then
 *   stops them.
 * - On-demand download: a connected timeline's evicted layers (all of them after an attach,
 *   which downloads no layer) are adopted into its layer map from the remote index, kept out
 *   of reconcile's deletions, and downloaded through the client when a read needs them
 *   (timed in pageserver_remote_ondemand_download_seconds).
 * - Metrics (pulled at scrape time): pageserver_projected_remote_consistent_lsn, and the queue
 *   depth, retries and uploaded bytes per timeline (docs/metrics.md).
 *
 * Lock order: none (main thread); every map is changed synchronously between awaits.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { Histogram } from "prom-client";
import { deltaCounter } from "../delta_counter.js";
import { type PruningRegistry, TimelineFamily } from "../metrics.js";
import { readTenantGeneration } from "../../remote/attach.js";
import type { Generation } from "../../remote/generation.js";
import { bucketGenerationValidator, type GenerationValidator } from "../../remote/generation_check.js";
import { deleteRemoteTenant, deleteRemoteTimeline, type RemoteDeletion } from "../../remote/remote_delete.js";
import type { RemoteStorage } from "../../remote/remote_storage.js";
import { RemoteTimelineClient, SupersededError } from "../../remote/remote_timeline_client.js";
import { type Tenant, TenantState } from "../../tenant/tenant.js";
import { type Timeline, TimelineState } from "../../tenant/timeline/index.js";
import { assert } from "../../types/assert.js";
import { BadStateError } from "../../types/errors.js";
import type { TenantId } from "../../types/ids.js";
import { INVALID_LSN, type Lsn, lsnToString } from "../../types/lsn.js";
import { secondsSince } from "../../types/metrics_sink.js";

const OPEN_RETRY_BASE_MS = 200;
const OPEN_RETRY_MAX_MS = 10_000;
/** Bound on each storage call of a client's open (lists and one index get). */
const OPEN_CALL_TIMEOUT_MS = 30_000;
/** How long shutdown waits for the queues to drain before it stops them anyway. */
const DRAIN_TIMEOUT_MS = 60_000;
export const DEFAULT_DETACH_TIMEOUT_MS = 60_000;
export const DEFAULT_GENERATION_CHECK_INTERVAL_MS = 10_000;
/** Waiters for connection progress at once (each is a detach request). */
const MAX_PROGRESS_WAITERS = 10_000;

export interface RemoteTimelinesOptions {
  /** Bound on each wait of a detach: this tenant's connections, then its uploads. */
  detach_timeout_ms?: number;
  /** At most one generation check per tenant this often (feedbackLsn). */
  generation_check_interval_ms?: number;
  /** Who says whether a newer generation exists; default: the bucket's index keys. */
  validator?: GenerationValidator;
}

/** A timeline whose client is being opened: attempts so far and the last failure. */
interface Opening {
  promise: Promise<void>;
  last_error: string | null;
}

/** Per tenant (object): the generation checks behind feedbackLsn. */
interface Validation {
  generation: Generation;
  /** performance.now() when the last check started; -Infinity before the first. */
  last_check_ms: number;
  inflight: boolean;
  /** Per timeline: the newest remote_consistent_lsn a check confirmed. */
  confirmed: WeakMap<Timeline, Lsn>;
}

export class RemoteTimelines {
  readonly storage: RemoteStorage;
  private readonly log: Logger;
  private readonly clients = new Map<Timeline, RemoteTimelineClient>();
  private readonly opening = new Map<Timeline, Opening>();
  /** Woken whenever a connection attempt ends (checkDetachable waits on them). */
  private progressWaiters = new Set<() => void>();
  private readonly tenantOf = new WeakMap<Timeline, Tenant>();
  private readonly validations = new WeakMap<Tenant, Validation>();
  private readonly detach_timeout_ms: number;
  private readonly generation_check_interval_ms: number;
  private readonly validator: GenerationValidator;
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

  constructor(
    storage: RemoteStorage,
    log: Logger,
    onSuperseded: (tenant: Tenant) => void = () => undefined,
    opts: RemoteTimelinesOptions = {},
  ) {
    this.storage = storage;
    this.log = log.child({ remote_storage: storage.description });
    this.onSuperseded = onSuperseded;
    this.detach_timeout_ms = opts.detach_timeout_ms ?? DEFAULT_DETACH_TIMEOUT_MS;
    this.generation_check_interval_ms = opts.generation_check_interval_ms ?? DEFAULT_GENERATION_CHECK_INTERVAL_MS;
    this.validator = opts.validator ?? bucketGenerationValidator(storage);
    assert(this.detach_timeout_ms > 0 && this.generation_check_interval_ms >= 0, "RemoteTimelines: bad timeouts");
  }

  /** A newer generation holds the tenant: Broken, no upload more, its WAL streams stop. */
  private superseded(tenant: Tenant, reason: string): void {
    if (tenant.state !== TenantState.Broken) tenant.setBroken(reason);
    for (const [tl, c] of [...this.clients]) {
      if (this.tenantOf.get(tl) !== tenant) continue;
      this.clients.delete(tl);
      tl.setLayerDownloader(null);
      void c.shutdown();
    }
    this.onSuperseded(tenant);
  }

  /** Tenant's onTimelineReady: connect the timeline to the bucket in the background. */
  timelineReady(tenant: Tenant, tl: Timeline): void {
    if (this.abort.signal.aborted) return;
    this.tenantOf.set(tl, tenant);
    const o: Opening = { promise: Promise.resolve(), last_error: null };
    o.promise = this.connect(tenant, tl, o).finally(() => {
      if (this.opening.get(tl) === o) this.opening.delete(tl);
      this.progress();
    });
    this.opening.set(tl, o);
  }

  private progress(): void {
    const ws = this.progressWaiters;
    this.progressWaiters = new Set();
    for (const w of ws) w();
  }

  /** Resolves at the next connection progress, or when `signal` fires. */
  private nextProgress(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.resolve();
    if (this.progressWaiters.size >= MAX_PROGRESS_WAITERS)
      throw new BadStateError(`more than ${MAX_PROGRESS_WAITERS} waits for remote connections`);
    return new Promise<void>((resolve) => {
      const done = (): void => {
        signal.removeEventListener("abort", done);
        this.progressWaiters.delete(done);
        resolve();
      };
      this.progressWaiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Stops the clients of other objects of the same timeline (its tenant was loaded again). */
  private async retireOthers(tl: Timeline): Promise<void> {
    for (const [other, c] of [...this.clients]) {
      if (other === tl || other.tenantId !== tl.tenantId || other.timelineId !== tl.timelineId) continue;
      this.clients.delete(other);
      other.setLayerDownloader(null);
      await c.shutdown();
    }
  }

  /** Nothing to connect any more: the node stops, or the timeline or its tenant can't serve. */
  private gone(tenant: Tenant, tl: Timeline): boolean {
    return this.abort.signal.aborted || this.dropped.has(tl) || tl.state !== TimelineState.Active || tenant.state === TenantState.Broken;
  }

  private async connect(tenant: Tenant, tl: Timeline, o: Opening): Promise<void> {
    await this.retireOthers(tl);
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
            commit_times: () => tl.commitTimesSnapshot(),
            onStopped: (status, reason) => {
              if (status === "superseded") this.superseded(tenant, reason);
              else tl.setBroken(`remote storage: ${reason}`);
            },
          },
          // A call that hangs (a half-open connection) fails the attempt, which is retried.
          { signal: this.abort.signal, timeout_ms: OPEN_CALL_TIMEOUT_MS },
        );
      } catch (e) {
        if (this.abort.signal.aborted) return;
        if (e instanceof SupersededError) {
          this.superseded(tenant, e.message);
          return;
        }
        o.last_error = (e as Error)?.message ?? String(e);
        this.progress();
        // Jittered: the timelines of a node that lost its bucket don't retry in lockstep.
        const cap_ms = Math.min(OPEN_RETRY_MAX_MS, OPEN_RETRY_BASE_MS * 2 ** Math.min(attempt, 20));
        const delay_ms = Math.round(cap_ms / 2 + Math.random() * (cap_ms / 2));
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
   * The flush position to report to the timeline's WAL source: the newest remote_consistent_lsn
   * a generation check confirmed (see the header); INVALID_LSN (ignored by the source) before
   * the first. A newer one starts a check (at most one per tenant per interval) and is
   * reported once that check finds no newer generation.
   */
  feedbackLsn(tl: Timeline): Lsn {
    const tenant = this.tenantOf.get(tl);
    const rcl = this.clients.get(tl)?.remote_consistent_lsn ?? null;
    if (tenant === undefined) return INVALID_LSN;
    const v = this.validations.get(tenant);
    const confirmed = v?.confirmed.get(tl) ?? INVALID_LSN;
    if (tenant.state === TenantState.Broken || rcl === null || rcl <= confirmed) return confirmed;
    this.validate(tenant);
    return confirmed;
  }

  /** Starts a generation check of the tenant unless one runs or the last started too recently. */
  private validate(tenant: Tenant): void {
    let v = this.validations.get(tenant);
    if (v === undefined) {
      let generation: Generation;
      try {
        generation = readTenantGeneration(tenant.dir);
      } catch {
        return; // connect() made the tenant Broken with the reason
      }
      v = { generation, last_check_ms: Number.NEGATIVE_INFINITY, inflight: false, confirmed: new WeakMap() };
      this.validations.set(tenant, v);
    }
    const now_ms = performance.now();
    if (v.inflight || now_ms - v.last_check_ms < this.generation_check_interval_ms) return;
    v.inflight = true;
    v.last_check_ms = now_ms;
    // What the bucket held before the check started: confirmed only if the check passes.
    const snapshot: [Timeline, Lsn][] = [];
    for (const tl of tenant.listTimelines()) {
      const lsn = this.clients.get(tl)?.remote_consistent_lsn ?? null;
      if (lsn !== null) snapshot.push([tl, lsn]);
    }
    const vv = v;
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout(Math.max(this.generation_check_interval_ms, 1000) * 3)]);
    this.validator
      .newestGeneration(
        tenant.id,
        tenant.listTimelines().map((tl) => tl.timelineId),
        { signal },
      )
      .then((newest) => {
        if (newest !== null && newest > vv.generation) {
          this.log.warn(
            { tenant_id: tenant.id, generation: vv.generation, newer_generation: newest },
            "a newer generation holds the tenant: no more flush positions or uploads from here",
          );
          this.superseded(tenant, `superseded: generation ${vv.generation} is superseded by generation ${newest}`);
          return;
        }
        for (const [tl, lsn] of snapshot) if (lsn > (vv.confirmed.get(tl) ?? INVALID_LSN)) vv.confirmed.set(tl, lsn);
      })
      .catch((e: unknown) => {
        if (!this.abort.signal.aborted)
          this.log.warn({ err: e, tenant_id: tenant.id }, "generation check failed; the flush position reported stays where it was");
      })
      .finally(() => {
        vv.inflight = false;
      });
  }

  /**
   * Whether the tenant may start to detach, asked before anything of it stops: every timeline
   * must have a connected, working client. Waits (at most detach_timeout_ms) only while a
   * timeline of this tenant makes its first connection attempt. Refused (BadStateError, 503)
   * naming the timelines that are not safely in the bucket.
   */
  async checkDetachable(tenant: Tenant): Promise<void> {
    const deadline = AbortSignal.timeout(this.detach_timeout_ms);
    const firstAttempt = (tl: Timeline): boolean => {
      const o = this.opening.get(tl);
      return !this.clients.has(tl) && o !== undefined && o.last_error === null;
    };
    // Each round ends at a connection attempt's end or at the deadline.
    while (!deadline.aborted && tenant.listTimelines().some(firstAttempt)) await this.nextProgress(deadline);
    const problems: string[] = [];
    for (const tl of tenant.listTimelines()) {
      const c = this.clients.get(tl);
      if (c === undefined) {
        const o = this.opening.get(tl);
        const why = o?.last_error ?? (o === undefined ? "no remote client" : `not connected within ${this.detach_timeout_ms} ms`);
        problems.push(`${tl.timelineId} (never reached remote storage: ${why})`);
      } else if (c.status !== "active") {
        problems.push(`${tl.timelineId} (remote uploads ${c.status}: ${c.stop_reason ?? ""})`);
      }
    }
    if (problems.length > 0) throw this.refusal(tenant.id, problems);
  }

  private refusal(tenant: TenantId, problems: string[]): BadStateError {
    const shown = problems.slice(0, 10).join("; ");
    const more = problems.length > 10 ? `; and ${problems.length - 10} more` : "";
    return new BadStateError(
      `tenant ${tenant} can't detach: not every timeline is in remote storage (${this.storage.description}): ${shown}${more}. Its data stays on this node`,
    );
  }

  /**
   * Detach's last remote step, after the tenant shut down (flushed): waits (at most
   * detach_timeout_ms) until the bucket holds an index at each timeline's
   * disk_consistent_lsn, then stops their clients. Throws (BadStateError) naming the
   * timelines that are not there: the local data must then stay (the caller loads the
   * tenant again; its timelines connect anew).
   */
  async release(tenant: Tenant): Promise<void> {
    const drain = AbortSignal.timeout(this.detach_timeout_ms);
    const problems: string[] = [];
    const timelines = tenant.listTimelines();
    await Promise.all(
      timelines.map(async (tl) => {
        const c = this.clients.get(tl);
        if (c === undefined) {
          problems.push(`${tl.timelineId} (no remote client)`);
          return;
        }
        try {
          await c.waitUploaded({ signal: drain });
        } catch (e) {
          problems.push(
            `${tl.timelineId} (${drain.aborted ? `uploads not done within ${this.detach_timeout_ms} ms` : (e as Error).message})`,
          );
          return;
        }
        const rcl = c.remote_consistent_lsn;
        if (rcl === null || rcl < tl.diskConsistentLsn) {
          problems.push(
            `${tl.timelineId} (remote_consistent_lsn ${rcl === null ? "null" : lsnToString(rcl)} behind disk_consistent_lsn ${lsnToString(tl.diskConsistentLsn)})`,
          );
        }
      }),
    );
    for (const tl of timelines) {
      const c = this.clients.get(tl);
      this.clients.delete(tl);
      tl.setLayerDownloader(null);
      await c?.shutdown();
    }
    if (problems.length > 0) throw this.refusal(tenant.id, problems);
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
    try {
      const generation = readTenantGeneration(tenant.dir);
      await this.deleteRemote(tenant, () =>
        deleteRemoteTimeline(this.storage, tenant.id, tl.timelineId, generation, { signal: this.abort.signal }),
      );
    } catch (e) {
      // The timeline stays (the DELETE fails): its changes must keep following to the bucket.
      this.dropped.delete(tl);
      if (tl.state === TimelineState.Active) this.timelineReady(tenant, tl);
      throw e;
    }
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
      if (r.left.length > 0)
        this.log.warn(
          { tenant_id: tenant.id, left: r.left.slice(0, 10), n_left: r.left.length },
          "remote deletion left objects it does not own",
        );
      this.log.info({ tenant_id: tenant.id, deleted: r.deleted }, "remote objects deleted");
    } catch (e) {
      if (!(e instanceof SupersededError)) throw e;
      this.log.warn({ tenant_id: tenant.id, err: e }, "a newer generation holds the tenant: nothing remote deleted");
    }
  }

  /** Resolves when every timeline that is connecting now is connected (or gave up). */
  async whenConnected(): Promise<void> {
    while (this.opening.size > 0) await Promise.allSettled([...this.opening.values()].map((o) => o.promise));
  }

  /** After the tenants shut down (flushed): drain the queues (bounded), then stop them. */
  async shutdown(): Promise<void> {
    this.abort.abort();
    await Promise.allSettled([...this.opening.values()].map((o) => o.promise));
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
  registerMetrics(registry: PruningRegistry): void {
    const clients = this.clients;
    const registers = [registry];
    const perNode = (): boolean => !registry.perTimeline;
    registry.registerMetric(this.downloadSeconds);
    const ondemand = this.ondemand;
    deltaCounter({
      name: "pageserver_remote_ondemand_downloaded_layers_total",
      help: "Layers downloaded on demand from remote storage",
      registers,
      read: () => [{ labels: {}, total: ondemand.downloads }],
    });
    deltaCounter({
      name: "pageserver_remote_ondemand_downloaded_bytes_total",
      help: "Bytes of layers downloaded on demand from remote storage",
      registers,
      read: () => [{ labels: {}, total: ondemand.bytes }],
    });
    const labelNames = ["tenant_id", "timeline_id"];
    const labels = (tl: Timeline) => ({ tenant_id: tl.tenantId, timeline_id: tl.timelineId });
    // metrics_per_timeline off: no LSN series (a sum of LSNs means nothing), queue ops summed.
    new TimelineFamily(registry, {
      name: "pageserver_projected_remote_consistent_lsn",
      help: "disk_consistent_lsn of the last index uploaded to remote storage",
      agg: "none",
      read: (emit) => {
        for (const [tl, c] of clients) {
          const lsn = c.remote_consistent_lsn;
          if (lsn !== null) emit(labels(tl), lsn);
        }
      },
    });
    new TimelineFamily(registry, {
      name: "pageserver_remote_upload_queue_ops",
      help: "Operations in a timeline's upload queue, by kind (upload_layer, upload_index, delete_layers) and state (queued, inflight)",
      agg: "sum",
      extraLabels: ["op_kind", "state"],
      read: (emit) => {
        for (const [tl, c] of clients) {
          const s = c.stats();
          for (const state of ["queued", "inflight"] as const) {
            for (const [op_kind, n] of Object.entries(s[state])) emit({ ...labels(tl), op_kind, state }, n);
          }
        }
      },
    });
    // Per client object: a timeline's new client (after a re-attach) counts from 0.
    const counter = (name: string, help: string, pick: (c: RemoteTimelineClient) => number): void => {
      deltaCounter({
        name,
        help,
        labelNames,
        registers,
        perNode,
        read: () => [...clients].map(([tl, c]) => ({ labels: labels(tl), total: pick(c), owner: c })),
      });
    };
    counter(
      "pageserver_remote_upload_retries_total",
      "Remote storage operations retried after a transient error",
      (c) => c.stats().retries_total,
    );
    counter(
      "pageserver_remote_upload_backpressure_waits_total",
      "Flushes held back because the timeline's upload queue was full",
      (c) => c.stats().backpressure_waits_total,
    );
    counter(
      "pageserver_remote_uploaded_layer_bytes_total",
      "Bytes of layer files uploaded to remote storage",
      (c) => c.stats().uploaded_layer_bytes_total,
    );
    counter("pageserver_remote_deleted_layers_total", "Layer objects deleted from remote storage", (c) => c.stats().deleted_layers_total);
  }
}
