#!/usr/bin/env node
/**
 * `pageserver` entry point: parse flags, start the node in the foreground; SIGTERM/SIGINT
 * stop it cleanly (flush, then exit 0). Bad configuration exits 2 with a clear message; so
 * does a bad FAILPOINTS environment variable ("name=action;…", src/types/failpoints.ts), or
 * one set while failpoints are off: they work only with `--enable-failpoints` (or
 * PAGESERVER_ENABLE_FAILPOINTS=1 in the environment), as Neon gates them.
 */
import { resolve } from "node:path";
import { Command } from "commander";
import { InvalidArgumentError, PageserverError } from "../types/errors.js";
import { applyFailpoints, parseFailpointSpec } from "../types/failpoints.js";
import { versionLine } from "./build_info.js";
import { DEFAULT_NODE_CONFIG, loadNodeConfig } from "./config.js";
import { Server } from "./server.js";

/** The help shows the node config's own defaults (flags have none: see below). */
const DEFAULT_LISTEN = `${DEFAULT_NODE_CONFIG.listen_http.host}:${DEFAULT_NODE_CONFIG.listen_http.port}`;

const program = new Command()
  .name("pageserver")
  .description("A multi-tenant, branchable, point-in-time page store for PostgreSQL 15")
  .version(versionLine(), "-V, --version", "print the version and git commit")
  // No defaults here: a flag overrides pageserver.json only when it is given (the defaults are
  // the node config's, src/main/config.ts).
  .option("--workdir <dir>", `data directory (default: ${DEFAULT_NODE_CONFIG.workdir})`)
  .option("--listen <host:port>", `HTTP API address (default: ${DEFAULT_LISTEN})`)
  .option("--listen-pg <host:port>", "page service address (pagestream, basebackup)")
  .option("--listen-metrics <host:port>", "serve GET /metrics on this address only (default: on --listen)")
  .option("--auth-public-key <file>", "PEM public key (Ed25519 or RSA): JWT auth on HTTP and the page service")
  .option("--page-cache-size <bytes>", "shared page cache size in bytes")
  .option("--log-level <level>", "pino log level")
  .option("--log-format <format>", "json (default) or pretty (human-readable, via pino-pretty)")
  .option("--remote-storage <url>", "remote storage: file:///abs/path or s3://bucket/prefix?endpoint=URL&region=R (credentials: AWS_* env)")
  .option(
    "--max-local-disk-bytes <bytes>",
    "evict the coldest uploaded layers above this many resident bytes (0: off; needs remote storage)",
  )
  .option(
    "--min-free-disk-bytes <bytes>",
    "evict the coldest uploaded layers while the workdir's filesystem has less free space (0: off; needs remote storage)",
  )
  // Both forms, so that neither given leaves it undefined (pageserver.json's value stands).
  .option("--metrics-per-timeline", "series per timeline for the per-timeline metric families (default)")
  .option("--no-metrics-per-timeline", "per-node aggregates only for the per-timeline metric families (many tenants)")
  .option("--enable-failpoints", "allow failpoints (FAILPOINTS, PUT /v1/failpoints); also PAGESERVER_ENABLE_FAILPOINTS=1")
  .option("--import-pgdata-root <dir>", "import_pgdata reads data directories only under this directory (absent: import_pgdata is refused)")
  .parse();

const opts = program.opts<{
  workdir?: string;
  listen?: string;
  listenPg?: string;
  listenMetrics?: string;
  authPublicKey?: string;
  pageCacheSize?: string;
  logLevel?: string;
  logFormat?: string;
  remoteStorage?: string;
  maxLocalDiskBytes?: string;
  minFreeDiskBytes?: string;
  enableFailpoints?: boolean;
  metricsPerTimeline?: boolean;
  importPgdataRoot?: string;
}>();

let server: Server;
try {
  const envEnabled = process.env["PAGESERVER_ENABLE_FAILPOINTS"];
  const config = loadNodeConfig({
    ...(opts.enableFailpoints === true || envEnabled === "1" || envEnabled === "true" ? { enable_failpoints: true } : {}),
    ...(opts.metricsPerTimeline === undefined ? {} : { metrics_per_timeline: opts.metricsPerTimeline }),
    ...(opts.importPgdataRoot === undefined ? {} : { import_pgdata_root: resolve(opts.importPgdataRoot) }),
    workdir: opts.workdir,
    listen: opts.listen,
    listen_pg: opts.listenPg,
    listen_metrics: opts.listenMetrics,
    auth_public_key: opts.authPublicKey,
    page_cache_size: opts.pageCacheSize,
    log_level: opts.logLevel,
    log_format: opts.logFormat,
    remote_storage: opts.remoteStorage,
    max_local_disk_bytes: opts.maxLocalDiskBytes,
    min_free_disk_bytes: opts.minFreeDiskBytes,
  });
  const spec = process.env["FAILPOINTS"] ?? "";
  if (spec !== "" && !config.enable_failpoints)
    throw new InvalidArgumentError(
      "FAILPOINTS is set but failpoints are off: start with --enable-failpoints (or PAGESERVER_ENABLE_FAILPOINTS=1)",
    );
  try {
    applyFailpoints(parseFailpointSpec(spec));
  } catch (e) {
    throw e instanceof PageserverError ? new InvalidArgumentError(`FAILPOINTS: ${e.message}`) : e;
  }
  server = new Server(config);
  await server.start();
} catch (e) {
  const msg = e instanceof PageserverError ? e.message : ((e as Error).stack ?? String(e));
  process.stderr.write(`pageserver: ${msg}\n`);
  process.exit(2);
}

let stopping = false;
const stop = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  server.log.info({ signal }, "stopping");
  server.stop().then(
    () => process.exit(0),
    (e) => {
      server.log.error({ err: e }, "error during shutdown");
      process.exit(1);
    },
  );
};
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
