/**
 * An endpoint: a stock PostgreSQL 15 running on a data directory made from a timeline's base
 * backup. This module owns the PostgreSQL side: finding the binaries, running them (as the
 * `postgres` user when we are root: PostgreSQL refuses to run as root), unpacking the tar
 * safely, the settings an endpoint needs to be the timeline's WAL source, and the record
 * (`pagectl_endpoint.json` in the data directory) that `endpoint stop` reads back.
 *
 * Invariants:
 * - The tar is unpacked only below the data directory: absolute names, `..` and anything but
 *   files and directories are refused; at most MAX_TAR_ENTRIES entries.
 * - The data directory is 0700 and, when we are root, owned by `postgres` (PostgreSQL checks).
 * - Settings live in their own file included at the end of postgresql.conf, so they win over
 *   the base backup's and ALTER SYSTEM (postgresql.auto.conf) still works.
 * - Every endpoint started is registered (registerEndpoint): one file per data directory under
 *   the state directory (PAGECTL_STATE_DIR, else $XDG_STATE_HOME/pagectl, else
 *   ~/.local/state/pagectl), named by a hash of its path, so concurrent starts never race on
 *   one file. `endpoint list` reads them (at most MAX_REGISTERED_ENDPOINTS) and drops the ones
 *   whose data directory no longer holds an endpoint record.
 * - Tablespaces come in place (pg_tblspc/<oid>/ directories); `--tablespace-mapping OLD=NEW`
 *   (pg_basebackup's option; OLD is the tablespace's original LOCATION, as the base backup's
 *   pageserver_tablespaces.json names it, or its OID) moves one to NEW (absolute; absent or
 *   empty) and leaves the symlink pg_tblspc/<oid> → NEW, as PostgreSQL makes them.
 */
import { execFile, execFileSync } from "node:child_process";
import {
  appendFileSync,
  cpSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createHash } from "node:crypto";
import { homedir } from "node:os";
import { dirname, isAbsolute, join, normalize, sep } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tar from "tar-stream";
import { InvalidArgumentError, PageserverError, UnsupportedError } from "../types/errors.js";
import { parseTablespacesFile, TABLESPACES_FILE } from "../types/tablespaces_file.js";

export const ENDPOINT_RECORD_FILE = "pagectl_endpoint.json";
export const ENDPOINT_CONF_FILE = "pagectl_endpoint.conf";
export const ENDPOINT_LOG_FILE = "endpoint.log";
/** A base backup has a few thousand files for a small cluster; a million is not a data directory. */
const MAX_TAR_ENTRIES = 1_000_000;
const PG_CTL_TIMEOUT_S = 60;
/** `endpoint list` reads at most this many registrations: a developer's machine has a handful. */
const MAX_REGISTERED_ENDPOINTS = 10_000;

export const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;

/** Where Debian's postgresql-15 package puts the binaries. */
export const DEBIAN_PG_BIN = "/usr/lib/postgresql/15/bin";
/** The binaries pagectl runs (pg_ctl for endpoints, postgres for its version) and doctor checks. */
export const PG_BINARIES = ["postgres", "pg_ctl", "initdb", "pg_basebackup"] as const;
const PG_BIN_HINT = "pass --pg-bin DIR or set PG_BIN to the directory of the PostgreSQL 15 binaries";

