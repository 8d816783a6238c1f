/**
 * `pagectl endpoint start|stop|list`: a stock PostgreSQL 15 on a timeline, its WAL streamed
 * back into that timeline; list: the endpoints this user's pagectl started (endpoint.ts
 * registers each), running or not.
 *
 * start: (with --lsn / --at / --branch: first a branch of the timeline there) → base backup of
 * the target timeline at its last record LSN → unpacked into --pgdata (tablespaces in place,
 * or moved to --tablespace-mapping's NEW with a symlink) → endpoint settings →
 * pg_ctl start (as `postgres` when root) → `PUT …/wal_source` with the endpoint's connstr
 * (the pageserver probes it, creates its slot and streams). A timeline that already streams
 * from a source is refused: two writers on one timeline would fork its history.
 * stop: pg_ctl stop -m fast first (the shutdown waits until the pageserver reported every
 * byte of WAL flushed, so the timeline holds every commit), then `DELETE …/wal_source`.
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import { HttpApiError, type PageserverHttpClient } from "../client/http_client.js";
import type { TimelineInfo } from "../protocol/http_models.js";
import { ConflictError } from "../types/errors.js";
import { argInt, argLsn, argRef, argSettings, argTime, UsageError } from "./args.js";
import { type Cli, cliOf } from "./context.js";
import {
  applyTablespaceMappings,
  checkReachable,
  emptyDataDir,
  type EndpointRecord,
  findPgBinDir,
  handToPostgres,
  listRegisteredEndpoints,
  parseTablespaceMapping,
  pgRunning,
  pgStart,
  pgStop,
  prepareDataDir,
  readEndpointRecord,
  registerEndpoint,
  type TablespaceMapping,
  untar,
  writeEndpointConf,
  writeEndpointRecord,
} from "./endpoint.js";
import { byteProgress, progressWanted } from "./progress.js";
import { formatBytes, formatRecord, formatTable } from "./table.js";

/** What an endpoint runs: pg_ctl (which starts postgres); `postgres --version` tells the version. */
const ENDPOINT_BINARIES = ["postgres", "pg_ctl"] as const;

/** How long start waits for the pageserver to be streaming from the new endpoint. */
const STREAMING_WAIT_MS = 30_000;

interface StartOptions {
  tenant: string;
  timeline: string;
  lsn?: string;
  at?: string;
  branch?: boolean;
  pgdata: string;
  port: string;
  pgUser: string;
  conf: string[];
  tablespaceMapping: string[];
  progress?: boolean;
}

