/**
 * Server: wires one pageserver node together (shared page cache → worker pools → tenant
 * manager → HTTP API and page service) and takes it apart again. Used by the `pageserver` entry point and,
 * in-process, by tests.
 */
import { pathToFileURL } from "node:url";
import { fileURLToPath } from "node:url";
import { mkdirSync } from "node:fs";
import type { Logger } from "pino";
import { PageCache } from "../cache/index.js";
import { collectKeyspace } from "../pgdata/reader.js";
import { PgRedo } from "../pg/redo/pg_redo.js";
import { BackgroundLoops } from "../tenant/background_loops.js";
import { JobPools } from "../workers/pools.js";
import { registerRoutes } from "./http/tenant_routes.js";
import { Auth } from "./auth.js";
import type { NodeConfig } from "./config.js";
import { HttpServer } from "./http/http_server.js";
import { chooseHttpServer } from "./http/adapter_choice.js";
import type { HttpServerKind } from "./http/wire.js";
import { activeFailpoints } from "../types/failpoints.js";
import { buildInfo } from "./build_info.js";
import { LogicalSizeQueries } from "./logical_size_queries.js";
import { NodeMetrics, type PruningRegistry } from "./metrics.js";
import { PageService } from "./page_service/page_service.js";
import { createLogger } from "./log.js";
import { loadNodeTls, type NodeTls } from "./tls.js";
import { withBoundedErrors } from "./log_serializers.js";
import { DiskUsageEviction } from "./remote/disk_usage_eviction.js";
import { RemoteTimelines } from "./remote/remote_timelines.js";
import { attachPending, attachTenant } from "../remote/attach.js";
import type { Generation } from "../remote/generation.js";
import { type Tenant, TenantState } from "../tenant/tenant.js";
import { BadStateError, ConflictError, InvalidArgumentError, RemoteStorageDisabledError } from "../types/errors.js";
import type { TenantId } from "../types/ids.js";
import { openRemoteStorage, parseRemoteStorageUrl } from "../remote/storage_url.js";
import { TenantManager } from "./tenant_manager.js";
import { TenantWorkLimiter } from "../tenant/heavy_work.js";
import { apiPolicy, registerMetricsRoute, warnIfExposed } from "./http/tenant_routes.js";
import { WalSources } from "./wal_source/wal_sources.js";
import { WorkdirLock } from "./workdir_lock.js";

const isTs = import.meta.url.endsWith(".ts");
// Workers (image creation) load the same redo by URL.
const REDO_MODULE = pathToFileURL(fileURLToPath(new URL(`../pg/redo/pg_redo${isTs ? ".ts" : ".js"}`, import.meta.url))).href;

export class Server {
  readonly config: NodeConfig;
  readonly log: Logger;
  readonly cache: PageCache;
  readonly pools: JobPools;
  readonly tenants: TenantManager;
  readonly metrics: PruningRegistry;
  readonly walSources: WalSources;
  readonly loops: BackgroundLoops;
  readonly http: HttpServer;
  /** The wire adapter (node config http_server) and why it was chosen, logged at startup. */
  private readonly httpChoice: { kind: HttpServerKind; why: string };
  readonly pageService: PageService;
  /** Remote storage (config remote_storage); null: layers stay local. */
  readonly remote: RemoteTimelines | null;
  /** Disk-usage eviction (config max_local_disk_bytes, with remote storage); null: off. */
  readonly eviction: DiskUsageEviction | null;
  /** Tenants being detached (a second detach of one is a ConflictError). */
  private readonly detaching = new Set<TenantId>();
  /** Heavy requests per tenant (HTTP and the page service's basebackup). */
  readonly heavy: TenantWorkLimiter;
  /** The node's certificate (tls_cert_file / tls_key_file, read in the constructor); null: no TLS. */
  readonly tls: NodeTls | null;
  /** JWT verification when `auth_public_key` is set (loaded in start); null: auth off. */
  auth: Auth | null = null;
  port = 0;
  /** The page service's bound port (config.listen_pg; 0 there picks a free one). */
  pgPort = 0;
  /** GET /metrics alone on config.listen_metrics (null: /metrics is on the API's listener). */
  private metricsHttp: HttpServer | null = null;
  /** `<workdir>/pageserver.pid`, held from start to the end of stop. */
  private workdirLock: WorkdirLock | null = null;
  metricsPort = 0;

