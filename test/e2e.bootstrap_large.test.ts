/**
 * Bootstrapping from a source many times larger than checkpoint_distance (issue 7, item 8),
 * with the pageserver as a separate process and a tenant whose checkpoint_distance is 2 MiB:
 * - from a running source (`pgbench -i -s 6`, ≈ 90 MB): the timeline is created (the import
 *   goes to image layers, several of them), streams a pgbench run on top, and base backups
 *   at two LSNs of that run start a stock PostgreSQL with the source's figures;
 * - from the same cluster's data directory once shut down (import_pgdata): the same figures.
 */
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackupServer } from "./support/backup_server.js";
import { PGBENCH_STATE_SQL as STATE_SQL, pageserverApi, pgbench, pgbenchPoint, startE2e, stopE2e } from "./support/e2e_fixture.js";
import { TestEnv } from "./support/env.js";
import type { PageserverProcess } from "./support/pageserver_process.js";
import type { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = {
  wal_level: "replica",
  wal_compression: "lz4",
  max_wal_senders: 10,
  max_replication_slots: 10,
};
const CHECKPOINT_DISTANCE = 2 * 1024 * 1024;

const env = new TestEnv(fileURLToPath(import.meta.url));
let src: PgInstance;
let ps: PageserverProcess;
let dir: string;
const cleanup: (() => Promise<unknown>)[] = [];
const { api, waitLsn } = pageserverApi(() => ps, env, cleanup);

async function figuresAt(t: string, tl: string, lsn: string): Promise<string> {
  const r = await fetch(`${ps.url}/v1/tenant/${t}/timeline/${tl}/basebackup?lsn=${lsn}`);
  if (r.status !== 200) throw new Error(`basebackup at ${lsn}: ${r.status} ${await r.text()}`);
  const b = new BackupServer();
  env.add(`backup_${lsn.replace("/", "_")}.log`, b.log);
  try {
    await b.untar(r.body as unknown as AsyncIterable<Uint8Array>);
    await b.start();
    return await b.psql(STATE_SQL);
  } finally {
    await b.destroy();
  }
}

beforeAll(async () => {
  ({ src, ps, dir } = await startE2e(env, SOURCE_CONF, "ps-e2e-bootstrap-"));
});

afterAll(async () => {
  await stopE2e(cleanup, ps, src, dir);
});

describe("bootstrap from a source larger than checkpoint_distance", { timeout: 400_000 }, () => {
  it("imports a running source of ≈ 45 × checkpoint_distance, streams on top, and matches the source at two LSNs", async () => {
    const init = await pgbench(["-i", "-s", "6", "-q"], src.port);
    expect(init.code, init.stderr).toBe(0);
    const size = Number(await src.psql("SELECT pg_database_size('postgres')"));
    expect(size).toBeGreaterThan(40 * CHECKPOINT_DISTANCE);
    const tenant = String(
      (await api("POST", "/v1/tenant", { config: { checkpoint_distance: CHECKPOINT_DISTANCE, compaction_target_size: 8 * 1024 * 1024 } }))
        .json["id"],
    );
    const created = await api("POST", `/v1/tenant/${tenant}/timeline`, { wal_source: { connstr: src.connectionString() } });
    expect(created.status, `${JSON.stringify(created.json)}\n${ps.logTail()}`).toBe(201);
    const tl = String(created.json["timeline_id"]);
    const layers = created.json["layers"] as { image: number; l0: number };
    // The import is image layers at the backup's start, cut at compaction_target_size.
    expect(layers.image).toBeGreaterThan(5);

    const load = pgbench(["-c", "2", "-j", "2", "-T", "8", "-n"], src.port);
    await new Promise((r) => setTimeout(r, 3000));
    const a = await pgbenchPoint((sql) => src.psql(sql));
    const done = await load;
    expect(done.code, done.stderr).toBe(0);
    const b = await pgbenchPoint((sql) => src.psql(sql));
    expect(a.state).not.toBe(b.state);
    await waitLsn(tenant, tl, "last_record_lsn", b.lsn, 120_000);
    expect(await figuresAt(tenant, tl, a.lsn), `figures at ${a.lsn}`).toBe(a.state);
    expect(await figuresAt(tenant, tl, b.lsn), `figures at ${b.lsn}`).toBe(b.state);

    // The same cluster shut down, imported from its data directory.
    const removed = await api("DELETE", `/v1/tenant/${tenant}/timeline/${tl}/wal_source`);
    expect(removed.status, JSON.stringify(removed.json)).toBe(200);
    await src.stop();
    const fromDir = await api("POST", `/v1/tenant/${tenant}/timeline`, { import_pgdata: src.dataDir });
    expect(fromDir.status, `${JSON.stringify(fromDir.json)}\n${ps.logTail()}`).toBe(201);
    expect((fromDir.json["layers"] as { image: number }).image).toBeGreaterThan(5);
    expect(await figuresAt(tenant, String(fromDir.json["timeline_id"]), String(fromDir.json["last_record_lsn"]))).toBe(b.state);
  });
});
