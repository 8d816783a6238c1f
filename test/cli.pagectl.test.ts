/**
 * pagectl end to end (issue 11): the real command (`node --import tsx src/cli/pagectl.ts`)
 * against a real pageserver (in-process Server on ephemeral ports) and a stock PostgreSQL 15
 * source streaming into it:
 * - tenant and timeline lifecycle, tables for humans, `--json` parsed back; failpoints;
 * - errors: one line `pagectl: <message> (<code>)`, exit 1; usage errors exit 2, nothing sent;
 * - a base backup download with `--progress` (progress on stderr, the tar in the file);
 * - getpage through the page service (hexdump and --json);
 * - `endpoint start` on a branch at an LSN, a write on the endpoint, `endpoint stop`, and
 *   the write is in the branch (a second endpoint on the branch itself sees it);
 * - --token / PAGESERVER_TOKEN against a server with auth on (401 / 403 as their codes);
 * - lsn-by-time (present / past / future), branch --at (at the LSN lsn-by-time names; a time
 *   before every commit is refused naming "past"), layers, draw (one rect per layer), deletes
 *   (a timeline with branches refused; a tenant's delete drops its source's slot).
 */
import { spawn } from "node:child_process";
import { createHash, generateKeyPairSync } from "node:crypto";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { lsnNum } from "./support/e2e_fixture.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";
import { freePort, runPg } from "./support/backup_server.js";

const PAGECTL = fileURLToPath(new URL("../src/cli/pagectl.ts", import.meta.url));
const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;
const RUN_TIMEOUT_MS = 120_000;

const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
let src: PgInstance;
let server: Server;
let url: string;
let pgAddr: string;
let dir: string;
const endpointDirs: string[] = [];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout's bytes (a tar on stdout is not text). */
  raw: Buffer;
}

/** pagectl with `args` against our server (unless args name another --server). */
async function pagectl(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  const child = spawn(process.execPath, ["--import", "tsx", PAGECTL, "--server", url, "--pg-server", pgAddr, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...extraEnv },
  });
  const out: Buffer[] = [];
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    out.push(d);
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
  const code = await new Promise<number>((r) => child.once("close", (c) => r(c ?? -1)));
  clearTimeout(timer);
  const raw = Buffer.concat(out);
  return { code, stdout: raw.toString("utf8"), stderr, raw };
}

