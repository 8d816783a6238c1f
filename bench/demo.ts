/**
 * `npm run demo`: the whole story on one machine, in one command, bounded (DEMO_BUDGET_MS).
 *
 *   a source PostgreSQL 15 (initdb in a temp dir) ── pgbench ──► WAL ──► the pageserver
 *   (a child process on free ports) bootstraps a timeline from it and keeps streaming;
 *   time T is recorded between two pgbench runs; a branch at T is started as an endpoint
 *   with pagectl; the same queries on the source and the endpoint show the history at T
 *   on the endpoint and the later commits on the source only; a write on the endpoint stays
 *   on the branch; the layer picture (layer_map.svg) is written out.
 *
 * Every step that an operator would do is a real `pagectl` command, printed as it runs.
 * Everything started here (pageserver, source, endpoint, temp dirs) is stopped on the way out:
 * on success, on an error, on Ctrl-C / SIGTERM, and when the budget runs out. Exit 0 only if
 * the story came out as it should (the counts differ as expected).
 *
 * Options: `npm run demo -- --out DIR` (where layer_map.svg goes; default ./demo-output).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { appendFileSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, runPg } from "../test/support/backup_server.js";
import { PgInstance } from "../test/support/postgres.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const PAGECTL = join(ROOT, "src/cli/pagectl.ts");
const PAGESERVER = join(ROOT, "src/main/pageserver.ts");
/** The whole demo, start to finish; past it everything is stopped and the demo fails. */
const DEMO_BUDGET_MS = 170_000;
/**
 * Transactions per pgbench client and run: a count, not a duration, so the story is the same
 * on a slow machine (the branch at T is exact for any count: src/tenant/commit_times.ts keeps
 * every commit's time).
 */
const PGBENCH_TX_PER_CLIENT = 750;
const PGBENCH_CLIENTS = 2;
const INGEST_WAIT_MS = 60_000;
const IS_ROOT = typeof process.getuid === "function" && process.getuid() === 0;

const cleanups: { what: string; fn: () => Promise<unknown> }[] = [];
let cleaning: Promise<void> | null = null;

function say(line = ""): void {
  process.stdout.write(`${line}\n`);
}

function step(title: string): void {
  say();
  say(`== ${title}`);
}

/** Stop everything, newest first; failures are reported, never stop the rest. */
function cleanupAll(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      const c = cleanups.pop()!;
      try {
        await c.fn();
      } catch (e) {
        process.stderr.write(`demo: cleanup '${c.what}' failed: ${e instanceof Error ? e.message : String(e)}\n`);
      }
    }
  })();
  return cleaning;
}

interface Pageserver {
  url: string;
  pg: string;
  child: ChildProcess;
  log: string;
}

async function startPageserver(dir: string): Promise<Pageserver> {
  const port = await freePort();
  const pgPort = await freePort();
  const log = join(dir, "pageserver.log");
  // Its own process group: Ctrl-C in the terminal does not reach it, our cleanup stops it
  // (after the endpoint, which needs it to remove its WAL source).
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      PAGESERVER,
      "--workdir",
      join(dir, "workdir"),
      "--listen",
      `127.0.0.1:${port}`,
      "--listen-pg",
      `127.0.0.1:${pgPort}`,
    ],
    {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    },
  );
  child.stdout!.on("data", (d: Buffer) => appendFileSync(log, d));
  child.stderr!.on("data", (d: Buffer) => appendFileSync(log, d));
  const ps: Pageserver = { url: `http://127.0.0.1:${port}`, pg: `127.0.0.1:${pgPort}`, child, log };
  cleanups.push({
    what: "pageserver",
    fn: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(t);
    },
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the pageserver exited with ${child.exitCode}: ${tail(log)}`);
    try {
      if ((await fetch(`${ps.url}/v1/status`)).status === 200) return ps;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the pageserver did not start: ${tail(log)}`);
    await sleep(100);
  }
}

