/**
 * WAL-source connection safety with real PostgreSQL 15 (issue 16, items 2 and 6, "Smaller"):
 * - a key=value connstr (libpq's other form) bootstraps and streams like a URI;
 * - passwords (URI userinfo, ?password=, key=value, quoted) never show in timeline info,
 *   the PUT reply, or `pagectl timeline show`;
 * - both forms are read as libpq reads them (psql logs in with each string used);
 * - no ambient credentials: with PGPASSWORD / PGPASSFILE / PGUSER / PGOPTIONS / PGSSLMODE set
 *   in the node's environment, a connstr without a password is refused by a source that
 *   wants one, and one with its password works (and PGSSLMODE=require is not applied);
 * - a unix-socket host is refused (400) unless the node sets wal_source_unix_sockets;
 * - a failed connect answers one message whatever the reason (closed port, another
 *   protocol, unknown host, bad password); the reasons are in the log.
 * Concurrent PUTs of wal_source: test/e2e.wal_source.test.ts.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { SOURCE_UNAVAILABLE_MESSAGE } from "../src/main/wal_source/source_connect.js";
import { parseLsn } from "../src/types/lsn.js";
import { TestEnv } from "./support/env.js";
import { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 8, max_replication_slots: 8, password_encryption: "scram-sha-256" };
const PW_ROLE = "ps_pw";
const PW = "s3cret pw'x";
const PAGECTL = fileURLToPath(new URL("../src/cli/pagectl.ts", import.meta.url));
/** The node's environment a source must never get credentials or settings from. */
const AMBIENT: Record<string, string> = {
  PGPASSWORD: PW,
  PGUSER: PW_ROLE,
  PGOPTIONS: "-c work_mem=4242kB",
  PGSSLMODE: "require",
};

const env = new TestEnv(fileURLToPath(import.meta.url));
let src: PgInstance;
let server: Server | null = null;
let workdir: string;
let base: string;
let tenant: string;
const saved: Record<string, string | undefined> = {};
const logFile = (): string => join(workdir, "pageserver.log");

async function startServer(extra: Record<string, unknown> = {}): Promise<void> {
  const log = pino({ level: "info" }, pino.destination({ dest: logFile(), sync: true, append: true }));
  server = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", ...extra }), log);
  base = `http://127.0.0.1:${await server.start()}`;
}

async function api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {}, text };
}

async function waitFor<T>(what: string, fn: () => Promise<T | null>, timeout_ms = 60_000): Promise<T> {
  const deadline = Date.now() + timeout_ms;
  for (;;) {
    const v = await fn();
    if (v !== null) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

type SourceStatus = { connstr: string; state: string; last_error: string | null };
const status = async (tl: string): Promise<SourceStatus> =>
  (await api("GET", `/v1/tenant/${tenant}/timeline/${tl}`)).json["wal_source"] as SourceStatus;
const waitStreaming = (tl: string): Promise<SourceStatus> =>
  waitFor(`timeline ${tl} streaming`, async () => {
    const s = await status(tl);
    return s?.state === "streaming" ? s : null;
  });

/** A timeline bootstrapped from `connstr`; its id. */
async function bootstrap(connstr: string): Promise<string> {
  const r = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr } });
  expect(r.status, r.text).toBe(201);
  return String(r.json["timeline_id"]);
}

async function pagectlShow(tl: string): Promise<string> {
  const child = spawn(process.execPath, ["--import", "tsx", PAGECTL, "--server", base, "timeline", "show", tenant, tl], {
    stdio: ["ignore", "pipe", "pipe"],
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !(k in AMBIENT) && k !== "PGPASSFILE")),
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const code = await new Promise<number>((r) => child.once("close", (c) => r(c ?? -1)));
  expect(code, out).toBe(0);
  return out;
}

/**
 * psql on the source without the ambient settings (psql would use them too): the swap is
 * synchronous up to the child's spawn, so the server never runs without them.
 */