/** `postgres --version`'s first line, or null when it does not run. */
export function pgVersionOf(bindir: string): string | null {
  try {
    return execFileSync(join(bindir, "postgres"), ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return null;
  }
}

/**
 * The directory of the PostgreSQL 15 binaries: `given` (--pg-bin / PG_BIN) when set, checked
 * for every binary in `needed` and for version 15; else pg_config --bindir, else Debian's path.
 * A missing binary is an error naming its path and the option.
 */
export function findPgBinDir(given?: string, needed: readonly string[] = PG_BINARIES): string {
  if (given !== undefined && given !== "") {
    for (const bin of needed) {
      if (!existsSync(join(given, bin))) throw new UnsupportedError(`${join(given, bin)} not found (from --pg-bin / PG_BIN)`);
    }
    const v = pgVersionOf(given);
    if (v === null || !/\(PostgreSQL\) 15\./.test(v))
      throw new UnsupportedError(
        `${join(given, "postgres")} is not PostgreSQL 15 (${v ?? "does not run"}): --pg-bin / PG_BIN must name 15's binaries`,
      );
    return given;
  }
  const candidates: string[] = [];
  try {
    candidates.push(execFileSync("pg_config", ["--bindir"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
  } catch {
    // no pg_config on PATH
  }
  candidates.push(DEBIAN_PG_BIN);
  for (const dir of candidates) {
    if (!needed.every((bin) => existsSync(join(dir, bin)))) continue;
    if (/\(PostgreSQL\) 15\./.test(pgVersionOf(dir) ?? "")) return dir;
  }
  throw new UnsupportedError(`PostgreSQL 15 binaries (${needed.join(", ")}) not found in ${candidates.join(" or ")}: ${PG_BIN_HINT}`);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a PostgreSQL binary (as `postgres` when we are root); never throws on an exit code. */
export function runPgBinary(bindir: string, bin: string, args: readonly string[], input?: string): Promise<RunResult> {
  const path = join(bindir, bin);
  const [cmd, argv] = IS_ROOT ? ["runuser", ["-u", "postgres", "--", path, ...args]] : [path, [...args]];
  return new Promise((resolve) => {
    const child = execFile(cmd, argv, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : 1, stdout, stderr });
    });
    // A binary that exits without reading its input (pg_ctl) must not fail us with EPIPE.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(input ?? "");
  });
}

/** Make `dir` belong to `postgres` (when we are root) and be 0700, as PostgreSQL requires. */
export function handToPostgres(dir: string): void {
  if (IS_ROOT) execFileSync("chown", ["-R", "postgres:postgres", dir]);
  execFileSync("chmod", ["700", dir]);
}

/** A data directory to unpack into: absent (created) or empty, else an error. */
export function prepareDataDir(dir: string): void {
  if (existsSync(dir)) {
    if (readdirSync(dir).length > 0) throw new InvalidArgumentError(`--pgdata ${dir} is not empty`);
  } else {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }
}

/** Empty `dir` again (a failed start leaves nothing that would make the next one refuse). */
export function emptyDataDir(dir: string): void {
  for (const e of readdirSync(dir)) rmSync(join(dir, e), { recursive: true, force: true });
}

/** The safe path of tar entry `name` under `root`, or an error. */
function entryPath(root: string, name: string): string {
  const n = normalize(name).replace(/\/+$/, "");
  if (n === "" || n === ".") return root;
  if (n.startsWith(sep) || n === ".." || n.startsWith(`..${sep}`) || n.includes(`${sep}..${sep}`)) {
    throw new InvalidArgumentError(`base backup entry '${name}' points outside the data directory`);
  }
  return join(root, n);
}

/** Unpack a tar stream into `root`. Files 0600, directories 0700. Counts what it wrote. */
export async function untar(body: AsyncIterable<Uint8Array>, root: string): Promise<{ files: number; size_bytes: number }> {
  const ex = tar.extract();
  const feeding = pipeline(Readable.from(body), ex);
  // Its failure also ends the loop below (which reports it); until awaited it is handled here.
  feeding.catch(() => undefined);
  let files = 0;
  let size_bytes = 0;
  let entries = 0;
  try {
    for await (const entry of ex) {
      if (++entries > MAX_TAR_ENTRIES) throw new PageserverError("limit_reached", `base backup has more than ${MAX_TAR_ENTRIES} entries`);
      const h = entry.header;
      const path = entryPath(root, h.name);
      if (h.type === "directory") {
        mkdirSync(path, { recursive: true, mode: 0o700 });
        entry.resume();
      } else if (h.type === "file" || h.type === "contiguous-file") {
        mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
        await pipeline(entry, createWriteStream(path, { mode: 0o600 }));
        files++;
        size_bytes += h.size ?? 0;
      } else {
        throw new UnsupportedError(`base backup entry '${h.name}' is a ${h.type}: only files and directories are unpacked`);
      }
    }
    await feeding;
  } catch (e) {
    ex.destroy();
    await feeding.catch(() => undefined);
    throw e;
  }
  return { files, size_bytes };
}

export interface TablespaceMapping {
  old: string;
  new: string;
}

/** `OLD=NEW` as pg_basebackup takes it (`\\=` is an `=` inside a name); NEW absolute. */
export function parseTablespaceMapping(arg: string): TablespaceMapping {
  const parts: string[] = [""];
  for (let i = 0; i < arg.length; i++) {
    const c = arg[i]!;
    if (c === "\\" && arg[i + 1] === "=") {
      parts[parts.length - 1] += "=";
      i++;
    } else if (c === "=") parts.push("");
    else parts[parts.length - 1] += c;
  }
  if (parts.length !== 2 || parts[0] === "" || parts[1] === "")
    throw new InvalidArgumentError(`--tablespace-mapping '${arg}': expected OLD=NEW`);
  if (!isAbsolute(parts[1]!)) throw new InvalidArgumentError(`--tablespace-mapping '${arg}': NEW must be an absolute path`);
  return { old: parts[0]!, new: normalize(parts[1]!) };
}

/** Move a directory's entries into `to` (rename; a copy when they are on another filesystem). */
function moveEntries(from: string, to: string): void {
  for (const e of readdirSync(from)) {
    try {
      renameSync(join(from, e), join(to, e));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
      cpSync(join(from, e), join(to, e), { recursive: true });
      rmSync(join(from, e), { recursive: true, force: true });
    }
  }
}

/**
 * Apply `--tablespace-mapping`s to an unpacked base backup: each OLD (a tablespace's original
 * LOCATION or its OID) must name a tablespace of the backup; its in-place directory moves to
 * NEW and pg_tblspc/<oid> becomes a symlink to NEW. Every mapping is checked before anything
 * moves. Returns what was moved.
 */
export function applyTablespaceMappings(
  pgdata: string,
  mappings: readonly TablespaceMapping[],
): { oid: number; from: string; to: string }[] {
  if (mappings.length === 0) return [];
  const listPath = join(pgdata, TABLESPACES_FILE);
  const tablespaces = existsSync(listPath) ? parseTablespacesFile(readFileSync(listPath, "utf8")) : [];
  const plan: { oid: number; from: string; to: string }[] = [];
  for (const m of mappings) {
    const t = tablespaces.find((x) => String(x.oid) === m.old || (x.location !== "" && normalize(x.location) === normalize(m.old)));
    if (t === undefined) {
      const known = tablespaces.map((x) => (x.location === "" ? `${x.oid} (in place)` : `${x.oid} (${x.location})`)).join(", ");
      throw new InvalidArgumentError(
        `--tablespace-mapping ${m.old}=${m.new}: the base backup has no tablespace ${m.old} (it has: ${known === "" ? "none" : known})`,
      );
    }
    if (plan.some((p) => p.oid === t.oid)) throw new InvalidArgumentError(`--tablespace-mapping: tablespace ${t.oid} is mapped twice`);
    if (plan.some((p) => p.to === m.new)) throw new InvalidArgumentError(`--tablespace-mapping: ${m.new} is the target of two tablespaces`);
    if (existsSync(m.new) && readdirSync(m.new).length > 0) throw new InvalidArgumentError(`--tablespace-mapping: ${m.new} is not empty`);
    plan.push({ oid: t.oid, from: t.location, to: m.new });
  }
  for (const p of plan) {
    const link = join(pgdata, "pg_tblspc", String(p.oid));
    mkdirSync(p.to, { recursive: true, mode: 0o700 });
    moveEntries(link, p.to);
    rmdirSync(link);
    symlinkSync(p.to, link);
    handToPostgres(p.to);
  }
  return plan;
}

/** The settings that make a base backup an endpoint on `port` (extra ones win). */
export function writeEndpointConf(pgdata: string, port: number, extra: Record<string, unknown>): void {
  const settings: Record<string, unknown> = {
    port,
    listen_addresses: "127.0.0.1",
    // TCP only: a socket path under a long data directory path can pass the 107-byte limit.
    unix_socket_directories: "",
    // The pageserver streams the endpoint's WAL over physical replication through its slot
    // (it creates `pageserver_<timeline_id>` itself on first contact).
    wal_level: "replica",
    max_wal_senders: 5,
    max_replication_slots: 5,
    logging_collector: false,
    ...extra,
  };
  const quote = (v: unknown): string =>
    typeof v === "number" ? String(v) : typeof v === "boolean" ? (v ? "on" : "off") : `'${String(v).replace(/'/g, "''")}'`;
  const text = Object.entries(settings)
    .map(([k, v]) => `${k} = ${quote(v)}`)
    .join("\n");
  writeFileSync(join(pgdata, ENDPOINT_CONF_FILE), `# written by pagectl endpoint start\n${text}\n`, { mode: 0o600 });
  const main = join(pgdata, "postgresql.conf");
  const current = existsSync(main) ? readFileSync(main, "utf8") : "";
  if (!current.includes(`include '${ENDPOINT_CONF_FILE}'`)) appendFileSync(main, `\ninclude '${ENDPOINT_CONF_FILE}'\n`);
}

/** What `endpoint start` records in the data directory for `endpoint stop`. */
export interface EndpointRecord {
  tenant_id: string;
  timeline_id: string;
  /** The pageserver's HTTP API the endpoint streams into. */
  server: string;
  port: number;
  /** The base backup's LSN. */
  lsn: string;
  connstr: string;
  /** Whether `endpoint start` created the branch (at --lsn / --at). */
  branch_created: boolean;
  started_at: string;
}

export function writeEndpointRecord(pgdata: string, r: EndpointRecord): void {
  writeFileSync(join(pgdata, ENDPOINT_RECORD_FILE), `${JSON.stringify(r, null, 2)}\n`, { mode: 0o600 });
}

export function readEndpointRecord(pgdata: string): EndpointRecord {
  const path = join(pgdata, ENDPOINT_RECORD_FILE);
  if (!existsSync(path)) throw new InvalidArgumentError(`${pgdata} is not an endpoint started by pagectl (no ${ENDPOINT_RECORD_FILE})`);
  const j = JSON.parse(readFileSync(path, "utf8")) as Partial<EndpointRecord>;
  if (typeof j.tenant_id !== "string" || typeof j.timeline_id !== "string" || typeof j.server !== "string" || typeof j.port !== "number") {
    throw new InvalidArgumentError(`${path} is not an endpoint record`);
  }
  return j as EndpointRecord;
}

export function logTail(pgdata: string, max_chars = 2000): string {
  try {
    return readFileSync(join(pgdata, ENDPOINT_LOG_FILE), "utf8").slice(-max_chars);
  } catch {
    return "";
  }
}

/** pg_ctl start, waiting until it accepts connections. */
export async function pgStart(bindir: string, pgdata: string): Promise<void> {
  const r = await runPgBinary(bindir, "pg_ctl", [
    "-D",
    pgdata,
    "-l",
    join(pgdata, ENDPOINT_LOG_FILE),
    "-w",
    "-t",
    String(PG_CTL_TIMEOUT_S),
    "start",
  ]);
  if (r.code !== 0) {
    // One line: pg_ctl's complaint and the server log's reasons (the log goes with --pgdata).
    const reasons = logTail(pgdata, 8000)
      .split("\n")
      .filter((l) => /\b(FATAL|PANIC|ERROR):/.test(l))
      .slice(-3)
      .map((l) => l.replace(/^.*?\b(FATAL|PANIC|ERROR):\s*/, "$1: "));
    const pgctl = (r.stderr || r.stdout).trim().split("\n").at(-1) ?? "";
    throw new PageserverError("internal", `pg_ctl start failed: ${[pgctl, ...reasons].filter((x) => x !== "").join("; ")}`);
  }
}

/**
 * pg_ctl stop -m fast (a WAL source's walsender waits for the pageserver to report every
 * byte flushed: DESIGN.md); immediate if that fails. Whether the fast shutdown worked.
 */
export async function pgStop(bindir: string, pgdata: string): Promise<{ fast: boolean; message: string }> {
  const fast = await runPgBinary(bindir, "pg_ctl", ["-D", pgdata, "-m", "fast", "-w", "-t", String(PG_CTL_TIMEOUT_S), "stop"]);
  if (fast.code === 0) return { fast: true, message: fast.stdout.trim() };
  const imm = await runPgBinary(bindir, "pg_ctl", ["-D", pgdata, "-m", "immediate", "-w", "-t", "10", "stop"]);
  if (imm.code !== 0)
    throw new PageserverError(
      "internal",
      `pg_ctl stop failed: ${(fast.stderr || fast.stdout).trim()}; immediate: ${(imm.stderr || imm.stdout).trim()}`,
    );
  return { fast: false, message: `fast shutdown failed (${(fast.stderr || fast.stdout).trim()}); stopped with -m immediate` };
}

/** Whether a postmaster runs on `pgdata` (pg_ctl status). */
export async function pgRunning(bindir: string, pgdata: string): Promise<boolean> {
  return (await runPgBinary(bindir, "pg_ctl", ["-D", pgdata, "status"])).code === 0;
}

/** Fail early, with a clear message, when `postgres` can't reach the data directory. */
export async function checkReachable(pgdata: string): Promise<void> {
  if (!IS_ROOT) return;
  const r = await new Promise<number>((resolve) => {
    execFile("runuser", ["-u", "postgres", "--", "test", "-w", pgdata], (err) => resolve(err === null ? 0 : 1));
  });
  if (r !== 0)
    throw new InvalidArgumentError(`the postgres user can't write ${pgdata}: make its parent directories reachable (e.g. chmod o+x)`);
}

/** Where pagectl keeps what outlives one command: the endpoints it started. */
export function stateDir(): string {
  const explicit = process.env["PAGECTL_STATE_DIR"];
  if (explicit !== undefined && explicit !== "") return explicit;
  const xdg = process.env["XDG_STATE_HOME"];
  return join(xdg !== undefined && xdg !== "" ? xdg : join(homedir(), ".local", "state"), "pagectl");
}

function registryDir(): string {
  return join(stateDir(), "endpoints");
}

/** Remember an endpoint's data directory (absolute) for `endpoint list`. */
export function registerEndpoint(pgdata: string): void {
  mkdirSync(registryDir(), { recursive: true, mode: 0o700 });
  const name = createHash("sha256").update(pgdata).digest("hex").slice(0, 32);
  writeFileSync(join(registryDir(), `${name}.json`), `${JSON.stringify({ pgdata })}\n`, { mode: 0o600 });
}

export interface RegisteredEndpoint {
  pgdata: string;
  record: EndpointRecord;
  /** The postmaster's pid while it runs (postmaster.pid names a live postgres), else null. */
  pid: number | null;
}

/** The endpoints pagectl started whose data directories still hold their record, by data directory. */
export function listRegisteredEndpoints(): RegisteredEndpoint[] {
  const dir = registryDir();
  if (!existsSync(dir)) return [];
  const out: RegisteredEndpoint[] = [];
  const files = readdirSync(dir).filter((f) => f.endsWith(".json"));
  for (const f of files.slice(0, MAX_REGISTERED_ENDPOINTS)) {
    let pgdata: unknown;
    try {
      pgdata = (JSON.parse(readFileSync(join(dir, f), "utf8")) as { pgdata?: unknown }).pgdata;
    } catch {
      pgdata = undefined;
    }
    let record: EndpointRecord | null = null;
    try {
      if (typeof pgdata === "string") record = readEndpointRecord(pgdata);
    } catch {
      record = null;
    }
    // Its data directory was removed or reused: nothing to list any more.
    if (typeof pgdata !== "string" || record === null) {
      rmSync(join(dir, f), { force: true });
      continue;
    }
    out.push({ pgdata, record, pid: postmasterPid(pgdata) });
  }
  return out.sort((a, b) => a.pgdata.localeCompare(b.pgdata));
}

/**
 * The pid in `pgdata`/postmaster.pid when that process is alive and (where /proc tells) a
 * postgres: a crash leaves the file behind, and its pid may have been reused since.
 */
export function postmasterPid(pgdata: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(join(pgdata, "postmaster.pid"), "utf8").split("\n")[0]);
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
  } catch (e) {
    // EPERM: alive, another user's (postgres when we are not root).
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return null;
  }
  try {
    if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "postgres") return null;
  } catch {
    // no /proc (not Linux): the live pid is all we know
  }
  return pid;
}
