/**
 * The tenant size model (src/tenant/size_model.ts) and its logical-size queries
 * (src/main/logical_size_queries.ts):
 * - the model over given inputs: one timeline is its logical size at the retention start plus
 *   the WAL after it; a branch inside its parent's retained history adds only its WAL; a
 *   branch below the parent's retention start is counted on its own; size(parent + branch) <
 *   size(parent) + size(branch alone);
 * - the inputs from a real tenant (sizeInputs): retention starts at the GC cutoff (gc_horizon
 *   back from last_record_lsn, at least latest_gc_cutoff_lsn), logical sizes asked only for
 *   counted segments;
 * - the node-wide limit: with concurrent_tenant_size_logical_size_queries = 1 two tenants'
 *   size queries never compute at the same time (with 2 they do, so the probe sees overlap);
 * - over HTTP with a real PostgreSQL 15 data directory (import_pgdata): GET /v1/tenant/:id/size
 *   (replies checked against the declared schema), shared history counted once against a
 *   second tenant holding the same data alone, and the computations timed in
 *   pageserver_storage_operations_seconds_global{operation="logical size"}; the same answer through
 *   PageserverHttpClient.tenantSize and `pagectl tenant size` (table and --json).
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { PageserverHttpClient } from "../src/client/http_client.js";
import { loadNodeConfig } from "../src/main/config.js";
import { LogicalSizeQueries } from "../src/main/logical_size_queries.js";
import { Server } from "../src/main/server.js";
import { computeTenantSize, type SizeInputs, type SizeInputTimeline, sizeInputs } from "../src/tenant/size_model.js";
import type { TimelineId } from "../src/types/ids.js";
import { testInit } from "./support/test_redo.js";
import { makeKey } from "../src/types/key.js";
import { LogCapture } from "./support/log_check.js";
import { havePg15, PgInstance } from "./support/postgres.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { asLsn } from "../src/types/lsn.js";

const P = "a".repeat(32) as TimelineId;
const B = "b".repeat(32) as TimelineId;

function inputs(timelines: SizeInputTimeline[]): SizeInputs {
  return { gc_horizon_bytes: 0, pitr_interval_ms: 0, timelines };
}
const root = (last: number, start: number): SizeInputTimeline => ({
  timeline_id: P,
  ancestor_id: null,
  ancestor_lsn: null,
  last_record_lsn: asLsn(last),
  latest_gc_cutoff_lsn: asLsn(start),
  retention_start_lsn: asLsn(start),
});
const branch = (at: number, last: number, start: number): SizeInputTimeline => ({
  timeline_id: B,
  ancestor_id: P,
  ancestor_lsn: asLsn(at),
  last_record_lsn: asLsn(last),
  latest_gc_cutoff_lsn: asLsn(at),
  retention_start_lsn: asLsn(start),
});
/** A logical size that grows with the LSN: 1 MB + the LSN. */
const logical = async (_id: TimelineId, lsn: number): Promise<number> => 1_000_000 + lsn;

describe("the size model", () => {
  it("one timeline: the logical size at its retention start plus the WAL after it", async () => {
    const s = await computeTenantSize(inputs([root(0x9000, 0x5000)]), logical);
    expect(s.segments).toEqual([
      {
        timeline_id: P,
        parent: null,
        lsn_start: 0x5000,
        lsn_end: 0x9000,
        logical_size_bytes: 1_000_000 + 0x5000,
        wal_bytes: 0x4000,
        size_bytes: 1_000_000 + 0x5000 + 0x4000,
      },
    ]);
    expect(s.size_bytes).toBe(1_000_000 + 0x5000 + 0x4000);
  });

  it("a branch inside the parent's retained history adds only its WAL: size(parent + branch) < size(parent) + size(branch alone)", async () => {
    const both = await computeTenantSize(inputs([branch(0x7000, 0xa000, 0x7000), root(0x9000, 0x5000)]), logical);
    // Parents first, whatever the input order.
    expect(both.segments.map((g) => g.timeline_id)).toEqual([P, B]);
    expect(both.segments[1]).toEqual({
      timeline_id: B,
      parent: P,
      lsn_start: 0x7000,
      lsn_end: 0xa000,
      logical_size_bytes: null,
      wal_bytes: 0x3000,
      size_bytes: 0x3000,
    });
    const parent = await computeTenantSize(inputs([root(0x9000, 0x5000)]), logical);
    const alone = await computeTenantSize(inputs([{ ...branch(0x7000, 0xa000, 0x7000), ancestor_id: null, ancestor_lsn: null }]), logical);
    expect(both.size_bytes).toBe(parent.size_bytes + 0x3000);
    expect(both.size_bytes).toBeLessThan(parent.size_bytes + alone.size_bytes);
  });

  it("a branch below the parent's retention start is counted on its own, at its own retention start", async () => {
    const s = await computeTenantSize(inputs([root(0x9000, 0x8000), branch(0x7000, 0xa000, 0x7800)]), logical);
    expect(s.segments[1]).toEqual({
      timeline_id: B,
      parent: P,
      lsn_start: 0x7800,
      lsn_end: 0xa000,
      logical_size_bytes: 1_000_000 + 0x7800,
      wal_bytes: 0x2800,
      size_bytes: 1_000_000 + 0x7800 + 0x2800,
    });
  });
});