async function waitStreaming(api: PageserverHttpClient, tenant: string, timeline: string): Promise<TimelineInfo> {
  const deadline = Date.now() + STREAMING_WAIT_MS;
  for (;;) {
    const info = await api.getTimeline(tenant, timeline);
    if (info.wal_source?.state === "streaming" || Date.now() > deadline) return info;
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function start(cli: Cli, o: StartOptions): Promise<void> {
  const tenantRef = argRef("--tenant", o.tenant);
  const baseRef = argRef("--timeline", o.timeline);
  const port = argInt("--port", o.port, 1, 65535);
  const extra = argSettings(o.conf);
  const pgdata = resolve(o.pgdata);
  const branching = [o.lsn !== undefined, o.at !== undefined, o.branch === true].filter(Boolean).length;
  if (branching > 1) throw new UsageError("--lsn, --at and --branch exclude each other");
  const lsnArg = o.lsn === undefined ? undefined : argLsn("--lsn", o.lsn);
  const atArg = o.at === undefined ? undefined : argTime("--at", o.at);
  const mappings: TablespaceMapping[] = o.tablespaceMapping.map((m) => {
    try {
      return parseTablespaceMapping(m);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
  });
  const bindir = findPgBinDir(cli.opts.pgBin, ENDPOINT_BINARIES);
  const [tenant, base] = await cli.ids(tenantRef, baseRef);
  prepareDataDir(pgdata);
  handToPostgres(pgdata);
  await checkReachable(pgdata);

  // The timeline the endpoint writes to: a new branch, or the given one if nothing streams into it.
  let target: TimelineInfo;
  let created = false;
  if (branching === 1) {
    target = await cli.api.createTimeline(tenant, {
      ancestor_timeline_id: base,
      ...(lsnArg === undefined ? {} : { ancestor_start_lsn: lsnArg }),
      ...(atArg === undefined ? {} : { ancestor_start_time: atArg }),
    });
    created = true;
    cli.note(
      `created branch ${target.timeline_id} of ${base} at ${target.ancestor_lsn}${atArg === undefined ? "" : `, the last commit at or before ${atArg}`}`,
    );
  } else {
    target = await cli.api.getTimeline(tenant, base);
    const src = target.wal_source;
    if (src !== null && src.state === "streaming") {
      throw new ConflictError(`timeline ${base} streams from ${src.connstr}: start the endpoint on a branch (--lsn, --at or --branch)`);
    }
  }
  const timeline = target.timeline_id;
  const lsn = target.last_record_lsn;

  let started = false;
  let sourceSet = false;
  /** Tablespace directories moved out of --pgdata: emptied with it when the start fails. */
  let mapped: string[] = [];
  // Ctrl-C half way: undo what was done (as the catch below), then exit 130.
  const interrupted = (sig: NodeJS.Signals): void => {
    process.stderr.write(`pagectl: ${sig}: undoing the endpoint start\n`);
    void (async () => {
      if (sourceSet) await cli.api.deleteWalSource(tenant, timeline).catch(() => undefined);
      if (started && (await pgRunning(bindir, pgdata))) await pgStop(bindir, pgdata).catch(() => undefined);
      emptyDataDir(pgdata);
      for (const m of mapped) emptyDataDir(m);
      process.exit(130);
    })();
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    const reply = await cli.api.basebackup(tenant, timeline, lsn);
    const bar = byteProgress(progressWanted(o.progress) && !cli.json, "base backup", reply.size_bytes);
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const c of reply.body) {
        bar.add(c.byteLength);
        yield c;
      }
    }
    let unpacked: { files: number; size_bytes: number };
    try {
      unpacked = await untar(counted(), pgdata);
    } finally {
      bar.stop();
    }
    mapped = applyTablespaceMappings(pgdata, mappings).map((x) => x.to);
    for (const m of mapped) cli.note(`tablespace moved to ${m}`);
    writeEndpointConf(pgdata, port, extra);
    const connstr = `postgresql://${encodeURIComponent(o.pgUser)}@127.0.0.1:${port}/postgres`;
    const record: EndpointRecord = {
      tenant_id: tenant,
      timeline_id: timeline,
      server: cli.api.url,
      port,
      lsn,
      connstr,
      branch_created: created,
      started_at: new Date().toISOString(),
    };
    writeEndpointRecord(pgdata, record);
    handToPostgres(pgdata);
    started = true;
    await pgStart(bindir, pgdata);
    registerEndpoint(pgdata);
    sourceSet = true;
    await cli.api.setWalSource(tenant, timeline, connstr);
    const info = await waitStreaming(cli.api, tenant, timeline);
    const state = info.wal_source?.state ?? "none";
    if (state !== "streaming")
      cli.note(`warning: the pageserver is not streaming from the endpoint yet (${state}: ${info.wal_source?.last_error ?? "no error"})`);
    const out = { ...record, pgdata, base_backup_bytes: unpacked.size_bytes, wal_source_state: state };
    cli.print(out, () =>
      formatRecord({
        tenant_id: tenant,
        timeline_id: timeline,
        branch: created ? `created at ${lsn} from ${base}` : "no (the timeline itself)",
        lsn,
        pgdata,
        port,
        connstr,
        base_backup: `${unpacked.files} files, ${formatBytes(unpacked.size_bytes)}`,
        wal_source: state,
      }),
    );
  } catch (e) {
    // Leave nothing running and an empty --pgdata, so the same command can be run again.
    if (sourceSet) await cli.api.deleteWalSource(tenant, timeline).catch(() => undefined);
    if (started && (await pgRunning(bindir, pgdata))) await pgStop(bindir, pgdata).catch(() => undefined);
    emptyDataDir(pgdata);
    for (const m of mapped) emptyDataDir(m);
    if (created)
      cli.note(`the branch ${timeline} created for this endpoint is kept (pagectl timeline delete ${tenant} ${timeline} removes it)`);
    throw e;
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
  }
}

async function stop(cli: Cli, o: { pgdata: string; keepSource?: boolean }, serverGiven: boolean): Promise<void> {
  const pgdata = resolve(o.pgdata);
  const rec = readEndpointRecord(pgdata);
  const bindir = findPgBinDir(cli.opts.pgBin, ENDPOINT_BINARIES);
  const api = serverGiven ? cli.api : cli.httpClient(rec.server);
  const running = await pgRunning(bindir, pgdata);
  const stopped = running ? await pgStop(bindir, pgdata) : { fast: true, message: "was not running" };
  let source: Record<string, unknown> = { removed: false };
  if (o.keepSource !== true) {
    try {
      source = await api.deleteWalSource(rec.tenant_id, rec.timeline_id);
    } catch (e) {
      // Already removed (or the timeline is gone): nothing streams from this endpoint.
      if (!(e instanceof HttpApiError && e.code === "not_found")) throw e;
      source = { removed: false, reason: e.message };
    }
  }
  const info = await api.getTimeline(rec.tenant_id, rec.timeline_id).catch(() => null);
  const out = {
    pgdata,
    tenant_id: rec.tenant_id,
    timeline_id: rec.timeline_id,
    stopped: running,
    fast_shutdown: stopped.fast,
    wal_source: source,
    last_record_lsn: info?.last_record_lsn ?? null,
    disk_consistent_lsn: info?.disk_consistent_lsn ?? null,
  };
  cli.print(out, () =>
    formatRecord({
      pgdata,
      timeline_id: rec.timeline_id,
      postgres: running ? (stopped.fast ? "stopped (fast)" : stopped.message) : "was not running",
      wal_source:
        source["removed"] === true
          ? `removed${source["slot_dropped"] === true ? "" : " (its slot stays in the stopped data directory)"}`
          : o.keepSource
            ? "kept"
            : "none",
      last_record_lsn: out.last_record_lsn,
      disk_consistent_lsn: out.disk_consistent_lsn,
    }),
  );
}

export function registerEndpointCommands(program: Command): void {
  const ep = program
    .command("endpoint")
    .description("a stock PostgreSQL 15 on a timeline (from its base backup), streaming its WAL back into it");
  ep.command("start")
    .description("start an endpoint on a timeline (or on a new branch of it at --lsn / --at / --branch)")
    .requiredOption("--tenant <tenant>", "tenant id or name")
    .requiredOption("--timeline <timeline>", "timeline id or name")
    .option("--lsn <lsn>", "branch the timeline at this LSN and start the endpoint on the branch")
    .option(
      "--at <time>",
      "branch where PostgreSQL's recovery_target_time would stop: after the last commit at or before this time (RFC 3339)",
    )
    .option("--branch", "branch at the timeline's latest LSN")
    .requiredOption("--pgdata <dir>", "the endpoint's data directory (absent or empty)")
    .requiredOption("--port <port>", "its TCP port (it listens on 127.0.0.1)")
    .option("--pg-user <name>", "the superuser the pageserver replicates as", "postgres")
    .option("--conf <key=value>", "extra postgresql.conf setting (repeatable)", (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option(
      "--tablespace-mapping <OLD=NEW>",
      "put the tablespace whose original LOCATION (or OID) is OLD in the absolute directory NEW, with a symlink in pg_tblspc, as pg_basebackup does (repeatable; default: tablespaces in place under pg_tblspc/<oid>)",
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option("--progress", "show the base backup's progress on stderr (default: when stderr is a terminal)")
    .action(async (o: StartOptions, cmd: Command) => {
      await start(cliOf(cmd), o);
    });
  ep.command("stop")
    .description("stop an endpoint (fast shutdown: the timeline gets every commit) and remove it as the timeline's WAL source")
    .requiredOption("--pgdata <dir>")
    .option("--keep-source", "leave the WAL source configured (the pageserver retries until the endpoint runs again)")
    .action(async (o: { pgdata: string; keepSource?: boolean }, cmd: Command) => {
      await stop(cliOf(cmd), o, cmd.getOptionValueSourceWithGlobals("server") !== "default");
    });
  ep.command("list")
    .description("the endpoints pagectl started (whose data directories still hold them): tenant, timeline, port, pid, running or not")
    .action((_o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const list = listRegisteredEndpoints().map((e) => ({
        pgdata: e.pgdata,
        tenant_id: e.record.tenant_id,
        timeline_id: e.record.timeline_id,
        port: e.record.port,
        pid: e.pid,
        running: e.pid !== null,
        server: e.record.server,
        started_at: e.record.started_at,
      }));
      cli.print(list, () =>
        list.length === 0
          ? "no endpoints"
          : formatTable(list, [
              { header: "pgdata", value: (e) => e.pgdata },
              { header: "tenant_id", value: (e) => e.tenant_id },
              { header: "timeline_id", value: (e) => e.timeline_id },
              { header: "port", value: (e) => e.port, right: true },
              { header: "pid", value: (e) => e.pid, right: true },
              { header: "state", value: (e) => (e.running ? "running" : "stopped") },
            ]),
      );
    });
}