function withoutAmbient<T>(spawnNow: () => Promise<T>): Promise<T> {
  const keep: Record<string, string | undefined> = {};
  for (const k of [...Object.keys(AMBIENT), "PGPASSFILE"]) {
    keep[k] = process.env[k];
    delete process.env[k];
  }
  try {
    return spawnNow();
  } finally {
    for (const [k, v] of Object.entries(keep)) if (v !== undefined) process.env[k] = v;
  }
}
const sql = (q: string): Promise<string> => withoutAmbient(() => src.psql(q));
/** libpq itself (psql) logs in with `connstr`: the string is one libpq reads the same way. */
const libpqLogsIn = async (connstr: string): Promise<string> =>
  (await withoutAmbient(() => src.runChecked("psql", ["-X", "-A", "-t", "-d", connstr, "-c", "SELECT current_user"]))).trim();

const walsendersOf = async (tl: string): Promise<number> =>
  Number(await sql(`SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pageserver_${tl}'`));

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  env.add("source.log", src.logFile);
  // A role that must log in with its password over TCP; everyone else as before (trust).
  await src.psql(`CREATE ROLE ${PW_ROLE} LOGIN REPLICATION PASSWORD '${PW.replace(/'/g, "''")}'; CREATE TABLE t (x int)`);
  const hba = join(src.dataDir, "pg_hba.conf");
  writeFileSync(
    hba,
    `host replication ${PW_ROLE} 127.0.0.1/32 scram-sha-256\nhost all ${PW_ROLE} 127.0.0.1/32 scram-sha-256\n${readFileSync(hba, "utf8")}`,
  );
  await src.psql("SELECT pg_reload_conf()");
  workdir = mkdtempSync(join(tmpdir(), "ps-e2e-wss-"));
  env.add("pageserver.log", logFile());
  // A ~/.pgpass with the password, through PGPASSFILE (pg's pgpass reads it).
  const passfile = join(workdir, "pgpass");
  writeFileSync(passfile, `*:*:*:${PW_ROLE}:${PW.replace(/\\/g, "\\\\").replace(/:/g, "\\:")}\n`, { mode: 0o600 });
  for (const [k, v] of Object.entries({ ...AMBIENT, PGPASSFILE: passfile })) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  await startServer();
  tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
});