  constructor(config: NodeConfig, log?: Logger) {
    this.config = config;
    // Before any thread or file is made: a bad certificate is a one-line startup error.
    this.tls = loadNodeTls(config);
    // Errors are logged with names and ids, never live objects (log_serializers.ts).
    this.log = withBoundedErrors(log ?? createLogger(config.log_level, config.log_format));
    mkdirSync(config.workdir, { recursive: true });
    const metrics = new NodeMetrics();
    metrics.registry.perTimeline = config.metrics_per_timeline;
    this.cache = PageCache.create({ size_bytes: config.page_cache_size_bytes });
    this.pools = new JobPools({
      cacheSab: this.cache.shared,
      flushThreads: config.flush_threads,
      compactionThreads: config.compaction_threads,
      gcThreads: config.gc_threads,
      redoThreads: config.redo_threads,
    });
    this.loops = new BackgroundLoops(config.max_concurrent_background_tasks);
    const remoteUrl = config.remote_storage === null ? null : parseRemoteStorageUrl(config.remote_storage);
    const remote =
      remoteUrl === null
        ? null
        : new RemoteTimelines(
            openRemoteStorage(remoteUrl),
            this.log,
            (t) => {
              // A stale pageserver must not keep taking WAL: another one holds the tenant now.
              for (const tl of t.listTimelines()) void this.walSources.get(tl)?.stop();
            },
            remoteUrl.options,
          );
    this.remote = remote;
    this.tenants = new TenantManager(
      {
        cache: this.cache,
        jobs: this.pools,
        redo: new PgRedo(),
        redoModule: REDO_MODULE,
        log: this.log,
        defaults: config.tenant_defaults,
        keyspace: collectKeyspace,
        loops: this.loops,
        metrics,
        ...(remote === null ? {} : { onTimelineReady: (t, tl) => remote.timelineReady(t, tl) }),
      },
      config.workdir,
      config.max_tenants,
    );
    this.httpChoice = chooseHttpServer(config.http_server);
    this.http = new HttpServer(
      this.log,
      { max_inflight_requests: config.http_max_inflight_requests, max_inflight_body_bytes: config.http_max_inflight_body_bytes },
      { kind: this.httpChoice.kind, tls: this.httpTls() },
    );
    // With remote storage the source keeps WAL until it is in the bucket: its flush position
    // is remote_consistent_lsn once a generation check confirmed it (RemoteTimelines.feedbackLsn;
    // INVALID_LSN before: the source ignores it).
    this.walSources = new WalSources(this.log, remote === null ? undefined : (tl) => remote.feedbackLsn(tl), {
      allowUnixSockets: config.wal_source_unix_sockets,
    });
    metrics.collectFrom({
      cache: this.cache,
      cacheSizeBytes: config.page_cache_size_bytes,
      tenants: this.tenants,
      pools: this.pools,
      walSources: this.walSources,
      loops: this.loops,
    });
    this.metrics = metrics.registry;
    remote?.registerMetrics(this.metrics);
    if ((config.max_local_disk_bytes > 0 || config.min_free_disk_bytes > 0) && remote === null) {
      const which = config.max_local_disk_bytes > 0 ? "max_local_disk_bytes" : "min_free_disk_bytes";
      throw new InvalidArgumentError(
        `${which} needs remote storage (config remote_storage): an evicted layer must have somewhere to come back from`,
      );
    }
    this.eviction =
      remote === null
        ? null
        : new DiskUsageEviction({
            max_local_disk_bytes: config.max_local_disk_bytes,
            min_free_disk_bytes: config.min_free_disk_bytes,
            workdir: config.workdir,
            tenants: this.tenants,
            remoteOf: (tl) => remote.clientOf(tl),
            log: this.log,
          });
    this.eviction?.registerMetrics(this.metrics);
    this.heavy = new TenantWorkLimiter(config.max_heavy_requests_per_tenant);
    this.pageService = new PageService(this.tenants, this.metrics, this.log, () => this.auth, config, this.heavy, this.tls);
  }

  async start(): Promise<number> {
    this.log.info({ ...buildInfo(), failpoints: activeFailpoints() }, "pageserver starting");
    // Before anything reads the workdir: a second pageserver on it stops here.
    this.workdirLock = WorkdirLock.acquire(this.config.workdir);
    if (this.config.auth_public_key !== null) {
      this.auth = await Auth.fromPublicKeyFile(this.config.auth_public_key);
      this.http.setAuth(this.auth);
    }
    registerRoutes(this.http, this.tenants, this.metrics, {
      startedAt: new Date(),
      tls: this.tls !== null,
      walSources: this.walSources,
      log: this.log,
      remote: this.remote,
      sizes: new LogicalSizeQueries(this.config.concurrent_tenant_size_logical_size_queries),
      mobility: { detach: (id) => this.detachTenant(id), attach: (id, gen) => this.attachTenant(id, gen) },
      policy: apiPolicy(this.config, this.heavy),
    });
    if (this.config.listen_metrics !== null) this.metricsPort = await this.listenMetrics(this.config.listen_metrics);
    this.port = await this.http.listen(this.config.listen_http.host, this.config.listen_http.port);
    this.pgPort = await this.pageService.listen(this.config.listen_pg.host, this.config.listen_pg.port);
    this.log.info(
      {
        workdir: this.config.workdir,
        listen: `${this.config.listen_http.host}:${this.port}`,
        listen_pg: `${this.config.listen_pg.host}:${this.pgPort}`,
        http_server: this.httpChoice.kind,
        http_server_why: this.httpChoice.why,
      },
      "pageserver started",
    );
    warnIfExposed(this.config, this.log);
    // The API and the page service answer while tenants load (they show as Loading); sources start once loaded.
    await this.tenants.loadAll();
    this.resumeAttaches();
    this.eviction?.start(this.loops);
    await this.walSources.startAll(this.tenants);
    return this.port;
  }