/** pagectl that must succeed; its stdout. */
async function ok(args: string[]): Promise<string> {
  const r = await pagectl(args);
  expect(r.code, `pagectl ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

async function okJson<T>(args: string[]): Promise<T> {
  return JSON.parse(await ok(["--json", ...args])) as T;
}

/** A one-line failure with the code, and the exit code. */
function expectFailure(r: Run, exitCode: number, code: string): void {
  expect(r.code, r.stdout + r.stderr).toBe(exitCode);
  // Notes for humans may come first; the error is the last line, and the only one.
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines.at(-1)).toMatch(new RegExp(`^pagectl: .+ \\(${code}\\)$`));
  expect(lines.filter((l) => l.startsWith("pagectl: "))).toHaveLength(1);
}

/** A ustar archive's entries: name → sha256 of the content. */
function tarEntries(tar: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  const field = (off: number, len: number): string =>
    tar
      .subarray(off, off + len)
      .toString("latin1")
      .replace(/\0.*$/s, "");
  for (let off = 0; off + 512 <= tar.length; ) {
    const name = field(off, 100);
    if (name === "") break;
    const size = Number.parseInt(field(off + 124, 12).trim() || "0", 8);
    expect(off + 512 + size).toBeLessThanOrEqual(tar.length);
    out.set(
      name,
      createHash("sha256")
        .update(tar.subarray(off + 512, off + 512 + size))
        .digest("hex"),
    );
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

async function waitIngested(tenant: string, timeline: string, lsn: string, timeout_ms = 60_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    const info = (await (await fetch(`${url}/v1/tenant/${tenant}/timeline/${timeline}`)).json()) as { last_record_lsn: string };
    if (lsnNum(info.last_record_lsn) >= lsnNum(lsn)) return;
    if (Date.now() > deadline) throw new Error(`${timeline} did not reach ${lsn}: at ${info.last_record_lsn}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function psql(port: number, sql: string): Promise<string> {
  const r = await runPg(
    "psql",
    ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-f", "-"],
    sql,
  );
  if (r.code !== 0) throw new Error(`psql: ${r.stderr}`);
  return r.stdout.trim();
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: { wal_level: "replica", max_wal_senders: 10, max_replication_slots: 10 } });
  env.add("source.log", src.logFile);
  dir = mkdtempSync(join(tmpdir(), "ps-cli-"));
  // Endpoints' data directories live here: PostgreSQL runs as `postgres` when we are root.
  if (IS_ROOT) {
    const { uid, gid } = statSync(src.baseDir);
    chownSync(dir, uid, gid);
  }
  server = new Server(
    loadNodeConfig({ workdir: join(dir, "workdir"), listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", enable_failpoints: true }),
    logs.logger,
  );
  url = `http://127.0.0.1:${await server.start()}`;
  pgAddr = `127.0.0.1:${server.pgPort}`;
  await src.psql("CREATE TABLE t (x int); INSERT INTO t SELECT g FROM generate_series(1, 1000) g");
});

afterAll(async () => {
  for (const d of endpointDirs) {
    if (existsSync(join(d, "postmaster.pid"))) await runPg("pg_ctl", ["-D", d, "-m", "immediate", "-w", "stop"]);
  }
  await server?.stop();
  await src?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
  // A stopped endpoint's slot can't be dropped (the server is down): the WARN says so.
  logs.expectClean([/could not drop the source's replication slot/, /WAL stream lost/, /could not compute the logical size/]);
});

describe("pagectl against a real pageserver", { timeout: 300_000 }, () => {
  let tenant: string;
  let main: string;
  let lsnBefore: string;

  it("status, tenant lifecycle, tables and --json", async () => {
    const status = await okJson<{ status: string; version: string }>(["status"]);
    expect(status.status).toBe("ok");

    tenant = (await ok(["tenant", "create", "checkpoint_distance=4194304"])).trim();
    expect(tenant).toMatch(/^[0-9a-f]{32}$/);
    const list = await okJson<{ id: string; state: string }[]>(["tenant", "list"]);
    expect(list).toContainEqual({ id: tenant, state: "Active", name: null });
    const table = await ok(["tenant", "list"]);
    const lines = table.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^TENANT_ID\s+NAME\s+STATE$/);
    expect(lines.some((l) => l.startsWith(tenant) && l.endsWith("Active"))).toBe(true);

    const shown = await okJson<{ id: string; timelines: number }>(["tenant", "show", tenant]);
    expect(shown).toMatchObject({ id: tenant, timelines: 0 });

    // config set merges into the overrides; key= removes one.
    await ok(["tenant", "config", "set", tenant, "gc_period=0", "compaction_period=5s"]);
    let conf = await okJson<{ overrides: Record<string, unknown> }>(["tenant", "config", "get", tenant]);
    expect(conf.overrides).toEqual({ checkpoint_distance: 4194304, gc_period: 0, compaction_period: "5s" });
    await ok(["tenant", "config", "set", tenant, "compaction_period="]);
    conf = await okJson<{ overrides: Record<string, unknown> }>(["tenant", "config", tenant]);
    expect(conf.overrides).toEqual({ checkpoint_distance: 4194304, gc_period: 0 });
  });

  it("failpoints: set, list, clear; a bad name changes nothing", async () => {
    expect(await okJson<Record<string, string>>(["failpoints", "set", "basebackup-start=sleep(1)"])).toEqual({
      "basebackup-start": "sleep(1)",
    });
    expect((await ok(["failpoints"])).trimEnd().split("\n")).toEqual(["NAME              ACTION", "basebackup-start  sleep(1)"]);
    expectFailure(await pagectl(["failpoints", "set", "no-such-failpoint=return"]), 1, "invalid_argument");
    expectFailure(await pagectl(["failpoints", "set", "basebackup-start"]), 2, "usage");
    expect(await okJson<Record<string, string>>(["failpoints", "list"])).toEqual({ "basebackup-start": "sleep(1)" });
    expect((await ok(["failpoints", "set", "basebackup-start=off"])).trim()).toBe("no active failpoints");
  });

  it("errors: one line with the code, exit 1; usage errors exit 2", async () => {
    expectFailure(await pagectl(["tenant", "show", "00000000000000000000000000000000"]), 1, "not_found");
    expectFailure(await pagectl(["tenant", "create", "--id", tenant]), 1, "conflict");
    expectFailure(await pagectl(["tenant", "config", "set", tenant, "no_such_setting=1"]), 1, "invalid_argument");
    expectFailure(await pagectl(["--server", "http://127.0.0.1:1", "status"]), 1, "source_unavailable");
    // Usage: nothing is sent.
    // Neither an id nor a name (names are A-Z a-z 0-9 _ . -; "not-an-id" would be one).
    expectFailure(await pagectl(["tenant", "show", "not an id!"]), 2, "usage");
    expectFailure(await pagectl(["timeline", "branch", tenant, tenant, "--lsn", "zz"]), 2, "usage");
    expectFailure(await pagectl(["getpage", tenant, tenant, "--rel", "1/2", "--blk", "0"]), 2, "usage");
    const unknown = await pagectl(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^pagectl: unknown command 'frobnicate'/);
    const missing = await pagectl(["basebackup", tenant, tenant]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/required option '-o, --output <file>' not specified/);
    expect((await pagectl(["--help"])).code).toBe(0);
    const version = await pagectl(["--version"]);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")).version);
  });

  it("timelines: bootstrap from a source, branch at an LSN, list, show", async () => {
    const created = await okJson<{ timeline_id: string; wal_source: { state: string } }>([
      "timeline",
      "create",
      tenant,
      "--source",
      src.connectionString(),
    ]);
    main = created.timeline_id;
    lsnBefore = await src.psql("SELECT pg_current_wal_insert_lsn()");
    await waitIngested(tenant, main, lsnBefore);
    await src.psql("INSERT INTO t SELECT g FROM generate_series(1001, 3000) g");
    await waitIngested(tenant, main, await src.psql("SELECT pg_current_wal_insert_lsn()"));

    const branch = await okJson<{ timeline_id: string; ancestor_timeline_id: string; ancestor_lsn: string }>([
      "timeline",
      "branch",
      tenant,
      main,
      "--lsn",
      lsnBefore,
    ]);
    expect(branch.ancestor_timeline_id).toBe(main);
    expect(branch.ancestor_lsn).toBe(lsnBefore);

    const list = await okJson<{ timeline_id: string }[]>(["timeline", "list", tenant]);
    expect(list.map((t) => t.timeline_id).sort()).toEqual([main, branch.timeline_id].sort());
    const table = (await ok(["timeline", "list", tenant])).trimEnd().split("\n");
    expect(table[0]).toMatch(/^TIMELINE_ID\s+NAME\s+ANCESTOR\s+ANCESTOR_LSN\s+LAST_RECORD_LSN/);
    expect(table).toHaveLength(3);
    // Aligned: every row's second column starts where the header's does.
    const col = table[0]!.indexOf("ANCESTOR");
    for (const row of table.slice(1)) expect(row[col - 1]).toBe(" ");

    const tenantShow = await ok(["tenant", "show", tenant]);
    expect(tenantShow).toMatch(/^timelines\s+2$/m);
    expect(tenantShow).toMatch(/^config\s+.*checkpoint_distance=4194304/m);
    for (const id of [main, branch.timeline_id]) expect(tenantShow).toMatch(new RegExp(`^  ${id}$`, "m"));

    const show = await ok(["timeline", "show", tenant, main]);
    expect(show).toMatch(new RegExp(`^timeline_id\\s+${main}$`, "m"));
    expect(show).toMatch(/^wal_source\.state\s+streaming$/m);
    const cp = await okJson<{ disk_consistent_lsn: string }>(["timeline", "checkpoint", tenant, main]);
    expect(lsnNum(cp.disk_consistent_lsn)).toBeGreaterThan(lsnNum(lsnBefore));
  });

  it("basebackup with --progress: progress on stderr, the tar in the file", async () => {
    const out = join(dir, "base.tar");
    const r = await pagectl(["basebackup", tenant, main, "--lsn", lsnBefore, "-o", out, "--progress"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/base backup .*\d+(\.\d)? (B|KiB|MiB)/);
    expect(r.stdout).toMatch(/^wrote .*base\.tar \(\d/);
    expect(existsSync(`${out}.partial`)).toBe(false);
    const tar = readFileSync(out);
    expect(tar.length).toBeGreaterThan(1024 * 1024);
    expect(tar.length % 512).toBe(0);
    expect(tar.subarray(257, 262).toString()).toBe("ustar");
    const names = new Set(tarEntries(tar).keys());
    expect(names).toContain("global/pg_control");
    expect(names).toContain("PG_VERSION");

    // To stdout: the tar and nothing else.
    const piped = await pagectl(["basebackup", tenant, main, "--lsn", lsnBefore, "-o", "-"]);
    expect(piped.code, piped.stderr).toBe(0);
    // The same archive: the same files with the same contents, but for the time stamps of the
    // download (tar headers' mtimes, the synthetic checkpoint's time in pg_control and pg_wal).
    expect(piped.raw.length).toBe(tar.length);
    const timeless = (m: Map<string, string>): [string, string][] =>
      [...m].map(([k, v]) => [k, k === "global/pg_control" || k.startsWith("pg_wal/0") ? "(time)" : v]);
    expect(timeless(tarEntries(piped.raw))).toEqual(timeless(tarEntries(tar)));

    // --json: machine output only on stdout, no progress (stderr is not a terminal here).
    const j = await okJson<{ size_bytes: number }>(["basebackup", tenant, main, "-o", join(dir, "base2.tar")]);
    expect(j.size_bytes).toBe(statSync(join(dir, "base2.tar")).size);
  });

  it("getpage through the page service: hexdump, --json", async () => {
    const rel = (
      await src.psql("SELECT (SELECT oid FROM pg_database WHERE datname = 'postgres') || '/' || pg_relation_filenode('t')")
    ).trim();
    const spec = `1663/${rel}`;
    const hex = await ok(["getpage", tenant, main, "--rel", spec, "--blk", "0"]);
    const lines = hex.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^00000000 {2}([0-9a-f]{2} ){8} ([0-9a-f]{2} ){7}[0-9a-f]{2} {2}\|.{16}\|$/);
    expect(lines.at(-1)).toBe("00002000");
    const j = await okJson<{ page_hex: string; lsn: string }>([
      "getpage",
      tenant,
      main,
      "--rel",
      `${spec}.main`,
      "--blk",
      "0",
      "--lsn",
      lsnBefore,
    ]);
    expect(j.page_hex).toHaveLength(16384);
    expect(j.lsn).toBe(lsnBefore);
    // pd_lower (bytes 12..13 LE) of a heap page with tuples is past the header.
    const page = Buffer.from(j.page_hex, "hex");
    expect(page.readUInt16LE(12)).toBeGreaterThan(24);
    expectFailure(await pagectl(["getpage", tenant, main, "--rel", "1663/1/999999", "--blk", "0"]), 1, "\\w+");
  });

  it("endpoint start on a branch at an LSN, a write there, endpoint stop: the write is in the branch", async () => {
    const pgdata = join(dir, "ep1");
    endpointDirs.push(pgdata);
    const port = await freePort();
    const started = await okJson<{ timeline_id: string; lsn: string; branch_created: boolean; wal_source_state: string; port: number }>([
      "endpoint",
      "start",
      "--tenant",
      tenant,
      "--timeline",
      main,
      "--lsn",
      lsnBefore,
      "--pgdata",
      pgdata,
      "--port",
      String(port),
      "--conf",
      "fsync=off",
      "--conf",
      "shared_buffers=16MB",
    ]);
    expect(started).toMatchObject({ lsn: lsnBefore, branch_created: true, wal_source_state: "streaming", port });
    const branch = started.timeline_id;
    // The endpoint shows the database at the branch point: the first 1000 rows only.
    expect(await psql(port, "SELECT count(*) FROM t")).toBe("1000");
    await psql(port, "INSERT INTO t SELECT -g FROM generate_series(1, 500) g");
    const end = await psql(port, "SELECT pg_current_wal_insert_lsn()");
    await waitIngested(tenant, branch, end);

    // The main timeline streams from the source: an endpoint on it directly is refused.
    expectFailure(
      await pagectl([
        "endpoint",
        "start",
        "--tenant",
        tenant,
        "--timeline",
        main,
        "--pgdata",
        join(dir, "ep-refused"),
        "--port",
        String(await freePort()),
      ]),
      1,
      "conflict",
    );
    // A start that fails half way (the port is taken) leaves nothing running and --pgdata
    // empty; the branch it created is kept, and said so.
    const busy = join(dir, "ep-busy");
    endpointDirs.push(busy);
    const failed = await pagectl([
      "endpoint",
      "start",
      "--tenant",
      tenant,
      "--timeline",
      main,
      "--lsn",
      lsnBefore,
      "--pgdata",
      busy,
      "--port",
      String(src.port),
    ]);
    expectFailure(failed, 1, "internal");
    expect(failed.stderr).toMatch(/pg_ctl start failed/);
    expect(failed.stderr).toMatch(/the branch [0-9a-f]{32} created for this endpoint is kept/);
    expect(readdirSync(busy)).toEqual([]);
    // The data directory of a running endpoint is not reused.
    expectFailure(
      await pagectl([
        "endpoint",
        "start",
        "--tenant",
        tenant,
        "--timeline",
        branch,
        "--branch",
        "--pgdata",
        pgdata,
        "--port",
        String(await freePort()),
      ]),
      1,
      "invalid_argument",
    );

    const stopped = await okJson<{
      stopped: boolean;
      fast_shutdown: boolean;
      wal_source: { removed: boolean };
      last_record_lsn: string;
      disk_consistent_lsn: string;
    }>(["endpoint", "stop", "--pgdata", pgdata]);
    expect(stopped).toMatchObject({ stopped: true, fast_shutdown: true, wal_source: { removed: true } });
    // Fast shutdown waited for the pageserver's flush: every byte is durable.
    expect(stopped.disk_consistent_lsn).toBe(stopped.last_record_lsn);
    expect(lsnNum(stopped.last_record_lsn)).toBeGreaterThanOrEqual(lsnNum(end));
    const info = await okJson<{ wal_source: unknown }>(["timeline", "show", tenant, branch]);
    expect(info.wal_source).toBeNull();
    // A second stop is harmless.
    const again = await okJson<{ stopped: boolean }>(["endpoint", "stop", "--pgdata", pgdata]);
    expect(again.stopped).toBe(false);

    // A new endpoint on the branch itself (nothing streams into it now) sees the write.
    const pgdata2 = join(dir, "ep2");
    endpointDirs.push(pgdata2);
    const port2 = await freePort();
    const second = await okJson<{ timeline_id: string; branch_created: boolean }>([
      "endpoint",
      "start",
      "--tenant",
      tenant,
      "--timeline",
      branch,
      "--pgdata",
      pgdata2,
      "--port",
      String(port2),
      "--conf",
      "fsync=off",
    ]);
    expect(second).toMatchObject({ timeline_id: branch, branch_created: false });
    expect(await psql(port2, "SELECT count(*), sum(x) FROM t")).toBe(`1500|${(1000 * 1001) / 2 - (500 * 501) / 2}`);
    const stop2 = await pagectl(["endpoint", "stop", "--pgdata", pgdata2]);
    expect(stop2.code, stop2.stderr).toBe(0);
    expect(stop2.stdout).toMatch(/^postgres\s+stopped \(fast\)$/m);
  });

  it("lsn-by-time, branch --at, layers, draw, delete", async () => {
    // A commit after `at`, ingested: `at` is between commits ("present").
    const at = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 20));
    await src.psql("INSERT INTO t VALUES (0)");
    await waitIngested(tenant, main, await src.psql("SELECT pg_current_wal_insert_lsn()"));
    const r = await okJson<{ lsn: string; kind: string }>(["lsn-by-time", tenant, main, at]);
    expect(r.kind).toBe("present");
    expect(await ok(["lsn-by-time", tenant, main, at])).toMatch(new RegExp(`^lsn\\s+${r.lsn}\nkind\\s+present$`, "m"));
    expect((await okJson<{ kind: string }>(["lsn-by-time", tenant, main, "2000-01-01T00:00:00Z"])).kind).toBe("past");
    expect((await okJson<{ kind: string }>(["lsn-by-time", tenant, main, "2999-01-01T00:00:00Z"])).kind).toBe("future");

    const b = await pagectl(["--json", "timeline", "branch", tenant, main, "--at", at]);
    expect(b.code, b.stderr).toBe(0);
    const atBranch = JSON.parse(b.stdout) as { timeline_id: string; ancestor_lsn: string };
    expect(atBranch.ancestor_lsn).toBe(r.lsn);
    const past = await pagectl(["timeline", "branch", tenant, main, "--at", "2000-01-01T00:00:00Z"]);
    expectFailure(past, 1, "invalid_argument");
    expect(past.stderr).toMatch(/"past"/);

    await ok(["timeline", "checkpoint", tenant, main]);
    const layers = await okJson<{ name: string; kind: string; level: string; in_memory: string | null; size_bytes: number }[]>([
      "timeline",
      "layers",
      tenant,
      main,
    ]);
    expect(layers.length).toBeGreaterThan(0);
    expect(layers.every((l) => typeof l.name === "string" && ["l0", "l1", "image"].includes(l.level))).toBe(true);
    const table = (await ok(["timeline", "layers", tenant, main])).trimEnd().split("\n");
    expect(table[0]).toMatch(/^LEVEL\s+KEY_START\s+KEY_END\s+LSN_START\s+LSN_END\s+SIZE$/);
    expect(table.at(-1)).toMatch(new RegExp(`^${table.length - 2} layers: `));
    const svg = join(dir, "map.svg");
    const drawn = await okJson<{ file: string; layers: number }>(["timeline", "draw", tenant, main, "-o", svg]);
    expect(drawn.file).toBe(svg);
    const text = readFileSync(svg, "utf8");
    expect(text).toMatch(/^<(\?xml|svg)[\s>]/);
    expect((text.match(/<rect class="layer"/g) ?? []).length).toBe(drawn.layers);
    // Layer files stay (GC is off, too few L0 files to compact); in-memory layers come and go
    // with the source's background WAL: every file listed is drawn.
    for (const l of layers) if (l.in_memory === null) expect(text).toContain(l.name);

    // Deletes: a timeline with branches is refused; a leaf goes; a tenant goes with its
    // sources, their slots dropped on the source.
    expectFailure(await pagectl(["timeline", "delete", tenant, main]), 1, "conflict");
    expect(await ok(["timeline", "delete", tenant, atBranch.timeline_id])).toMatch(new RegExp(`^deleted timeline ${atBranch.timeline_id}`));
    expect((await okJson<{ timeline_id: string }[]>(["timeline", "list", tenant])).map((t) => t.timeline_id)).not.toContain(
      atBranch.timeline_id,
    );
    expect(await src.psql(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pageserver_${main}'`)).toBe("1");
    const deleted = await ok(["tenant", "delete", tenant]);
    expect(deleted).toMatch(new RegExp(`^deleted tenant ${tenant}$`, "m"));
    expect(deleted).toMatch(new RegExp(`^  timeline ${main} \\(its WAL source stopped, slot dropped\\)$`, "m"));
    expect(await src.psql(`SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pageserver_${main}'`)).toBe("0");
    expectFailure(await pagectl(["tenant", "show", tenant]), 1, "not_found");
  });

  it("--token and PAGESERVER_TOKEN against a server with auth on", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const keyFile = join(dir, "auth_key.pem");
    writeFileSync(keyFile, publicKey.export({ type: "spki", format: "pem" }));
    const authLogs = new LogCapture();
    const authServer = new Server(
      loadNodeConfig({ workdir: join(dir, "workdir-auth"), listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", auth_public_key: keyFile }),
      authLogs.logger,
    );
    const authUrl = `http://127.0.0.1:${await authServer.start()}`;
    try {
      const sign = (claims: Record<string, unknown>): Promise<string> =>
        new SignJWT(claims).setProtectedHeader({ alg: "EdDSA" }).setIssuedAt().sign(privateKey);
      const admin = await sign({ scope: "pageserverapi" });
      expectFailure(await pagectl(["--server", authUrl, "tenant", "list"]), 1, "unauthorized");
      const t = (await ok(["--server", authUrl, "--token", admin, "tenant", "create"])).trim();
      const viaEnv = await pagectl(["--server", authUrl, "--json", "tenant", "list"], { PAGESERVER_TOKEN: admin });
      expect(viaEnv.code, viaEnv.stderr).toBe(0);
      expect(JSON.parse(viaEnv.stdout)).toEqual([{ id: t, state: "Active", name: null }]);
      // A tenant token reaches its tenant only, not the management routes.
      const tenantToken = await sign({ scope: "tenant", tenant_id: t });
      expect((await pagectl(["--server", authUrl, "--token", tenantToken, "tenant", "show", t])).code).toBe(0);
      expectFailure(await pagectl(["--server", authUrl, "--token", tenantToken, "tenant", "list"]), 1, "forbidden");
    } finally {
      await authServer.stop();
    }
    authLogs.expectClean();
  });
});