function tail(path: string, n = 3000): string {
  try {
    return readFileSync(path, "utf8").slice(-n);
  } catch {
    return "";
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Run pagectl as an operator would, printing the command and its output; stdout. */
async function pagectl(
  ps: Pageserver,
  args: string[],
  opts: { quiet?: boolean; allowFail?: boolean; cleanup?: boolean } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  // Once stopping has begun, the story does not go on beside it (it would start what the
  // cleanup just stopped).
  if (cleaning !== null && opts.cleanup !== true) throw new Error("stopping");
  say(`$ pagectl ${args.join(" ")}`);
  const child = spawn(process.execPath, ["--import", "tsx", PAGECTL, "--server", ps.url, "--pg-server", ps.pg, ...args], {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number>((r) => child.once("close", (c) => r(c ?? 1)));
  if (!opts.quiet) for (const l of `${stdout}${stderr}`.trimEnd().split("\n")) if (l.length > 0) say(`  ${l}`);
  if (code !== 0 && !opts.allowFail) throw new Error(`pagectl ${args.join(" ")} exited with ${code}: ${stderr.trim()}`);
  return { code, stdout, stderr };
}

async function psql(port: number, sql: string): Promise<string> {
  const r = await runPg(
    "psql",
    ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", "postgres", "-f", "-"],
    sql,
  );
  if (r.code !== 0) throw new Error(`psql on port ${port}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

async function pgbench(port: number, args: string[]): Promise<void> {
  say(`$ pgbench ${args.join(" ")}   (on the source)`);
  const r = await runPg("pgbench", [...args, "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "postgres"]);
  if (r.code !== 0) throw new Error(`pgbench ${args.join(" ")}: ${r.stderr.trim()}`);
  const tps = /tps = ([\d.]+)/.exec(r.stdout);
  if (tps !== null) say(`  ${tps[1]} transactions per second`);
}

function lsnNum(s: string): number {
  const [hi, lo] = s.split("/").map((x) => Number.parseInt(x, 16)) as [number, number];
  return hi * 2 ** 32 + lo;
}

/** Until the timeline has ingested the source's WAL up to its current insert position. */
async function waitIngested(ps: Pageserver, tenant: string, timeline: string, src: PgInstance): Promise<string> {
  const target = await src.psql("SELECT pg_current_wal_insert_lsn()");
  const deadline = Date.now() + INGEST_WAIT_MS;
  for (;;) {
    const r = await fetch(`${ps.url}/v1/tenant/${tenant}/timeline/${timeline}`);
    const info = (await r.json()) as { last_record_lsn: string };
    if (lsnNum(info.last_record_lsn) >= lsnNum(target)) return info.last_record_lsn;
    if (Date.now() > deadline) throw new Error(`the timeline did not ingest up to ${target} (at ${info.last_record_lsn})`);
    await sleep(200);
  }
}

const COUNTS_SQL = "SELECT (SELECT count(*) FROM pgbench_history) || ' ' || (SELECT sum(abalance) FROM pgbench_accounts)";

async function main(): Promise<void> {
  const outArg = process.argv.indexOf("--out");
  const outDir = resolve(outArg >= 0 && process.argv[outArg + 1] !== undefined ? process.argv[outArg + 1]! : "demo-output");
  mkdirSync(outDir, { recursive: true });
  const dir = mkdtempSync(join(tmpdir(), "pageserver-demo-"));
  // The endpoint's data directory lives here: PostgreSQL runs as `postgres` when we are root.
  if (IS_ROOT)
    chownSync(dir, Number(execFileSync("id", ["-u", "postgres"]).toString()), Number(execFileSync("id", ["-g", "postgres"]).toString()));
  cleanups.push({ what: "temp dir", fn: async () => rmSync(dir, { recursive: true, force: true }) });
  const started_ms = Date.now();

  step("1. a source PostgreSQL 15 and the pageserver");
  const src = await PgInstance.start({ conf: { wal_level: "replica", max_wal_senders: 10, max_replication_slots: 10 } });
  cleanups.push({ what: "source PostgreSQL", fn: () => src.destroy() });
  say(`source PostgreSQL 15 on 127.0.0.1:${src.port} (${src.dataDir})`);
  const ps = await startPageserver(dir);
  say(`pageserver: HTTP ${ps.url}, page service ${ps.pg} (workdir ${join(dir, "workdir")})`);
  await pagectl(ps, ["status"]);

  step("2. pgbench data on the source; a tenant; a timeline bootstrapped from the source");
  await pgbench(src.port, ["-i", "-s", "1", "-q"]);
  // Small layers so that a short demo shows a few of each kind in the picture.
  const tenant = (
    await pagectl(ps, [
      "tenant",
      "create",
      "checkpoint_distance=2097152",
      "compaction_threshold=3",
      "compaction_target_size=2097152",
      "compaction_period=2s",
    ])
  ).stdout.trim();
  const created = await pagectl(ps, ["--json", "timeline", "create", tenant, "--source", src.connectionString()], { quiet: true });
  const main = (JSON.parse(created.stdout) as { timeline_id: string }).timeline_id;
  say(`  timeline ${main}, streaming from the source`);

  const pgbenchRun = ["-c", String(PGBENCH_CLIENTS), "-j", String(PGBENCH_CLIENTS), "-t", String(PGBENCH_TX_PER_CLIENT), "-n"];
  step(`3. pgbench streams in (${PGBENCH_CLIENTS * PGBENCH_TX_PER_CLIENT} transactions), then time T, then as many more`);
  await pgbench(src.port, pgbenchRun);
  await waitIngested(ps, tenant, main, src);
  await sleep(1000);
  const T = new Date().toISOString();
  const atT = await psql(src.port, COUNTS_SQL);
  const lsnAtT = await src.psql("SELECT pg_current_wal_insert_lsn()");
  say(`T = ${T}: pgbench_history has ${atT.split(" ")[0]} rows (source WAL at ${lsnAtT})`);
  await sleep(1000);
  await pgbench(src.port, pgbenchRun);
  const ingested = await waitIngested(ps, tenant, main, src);
  say(`the timeline has ingested the source's WAL up to ${ingested}`);

  step("4. the LSN at T, and an endpoint on a branch at T");
  await pagectl(ps, ["lsn-by-time", tenant, main, T]);
  const epDir = join(dir, "endpoint");
  const epPort = await freePort();
  cleanups.push({
    what: "endpoint",
    fn: () =>
      pagectl(ps, ["endpoint", "stop", "--pgdata", epDir], { allowFail: true, cleanup: true }).then((r) =>
        r.code === 0 ? undefined : runPg("pg_ctl", ["-D", epDir, "-m", "immediate", "stop"]),
      ),
  });
  const ep = await pagectl(
    ps,
    [
      "--json",
      "endpoint",
      "start",
      "--tenant",
      tenant,
      "--timeline",
      main,
      "--at",
      T,
      "--pgdata",
      epDir,
      "--port",
      String(epPort),
      "--conf",
      "fsync=off",
      "--conf",
      "shared_buffers=16MB",
    ],
    {
      quiet: true,
    },
  );
  const epInfo = JSON.parse(ep.stdout) as { timeline_id: string; lsn: string; wal_source_state: string };
  const branch = epInfo.timeline_id;
  say(
    `  endpoint on 127.0.0.1:${epPort}: branch ${branch} at ${epInfo.lsn} (the last commit at or before T); pageserver ${epInfo.wal_source_state} from it`,
  );

  step("5. the same queries on the source and on the endpoint");
  const onSource = await psql(src.port, COUNTS_SQL);
  const onEndpoint = await psql(epPort, COUNTS_SQL);
  const [srcRows, srcSum] = onSource.split(" ");
  const [epRows, epSum] = onEndpoint.split(" ");
  const [tRows, tSum] = atT.split(" ");
  say("  where       pgbench_history rows  sum(abalance)");
  say(`  source      ${srcRows!.padStart(20)}  ${srcSum!.padStart(13)}`);
  say(`  endpoint    ${epRows!.padStart(20)}  ${epSum!.padStart(13)}`);
  say(`  (at T       ${tRows!.padStart(20)}  ${tSum!.padStart(13)})`);
  const asExpected = onEndpoint === atT && Number(srcRows) > Number(epRows);
  say(
    asExpected
      ? "  the endpoint shows the database as it was at T; the source has the later commits too"
      : "  UNEXPECTED: the endpoint does not show the database at T",
  );
  await psql(epPort, "CREATE TABLE only_on_the_branch AS SELECT g FROM generate_series(1, 1000) g");
  const onBranch = await psql(epPort, "SELECT count(*) FROM only_on_the_branch");
  const onSrc = await psql(src.port, "SELECT count(*) FROM pg_class WHERE relname = 'only_on_the_branch'");
  say(`  a table created on the endpoint: ${onBranch} rows there, ${onSrc === "0" ? "absent" : "present"} on the source`);

  step("6. the layers of the main timeline and their picture");
  await pagectl(ps, ["timeline", "checkpoint", tenant, main]);
  await pagectl(ps, ["timeline", "compact", tenant, main, "--force-images"]);
  const layers = JSON.parse((await pagectl(ps, ["--json", "timeline", "layers", tenant, main], { quiet: true })).stdout) as {
    level: string;
    in_memory: string | null;
  }[];
  const by = new Map<string, number>();
  for (const l of layers) by.set(l.in_memory ?? l.level, (by.get(l.in_memory ?? l.level) ?? 0) + 1);
  const layerSummary = `${layers.length} layers (${[...by].map(([k, n]) => `${n} ${k}`).join(", ")})`;
  say(`  ${layerSummary}`);
  const svgPath = join(outDir, "layer_map.svg");
  const drawn = JSON.parse((await pagectl(ps, ["--json", "timeline", "draw", tenant, main, "-o", svgPath], { quiet: true })).stdout) as {
    layers: number;
  };
  const pictureLine = `the layer picture: ${svgPath} (${drawn.layers} layers drawn by key range and LSN range; the branch point at T and the GC cutoff marked)`;
  say(`  ${pictureLine}`);
  await pagectl(ps, ["timeline", "list", tenant]);

  step("7. stopping everything");
  await pagectl(ps, ["endpoint", "stop", "--pgdata", epDir]);
  cleanups.splice(
    cleanups.findIndex((c) => c.what === "endpoint"),
    1,
  );
  await cleanupAll();

  step("summary");
  say(`source: pgbench, ${srcRows} history rows; timeline ${main} streamed it in (up to ${ingested})`);
  say(`T = ${T}: ${tRows} rows; branch ${branch} at T (--at), at ${epInfo.lsn}`);
  say(`endpoint on the branch: ${epRows} rows (source: ${srcRows}): ${asExpected ? "as expected" : "NOT as expected"}`);
  say(`layers of the main timeline: ${layerSummary}`);
  say(pictureLine);
  say(`done in ${((Date.now() - started_ms) / 1000).toFixed(1)} s; everything started was stopped`);
  if (!asExpected) throw new Error("the endpoint did not show the database at T");
}

/**
 * Ctrl-C reaches every process of the terminal's group at once, and npm / tsx forward it
 * again: the first signal starts the cleanup, later ones only wait for it (a default handler
 * would kill us half way, leaving the source running).
 */
function onSignal(sig: NodeJS.Signals): void {
  if (cleaning !== null) {
    process.stderr.write(`demo: ${sig}: still stopping everything\n`);
    return;
  }
  process.stderr.write(`\ndemo: ${sig}: stopping everything\n`);
  void cleanupAll().then(() => process.exit(130));
}
process.on("SIGINT", onSignal);
process.on("SIGTERM", onSignal);

const budget = setTimeout(() => {
  process.stderr.write(`demo: over its budget of ${DEMO_BUDGET_MS / 1000} s: stopping everything\n`);
  void cleanupAll().then(() => process.exit(1));
}, DEMO_BUDGET_MS);
budget.unref();

try {
  await main();
  clearTimeout(budget);
} catch (e) {
  process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
  await cleanupAll();
  process.exitCode = 1;
}
