/**
 * A source streaming into the pageserver can be stopped cleanly (issue 7, item 7). At a fast
 * shutdown PostgreSQL's walsender waits until the flush position the standby reports reaches
 * the end of WAL; ours is disk_consistent_lsn. An endpoint (a stock PostgreSQL 15 started
 * from a branch's base backup, set as the branch's WAL source) runs pgbench; then:
 * - idle for a few seconds, the branch flushes by itself and reports it (pg_stat_replication
 *   on the endpoint shows our flush position at its end of WAL);
 * - more pgbench, then `pg_ctl stop -m fast -t 30` succeeds (the shutdown checkpoint record
 *   makes the pageserver flush and report at once), and the branch holds every commit.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runPg } from "./support/backup_server.js";
import { lsnNum, PGBENCH_STATE_SQL as STATE_SQL, pageserverApi, pgbench, startE2e, stopE2e } from "./support/e2e_fixture.js";
import { TestEnv } from "./support/env.js";
import type { PageserverProcess } from "./support/pageserver_process.js";
import type { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = {
  wal_level: "replica",
  wal_compression: "lz4",
  max_wal_senders: 10,
  max_replication_slots: 10,
};
const ENDPOINT_CONF = { wal_level: "replica", max_wal_senders: "5", max_replication_slots: "5" };

const env = new TestEnv(fileURLToPath(import.meta.url));
let src: PgInstance;
let ps: PageserverProcess;
let dir: string;
const cleanup: (() => Promise<unknown>)[] = [];
const { api, timelineInfo: info, waitLsn, startBackup: backup } = pageserverApi(() => ps, env, cleanup);

beforeAll(async () => {
  ({ src, ps, dir } = await startE2e(env, SOURCE_CONF, "ps-e2e-endpoint-stop-"));
});

afterAll(async () => {
  await stopE2e(cleanup, ps, src, dir);
});

describe("stopping a source that streams into the pageserver", { timeout: 300_000 }, () => {
  it("an idle stream gets flushed and reported; pg_ctl stop -m fast succeeds and the branch holds every commit", async () => {
    const init = await pgbench(["-i", "-s", "1", "-q"], src.port);
    expect(init.code, init.stderr).toBe(0);
    const tenant = String((await api("POST", "/v1/tenant", {})).json["id"]);
    const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, JSON.stringify(created.json)).toBe(201);
    const main = String(created.json["timeline_id"]);
    const at = (await src.psql("SELECT pg_current_wal_insert_lsn()")).trim();
    await waitLsn(tenant, main, "last_record_lsn", at);

    const br = await api("POST", `/v1/tenant/${tenant}/timeline`, { ancestor_timeline_id: main, ancestor_start_lsn: at });
    expect(br.status, JSON.stringify(br.json)).toBe(201);
    const branch = String(br.json["timeline_id"]);
    const endpoint = await backup(tenant, branch, at, ENDPOINT_CONF);
    env.add("endpoint.log", endpoint.log);
    const set = await api("PUT", `/v1/tenant/${tenant}/timeline/${branch}/wal_source`, { connstr: endpoint.connectionString() });
    expect(set.status, JSON.stringify(set.json)).toBe(200);

    // Idle after a load: the branch flushes by itself and the endpoint sees it.
    const run1 = await pgbench(["-c", "2", "-j", "2", "-T", "4", "-n"], endpoint.port);
    expect(run1.code, run1.stderr).toBe(0);
    const end1 = (await endpoint.psql("SELECT pg_current_wal_flush_lsn()")).trim();
    await waitLsn(tenant, branch, "disk_consistent_lsn", end1, 30_000);
    // The report follows the flush within a status interval.
    const reportDeadline = Date.now() + 10_000;
    for (;;) {
      const reported = await endpoint.psql("SELECT flush_lsn FROM pg_stat_replication WHERE application_name LIKE 'pageserver%'");
      if (reported !== "" && lsnNum(reported) >= lsnNum(end1)) break;
      if (Date.now() > reportDeadline) throw new Error(`the endpoint sees our flush at ${reported}, below ${end1}`);
      await new Promise((r) => setTimeout(r, 100));
    }

    // More load, then a fast shutdown right away: it must not hang.
    const run2 = await pgbench(["-c", "2", "-j", "2", "-T", "4", "-n"], endpoint.port);
    expect(run2.code, run2.stderr).toBe(0);
    const state = await endpoint.psql(STATE_SQL);
    const commits = Number(state.split(",")[3]);
    expect(commits).toBeGreaterThan(0);
    const stop = await runPg("pg_ctl", ["-D", endpoint.data, "-m", "fast", "-w", "-t", "30", "stop"]);
    expect(stop.code, `pg_ctl stop: ${stop.stdout}${stop.stderr}\n${ps.logTail()}`).toBe(0);
    // It was the shutdown checkpoint record that made us flush (not only the idle timer).
    expect(readFileSync(ps.logFile, "utf8")).toMatch(/shutdown checkpoint from the source/);

    // Every commit is in the branch, durable: the flush reached the end of the endpoint's WAL.
    const i = await info(tenant, branch);
    expect(i["disk_consistent_lsn"]).toBe(i["last_record_lsn"]);
    const after = await backup(tenant, branch, String(i["last_record_lsn"]));
    expect(await after.psql(STATE_SQL)).toBe(state);
    await after.destroy();
  });
});
