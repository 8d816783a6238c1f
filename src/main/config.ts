/**
 * Node configuration: where the pageserver keeps its data, where it listens, how big the
 * shared page cache is, how many worker threads, and the defaults of every tenant's config.
 *
 * Sources, later wins: embedded defaults → `<workdir>/pageserver.json` (if present) →
 * command-line flags. Embedded defaults are enough to run: `npm start`.
 */
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { parseRemoteStorageUrl } from "../remote/storage_url.js";
import { DEFAULT_TENANT_CONF, parseDurationMs, parseTenantConf, type TenantConf } from "../tenant/config.js";
import { InvalidArgumentError } from "../types/errors.js";

export interface NodeConfig {
  workdir: string;
  listen_http: { host: string; port: number };
  /** Page service (Neon's pagestream over the PostgreSQL wire protocol). */
  listen_pg: { host: string; port: number };
  /** A page service connection that waits on its client this long (no request, answers unread) is closed (FATAL 57P05). */
  page_service_idle_timeout_ms: number;
  /** Page service connections one tenant may hold; one more gets FATAL 53300 and is closed. */
  page_service_max_connections_per_tenant: number;
  /** Page service connections from one remote address; one more gets FATAL 53300 and is closed. */
  page_service_max_connections_per_peer: number;
  /** A listener of its own for GET /metrics (then not on listen_http); null: /metrics on listen_http. */
  listen_metrics: { host: string; port: number } | null;
  /** Series per timeline (tenant_id, timeline_id) for the per-timeline metric families; false: per-node aggregates only. */
  metrics_per_timeline: boolean;
  /** PEM public key (Ed25519 or RSA) that turns on JWT auth for HTTP and the page service; null: no auth. */
  auth_public_key: string | null;
  page_cache_size_bytes: number;
  flush_threads: number;
  compaction_threads: number;
  gc_threads: number;
  /** Threads that redo reads with long record chains off the main thread. */
  redo_threads: number;
  log_level: string;
  /** `json` (one object per line, for machines) or `pretty` (pino-pretty, for humans at a terminal). */
  log_format: "json" | "pretty";
  /** Tenants this node hosts at most; creating one more answers 429. */
  max_tenants: number;
  /** Compaction / GC rounds running at once across all tenants (queued FIFO beyond it). */
  max_concurrent_background_tasks: number;
  /** Logical-size computations of the tenant size model running at once across all tenants. */
  concurrent_tenant_size_logical_size_queries: number;
  tenant_defaults: TenantConf;
  /**
   * Remote storage URL (file:///abs/path or s3://bucket/prefix?endpoint=…&region=…, see
   * src/remote/storage_url.ts); null: layers stay local only.
   */
  remote_storage: string | null;
  /**
   * Disk-usage eviction (src/main/remote/disk_usage_eviction.ts): above this many bytes of resident
   * layer files the coldest uploaded layers are evicted (downloaded again on demand). 0: off.
   * Needs remote_storage.
   */
  max_local_disk_bytes: number;
  /** Disk-usage eviction also keeps at least this many bytes free on the workdir's filesystem (0: off). */
  min_free_disk_bytes: number;
  /** Whether a wal_source connstr may name a unix socket (host '/dir'); off: TCP hosts only. */
  wal_source_unix_sockets: boolean;
  /** PUT /v1/failpoints and the FAILPOINTS variable work only when true (`--enable-failpoints`). */
  enable_failpoints: boolean;
  /**
   * The only directory `import_pgdata` reads data directories from (resolved, symlinks
   * included, before every import); null: import_pgdata is refused.
   */
  import_pgdata_root: string | null;
  /**
   * Floors of node-protecting tenant settings: a tenant-scoped token can't set a tenant's
   * checkpoint_distance, gc_horizon or pitr_interval below them (pageserverapi can).
   */
  tenant_min_checkpoint_distance_bytes: number;
  tenant_min_gc_horizon_bytes: number;
  tenant_min_pitr_interval_ms: number;
  /**
   * Heavy requests (forced image compaction, remote_check with checksums, tenant size, base
   * backups over HTTP and the page service, do_gc) one tenant runs at once; beyond: 429.
   */
  max_heavy_requests_per_tenant: number;
  /** HTTP requests being served at once, each holding its connection (beyond: 429 and the connection closes). */
  http_max_inflight_requests: number;
  /** Request body bytes the HTTP server holds at once across all requests (beyond: 429 before the body is read). */
  http_max_inflight_body_bytes: number;
}

