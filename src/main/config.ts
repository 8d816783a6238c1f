/**
 * Node configuration: where the pageserver keeps its data, where it listens, how big the
 * shared page cache is, how many worker threads, and the defaults of every tenant's config.
 *
 * Sources, later wins: embedded defaults → the config file (`--config FILE`, else
 * `<workdir>/pageserver.json` if present) → `PAGESERVER_<KEY>` environment variables →
 * command-line flags (only those given). Embedded defaults are enough to run: `npm start`.
 *
 * Every setting is one row of NODE_CONFIG_KEYS: its TypeBox schema (the type a config file
 * may give, its default and its description), the NodeConfig field it sets and the parser
 * from that value to the field's. The file schema (NODE_CONFIG_FILE_SCHEMA), the NodeConfig
 * type, DEFAULT_NODE_CONFIG, the environment variables and the checks of every source are
 * derived from those rows, so adding a setting is adding one row. Every refusal is an
 * InvalidArgumentError naming the source (file path, variable or flag) and the key.
 */
import { existsSync, readFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { type TSchema, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { parseRemoteStorageUrl } from "../remote/storage_url.js";
import { DEFAULT_TENANT_CONF, parseDurationMs, parseTenantConf, type TenantConf } from "../tenant/config.js";
import { assert } from "../types/assert.js";
import { InvalidArgumentError } from "../types/errors.js";
import { HTTP_SERVER_CHOICES } from "./http/wire.js";

export function parseListen(text: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(text);
  if (m === null) throw new InvalidArgumentError(`invalid listen address '${text}': expected HOST:PORT`);
  const port = Number(m[2]);
  if (port > 65535) throw new InvalidArgumentError(`invalid port in '${text}'`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

function positiveInt(x: unknown, name: string): number {
  if (typeof x === "number" && Number.isSafeInteger(x) && x > 0) return x;
  if (typeof x === "string" && /^\d+$/.test(x) && Number(x) > 0 && Number.isSafeInteger(Number(x))) return Number(x);
  throw new InvalidArgumentError(`${name}: expected a positive integer, got ${JSON.stringify(x)}`);
}

function nonNegativeInt(x: unknown, name: string): number {
  if (typeof x === "number" && Number.isSafeInteger(x) && x >= 0) return x;
  if (typeof x === "string" && /^\d+$/.test(x) && Number.isSafeInteger(Number(x))) return Number(x);
  throw new InvalidArgumentError(`${name}: expected a non-negative integer, got ${JSON.stringify(x)}`);
}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
/** `json`: pino's own lines (epoch-ms `time`, numeric `level`); `json-iso`: ISO 8601 `time` and level names. */
export const LOG_FORMATS = ["json", "json-iso", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

// -----------------------------------------------------------------------------------------
// The rows

/** One setting: `schema` types the value a config file (or flag) gives, with its default. */
interface Row<F extends string, T> {
  readonly field: F;
  readonly schema: TSchema;
  /** What a type error says is expected ("a positive integer"). */
  readonly expected: string;
  /** The schema-checked value → the NodeConfig field; `prev` is the value so far (tenant_config merges). */
  readonly parse: (v: unknown, name: string, prev: T) => T;
  /** How an environment variable's or flag's text becomes a value of `schema`. */
  readonly text: "string" | "boolean" | "json";
}

const row = <F extends string, T>(r: Row<F, T>): Row<F, T> => r;
const described = (description: string, def: unknown) => ({ description, default: def });

/** A file path setting or null, resolved against the working directory when read. */
function pathRow<F extends string>(field: F, description: string) {
  return row<F, string | null>({
    field,
    schema: Nullable(Type.String({ minLength: 1 }), description),
    expected: "a file path or null",
    parse: (v) => (v === null ? null : resolve(v as string)),
    text: "string",
  });
}

/** An integer setting ≥ 1 (`min` 1) or ≥ 0 (`min` 0); a string of digits is taken too (flags, env). `max` is the parser's ("at most …"). */
function intRow<F extends string>(field: F, min: 0 | 1, def: number, description: string, max = Number.MAX_SAFE_INTEGER) {
  return row<F, number>({
    field,
    schema: Type.Union([Type.Integer({ minimum: min }), Type.String({ pattern: "^[0-9]+$" })], described(description, def)),
    expected: min === 1 ? "a positive integer" : "a non-negative integer",
    parse: (v, name) => {
      const n = min === 1 ? positiveInt(v, name) : nonNegativeInt(v, name);
      if (n > max) throw new InvalidArgumentError(`${name}: at most ${max}`);
      return n;
    },
    text: "string",
  });
}

function listenRow<F extends string>(field: F, def: string, description: string) {
  return row<F, { host: string; port: number }>({
    field,
    schema: Type.String(described(description, def)),
    expected: "HOST:PORT",
    parse: (v, name) => wrapped(name, () => parseListen(v as string)),
    text: "string",
  });
}

function boolRow<F extends string>(field: F, description: string, def = false) {
  return row<F, boolean>({
    field,
    schema: Type.Boolean(described(description, def)),
    expected: "true or false",
    parse: (v) => v as boolean,
    text: "boolean",
  });
}

function enumRow<F extends string, const T extends string>(field: F, values: readonly T[], def: T, description: string) {
  return row<F, T>({
    field,
    schema: Type.Union(
      values.map((v) => Type.Literal(v)),
      described(description, def),
    ),
    expected: `one of ${values.join(", ")}`,
    parse: (v) => v as T,
    text: "string",
  });
}

/** A parser's refusal with the setting's name in front. */
function wrapped<T>(name: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof InvalidArgumentError) throw new InvalidArgumentError(`${name}: ${e.message}`);
    throw e;
  }
}

const Nullable = <T extends TSchema>(t: T, description: string) => Type.Union([t, Type.Null()], described(description, null));

/**
 * Every setting, by its config-file key (also `PAGESERVER_<KEY>` and, where pageserver.ts
 * declares one, the flag `--<key-with-dashes>`). To add one: a row here (schema with default
 * and description, field, parser); the NodeConfig field follows from it.
 */
export const NODE_CONFIG_KEYS = {
  listen: listenRow("listen_http", "127.0.0.1:9898", "HTTP API address"),
  /** Page service (Neon's pagestream over the PostgreSQL wire protocol). */
  listen_pg: listenRow("listen_pg", "127.0.0.1:6400", "page service address (pagestream, basebackup)"),
  listen_metrics: row<"listen_metrics", { host: string; port: number } | null>({
    field: "listen_metrics",
    schema: Nullable(Type.String(), "serve GET /metrics on this address only (null: on listen)"),
    expected: "HOST:PORT or null",
    parse: (v, name) => (v === null ? null : wrapped(name, () => parseListen(v as string))),
    text: "string",
  }),
  page_service_idle_timeout_ms: intRow(
    "page_service_idle_timeout_ms",
    1,
    10 * 60 * 1000,
    "a page service connection that waits on its client this long is closed (FATAL 57P05)",
    // setTimeout's limit (2^31 - 1 ms, ~24.8 days): a longer timer would fire at once.
    0x7fff_ffff,
  ),
  page_service_max_connections_per_tenant: intRow(
    "page_service_max_connections_per_tenant",
    1,
    512,
    "page service connections one tenant may hold; one more gets FATAL 53300",
  ),
  page_service_max_connections_per_peer: intRow(
    "page_service_max_connections_per_peer",
    1,
    1024,
    "page service connections from one remote address; one more gets FATAL 53300",
  ),
  auth_public_key: row<"auth_public_key", string | null>({
    field: "auth_public_key",
    schema: Nullable(Type.String({ minLength: 1 }), "PEM public key file (Ed25519 or RSA): JWT auth on HTTP and the page service"),
    expected: "a file path or null",
    parse: (v) => v as string | null,
    text: "string",
  }),
  metrics_per_timeline: boolRow(
    "metrics_per_timeline",
    "series per timeline (tenant_id, timeline_id) for the per-timeline metric families; false: per-node aggregates only",
    true,
  ),
  tls_cert_file: pathRow(
    "tls_cert_file",
    "PEM certificate chain (with tls_key_file; src/main/tls.ts): TLS on the page service (SSLRequest; clear-text startups refused) and HTTPS",
  ),
  tls_key_file: pathRow("tls_key_file", "PEM private key of tls_cert_file"),
  page_cache_size: intRow("page_cache_size_bytes", 1, 64 * 1024 * 1024, "shared page cache size in bytes"),
  flush_threads: intRow("flush_threads", 1, 1, "worker threads of the flush pool"),
  compaction_threads: intRow("compaction_threads", 1, 1, "worker threads of the compaction pool"),
  gc_threads: intRow("gc_threads", 1, 1, "worker threads of the GC pool"),
  redo_threads: intRow("redo_threads", 1, 1, "threads that redo reads with long record chains off the main thread"),
  log_level: enumRow("log_level", LOG_LEVELS, "info", "pino log level"),
  log_format: enumRow(
    "log_format",
    LOG_FORMATS,
    "json",
    "json (pino: epoch-ms time, numeric level), json-iso (ISO 8601 time, level names) or pretty",
  ),
  max_tenants: intRow("max_tenants", 1, 10_000, "tenants this node hosts at most; one more answers 429"),
  max_concurrent_background_tasks: intRow(
    "max_concurrent_background_tasks",
    1,
    4,
    "compaction / GC rounds running at once across all tenants (queued FIFO beyond it)",
  ),
  concurrent_tenant_size_logical_size_queries: intRow(
    "concurrent_tenant_size_logical_size_queries",
    1,
    1,
    "logical-size computations of the tenant size model running at once across all tenants",
  ),
  tenant_config: row<"tenant_defaults", TenantConf>({
    field: "tenant_defaults",
    schema: Type.Record(Type.String(), Type.Unknown(), described("defaults of every tenant's config (Neon's names)", {})),
    expected: "an object of tenant settings",
    parse: (v, name, prev) => wrapped(name, () => parseTenantConf(v as Record<string, unknown>, prev ?? DEFAULT_TENANT_CONF)),
    text: "json",
  }),
  remote_storage: row<"remote_storage", string | null>({
    field: "remote_storage",
    schema: Nullable(Type.String(), "remote storage URL: file:///abs/path or s3://bucket/prefix?endpoint=…&region=… (null: local only)"),
    expected: "a URL string or null",
    parse: (v, name) => {
      if (v !== null) wrapped(name, () => parseRemoteStorageUrl(v as string));
      return v as string | null;
    },
    text: "string",
  }),
  max_local_disk_bytes: intRow(
    "max_local_disk_bytes",
    0,
    0,
    "disk-usage eviction: above this many resident layer bytes the coldest uploaded layers are evicted (0: off)",
  ),
  min_free_disk_bytes: intRow(
    "min_free_disk_bytes",
    0,
    0,
    "disk-usage eviction also keeps this many bytes free on the workdir's filesystem",
  ),
  wal_source_unix_sockets: boolRow("wal_source_unix_sockets", "whether a wal_source connstr may name a unix socket"),
  enable_failpoints: boolRow("enable_failpoints", "allow failpoints (FAILPOINTS, PUT /v1/failpoints)"),
  import_pgdata_root: row<"import_pgdata_root", string | null>({
    field: "import_pgdata_root",
    schema: Nullable(Type.String(), "the only directory import_pgdata reads data directories from (null: refused)"),
    expected: "an absolute path or null",
    parse: (v, name) => {
      if (v !== null && !isAbsolute(v as string))
        throw new InvalidArgumentError(`${name}: expected an absolute path, got ${JSON.stringify(v)}`);
      return v as string | null;
    },
    text: "string",
  }),
  tenant_min_checkpoint_distance: intRow(
    "tenant_min_checkpoint_distance_bytes",
    0,
    8 * 1024 * 1024,
    "floor of checkpoint_distance a tenant-scoped token may set",
  ),
  tenant_min_gc_horizon: intRow("tenant_min_gc_horizon_bytes", 0, 0, "floor of gc_horizon a tenant-scoped token may set"),
  tenant_min_pitr_interval: row<"tenant_min_pitr_interval_ms", number>({
    field: "tenant_min_pitr_interval_ms",
    schema: Type.Union([Type.Number({ minimum: 0 }), Type.String()], described("floor of pitr_interval a tenant-scoped token may set", 0)),
    expected: 'a duration ("1h30m") or milliseconds',
    parse: (v, name) => parseDurationMs(v, name),
    text: "string",
  }),
  max_heavy_requests_per_tenant: intRow(
    "max_heavy_requests_per_tenant",
    1,
    2,
    "heavy requests (base backups, /size, do_gc, forced image compaction, checksummed remote_check) one tenant runs at once",
  ),
  http_server: enumRow(
    "http_server",
    HTTP_SERVER_CHOICES,
    "auto",
    "HTTP wire adapter: uws (uWebSockets.js), node (node:http) or auto (uWS where its native binary loads, else node:http)",
  ),
  http_max_inflight_requests: intRow("http_max_inflight_requests", 1, 1024, "HTTP requests being served at once (beyond: 429)"),
  http_max_inflight_body_bytes: intRow(
    "http_max_inflight_body_bytes",
    1,
    64 * 1024 * 1024,
    "request body bytes the HTTP server holds at once across all requests (beyond: 429)",
  ),
} as const;

type Rows = typeof NODE_CONFIG_KEYS;
export type NodeConfigKey = keyof Rows;
type RowValue<R> = R extends Row<string, infer T> ? T : never;

/** The node config: `workdir` (flag or PAGESERVER_WORKDIR only) and one field per row. */
export type NodeConfig = { workdir: string } & { -readonly [K in NodeConfigKey as Rows[K]["field"]]: RowValue<Rows[K]> };

/** The config file's shape: every key optional, nothing else allowed. */
export const NODE_CONFIG_FILE_SCHEMA = Type.Partial(
  Type.Object(Object.fromEntries(Object.entries(NODE_CONFIG_KEYS).map(([k, r]) => [k, r.schema])) as Record<NodeConfigKey, TSchema>, {
    additionalProperties: false,
  }),
);

/** Values by config-file key (what a file, a flag or a test gives), plus `workdir`. */
export type ConfigOverrides = { workdir?: string } & { [K in NodeConfigKey]?: ConfigValue<K> };
/** The value type a key takes: its schema's, by its parser's input. */
type ConfigValue<K extends NodeConfigKey> =
  RowValue<Rows[K]> extends boolean
    ? boolean
    : K extends "tenant_config"
      ? Record<string, unknown>
      : RowValue<Rows[K]> extends number
        ? number | string
        : string | (null extends RowValue<Rows[K]> ? null : never);

const KEY_NAMES = Object.keys(NODE_CONFIG_KEYS) as NodeConfigKey[];
const isKey = (k: string): k is NodeConfigKey => Object.hasOwn(NODE_CONFIG_KEYS, k);

function defaults(): NodeConfig {
  const c: Record<string, unknown> = { workdir: ".pageserver" };
  for (const k of KEY_NAMES) {
    const r = NODE_CONFIG_KEYS[k] as unknown as Row<string, unknown>;
    c[r.field] = r.parse(structuredClone(r.schema["default"] as unknown), k, undefined);
  }
  return c as NodeConfig;
}

export const DEFAULT_NODE_CONFIG: Readonly<NodeConfig> = defaults();

/** `key`'s default as a config file writes it (for --help). */
export function defaultText(key: NodeConfigKey): string {
  const d: unknown = NODE_CONFIG_KEYS[key].schema["default"];
  return typeof d === "string" ? d : JSON.stringify(d);
}

// -----------------------------------------------------------------------------------------
// Sources

/** The environment variable of a key (and of `workdir`). */
export const envName = (key: string): string => `PAGESERVER_${key.toUpperCase()}`;
/** The flag of a key, as pageserver.ts declares them. */
export const flagName = (key: string): string => `--${key.replace(/_/g, "-")}`;
/** PAGESERVER_ variables that are not node settings: pagectl's (src/cli/pagectl.ts). */
const FOREIGN_ENV = new Set(["PAGESERVER_URL", "PAGESERVER_PG", "PAGESERVER_TOKEN"]);
/** Bound on the environment variables looked at (TIGER_STYLE: no unbounded loop over input). */
const MAX_ENV_VARS = 100_000;

/** `source: key`, or the flag alone when the source is the key's own flag. */
const named = (source: string, key: string): string => (source === flagName(key) ? source : `${source}: ${key}`);

/** Text (a variable, a flag's argument) → a value of the key's schema. */
function fromText(key: NodeConfigKey, text: string, source: string): unknown {
  const r = NODE_CONFIG_KEYS[key] as unknown as Row<string, unknown>;
  switch (r.text) {
    case "boolean":
      if (text === "1" || text === "true") return true;
      if (text === "0" || text === "false") return false;
      throw new InvalidArgumentError(`${named(source, key)}: expected true or false (or 1 / 0), got ${JSON.stringify(text)}`);
    case "json":
      try {
        return JSON.parse(text) as unknown;
      } catch (e) {
        throw new InvalidArgumentError(`${named(source, key)}: expected JSON: ${(e as Error).message}`);
      }
    case "string":
      // An empty variable unsets a nullable setting.
      return text === "" && Value.Check(r.schema, null) ? null : text;
  }
}

/** Check one value against its row's schema and parse it into `c`. */
/** Refuse a value its key's schema doesn't take, naming the source and the key. */
function checkType(key: NodeConfigKey, v: unknown, source: string): void {
  const r = NODE_CONFIG_KEYS[key] as unknown as Row<string, unknown>;
  if (!Value.Check(r.schema, v)) throw new InvalidArgumentError(`${source}: ${key}: expected ${r.expected}, got ${JSON.stringify(v)}`);
}

function applyOne(c: NodeConfig, key: NodeConfigKey, v: unknown, source: string): void {
  const r = NODE_CONFIG_KEYS[key] as unknown as Row<string, unknown>;
  const fields = c as unknown as Record<string, unknown>;
  checkType(key, v, source);
  try {
    fields[r.field] = r.parse(v, key, fields[r.field]);
  } catch (e) {
    if (e instanceof InvalidArgumentError) {
      // A flag names its key already: `--listen: invalid …`, not `--listen: listen: invalid …`.
      const own = source === flagName(key) && e.message.startsWith(`${key}: `);
      throw new InvalidArgumentError(`${source}: ${own ? e.message.slice(key.length + 2) : e.message}`);
    }
    throw e;
  }
}

function readConfigFile(file: string): Record<string, unknown> {
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new InvalidArgumentError(`${file}: ${(e as Error).message}`);
  }
  if (typeof j !== "object" || j === null || Array.isArray(j)) throw new InvalidArgumentError(`${file}: expected a JSON object`);
  const o = j as Record<string, unknown>;
  if (!Value.Check(NODE_CONFIG_FILE_SCHEMA, o)) {
    // The schema refused the file: name the first key it refused.
    for (const [k, v] of Object.entries(o)) {
      if (!isKey(k)) throw new InvalidArgumentError(`${file}: unknown key '${k}'`);
      checkType(k, v, file);
    }
    assert(false, `${file}: refused by the schema but by none of its keys`);
  }
  return o;
}

/** The settings named by PAGESERVER_* variables (values as text), and the workdir's. */
function readEnv(env: Readonly<Record<string, string | undefined>>): { workdir?: string; values: [NodeConfigKey, unknown, string][] } {
  const values: [NodeConfigKey, unknown, string][] = [];
  let workdir: string | undefined;
  const names = Object.keys(env);
  if (names.length > MAX_ENV_VARS) throw new InvalidArgumentError(`more than ${MAX_ENV_VARS} environment variables`);
  for (const name of names.sort()) {
    const text = env[name];
    if (!name.startsWith("PAGESERVER_") || text === undefined || FOREIGN_ENV.has(name)) continue;
    const key = name.slice("PAGESERVER_".length).toLowerCase();
    if (key === "workdir") workdir = text;
    else if (isKey(key) && name === envName(key)) values.push([key, fromText(key, text, name), name]);
    else
      throw new InvalidArgumentError(
        `${name}: unknown setting (variables: PAGESERVER_<KEY> for a pageserver.json key, e.g. PAGESERVER_LISTEN)`,
      );
  }
  return workdir === undefined ? { values } : { workdir, values };
}

/** Where the settings come from besides the flags. */
export interface ConfigSources {
  /** Environment (PAGESERVER_* variables); none when absent (in-process tests stay hermetic). */
  env?: Readonly<Record<string, string | undefined>>;
  /** `--config FILE`: must exist; absent: `<workdir>/pageserver.json` if it exists. */
  config_file?: string;
  /** Directory relative paths (workdir, config file) resolve against; default process.cwd(). */
  cwd?: string;
}

/**
 * Build the node config: defaults < config file < environment < `flags` (the entries that are
 * not undefined). Throws InvalidArgumentError naming the source and the key.
 */
export function loadNodeConfig(flags: ConfigOverrides, sources: ConfigSources = {}): NodeConfig {
  const cwd = sources.cwd ?? process.cwd();
  const c: NodeConfig = structuredClone(DEFAULT_NODE_CONFIG) as NodeConfig;
  const env = readEnv(sources.env ?? {});
  const workdir = resolve(cwd, flags.workdir ?? env.workdir ?? c.workdir);
  let file = join(workdir, "pageserver.json");
  if (sources.config_file !== undefined) {
    file = resolve(cwd, sources.config_file);
    if (!existsSync(file)) throw new InvalidArgumentError(`--config ${sources.config_file}: no such file`);
  }
  if (existsSync(file)) for (const [k, v] of Object.entries(readConfigFile(file))) applyOne(c, k as NodeConfigKey, v, file);
  for (const [k, v, name] of env.values) applyOne(c, k, v, name);
  for (const [k, v] of Object.entries(flags)) {
    if (k === "workdir" || v === undefined) continue;
    if (!isKey(k)) throw new InvalidArgumentError(`unknown setting '${k}'`);
    applyOne(c, k, v, flagName(k));
  }
  // The files are read at startup (src/main/tls.ts); one without the other is a mistake.
  if ((c.tls_cert_file === null) !== (c.tls_key_file === null))
    throw new InvalidArgumentError("tls_cert_file and tls_key_file (--tls-cert, --tls-key) go together: give both or neither");
  c.workdir = workdir;
  return c;
}

/** A flag's text → the value of its key (pageserver.ts: the same parsing as the environment's). */
export function flagValue(key: NodeConfigKey, text: string | boolean): unknown {
  return typeof text === "boolean" ? text : fromText(key, text, flagName(key));
}
