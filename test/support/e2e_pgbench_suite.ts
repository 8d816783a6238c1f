/**
 * A suite run by more than one test file, each with its own source settings (E2eVariant):
 * test/e2e.pgbench.test.ts (images) and test/e2e.pgbench_plain.test.ts (default WAL settings).
 *
 * End to end with real PostgreSQL 15 and pgbench, the pageserver as a separate process:
 * - a source (the variant's settings) is
 *   initialized with `pgbench -i -s 2`, bootstrapped into a timeline, and streams while
 *   `pgbench -c 4 -T 20` runs, then `-T 8` more; the pageserver is SIGKILLed mid-stream
 *   (while streaming, past the first recorded point) and restarted: it loads the timeline at
 *   the disk_consistent_lsn it had on disk, resumes streaming there from its own slot (which
 *   kept that WAL), and bootstraps nothing again; for LSNs recorded at two intermediate
 *   points (one during each run) and at the end, a
 *   base backup starts a stock PostgreSQL 15 with the same figures, and pg_amcheck is clean;
 * - a branch at an intermediate LSN gets its own endpoint (a PostgreSQL started from the
 *   branch's base backup) as WAL source; the branch serves the endpoint's writes, the parent
 *   is unchanged at every recorded LSN;
 * - bad input: a bad tenant id, an LSN beyond the end, a source that can't serve
 *   replication (wal_level = minimal), a corrupted WAL byte in the stream: clear errors (the corrupt
 *   one names the LSN of the record or page holding the byte, and why), and the server keeps
 *   serving the other timelines: the healthy one ingests past the corrupted LSN.
 */
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readMetadata } from "../../src/tenant/metadata.js";
import { asLsn, lsnToString } from "../../src/types/lsn.js";
import { CorruptingProxy } from "./corrupting_proxy.js";
import type { PageserverProcess } from "./pageserver_process.js";
import { lsnNum, PGBENCH_STATE_SQL, pageserverApi, pgbench, pgbenchPoint, startE2e, stopE2e } from "./e2e_fixture.js";
import { TestEnv } from "./env.js";
import { PgInstance } from "./postgres.js";
import type { E2eVariant } from "./e2e_variant.js";