describe("the size model's inputs from a tenant", () => {
  let h: TenantHarness | null = null;
  afterEach(async () => {
    await h?.close();
    h = null;
  });

  it("retention starts at the GC cutoff (gc_horizon back, at least latest_gc_cutoff_lsn); branches above it share, below it don't", async () => {
    h = new TenantHarness({ conf: { gc_horizon: 0x200, pitr_interval: 0 } });
    const t = await h.create();
    const main = await t.createTimeline({ startLsn: asLsn(0x100) });
    for (let lsn = 0x100; lsn <= 0x600; lsn += 0x100) {
      main.put(makeKey(0, 1663, 5, 1000, 0, 1), asLsn(lsn), testInit(String(lsn)));
      main.finishWrite(asLsn(lsn));
    }
    await main.checkpoint();
    const shared = await t.createTimeline({ ancestorId: main.timelineId, ancestorLsn: asLsn(0x500) });
    const own = await t.createTimeline({ ancestorId: main.timelineId, ancestorLsn: asLsn(0x300) });
    const inputs = sizeInputs(t, Date.now());
    const byId = new Map(inputs.timelines.map((x) => [x.timeline_id, x]));
    expect(inputs).toMatchObject({ gc_horizon_bytes: 0x200, pitr_interval_ms: 0 });
    expect(byId.get(main.timelineId)).toEqual({
      timeline_id: main.timelineId,
      ancestor_id: null,
      ancestor_lsn: null,
      last_record_lsn: 0x600,
      latest_gc_cutoff_lsn: 0x100,
      retention_start_lsn: 0x400,
    });
    // A branch with no WAL of its own retains from its branch point.
    expect(byId.get(shared.timelineId)).toMatchObject({
      ancestor_id: main.timelineId,
      ancestor_lsn: 0x500,
      retention_start_lsn: 0x500,
      last_record_lsn: 0x500,
    });
    expect(byId.get(own.timelineId)).toMatchObject({ ancestor_lsn: 0x300, retention_start_lsn: 0x300 });
    const asked: [TimelineId, number][] = [];
    const size = await computeTenantSize(inputs, async (id, lsn) => {
      asked.push([id, lsn]);
      return 1000;
    });
    // Logical sizes of the root at 0x400 and of the branch below it at 0x300; none for the shared one.
    expect(asked.sort((a, b) => a[1] - b[1])).toEqual([
      [own.timelineId, 0x300],
      [main.timelineId, 0x400],
    ]);
    expect(size.size_bytes).toBe(1000 + 0x200 + 0 + 1000 + 0);
    // After a GC past the horizon, latest_gc_cutoff_lsn holds the retention start up.
    await t.gc({ timeline: main, cutoffLsn: asLsn(0x400) });
    expect(sizeInputs(t, Date.now()).timelines.find((x) => x.timeline_id === main.timelineId)).toMatchObject({
      latest_gc_cutoff_lsn: 0x400,
      retention_start_lsn: 0x400,
    });
  });
});

describe("the concurrency limit of logical-size queries", () => {
  const harnesses: TenantHarness[] = [];
  afterEach(async () => {
    for (const h of harnesses.splice(0)) await h.close();
  });

  /** Two tenants' size queries at once; returns the most computations seen running together. */
  async function maxOverlap(limit: number): Promise<number> {
    let running = 0;
    let most = 0;
    const queries = new LogicalSizeQueries(limit, async () => {
      running++;
      most = Math.max(most, running);
      // Several turns of the event loop: time for another query to start if it may.
      for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 5));
      running--;
      return 8192;
    });
    const tenants = [];
    for (let i = 0; i < 2; i++) {
      const h = new TenantHarness({ conf: { gc_horizon: 0, pitr_interval: 0 } });
      harnesses.push(h);
      const t = await h.create();
      // Two timelines not sharing history: two computations per tenant.
      for (const start of [0x100, 0x200]) {
        const tl = await t.createTimeline({ startLsn: asLsn(start) });
        tl.put(makeKey(0, 1663, 5, 1000, 0, 1), asLsn(start), testInit("x"));
        tl.finishWrite(asLsn(start));
      }
      tenants.push(t);
    }
    const sizes = await Promise.all(tenants.map((t) => queries.tenantSize(t)));
    for (const s of sizes) expect(s.size_bytes).toBe(2 * 8192);
    return most;
  }

  it("with 1, two tenants' queries never compute at the same time; with 2 they do", async () => {
    expect(await maxOverlap(1)).toBe(1);
    expect(await maxOverlap(2)).toBe(2);
  });
});

