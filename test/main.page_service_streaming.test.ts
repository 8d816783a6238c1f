/**
 * The page service on a timeline streaming from a running PostgreSQL 15 (wal_source):
 * - GetPage@latest of a page with a record chain longer than REDO_OFFLOAD_MIN_RECORDS (300
 *   updates of one row) is redone on the redo pool, and equals the page the synchronous read
 *   path makes at the same LSN;
 * - not_modified_since beyond what is ingested: the request waits for ingest (nothing else
 *   is needed from the client), and is answered once the WAL arrives;
 * - Nblocks follows the relation as it grows.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PageServiceClient } from "../src/client/page_service_client.js";
import { LATEST_LSN } from "../src/protocol/pagestream.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { DatadirSnapshot } from "../src/pgdata/reader.js";
import { REDO_OFFLOAD_MIN_RECORDS } from "../src/tenant/timeline/index.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { parseTenantId, parseTimelineId } from "../src/types/ids.js";
import { asLsn, parseLsn } from "../src/types/lsn.js";
import { PgInstance } from "./support/postgres.js";

const SOURCE_CONF = { wal_level: "replica", max_wal_senders: 4, max_replication_slots: 4, autovacuum: "off" };

let src: PgInstance;
let server: Server;
let workdir: string;
let tl: Timeline;
let rel: { spcnode: number; dbnode: number; relnode: number; forknum: number };

async function waitIngested(lsn: number, timeout_ms = 60_000): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (tl.lastRecordLsn < lsn) {
    if (Date.now() > deadline) throw new Error(`ingest did not reach ${lsn} (at ${tl.lastRecordLsn})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function insertLsn(): Promise<number> {
  return parseLsn(await src.psql("SELECT pg_current_wal_insert_lsn()"));
}

beforeAll(async () => {
  src = await PgInstance.start({ conf: SOURCE_CONF });
  workdir = mkdtempSync(join(tmpdir(), "ps-pagesvc-stream-"));
  server = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), pino({ level: "silent" }));
  await server.start();
  await src.psql(
    "CREATE TABLE s (id int PRIMARY KEY, n int) WITH (fillfactor = 50); INSERT INTO s SELECT g, 0 FROM generate_series(1, 50) g;",
  );
  const [dbOid, relnode] = (
    await src.psql("SELECT d.oid, c.relfilenode FROM pg_database d, pg_class c WHERE d.datname = 'postgres' AND c.relname = 's'")
  )
    .split("|")
    .map(Number) as [number, number];
  rel = { spcnode: 1663, dbnode: dbOid, relnode, forknum: 0 };
  const base = `http://127.0.0.1:${server.port}`;
  const t = (await (
    await fetch(`${base}/v1/tenant`, { method: "POST", body: JSON.stringify({ config: { compaction_period: 0, gc_period: 0 } }) })
  ).json()) as { id: string };
  const r = await fetch(`${base}/v1/tenant/${t.id}/timeline`, {
    method: "POST",
    body: JSON.stringify({ wal_source: { connstr: src.connectionString() } }),
  });
  const created = (await r.json()) as { timeline_id: string };
  expect(r.status, JSON.stringify(created)).toBe(201);
  tl = server.tenants.get(parseTenantId(t.id)).getTimeline(parseTimelineId(created.timeline_id));
  await waitIngested(await insertLsn());
}, 120_000);

afterAll(async () => {
  await server?.stop();
  await src?.destroy();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
});

describe("page service on a streaming timeline", () => {
  it("a page with a long record chain is redone off the main thread and equals the synchronous read", async () => {
    // 300 updates of one row, each its own transaction: 300+ records on block 0.
    await src.psql(Array.from({ length: 300 }, () => "UPDATE s SET n = n + 1 WHERE id = 1;").join("\n"));
    const lsn = await insertLsn();
    await waitIngested(lsn);
    const at = tl.lastRecordLsn;
    const sync = await new DatadirSnapshot(tl, at, { fillCache: false }).getRelPage(rel, 0);
    const offloadedBefore = tl.counters.offloadedRedos;
    const c = await PageServiceClient.connect({ host: "127.0.0.1", port: server.pgPort });
    try {
      const s = await c.pagestream(tl.tenantId, tl.timelineId, 3);
      const page = await s.getPage(rel, 0, LATEST_LSN, at);
      expect(tl.counters.offloadedRedos - offloadedBefore).toBeGreaterThanOrEqual(1);
      expect(Buffer.from(page).equals(Buffer.from(sync))).toBe(true);
      expect(REDO_OFFLOAD_MIN_RECORDS).toBeLessThan(300);
      await s.close();
    } finally {
      c.close();
    }
  });

  it("not_modified_since beyond the ingested WAL waits for it; Nblocks follows the growing relation", async () => {
    const c = await PageServiceClient.connect({ host: "127.0.0.1", port: server.pgPort });
    try {
      const s = await c.pagestream(tl.tenantId, tl.timelineId, 2);
      const before = await s.nblocks(rel, LATEST_LSN, tl.lastRecordLsn);
      await src.psql("INSERT INTO s SELECT g, 0 FROM generate_series(1000, 3000) g;");
      const lsn = await insertLsn();
      // Asked before (or while) the WAL arrives: the answer reflects at least `lsn`.
      const n = await s.nblocks(rel, LATEST_LSN, asLsn(lsn));
      expect(tl.lastRecordLsn).toBeGreaterThanOrEqual(lsn);
      expect(n).toBeGreaterThan(before);
      expect(n).toBe(Number(await src.psql("SELECT pg_relation_size('s') / 8192")));
      await s.close();
    } finally {
      c.close();
    }
  });
});