export function pgbenchSuite(testFile: string, variant: E2eVariant): void {
  const env = new TestEnv(testFile);
  let src: PgInstance;
  let ps: PageserverProcess;
  let dir: string;
  const cleanup: (() => Promise<unknown>)[] = [];

  interface Point {
    lsn: string;
    state: string;
  }
  let tenant = "";
  let main = "";
  const points: Point[] = [];
  const { api, timelineInfo, waitLsn, startBackup } = pageserverApi(() => ps, env, cleanup);

  /** The pageserver's JSON log lines written since byte `from` of its log file. */
  function logLinesSince(from: number): Record<string, unknown>[] {
    const text = readFileSync(ps.logFile).subarray(from).toString("utf8");
    const out: Record<string, unknown>[] = [];
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line of another writer (node warnings); not ours
      }
    }
    return out;
  }

  /**
   * The first log line since byte `from` that `pred` accepts, polled until it appears (the
   * logger writes its file asynchronously) or `bound_ms` passes (then undefined).
   */
  async function awaitLogLine(
    from: number,
    pred: (l: Record<string, unknown>) => boolean,
    bound_ms = 30_000,
  ): Promise<Record<string, unknown> | undefined> {
    const deadline = Date.now() + bound_ms;
    for (;;) {
      const found = logLinesSince(from).find(pred);
      if (found !== undefined || Date.now() >= deadline) return found;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  beforeAll(async () => {
    ({ src, ps, dir } = await startE2e(env, variant.source_conf, "ps-e2e-pgbench-"));
    env.add("pageserver_workdir", ps.workdir);
  });

  afterAll(async () => {
    await stopE2e(cleanup, ps, src, dir);
  });

  describe(`pgbench through the pageserver (${variant.name})`, { timeout: 300_000 }, () => {
    it("streams a pgbench run, survives SIGKILL, and base backups at past LSNs match the source", async () => {
      const init = await pgbench(["-i", "-s", "2", "-q"], src.port);
      expect(init.code, init.stderr).toBe(0);
      tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
      const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
      expect(created.status, JSON.stringify(created.json)).toBe(201);
      main = String(created.json["timeline_id"]);

      const initdbLsn = String(created.json["initdb_lsn"]);
      const slot = `pageserver_${main}`;

      const load = pgbench(["-c", "4", "-j", "2", "-T", "20", "-n"], src.port);
      await new Promise((r) => setTimeout(r, 6000));
      points.push(await pgbenchPoint((sql) => src.psql(sql)));
      await new Promise((r) => setTimeout(r, 3000));
      // Killed mid-stream: streaming, and already past the first recorded point.
      await waitLsn(tenant, main, "last_record_lsn", points[0]!.lsn);
      const before = await timelineInfo(tenant, main);
      expect((before["wal_source"] as Record<string, unknown>)["state"], JSON.stringify(before)).toBe("streaming");
      expect(lsnNum(String(before["last_record_lsn"]))).toBeGreaterThan(lsnNum(points[0]!.lsn));
      await ps.kill();
      // What the killed process had made durable is what it must come back with.
      const onDisk = readMetadata(join(ps.workdir, "tenants", tenant, "timelines", main, "metadata"));
      const durable = lsnToString(onDisk.disk_consistent_lsn);
      expect(onDisk.disk_consistent_lsn).toBeGreaterThanOrEqual(lsnNum(String(before["disk_consistent_lsn"])));
      const logFrom = statSync(ps.logFile).size;
      await ps.start();
      const after = await timelineInfo(tenant, main);
      expect(after["disk_consistent_lsn"], "disk_consistent_lsn after the restart").toBe(durable);
      expect(after["initdb_lsn"]).toBe(initdbLsn);
      expect(
        ((await api("GET", `/v1/tenant/${tenant}/timeline`)).json as unknown as Record<string, unknown>[]).map((t) => t["timeline_id"]),
      ).toEqual([main]);
      // Resumed from its slot at that LSN, not bootstrapped again.
      const resumed = await awaitLogLine(logFrom, (l) => l["msg"] === "streaming WAL" && l["timeline_id"] === main);
      expect(resumed, ps.logTail()).toBeDefined();
      expect(resumed!["slot"]).toBe(slot);
      expect(resumed!["start_lsn"]).toBe(durable);
      expect(logLinesSince(logFrom).filter((l) => l["msg"] === "bootstrapped from base backup")).toEqual([]);
      expect(await src.psql("SELECT string_agg(slot_name, ',') FROM pg_replication_slots WHERE slot_name LIKE 'pageserver_%'")).toBe(slot);
      expect(lsnNum(await src.psql(`SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = '${slot}'`))).toBeLessThanOrEqual(
        onDisk.disk_consistent_lsn,
      );
      const done = await load;
      expect(done.code, done.stderr).toBe(0);
      // More load on the restarted pageserver (the checks above may outlast the first run on a
      // busy machine): a point while it runs, one after.
      const load2 = pgbench(["-c", "4", "-j", "2", "-T", "8", "-n"], src.port);
      await new Promise((r) => setTimeout(r, 3000));
      points.push(await pgbenchPoint((sql) => src.psql(sql)));
      const done2 = await load2;
      expect(done2.code, done2.stderr).toBe(0);
      points.push(await pgbenchPoint((sql) => src.psql(sql)));
      await src.psql("CREATE TABLE after_load (); INSERT INTO after_load DEFAULT VALUES;");
      await waitLsn(tenant, main, "last_record_lsn", points[2]!.lsn);
      expect(new Set(points.map((p) => p.state)).size).toBe(3);

      for (const p of points) {
        const b = await startBackup(tenant, main, p.lsn);
        expect(await b.psql(PGBENCH_STATE_SQL), `figures at ${p.lsn}`).toBe(p.state);
        const chk = await b.amcheck();
        expect(chk.code, chk.out).toBe(0);
        await b.destroy();
      }
    });

    it("a branch streams from its own endpoint; the parent is unchanged", async () => {
      const branchAt = points[0]!;
      const br = await api("POST", `/v1/tenant/${tenant}/timeline`, { ancestor_timeline_id: main, ancestor_start_lsn: branchAt.lsn });
      expect(br.status, JSON.stringify(br.json)).toBe(201);
      const branch = String(br.json["timeline_id"]);
      const endpoint = await startBackup(tenant, branch, branchAt.lsn, variant.endpoint_conf);
      expect(await endpoint.psql(PGBENCH_STATE_SQL)).toBe(branchAt.state);
      const set = await api("PUT", `/v1/tenant/${tenant}/timeline/${branch}/wal_source`, { connstr: endpoint.connectionString() });
      expect(set.status, JSON.stringify(set.json)).toBe(200);

      await endpoint.psql(`
      UPDATE pgbench_accounts SET abalance = abalance + 1000 WHERE aid <= 500;
      CREATE TABLE only_on_branch AS SELECT generate_series(1, 1000) AS x;
      INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, 1, 42, now());`);
      const endState = await pgbenchPoint((sql) => endpoint.psql(sql));
      const extra = await endpoint.psql("SELECT sum(x) FROM only_on_branch");
      await endpoint.psql("CREATE TABLE marker (); INSERT INTO marker DEFAULT VALUES;");
      await waitLsn(tenant, branch, "last_record_lsn", endState.lsn);

      const b = await startBackup(tenant, branch, endState.lsn);
      expect(await b.psql(PGBENCH_STATE_SQL)).toBe(endState.state);
      expect(await b.psql("SELECT sum(x) FROM only_on_branch")).toBe(extra);
      await b.destroy();
      await endpoint.stop();
      for (const p of [points[0]!, points[2]!]) {
        const pb = await startBackup(tenant, main, p.lsn);
        expect(await pb.psql(PGBENCH_STATE_SQL), `parent at ${p.lsn}`).toBe(p.state);
        expect(await pb.psql("SELECT count(*) FROM pg_class WHERE relname = 'only_on_branch'")).toBe("0");
        await pb.destroy();
      }
      await api("DELETE", `/v1/tenant/${tenant}/timeline/${branch}/wal_source`);
    });

    it("bad input gets clear errors and the server keeps serving", async () => {
      const bad = await api("GET", "/v1/tenant/not-a-tenant/timeline");
      expect(bad.status).toBe(400);
      expect(String(bad.json["error"])).toMatch(/^params.tenant_id: expected 32 lower-case hex characters, got "not-a-tenant"$/);

      const conf = await api("PUT", `/v1/tenant/${tenant}/config`, { wait_lsn_timeout: "1s" });
      expect(conf.status, JSON.stringify(conf.json)).toBe(200);
      const beyond = await fetch(`${ps.url}/v1/tenant/${tenant}/timeline/${main}/basebackup?lsn=FF/0`);
      expect(beyond.status).toBe(504);
      expect(await beyond.text()).toMatch(/timed out after 1000 ms waiting for WAL to reach FF\/0/);

      // A source that can't serve replication is refused before anything is created.
      const minimal = await PgInstance.start({ conf: { wal_level: "minimal", max_wal_senders: 0 } });
      cleanup.push(() => minimal.destroy());
      const before = (await api("GET", `/v1/tenant/${tenant}/timeline`)).json;
      const refusedLogFrom = statSync(ps.logFile).size;
      const refused = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: minimal.connectionString() } });
      expect(refused.status, JSON.stringify(refused.json)).toBe(422);
      expect(refused.json["code"]).toBe("source_unavailable");
      // The client gets one message for every failed connect (it must not tell what was probed);
      // the operator finds PostgreSQL's reason in the log.
      expect(String(refused.json["error"])).toBe("cannot connect to the WAL source (the reason is in the pageserver log)");
      const reason = await awaitLogLine(refusedLogFrom, (l) => l["msg"] === "cannot connect to the WAL source");
      expect(JSON.stringify(reason), ps.logTail()).toMatch(/max_wal_senders/);
      expect((await api("GET", `/v1/tenant/${tenant}/timeline`)).json).toEqual(before);

      // A corrupted byte in the WAL stream stops ingest on that timeline only, naming the LSN.
      const proxy = new CorruptingProxy(src.port);
      cleanup.push(() => proxy.stop());
      await proxy.start();
      const viaProxy = `postgresql://postgres@127.0.0.1:${proxy.port}/postgres`;
      const t2 = String((await api("POST", "/v1/tenant", {})).json["id"]);
      const c2 = await api("POST", `/v1/tenant/${t2}/timeline`, { wal_source: { connstr: viaProxy } });
      expect(c2.status, JSON.stringify(c2.json)).toBe(201);
      const tl2 = String(c2.json["timeline_id"]);
      await waitLsn(t2, tl2, "last_record_lsn", await src.psql("SELECT pg_current_wal_insert_lsn()"));
      proxy.armed = true;
      await src.psql("CREATE TABLE after_corruption AS SELECT generate_series(1, 5000) AS x;");
      const afterCorruption = await src.psql("SELECT pg_current_wal_insert_lsn()");
      const deadline = Date.now() + 30_000;
      let ws: Record<string, unknown> = {};
      for (;;) {
        ws = (await timelineInfo(t2, tl2))["wal_source"] as Record<string, unknown>;
        if (ws["state"] === "failed" || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(proxy.corruptedAt).not.toBe(null);
      // Where the flipped byte landed, for a run where ingest did not fail (seen once in CI, 22:37 on
      // 2026-12-07: a byte PostgreSQL's checks may not cover, e.g. page-header padding?).
      const flipped =
        proxy.corruptedByteLsn === null
          ? "none"
          : `${lsnToString(asLsn(proxy.corruptedByteLsn))} (page offset ${proxy.corruptedByteLsn % 8192})`;
      expect(ws["state"], `flipped byte at ${flipped}; wal_source ${JSON.stringify(ws)}`).toBe("failed");
      // The error names the record (or page) that holds the flipped byte, and why it is refused.
      const lastError = String(ws["last_error"]);
      const m = /invalid WAL at ([0-9A-F]+\/[0-9A-F]+): (unexpected pageaddr|incorrect resource manager data checksum in record)\b/.exec(
        lastError,
      );
      expect(m, lastError).not.toBeNull();
      const errLsn = lsnNum(m![1]!);
      const byteLsn = proxy.corruptedByteLsn!;
      if (proxy.corruptedAt! % 8192 === 0) {
        expect(m![2], lastError).toBe("unexpected pageaddr");
        expect(m![1], lastError).toBe(lsnToString(asLsn(proxy.corruptedAt!)));
      } else {
        expect(m![2], lastError).toBe("incorrect resource manager data checksum in record");
        const dump = await src.waldump(["-s", m![1]!, "-n", "1"]);
        const rec = /len \(rec\/tot\):\s*\d+\/\s*(\d+), tx:\s*\d+, lsn: ([0-9A-F]+\/[0-9A-F]+),/.exec(dump.stdout);
        expect(rec, `${dump.stdout}${dump.stderr}`).not.toBeNull();
        expect(lsnNum(rec![2]!), `pg_waldump: ${dump.stdout}`).toBe(errLsn);
        // The record spans the byte (page headers inside it count too).
        const span = Number(rec![1]) + 40 * (1 + Math.ceil(Number(rec![1]) / 8192));
        expect(byteLsn, `flipped byte at ${lsnToString(asLsn(byteLsn))}, record at ${m![1]}`).toBeGreaterThanOrEqual(errLsn);
        expect(byteLsn, `flipped byte at ${lsnToString(asLsn(byteLsn))}, record at ${m![1]}`).toBeLessThan(errLsn + span);
      }
      // The other timelines still serve, and the healthy one ingests past the corrupted LSN.
      expect(lsnNum(afterCorruption)).toBeGreaterThan(byteLsn);
      await waitLsn(tenant, main, "last_record_lsn", afterCorruption);
      const mainInfo = await timelineInfo(tenant, main);
      expect((mainInfo["wal_source"] as Record<string, unknown>)["state"]).toBe("streaming");
      const b = await startBackup(tenant, main, afterCorruption);
      expect(await b.psql(PGBENCH_STATE_SQL)).toBe(points[2]!.state);
      expect(await b.psql("SELECT count(*) || ',' || sum(x) FROM after_corruption")).toBe("5000,12502500");
      await b.destroy();
      expect((await api("GET", "/v1/status")).status).toBe(200);
    });
  });
}
