/**
 * pagectl's operator features (issue 18), the real command against a real pageserver
 * (in-process Server) and stock PostgreSQL 15:
 * - names: `tenant create --name`, `timeline create/branch --name`, every command taking a
 *   name where an id goes; duplicates 409 (conflict), unknown names not_found, bad names 400 /
 *   usage; renames; names survive a restart and a deleted timeline frees its name;
 * - `timeline create` with neither --source nor --import-pgdata is refused with a hint;
 * - `--pg-bin` / PG_BIN: a directory without the binaries is an error naming the path;
 * - `endpoint list`: the endpoints started, with their port, pid and state (running, stopped);
 * - `doctor`: ok on a good set-up; FAIL with a fix for a source with wal_level minimal and no
 *   WAL senders, a role without REPLICATION, a missing token, an unreachable bucket.
 */
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { freePort, runPg } from "./support/backup_server.js";
import { TestEnv } from "./support/env.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";

const PAGECTL = fileURLToPath(new URL("../src/cli/pagectl.ts", import.meta.url));
const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;
const RUN_TIMEOUT_MS = 120_000;
const PG_BIN = "/usr/lib/postgresql/15/bin";

const env = new TestEnv(fileURLToPath(import.meta.url));
const logs = new LogCapture();
let src: PgInstance;
let server: Server;
let url: string;
let dir: string;
let stateDir: string;
const endpointDirs: string[] = [];

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function pagectl(args: string[], extraEnv: Record<string, string> = {}): Promise<Run> {
  const child = spawn(process.execPath, ["--import", "tsx", PAGECTL, "--server", url, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PAGECTL_STATE_DIR: stateDir, ...extraEnv },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
  const code = await new Promise<number>((r) => child.once("close", (c) => r(c ?? -1)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

async function ok(args: string[], extraEnv: Record<string, string> = {}): Promise<string> {
  const r = await pagectl(args, extraEnv);
  expect(r.code, `pagectl ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

async function okJson<T>(args: string[], extraEnv: Record<string, string> = {}): Promise<T> {
  return JSON.parse(await ok(["--json", ...args], extraEnv)) as T;
}

function expectFailure(r: Run, exitCode: number, code: string): void {
  expect(r.code, r.stdout + r.stderr).toBe(exitCode);
  expect(r.stderr.trimEnd().split("\n").at(-1)).toMatch(new RegExp(`^pagectl: .+ \\(${code}\\)$`));
}

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

function startServer(workdir: string, extra: Record<string, unknown> = {}, capture = logs): Server {
  return new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", ...extra }), capture.logger);
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: { wal_level: "replica", max_wal_senders: 10, max_replication_slots: 10 } });
  env.add("source.log", src.logFile);
  dir = mkdtempSync(join(tmpdir(), "ps-cli-op-"));
  stateDir = join(dir, "state");
  if (IS_ROOT) {
    const { uid, gid } = statSync(src.baseDir);
    chownSync(dir, uid, gid);
  }
  server = startServer(join(dir, "workdir"));
  url = `http://127.0.0.1:${await server.start()}`;
  await src.psql("CREATE TABLE t (x int); INSERT INTO t SELECT g FROM generate_series(1, 100) g");
});

afterAll(async () => {
  for (const d of endpointDirs) {
    if (existsSync(join(d, "postmaster.pid"))) await runPg("pg_ctl", ["-D", d, "-m", "immediate", "-w", "stop"]);
  }
  await server?.stop();
  await src?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
  logs.expectClean([/could not drop the source's replication slot/, /WAL stream lost/, /could not compute the logical size/]);
});

describe("pagectl operator features", { timeout: 300_000 }, () => {
  let tenant: string;
  let main: string;
  let dev: string;

  it("names: tenants and timelines by name, unique, validated, renamed, kept across a restart", async () => {
    tenant = (await ok(["tenant", "create", "--name", "shop"])).trim();
    expect(tenant).toMatch(/^[0-9a-f]{32}$/);
    expect(await okJson<unknown[]>(["tenant", "list"])).toContainEqual({ id: tenant, state: "Active", name: "shop" });
    expect((await ok(["tenant", "list"])).split("\n").some((l) => l.startsWith(tenant) && /\sshop\s/.test(l))).toBe(true);
    expect(await okJson<{ id: string; name: string }>(["tenant", "show", "shop"])).toMatchObject({ id: tenant, name: "shop" });

    // Unique per node (409 through the catalogue); unknown names and bad names.
    expectFailure(await pagectl(["tenant", "create", "--name", "shop"]), 1, "conflict");
    expect((await call("POST", "/v1/tenant", { name: "shop" })).status).toBe(409);
    expect((await call("POST", "/v1/tenant", { name: "x".repeat(64) })).status).toBe(400);
    expect((await call("POST", "/v1/tenant", { name: "a b" })).status).toBe(400);
    expect((await call("POST", "/v1/tenant", { name: "0123456789abcdef0123456789abcdef" })).status).toBe(400);
    expectFailure(await pagectl(["tenant", "create", "--name", "bad name"]), 2, "usage");
    expectFailure(await pagectl(["tenant", "show", "nosuch"]), 1, "not_found");

    const created = await okJson<{ timeline_id: string; name: string }>([
      "timeline",
      "create",
      "shop",
      "--source",
      src.connectionString(),
      "--name",
      "main",
    ]);
    main = created.timeline_id;
    expect(created.name).toBe("main");
    const at = await src.psql("SELECT pg_current_wal_insert_lsn()");
    const branch = await okJson<{ timeline_id: string; name: string; ancestor_timeline_id: string }>([
      "timeline",
      "branch",
      "shop",
      "main",
      "--name",
      "dev",
    ]);
    dev = branch.timeline_id;
    expect(branch).toMatchObject({ name: "dev", ancestor_timeline_id: main });
    expectFailure(await pagectl(["timeline", "branch", "shop", "main", "--name", "dev"]), 1, "conflict");
    expect(at).toMatch(/\//);

    const list = await okJson<{ timeline_id: string; name: string | null }[]>(["timeline", "list", "shop"]);
    expect(list.map((t) => [t.timeline_id, t.name]).sort()).toEqual(
      [
        [main, "main"],
        [dev, "dev"],
      ].sort(),
    );
    expect((await ok(["timeline", "list", tenant])).split("\n")[0]).toMatch(/^TIMELINE_ID\s+NAME\s+ANCESTOR/);
    expect(await okJson<{ timeline_id: string }>(["timeline", "show", "shop", "dev"])).toMatchObject({ timeline_id: dev });
    // A name and an id mix; ids still work.
    expect(await okJson<{ timeline_id: string }>(["timeline", "show", tenant, "main"])).toMatchObject({ timeline_id: main });
    expectFailure(await pagectl(["timeline", "show", "shop", "nosuch"]), 1, "not_found");

    // Renames: the old name goes, the new one resolves; a taken name is refused.
    expectFailure(await pagectl(["timeline", "rename", "shop", "dev", "main"]), 1, "conflict");
    expect((await ok(["timeline", "rename", "shop", "dev", "dev2"])).trim()).toBe(`timeline ${dev} is named dev2`);
    expect(await okJson<{ timeline_id: string }>(["timeline", "show", "shop", "dev2"])).toMatchObject({ timeline_id: dev });
    expect((await ok(["tenant", "rename", "shop", "store"])).trim()).toBe(`tenant ${tenant} is named store`);
    expectFailure(await pagectl(["tenant", "show", "shop"]), 1, "not_found");

    // A restart keeps them (names.json in the tenant's directory).
    await server.stop();
    server = startServer(join(dir, "workdir"));
    url = `http://127.0.0.1:${await server.start()}`;
    expect(await okJson<{ id: string; name: string }>(["tenant", "show", "store"])).toMatchObject({ id: tenant, name: "store" });
    expect(await okJson<{ timeline_id: string; name: string }>(["timeline", "show", "store", "dev2"])).toMatchObject({
      timeline_id: dev,
      name: "dev2",
    });

    // Of two concurrent claims of one name, one wins (the name is held from before the first await).
    const tenantRace = await Promise.all([0, 1].map(() => call("POST", "/v1/tenant", { name: "race" })));
    expect(tenantRace.map((r) => r.status).sort()).toEqual([201, 409]);
    const branchRace = await Promise.all(
      [0, 1].map(() => call("POST", `/v1/tenant/${tenant}/timeline`, { ancestor_timeline_id: main, name: "race" })),
    );
    expect(branchRace.map((r) => r.status).sort()).toEqual([201, 409]);
    expect(branchRace.find((r) => r.status === 409)!.json).toMatchObject({ code: "conflict" });

    // A deleted timeline frees its name.
    const scratch = await okJson<{ timeline_id: string }>(["timeline", "branch", "store", "main", "--name", "scratch"]);
    await ok(["timeline", "delete", "store", "scratch"]);
    const again = await okJson<{ timeline_id: string; name: string }>(["timeline", "branch", "store", "main", "--name", "scratch"]);
    expect(again.timeline_id).not.toBe(scratch.timeline_id);
    await ok(["timeline", "rename", "store", "scratch", "--clear"]);
    expect(await okJson<{ name: string | null }>(["timeline", "show", "store", again.timeline_id])).toMatchObject({ name: null });
  });

  it("timeline create with neither --source nor --import-pgdata is refused with a hint, nothing created", async () => {
    const fresh = (await ok(["tenant", "create"])).trim();
    const r = await pagectl(["timeline", "create", fresh]);
    expectFailure(r, 2, "usage");
    expect(r.stderr).toMatch(/--source CONNSTR .* or --import-pgdata DIR/);
    expect(r.stderr).toMatch(/timeline branch/);
    expect(await okJson<unknown[]>(["timeline", "list", fresh])).toEqual([]);
    // An empty timeline on purpose (WAL fed by other means) is still possible, explicitly.
    expect(await okJson<{ last_record_lsn: string }>(["timeline", "create", fresh, "--start-lsn", "0/1000000"])).toMatchObject({
      last_record_lsn: "0/1000000",
    });
    await ok(["tenant", "delete", fresh]);
  });

  it("--pg-bin / PG_BIN: a directory without the binaries is an error naming the path and the option", async () => {
    const fake = join(dir, "fake-bin");
    mkdirSync(fake);
    const args = ["endpoint", "start", "--tenant", "store", "--timeline", "dev2", "--pgdata", join(dir, "ep-never"), "--port", "1"];
    const viaFlag = await pagectl(["--pg-bin", fake, ...args]);
    expectFailure(viaFlag, 1, "unsupported");
    expect(viaFlag.stderr).toContain(`${join(fake, "postgres")} not found (from --pg-bin / PG_BIN)`);
    const viaEnv = await pagectl(args, { PG_BIN: fake });
    expectFailure(viaEnv, 1, "unsupported");
    expect(viaEnv.stderr).toContain(join(fake, "postgres"));
    expect(existsSync(join(dir, "ep-never"))).toBe(false);
  });

  it("endpoint list: the endpoints started, their port, pid and state", async () => {
    expect((await ok(["endpoint", "list"])).trim()).toBe("no endpoints");
    const pgdata = join(dir, "ep-dev");
    endpointDirs.push(pgdata);
    const port = await freePort();
    // By names, with the binaries named through PG_BIN.
    const started = await okJson<{ timeline_id: string; port: number }>(
      ["endpoint", "start", "--tenant", "store", "--timeline", "dev2", "--pgdata", pgdata, "--port", String(port), "--conf", "fsync=off"],
      { PG_BIN },
    );
    expect(started).toMatchObject({ timeline_id: dev, port });
    type Listed = { pgdata: string; tenant_id: string; timeline_id: string; port: number; pid: number | null; running: boolean };
    let list = await okJson<Listed[]>(["endpoint", "list"]);
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ pgdata, tenant_id: tenant, timeline_id: dev, port, running: true });
    expect(list[0]!.pid).toBeGreaterThan(0);
    const table = (await ok(["endpoint", "list"])).trimEnd().split("\n");
    expect(table[0]).toMatch(/^PGDATA\s+TENANT_ID\s+TIMELINE_ID\s+PORT\s+PID\s+STATE$/);
    expect(table[1]).toMatch(new RegExp(`^${pgdata}\\s+${tenant}\\s+${dev}\\s+${port}\\s+${list[0]!.pid}\\s+running$`));

    await ok(["endpoint", "stop", "--pgdata", pgdata], { PG_BIN });
    list = await okJson<Listed[]>(["endpoint", "list"]);
    expect(list).toEqual([expect.objectContaining({ pgdata, running: false, pid: null })]);
    // A removed data directory leaves the list.
    rmSync(pgdata, { recursive: true, force: true });
    expect(await okJson<Listed[]>(["endpoint", "list"])).toEqual([]);
  });

  it("doctor: every check ok on a good set-up", async () => {
    const r = await pagectl(["doctor", "--source", src.connectionString()], { PG_BIN });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    for (const l of lines) expect(l).toMatch(/^ok {4}/);
    for (const check of [
      "node",
      "node version",
      "auth",
      "remote storage",
      "postgres binaries",
      "source version",
      "source wal_level",
      "source max_wal_senders",
      "source max_replication_slots",
      "source role",
      "source replication connection",
    ])
      expect(
        lines.some((l) => new RegExp(`^ok {4}${check} `).test(l)),
        check,
      ).toBe(true);
    const json = await okJson<{ check: string; ok: boolean }[]>(["doctor"], { PG_BIN });
    expect(json.every((c) => c.ok)).toBe(true);
  });

  it("doctor: FAIL with a fix for a bad source, a role without REPLICATION, bad binaries; exit 1", async () => {
    const minimal = await PgInstance.start({ conf: { wal_level: "minimal", max_wal_senders: 0, max_replication_slots: 0 } });
    try {
      const r = await pagectl(["doctor", "--source", minimal.connectionString()], { PG_BIN: join(dir, "fake-bin") });
      expectFailure(r, 1, "bad_state");
      const line = (check: string): string => r.stdout.split("\n").find((l) => l.includes(`  ${check} `)) ?? "";
      expect(line("source wal_level")).toMatch(/^FAIL .*minimal.* — fix: ALTER SYSTEM SET wal_level = replica; then restart PostgreSQL$/);
      expect(line("source max_wal_senders")).toMatch(/^FAIL .* — fix: ALTER SYSTEM SET max_wal_senders = 10/);
      expect(line("source max_replication_slots")).toMatch(/^FAIL .* — fix: ALTER SYSTEM SET max_replication_slots = 10/);
      expect(line("postgres binaries")).toMatch(/^FAIL .*fake-bin\/postgres not found.* — fix: .*--pg-bin DIR/);
      expect(line("node")).toMatch(/^ok /);
    } finally {
      await minimal.destroy();
    }
    await src.psql("CREATE ROLE doctor_plain LOGIN");
    const plain = src.connectionString().replace(/\/\/[^@]+@/, "//doctor_plain@");
    const r = await pagectl(["doctor", "--source", plain], { PG_BIN });
    expectFailure(r, 1, "bad_state");
    expect(r.stdout).toMatch(
      /^FAIL {2}source role +doctor_plain has neither REPLICATION nor superuser — fix: ALTER ROLE "doctor_plain" REPLICATION;$/m,
    );
    expect(r.stdout).toMatch(/^FAIL {2}source replication connection +refused from here: .* — fix: .*pg_hba\.conf/m);
    expect(r.stdout).toMatch(/^ok {4}source wal_level +replica$/m);
  });

  it("doctor: auth (no token, a token) and remote storage (answers, then not)", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ed25519");
    const keyFile = join(dir, "auth_key.pem");
    writeFileSync(keyFile, publicKey.export({ type: "spki", format: "pem" }));
    const bucket = join(dir, "bucket");
    mkdirSync(bucket);
    const otherLogs = new LogCapture();
    const other = startServer(join(dir, "workdir-other"), { auth_public_key: keyFile, remote_storage: `file://${bucket}` }, otherLogs);
    const otherUrl = `http://127.0.0.1:${await other.start()}`;
    try {
      const noToken = await pagectl(["--server", otherUrl, "doctor"], { PG_BIN });
      expectFailure(noToken, 1, "bad_state");
      expect(noToken.stdout).toMatch(/^FAIL {2}auth +the node wants a token: .* — fix: pass --token JWT \(or PAGESERVER_TOKEN\)$/m);
      const admin = await new SignJWT({ scope: "pageserverapi" }).setProtectedHeader({ alg: "EdDSA" }).setIssuedAt().sign(privateKey);
      const good = await pagectl(["--server", otherUrl, "--token", admin, "doctor"], { PG_BIN });
      expect(good.code, good.stdout + good.stderr).toBe(0);
      expect(good.stdout).toMatch(/^ok {4}auth +the token is accepted$/m);
      expect(good.stdout).toMatch(/^ok {4}remote storage +file:\/\/.*bucket answers$/m);
      // The bucket's directory replaced by a file: the node can't reach its storage.
      rmSync(bucket, { recursive: true });
      writeFileSync(bucket, "not a directory");
      const broken = await pagectl(["--server", otherUrl, "--token", admin, "doctor"], { PG_BIN });
      expectFailure(broken, 1, "bad_state");
      expect(broken.stdout).toMatch(
        /^FAIL {2}remote storage +file:\/\/.* does not answer the node: .* — fix: check the node's remote_storage/m,
      );
    } finally {
      await other.stop();
    }
  });
});