afterAll(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await server?.stop();
  await src?.destroy();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

describe("WAL source connection safety", { timeout: 300_000 }, () => {
  it("a key=value connstr bootstraps and streams; passwords never show (info, PUT reply, pagectl)", async () => {
    const kv = `host=${src.host} port=${src.port} user=${PW_ROLE} dbname=postgres password='${PW.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
    const tl = await bootstrap(kv);
    const s = await waitStreaming(tl);
    expect(s.connstr).toBe(`host=${src.host} port=${src.port} user=${PW_ROLE} dbname=postgres password=***`);
    await sql("INSERT INTO t SELECT generate_series(1, 100)");
    const lsn = parseLsn(await sql("SELECT pg_current_wal_insert_lsn()"));
    await waitFor("ingest", async () =>
      parseLsn(String((await api("GET", `/v1/tenant/${tenant}/timeline/${tl}`)).json["last_record_lsn"])) >= lsn - 8192 ? true : null,
    );

    const secret = "s3cret";
    const forms = [
      `postgresql://${PW_ROLE}:${encodeURIComponent(PW)}@${src.host}:${src.port}/postgres`,
      `postgresql://${PW_ROLE}@${src.host}:${src.port}/postgres?password=${encodeURIComponent(PW)}`,
      `host=${src.host} port=${src.port} user=${PW_ROLE} dbname=postgres password=${PW.replace(/ /g, "\\ ").replace(/'/g, "\\'")}`,
    ];
    for (const connstr of [kv, ...forms]) expect(await libpqLogsIn(connstr)).toBe(PW_ROLE);
    for (const connstr of forms) {
      const put = await api("PUT", `/v1/tenant/${tenant}/timeline/${tl}/wal_source`, { connstr });
      expect(put.status, put.text).toBe(200);
      expect(put.text).not.toContain(secret);
      expect(String(put.json["connstr"])).toContain("***");
      await waitStreaming(tl);
      expect((await api("GET", `/v1/tenant/${tenant}/timeline/${tl}`)).text).not.toContain(secret);
      expect((await api("GET", `/v1/tenant/${tenant}/timeline`)).text).not.toContain(secret);
      const shown = await pagectlShow(tl);
      expect(shown).toContain("***");
      expect(shown).not.toContain(secret);
    }
  });

  it("no ambient credentials or settings: PGPASSWORD, PGPASSFILE, PGUSER, PGOPTIONS and PGSSLMODE are not used", async () => {
    const tl = await bootstrap(`postgresql://${PW_ROLE}:${encodeURIComponent(PW)}@${src.host}:${src.port}/postgres`);
    await waitStreaming(tl);
    // With PGSSLMODE=require applied this would have failed: the source has no SSL.
    expect(await walsendersOf(tl)).toBe(1);
    for (const connstr of [
      `postgresql://${PW_ROLE}@${src.host}:${src.port}/postgres`,
      `host=${src.host} port=${src.port} user=${PW_ROLE}`,
    ]) {
      const put = await api("PUT", `/v1/tenant/${tenant}/timeline/${tl}/wal_source`, { connstr });
      expect(put.status, put.text).toBe(422);
      expect(put.json).toEqual({ error: SOURCE_UNAVAILABLE_MESSAGE, code: "source_unavailable" });
    }
    // No user in the connstr: refused, PGUSER is not asked.
    const noUser = await api("PUT", `/v1/tenant/${tenant}/timeline/${tl}/wal_source`, { connstr: `host=${src.host} port=${src.port}` });
    expect(noUser.status, noUser.text).toBe(400);
    expect(String(noUser.json["error"])).toMatch(/must name a user/);
    expect((await status(tl)).state).toBe("streaming");
    const log = readFileSync(logFile(), "utf8");
    expect(log).toMatch(/asks for a password and the connection string gives none/);
    expect(log).not.toContain("s3cret");
  });

  it("a failed connect answers one message whatever the reason; the reasons are in the log", async () => {
    const tl = (await api("GET", `/v1/tenant/${tenant}/timeline`)).json as unknown as { timeline_id: string }[];
    const target = tl[0]!.timeline_id;
    const httpPort = new URL(base).port;
    const probes = [
      `postgresql://postgres@127.0.0.1:1/postgres`, // closed port
      `postgresql://postgres@127.0.0.1:${httpPort}/postgres`, // not PostgreSQL
      `postgresql://postgres@no-such-host.invalid:5432/postgres`, // no such host
      `postgresql://${PW_ROLE}:wrong@${src.host}:${src.port}/postgres`, // bad password
    ];
    const bodies = [];
    for (const connstr of probes) {
      const r = await api("PUT", `/v1/tenant/${tenant}/timeline/${target}/wal_source`, { connstr });
      expect(r.status, r.text).toBe(422);
      bodies.push(r.text);
    }
    expect(new Set(bodies).size).toBe(1);
    expect(JSON.parse(bodies[0]!)).toEqual({ error: SOURCE_UNAVAILABLE_MESSAGE, code: "source_unavailable" });
    const log = readFileSync(logFile(), "utf8");
    for (const reason of [/ECONNREFUSED/, /ENOTFOUND|EAI_AGAIN/, /password authentication failed/]) expect(log).toMatch(reason);
  });

  it("a unix-socket host is refused unless the node sets wal_source_unix_sockets", async () => {
    const target = ((await api("GET", `/v1/tenant/${tenant}/timeline`)).json as unknown as { timeline_id: string }[])[0]!.timeline_id;
    for (const connstr of [
      `host=${src.socketDir} port=${src.port} user=postgres`,
      `postgresql:///postgres?host=${encodeURIComponent(src.socketDir)}&port=${src.port}&user=postgres`,
      `postgresql://postgres@%2Ftmp/postgres`,
    ]) {
      const r = await api("PUT", `/v1/tenant/${tenant}/timeline/${target}/wal_source`, { connstr });
      expect(r.status, r.text).toBe(400);
      expect(String(r.json["error"])).toMatch(/unix socket/);
    }
    const created = await api("POST", `/v1/tenant/${tenant}/timeline`, {
      wal_source: { connstr: `host=${src.socketDir} port=${src.port} user=postgres` },
    });
    expect(created.status, created.text).toBe(400);

    await server!.stop();
    await startServer({ wal_source_unix_sockets: true });
    const tl = await bootstrap(`host=${src.socketDir} port=${src.port} user=postgres`);
    await waitStreaming(tl);
    await server!.stop();
    await startServer();
  });
});