describe.skipIf(!havePg15())("GET /v1/tenant/:id/size with a real data directory", { timeout: 300_000 }, () => {
  const logs = new LogCapture();
  let pg: PgInstance | null = null;
  let server: Server | null = null;
  let workdir = "";
  afterAll(async () => {
    await server?.stop();
    await pg?.destroy();
    if (workdir) rmSync(workdir, { recursive: true, force: true });
    logs.expectClean([]);
  });

  it("counts a branch's shared history once, and times the computations as 'logical size'", async () => {
    pg = await PgInstance.start();
    await pg.psql("CREATE TABLE t (x int); INSERT INTO t SELECT g FROM generate_series(1, 20000) g; CHECKPOINT;");
    await pg.stop();
    workdir = mkdtempSync(join(tmpdir(), "ps-size-"));
    server = new Server(
      loadNodeConfig({
        workdir,
        listen: "127.0.0.1:0",
        listen_pg: "127.0.0.1:0",
        concurrent_tenant_size_logical_size_queries: 1,
        import_pgdata_root: tmpdir(),
        tenant_config: { compaction_period: 0, gc_period: 0 },
      }),
      logs.logger,
    );
    server.http.checkResponses = true;
    const base = `http://127.0.0.1:${await server.start()}`;
    const api = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
      const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
      const j = (await r.json()) as Record<string, unknown>;
      expect(r.status, JSON.stringify(j)).toBeLessThan(300);
      return j;
    };
    const count = async (): Promise<number> => {
      const text = await (await fetch(`${base}/metrics`)).text();
      const m = /^pageserver_storage_operations_seconds_global_count\{operation="logical size"\} (\d+)$/m.exec(text);
      return m === null ? 0 : Number(m[1]);
    };
    type Size = {
      id: string;
      size: number;
      segments: { timeline_id: string; logical_size_bytes: number | null; wal_bytes: number; size_bytes: number }[];
    };
    const sizeOf = async (t: string): Promise<Size> => (await api("GET", `/v1/tenant/${t}/size`)) as unknown as Size;

    const a = String((await api("POST", "/v1/tenant", {}))["id"]);
    const parent = String((await api("POST", `/v1/tenant/${a}/timeline`, { import_pgdata: pg.dataDir }))["timeline_id"]);
    const alone = String((await api("POST", "/v1/tenant", {}))["id"]);
    await api("POST", `/v1/tenant/${alone}/timeline`, { import_pgdata: pg.dataDir });

    const before = await count();
    const parentOnly = await sizeOf(a);
    expect(parentOnly.id).toBe(a);
    expect(parentOnly.segments.length).toBe(1);
    // 20000 ints are more than 600 kB of heap.
    expect(parentOnly.segments[0]!.logical_size_bytes!).toBeGreaterThan(600_000);
    expect(parentOnly.size).toBe(parentOnly.segments[0]!.size_bytes);
    expect(await count()).toBe(before + 1);

    const br = String((await api("POST", `/v1/tenant/${a}/timeline`, { ancestor_timeline_id: parent }))["timeline_id"]);
    const both = await sizeOf(a);
    expect(both.segments.map((s) => s.timeline_id)).toEqual([parent, br]);
    expect(both.segments[1]!.logical_size_bytes).toBeNull();
    const branchAlone = await sizeOf(alone);
    expect(branchAlone.segments[0]!.logical_size_bytes).toBe(parentOnly.segments[0]!.logical_size_bytes);
    expect(both.size).toBeLessThan(parentOnly.size + branchAlone.size);
    expect(both.size).toBe(parentOnly.size + both.segments[1]!.wal_bytes);

    // The client and pagectl see the same model.
    const viaClient = await new PageserverHttpClient({ url: base }).tenantSize(a);
    expect(viaClient.size).toBe(both.size);
    expect(viaClient.segments).toEqual(both.segments);
    const PAGECTL = fileURLToPath(new URL("../src/cli/pagectl.ts", import.meta.url));
    // Asynchronous: the server runs in this process.
    const run = (args: string[]) =>
      promisify(execFile)(process.execPath, ["--import", "tsx", PAGECTL, "--server", base, ...args], { encoding: "utf8", timeout: 60_000 });
    const table = await run(["tenant", "size", a]);
    expect(table.stdout).toContain(`tenant ${a}: `);
    expect(table.stdout).toContain(`(${both.size} bytes)`);
    expect(table.stdout).toMatch(/TIMELINE\s+PARENT\s+LSN_START\s+LSN_END\s+LOGICAL\s+WAL\s+SIZE/);
    expect(table.stdout).toContain(br);
    const asJson = await run(["--json", "tenant", "size", a]);
    expect((JSON.parse(asJson.stdout) as { size: number }).size).toBe(both.size);

    // Both tenants at once: every computation counted.
    const n = await count();
    // One computation per counted segment (a shared branch costs none): six queries of one
    // each; and the branch creation's reply (timeline info's current_logical_size) one.
    expect(n).toBe(before + 7);
    await Promise.all([sizeOf(a), sizeOf(alone)]);
    expect(await count()).toBe(n + 2);
  });
});