export const DEFAULT_NODE_CONFIG: NodeConfig = {
  workdir: ".pageserver",
  listen_http: { host: "127.0.0.1", port: 9898 },
  listen_pg: { host: "127.0.0.1", port: 6400 },
  page_service_idle_timeout_ms: 10 * 60 * 1000,
  page_service_max_connections_per_tenant: 512,
  page_service_max_connections_per_peer: 1024,
  listen_metrics: null,
  metrics_per_timeline: true,
  auth_public_key: null,
  page_cache_size_bytes: 64 * 1024 * 1024,
  flush_threads: 1,
  compaction_threads: 1,
  gc_threads: 1,
  redo_threads: 1,
  log_level: "info",
  log_format: "json",
  max_tenants: 10_000,
  max_concurrent_background_tasks: 4,
  concurrent_tenant_size_logical_size_queries: 1,
  tenant_defaults: { ...DEFAULT_TENANT_CONF },
  remote_storage: null,
  max_local_disk_bytes: 0,
  min_free_disk_bytes: 0,
  wal_source_unix_sockets: false,
  enable_failpoints: false,
  import_pgdata_root: null,
  tenant_min_checkpoint_distance_bytes: 8 * 1024 * 1024,
  tenant_min_gc_horizon_bytes: 0,
  tenant_min_pitr_interval_ms: 0,
  max_heavy_requests_per_tenant: 2,
  http_max_inflight_requests: 1024,
  http_max_inflight_body_bytes: 64 * 1024 * 1024,
};

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (m === null) throw new InvalidArgumentError(`invalid listen address '${text}': expected HOST:PORT`);
  const port = Number(m[2]);
  if (port > 65535) throw new InvalidArgumentError(`invalid port in '${text}'`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

function positiveInt(x: unknown, name: string): number {
  if (typeof x === "number" && Number.isSafeInteger(x) && x > 0) return x;
  if (typeof x === "string" && /^\d+$/.test(x) && Number(x) > 0) return Number(x);
  throw new InvalidArgumentError(`${name}: expected a positive integer, got ${JSON.stringify(x)}`);
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** A pino level name (pino itself would throw a plain Error at startup). */
function logLevel(x: unknown): string {
  if (typeof x === "string" && LOG_LEVELS.includes(x)) return x;
  throw new InvalidArgumentError(`log_level: expected one of ${LOG_LEVELS.join(", ")}, got ${JSON.stringify(x)}`);
}

export interface ConfigOverrides {
  workdir?: string;
  listen?: string;
  listen_pg?: string;
  page_service_idle_timeout_ms?: number | string;
  page_service_max_connections_per_tenant?: number | string;
  page_service_max_connections_per_peer?: number | string;
  listen_metrics?: string;
  auth_public_key?: string;
  page_cache_size?: number | string;
  flush_threads?: number | string;
  compaction_threads?: number | string;
  gc_threads?: number | string;
  redo_threads?: number | string;
  log_level?: string;
  log_format?: string;
  max_tenants?: number | string;
  max_concurrent_background_tasks?: number | string;
  concurrent_tenant_size_logical_size_queries?: number | string;
  tenant_config?: Record<string, unknown>;
  remote_storage?: string;
  max_local_disk_bytes?: number | string;
  min_free_disk_bytes?: number | string;
  wal_source_unix_sockets?: boolean;
  enable_failpoints?: boolean;
  metrics_per_timeline?: boolean;
  import_pgdata_root?: string;
  tenant_min_checkpoint_distance?: number | string;
  tenant_min_gc_horizon?: number | string;
  tenant_min_pitr_interval?: number | string;
  max_heavy_requests_per_tenant?: number | string;
  http_max_inflight_requests?: number | string;
  http_max_inflight_body_bytes?: number | string;
}

function apply(c: NodeConfig, o: ConfigOverrides): void {
  if (o.workdir !== undefined) c.workdir = o.workdir;
  if (o.listen !== undefined) c.listen_http = parseListen(o.listen);
  if (o.listen_pg !== undefined) c.listen_pg = parseListen(o.listen_pg);
  if (o.page_service_idle_timeout_ms !== undefined) {
    c.page_service_idle_timeout_ms = positiveInt(o.page_service_idle_timeout_ms, "page_service_idle_timeout_ms");
    // setTimeout's limit (2^31 - 1 ms, ~24.8 days): a longer timer would fire at once.
    if (c.page_service_idle_timeout_ms > 0x7fff_ffff)
      throw new InvalidArgumentError(`page_service_idle_timeout_ms: at most ${0x7fff_ffff}`);
  }
  if (o.page_service_max_connections_per_tenant !== undefined) {
    c.page_service_max_connections_per_tenant = positiveInt(
      o.page_service_max_connections_per_tenant,
      "page_service_max_connections_per_tenant",
    );
  }
  if (o.page_service_max_connections_per_peer !== undefined) {
    c.page_service_max_connections_per_peer = positiveInt(o.page_service_max_connections_per_peer, "page_service_max_connections_per_peer");
  }
  if (o.listen_metrics !== undefined) c.listen_metrics = parseListen(o.listen_metrics);
  if (o.auth_public_key !== undefined) c.auth_public_key = o.auth_public_key;
  if (o.page_cache_size !== undefined) c.page_cache_size_bytes = positiveInt(o.page_cache_size, "page_cache_size");
  if (o.flush_threads !== undefined) c.flush_threads = positiveInt(o.flush_threads, "flush_threads");
  if (o.compaction_threads !== undefined) c.compaction_threads = positiveInt(o.compaction_threads, "compaction_threads");
  if (o.gc_threads !== undefined) c.gc_threads = positiveInt(o.gc_threads, "gc_threads");
  if (o.redo_threads !== undefined) c.redo_threads = positiveInt(o.redo_threads, "redo_threads");
  if (o.log_level !== undefined) c.log_level = logLevel(o.log_level);
  if (o.log_format !== undefined) {
    if (o.log_format !== "json" && o.log_format !== "pretty")
      throw new InvalidArgumentError(`log_format: expected json or pretty, got ${JSON.stringify(o.log_format)}`);
    c.log_format = o.log_format;
  }
  if (o.max_tenants !== undefined) c.max_tenants = positiveInt(o.max_tenants, "max_tenants");
  if (o.max_concurrent_background_tasks !== undefined) {
    c.max_concurrent_background_tasks = positiveInt(o.max_concurrent_background_tasks, "max_concurrent_background_tasks");
  }
  if (o.concurrent_tenant_size_logical_size_queries !== undefined) {
    c.concurrent_tenant_size_logical_size_queries = positiveInt(
      o.concurrent_tenant_size_logical_size_queries,
      "concurrent_tenant_size_logical_size_queries",
    );
  }
  if (o.tenant_config !== undefined) c.tenant_defaults = parseTenantConf(o.tenant_config, c.tenant_defaults);
  if (o.remote_storage !== undefined) {
    if (typeof o.remote_storage !== "string")
      throw new InvalidArgumentError(`remote_storage: expected a URL string, got ${JSON.stringify(o.remote_storage)}`);
    parseRemoteStorageUrl(o.remote_storage);
    c.remote_storage = o.remote_storage;
  }
  if (o.max_local_disk_bytes !== undefined) c.max_local_disk_bytes = nonNegativeInt(o.max_local_disk_bytes, "max_local_disk_bytes");
  if (o.min_free_disk_bytes !== undefined) c.min_free_disk_bytes = nonNegativeInt(o.min_free_disk_bytes, "min_free_disk_bytes");
  if (o.wal_source_unix_sockets !== undefined) {
    if (typeof o.wal_source_unix_sockets !== "boolean")
      throw new InvalidArgumentError(`wal_source_unix_sockets: expected true or false, got ${JSON.stringify(o.wal_source_unix_sockets)}`);
    c.wal_source_unix_sockets = o.wal_source_unix_sockets;
  }
  if (o.metrics_per_timeline !== undefined) {
    if (typeof o.metrics_per_timeline !== "boolean")
      throw new InvalidArgumentError(`metrics_per_timeline: expected true or false, got ${JSON.stringify(o.metrics_per_timeline)}`);
    c.metrics_per_timeline = o.metrics_per_timeline;
  }
  if (o.enable_failpoints !== undefined) {
    if (typeof o.enable_failpoints !== "boolean")
      throw new InvalidArgumentError(`enable_failpoints: expected true or false, got ${JSON.stringify(o.enable_failpoints)}`);
    c.enable_failpoints = o.enable_failpoints;
  }
  if (o.import_pgdata_root !== undefined) {
    if (typeof o.import_pgdata_root !== "string" || !isAbsolute(o.import_pgdata_root)) {
      throw new InvalidArgumentError(`import_pgdata_root: expected an absolute path, got ${JSON.stringify(o.import_pgdata_root)}`);
    }
    c.import_pgdata_root = o.import_pgdata_root;
  }
  if (o.tenant_min_checkpoint_distance !== undefined)
    c.tenant_min_checkpoint_distance_bytes = nonNegativeInt(o.tenant_min_checkpoint_distance, "tenant_min_checkpoint_distance");
  if (o.tenant_min_gc_horizon !== undefined)
    c.tenant_min_gc_horizon_bytes = nonNegativeInt(o.tenant_min_gc_horizon, "tenant_min_gc_horizon");
  if (o.tenant_min_pitr_interval !== undefined)
    c.tenant_min_pitr_interval_ms = parseDurationMs(o.tenant_min_pitr_interval, "tenant_min_pitr_interval");
  if (o.max_heavy_requests_per_tenant !== undefined)
    c.max_heavy_requests_per_tenant = positiveInt(o.max_heavy_requests_per_tenant, "max_heavy_requests_per_tenant");
  if (o.http_max_inflight_requests !== undefined)
    c.http_max_inflight_requests = positiveInt(o.http_max_inflight_requests, "http_max_inflight_requests");
  if (o.http_max_inflight_body_bytes !== undefined)
    c.http_max_inflight_body_bytes = positiveInt(o.http_max_inflight_body_bytes, "http_max_inflight_body_bytes");
}

function nonNegativeInt(x: unknown, name: string): number {
  if (typeof x === "number" && Number.isSafeInteger(x) && x >= 0) return x;
  if (typeof x === "string" && /^\d+$/.test(x) && Number.isSafeInteger(Number(x))) return Number(x);
  throw new InvalidArgumentError(`${name}: expected a non-negative integer, got ${JSON.stringify(x)}`);
}

const FILE_KEYS = new Set([
  "listen",
  "listen_pg",
  "listen_metrics",
  "auth_public_key",
  "page_cache_size",
  "flush_threads",
  "compaction_threads",
  "gc_threads",
  "redo_threads",
  "log_level",
  "log_format",
  "max_tenants",
  "max_concurrent_background_tasks",
  "concurrent_tenant_size_logical_size_queries",
  "tenant_config",
  "remote_storage",
  "max_local_disk_bytes",
  "min_free_disk_bytes",
  "enable_failpoints",
  "metrics_per_timeline",
  "import_pgdata_root",
  "tenant_min_checkpoint_distance",
  "tenant_min_gc_horizon",
  "tenant_min_pitr_interval",
  "max_heavy_requests_per_tenant",
  "http_max_inflight_requests",
  "http_max_inflight_body_bytes",
  "wal_source_unix_sockets",
  "page_service_idle_timeout_ms",
  "page_service_max_connections_per_tenant",
  "page_service_max_connections_per_peer",
]);

/** Build the node config from flags (and the workdir's pageserver.json, if any). */
export function loadNodeConfig(flags: ConfigOverrides): NodeConfig {
  const c: NodeConfig = structuredClone(DEFAULT_NODE_CONFIG);
  const workdir = resolve(flags.workdir ?? c.workdir);
  const file = join(workdir, "pageserver.json");
  if (existsSync(file)) {
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch (e) {
      throw new InvalidArgumentError(`${file}: ${(e as Error).message}`);
    }
    if (typeof j !== "object" || j === null || Array.isArray(j)) throw new InvalidArgumentError(`${file}: expected a JSON object`);
    for (const k of Object.keys(j)) if (!FILE_KEYS.has(k)) throw new InvalidArgumentError(`${file}: unknown key '${k}'`);
    apply(c, j as ConfigOverrides);
  }
  apply(c, flags);
  c.workdir = workdir;
  return c;
}