  /**
   * Tenants whose attach a crash cut short (their marker is there: they loaded Broken) attach
   * again in the marker's generation, in the background: attach resumes, skipping what is
   * already downloaded. Without remote storage they stay Broken (attach them once it is set).
   */
  private resumeAttaches(): void {
    if (this.remote === null) return;
    for (const t of this.tenants.list()) {
      if (t.state !== TenantState.Broken) continue;
      let gen: Generation | null;
      try {
        gen = attachPending(t.dir);
      } catch {
        continue; // an unreadable marker: Broken says so; an operator attaches it anew
      }
      if (gen === null) continue;
      this.log.info({ tenant_id: t.id, generation: gen }, "resuming an attach a restart cut short");
      this.attachTenant(t.id, gen).catch((e: unknown) =>
        this.log.warn({ err: e, tenant_id: t.id, generation: gen }, "resumed attach failed"),
      );
    }
  }

  private async listenMetrics(at: { host: string; port: number }): Promise<number> {
    this.metricsHttp = new HttpServer(this.log, undefined, { kind: this.httpChoice.kind, tls: this.httpTls() });
    registerMetricsRoute(this.metricsHttp, this.metrics);
    return this.metricsHttp.listen(at.host, at.port);
  }

  /** With a certificate every listener is TLS: the API (its tokens) and the metrics listener alike. */
  private httpTls(): { cert_file: string; key_file: string } | null {
    return this.tls === null ? null : { cert_file: this.tls.cert_file, key_file: this.tls.key_file };
  }

  private requireRemote(what: string): RemoteTimelines {
    if (this.remote === null) throw new RemoteStorageDisabledError(what);
    return this.remote;
  }

  /**
   * Detach: refused at once (503, naming the timelines) unless every timeline is connected to
   * the bucket; then the tenant's WAL streams stop (slots and settings kept), it shuts down
   * (flushing), and the bucket must hold an index at every timeline's disk_consistent_lsn
   * (waits bounded by the remote option detach_timeout_ms). Only then does the tenant leave
   * this node with its local directory. A detach that fails midway loads the tenant again
   * (Active) and restarts its WAL sources: the data stays here.
   */
  async detachTenant(id: TenantId): Promise<void> {
    const remote = this.requireRemote("detach");
    const t = this.tenants.get(id);
    if (t.state !== TenantState.Active) throw new BadStateError(`tenant ${id} is ${t.state}: only an Active tenant detaches`);
    if (this.detaching.has(id)) throw new ConflictError(`tenant ${id} is being detached`);
    this.detaching.add(id);
    try {
      await remote.checkDetachable(t);
      if (t.state !== TenantState.Active) throw new BadStateError(`tenant ${id} is ${t.state}: only an Active tenant detaches`);
      t.beginStopping();
      let shutDown = false;
      try {
        for (const tl of t.listTimelines()) await this.walSources.stopKeepingConfig(tl);
        await t.shutdown(true);
        shutDown = true;
        await remote.release(t);
      } catch (e) {
        const back = await this.tenants.restore(t, { shutDown });
        for (const tl of back.listTimelines()) this.walSources.startPersisted(tl);
        this.log.warn({ tenant_id: id, err: e, state: back.state }, "detach failed: the tenant stays on this node");
        throw e;
      }
      await this.tenants.forget(id);
    } finally {
      this.detaching.delete(id);
    }
    this.log.info({ tenant_id: id }, "tenant detached");
  }

  /**
   * Attach: the tenant's remote state in `generation` is downloaded (src/remote/attach.ts:
   * crash-safe, resumable), then loaded; its remote clients write in that generation. WAL
   * sources are local configuration and don't travel: set them again on this node.
   */
  async attachTenant(id: TenantId, generation: Generation): Promise<Tenant> {
    const remote = this.requireRemote("attach");
    const t = this.tenants.beginAttach(id);
    try {
      // Layers come down on demand (the timelines' remote clients download them on reads).
      await attachTenant(remote.storage, id, generation, t.dir, { lazy_layers: true, log: this.log });
    } catch (e) {
      t.setBroken(`attach in generation ${generation} failed: ${(e as Error).message}`);
      throw e;
    }
    t.loadFromDisk();
    this.log.info({ tenant_id: id, generation, state: t.state }, "tenant attached");
    return t;
  }

  /** Stop accepting requests, flush every timeline, stop the workers. */
  async stop(): Promise<void> {
    this.http.close();
    this.metricsHttp?.close();
    await this.pageService.close();
    await this.walSources.stopAll();
    await this.tenants.shutdown(true);
    // The tenants flushed: their last layers and index are queued; let them reach the bucket.
    this.eviction?.stop();
    await this.remote?.shutdown();
    this.loops.close();
    await this.pools.destroy();
    this.workdirLock?.release();
    this.log.info("pageserver stopped");
  }
}
