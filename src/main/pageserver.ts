#!/usr/bin/env node
/**
 * `pageserver` entry point: parse flags, start the node in the foreground; SIGTERM/SIGINT
 * stop it cleanly (flush, then exit 0).
 *
 * Settings, later wins (src/main/config.ts): embedded defaults < the config file (`--config`,
 * else `<workdir>/pageserver.json`) < `PAGESERVER_<KEY>` variables < the flags given.
 *
 * Every expected startup failure (usage, bad configuration, a bad FAILPOINTS variable or one
 * set while failpoints are off, a busy port, a locked workdir, an unreadable key file) prints
 * one line `pageserver: <message>` to stderr and exits 2; the stack only at --log-level
 * debug or trace. Failpoints work only with `--enable-failpoints` (or
 * PAGESERVER_ENABLE_FAILPOINTS=1), as Neon gates them.
 */
import { resolve } from "node:path";
import { Command, type CommanderError } from "commander";
import { InvalidArgumentError, PageserverError } from "../types/errors.js";
import { applyFailpoints, parseFailpointSpec } from "../types/failpoints.js";
import { versionLine } from "./build_info.js";
import {
  type ConfigOverrides,
  DEFAULT_NODE_CONFIG,
  defaultText,
  flagValue,
  LOG_FORMATS,
  loadNodeConfig,
  NODE_CONFIG_KEYS,
  type NodeConfig,
  type NodeConfigKey,
} from "./config.js";
import { Server } from "./server.js";

/** Exit code of every startup failure (usage and configuration included). */
const EXIT_STARTUP = 2;

const PRECEDENCE = `
Settings, later wins: embedded defaults < config file (--config FILE, else
<workdir>/pageserver.json if present) < environment PAGESERVER_<KEY> (one variable per
config-file key, e.g. PAGESERVER_LISTEN=127.0.0.1:9898, PAGESERVER_PAGE_CACHE_SIZE=8388608,
PAGESERVER_TENANT_CONFIG='{"gc_period":"1h"}'; PAGESERVER_WORKDIR for --workdir) < flags given.
An unknown key or PAGESERVER_ variable, or a value of the wrong type, is refused at startup.`;

/** Help text of a flag with its key's default from the node config (flags have none: see below). */
const d = (key: NodeConfigKey, what: string): string => `${what} (default: ${defaultText(key)})`;

const program = new Command()
  .name("pageserver")
  .description("A multi-tenant, branchable, point-in-time page store for PostgreSQL 15")
  .version(versionLine(), "-V, --version", "print the version and git commit")
  // No defaults here: a flag overrides the file and the environment only when it is given.
  .option("--config <file>", "config file (default: <workdir>/pageserver.json, if present)")
  .option("--workdir <dir>", `data directory (default: ${DEFAULT_NODE_CONFIG.workdir})`)
  .option("--listen <host:port>", d("listen", "HTTP API address"))
  .option("--listen-pg <host:port>", d("listen_pg", "page service address (pagestream, basebackup)"))
  .option("--listen-metrics <host:port>", "serve GET /metrics on this address only (default: on --listen)")
  .option("--auth-public-key <file>", "PEM public key (Ed25519 or RSA): JWT auth on HTTP and the page service")
  .option("--tls-cert <file>", "PEM certificate chain: TLS on the page service and HTTPS (with --tls-key)")
  .option("--tls-key <file>", "PEM private key of --tls-cert")
  .option("--page-cache-size <bytes>", d("page_cache_size", "shared page cache size in bytes"))
  .option("--log-level <level>", d("log_level", "pino log level"))
  .option(
    "--log-format <format>",
    d(
      "log_format",
      `${LOG_FORMATS.join(" | ")}: pino's json (epoch-ms time, numeric level), json-iso (ISO 8601 time, level names) or pino-pretty`,
    ),
  )
  .option("--http-server <kind>", d("http_server", "HTTP server: auto (uWebSockets.js where it loads, else node:http), uws or node"))
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
  .addHelpText("after", PRECEDENCE)
  // Usage errors are startup failures like the others: one line, exit 2.
  .configureOutput({
    outputError: (text, write) =>
      write(
        `pageserver: ${text
          .replace(/^error: /, "")
          .trim()
          .replace(/\s*\n\s*/g, " ")}\n`,
      ),
  })
  .exitOverride((e: CommanderError) => process.exit(e.exitCode === 0 ? 0 : EXIT_STARTUP))
  .parse();

const opts = program.opts<Record<string, string | boolean | undefined>>();

/** Flags whose config key is not their own name. */
const FLAG_KEYS: Readonly<Record<string, string>> = { tls_cert: "tls_cert_file", tls_key: "tls_key_file" };

/** The flags given, by config key (commander's camelCase names → snake_case keys). */
function flagOverrides(): ConfigOverrides {
  const o: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(opts)) {
    const flag = name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    const key = FLAG_KEYS[flag] ?? flag;
    if (v === undefined || key === "config") continue;
    if (key === "workdir") o[key] = v;
    else if (key === "import_pgdata_root") o[key] = resolve(String(v));
    else if (Object.hasOwn(NODE_CONFIG_KEYS, key)) o[key] = flagValue(key as NodeConfigKey, v);
  }
  return o as ConfigOverrides;
}

/** Whether a failure may print its stack: --log-level (or PAGESERVER_LOG_LEVEL, or the config) debug or trace. */
function verbose(config: NodeConfig | null): boolean {
  const level = config?.log_level ?? opts["logLevel"] ?? process.env["PAGESERVER_LOG_LEVEL"];
  return level === "debug" || level === "trace";
}

let server: Server;
let config: NodeConfig | null = null;
try {
  const configFile = opts["config"];
  config = loadNodeConfig(flagOverrides(), {
    env: process.env,
    ...(typeof configFile === "string" ? { config_file: configFile } : {}),
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
  const err = e instanceof Error ? e : new Error(String(e));
  // One line: a message that spans lines (a JSON parse error's excerpt) is joined.
  process.stderr.write(`pageserver: ${err.message.replace(/\s*\n\s*/g, " ")}\n`);
  if (verbose(config) && err.stack !== undefined) process.stderr.write(`${err.stack}\n`);
  process.exit(EXIT_STARTUP);
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
