/**
 * The page service end to end, with a real PostgreSQL 15: a table of a few thousand rows,
 * CHECKPOINT, pg_ctl stop, imported with import_pgdata; then over the page service (our
 * client, which the codec tests check against hand-written bytes):
 * - Exists / Nblocks of the table and of a missing relation; GetPage of every block equals
 *   the relation file's bytes; DbSize equals the sum of the database's relation files;
 *   GetSlruSegment(clog 0) starts with pg_xact/0000 — at latest and at the explicit LSN, in
 *   v2 and v3 (reqid and the request fields echoed).
 * - 1,000 GetPage written before any answer is read: all answered, in order, and batched.
 * - Backpressure: 100,000 GetPage from a client that reads nothing: the server stops reading
 *   it and its buffers stay bounded.
 * - Errors mid-stream (missing relation, not_modified_since > request_lsn, request_lsn 0,
 *   below the GC cutoff, bad SLRU kind): an Error response each, and the next request works.
 * - `basebackup` over CopyOut equals the HTTP base backup at the same LSN; `--gzip` gunzips
 *   to it. Unknown tenant / timeline / command → ErrorResponse, and the connection goes on.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { PageServiceError, PagestreamRequestError } from "../src/client/page_service_client.js";
import { encodeRequest, header, LATEST_LSN, type PagestreamRequest, type PagestreamVersion } from "../src/protocol/pagestream.js";
import { copyData, query, startupMessage } from "../src/protocol/pg_wire.js";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { asLsn, lsnToString, parseLsn } from "../src/types/lsn.js";
import { PageServiceFixture } from "./support/page_service_fixture.js";

let fx: PageServiceFixture;
let file: Uint8Array;
let nblocks: number;

beforeAll(async () => {
  fx = await PageServiceFixture.start({ rows: 3000, tenantConfig: { pitr_interval: "0s" } });
  file = fx.tableFile();
  nblocks = file.length / 8192;
}, 120_000);

afterAll(async () => {
  await fx?.destroy();
});

function block(i: number): Uint8Array {
  return file.subarray(i * 8192, (i + 1) * 8192);
}

/** Σ of the relation files of the database (every fork and segment). */
function dbFilesBytes(): number {
  const dir = join(fx.pg.dataDir, "base", String(fx.dbOid));
  let total = 0;
  for (const f of readdirSync(dir)) if (/^\d+(_(fsm|vm|init))?(\.\d+)?$/.test(f)) total += statSync(join(dir, f)).size;
  return total;
}

describe.each([2, 3] as PagestreamVersion[])("pagestream v%i", (version) => {
  it("answers Exists, Nblocks, every GetPage, DbSize and the clog segment as the datadir has them, at latest and at the LSN", async () => {
    expect(nblocks).toBeGreaterThan(10);
    const c = await fx.client();
    try {
      const s = await c.pagestream(fx.tenant, fx.timeline, version);
      const missing = { ...fx.rel, relnode: 999_999 };
      for (const [req, nms] of [
        [LATEST_LSN, fx.lsn],
        [fx.lsn, fx.lsn],
        [fx.lsn, asLsn(1)],
      ] as const) {
        expect(await s.exists(fx.rel, req, nms)).toBe(true);
        expect(await s.exists(missing, req, nms)).toBe(false);
        expect(await s.nblocks(fx.rel, req, nms)).toBe(nblocks);
        // A missing FSM fork has 0 blocks (PostgreSQL asks after smgrcreate); a missing main fork is an error.
        expect(await s.nblocks({ ...missing, forknum: 1 }, req, nms)).toBe(0);
        await expect(s.nblocks(missing, req, nms)).rejects.toThrow(PagestreamRequestError);
        const pages = await Promise.all(Array.from({ length: nblocks }, (_, i) => s.getPage(fx.rel, i, req, nms)));
        for (let i = 0; i < nblocks; i++) expect(Buffer.from(pages[i]!).equals(Buffer.from(block(i))), `block ${i}`).toBe(true);
        // Beyond EOF: an all-zero page (as Neon).
        expect((await s.getPage(fx.rel, nblocks + 5, req, nms)).every((b) => b === 0)).toBe(true);
        expect(await s.dbSize(fx.dbOid, req, nms)).toBe(dbFilesBytes());
        const clog = await s.getSlruSegment(0, 0, req, nms);
        const onDisk = readFileSync(join(fx.pg.dataDir, "pg_xact", "0000"));
        expect(clog.length % 8192).toBe(0);
        expect(clog.length).toBeGreaterThanOrEqual(onDisk.length);
        expect(Buffer.from(clog.subarray(0, onDisk.length)).equals(onDisk)).toBe(true);
      }
      await s.close();
      // Back in the query state: another session on the same connection.
      const s2 = await c.pagestream(fx.tenant, fx.timeline, version);
      expect(await s2.nblocks(fx.rel, LATEST_LSN, fx.lsn)).toBe(nblocks);
      await s2.close();
    } finally {
      c.close();
    }
  });

  it("answers 1,000 GetPage written before any answer is read, in order", async () => {
    const c = await fx.client();
    try {
      const s = await c.pagestream(fx.tenant, fx.timeline, version, { max_in_flight: 1000 });
      const before = await batchHistogram();
      const N = 1000;
      const reqs: PagestreamRequest[] = Array.from({ length: N }, (_, i) => ({
        kind: "get_page",
        hdr: header(version === 3 ? 1_000_000 + i : 0, LATEST_LSN, fx.lsn),
        rel: fx.rel,
        blkno: (i * 7) % nblocks,
      }));
      // send() writes synchronously: all 1,000 are on the socket before the first answer is read.
      const answers = reqs.map((r) => s.send(r));
      expect(s.pending).toBe(N);
      const got = await Promise.all(answers);
      for (let i = 0; i < N; i++) {
        const a = got[i]!;
        expect(a.kind).toBe("get_page");
        if (a.kind !== "get_page") continue;
        expect(Buffer.from(a.page).equals(Buffer.from(block((i * 7) % nblocks))), `answer ${i}`).toBe(true);
        if (version === 3) {
          expect(a.req?.hdr.reqidLo).toBe(1_000_000 + i);
          expect(a.req?.blkno).toBe((i * 7) % nblocks);
        } else expect(a.req).toBeNull();
      }
      await s.close();
      // Consecutive GetPage at one LSN were served in batches of up to 32.
      const after = await batchHistogram();
      expect(after.count - before.count).toBeLessThan(N);
      expect(after.sum - before.sum).toBe(N);
      expect(after.over32).toBe(0);
    } finally {
      c.close();
    }
  });

  it("answers a failing request with an Error response and goes on with the next", async () => {
    const c = await fx.client();
    try {
      const s = await c.pagestream(fx.tenant, fx.timeline, version);
      const ok = (i: number): PagestreamRequest => ({ kind: "get_page", hdr: s.header(LATEST_LSN, fx.lsn), rel: fx.rel, blkno: i });
      const missingHdr = s.header(LATEST_LSN, fx.lsn);
      const answers = await Promise.all([
        s.send(ok(0)),
        s.send({ kind: "get_page", hdr: missingHdr, rel: { ...fx.rel, relnode: 999_999 }, blkno: 0 }),
        s.send(ok(1)),
        s.send({ kind: "get_page", hdr: s.header(fx.lsn, asLsn(fx.lsn + 8)), rel: fx.rel, blkno: 2 }),
        s.send({ kind: "exists", hdr: s.header(asLsn(0), asLsn(0)), rel: fx.rel }),
        s.send({ kind: "get_slru_segment", hdr: s.header(LATEST_LSN, fx.lsn), slruKind: 7, segno: 0 }),
        s.send({ kind: "get_page", hdr: s.header(LATEST_LSN, fx.lsn), rel: { ...fx.rel, forknum: 9 }, blkno: 0 }),
        s.send(ok(2)),
      ]);
      expect(answers.map((a) => a.kind)).toEqual(["get_page", "error", "get_page", "error", "error", "error", "error", "get_page"]);
      const msg = (i: number): string => {
        const a = answers[i]!;
        return a.kind === "error" ? a.message : "";
      };
      expect(msg(1)).toMatch(/relation 1663\/\d+\/999999 fork 0 does not exist/);
      expect(msg(3)).toMatch(/request_lsn .* is below not_modified_since/);
      expect(msg(4)).toMatch(/invalid request_lsn 0/);
      expect(msg(5)).toMatch(/invalid SLRU kind 7/);
      expect(msg(6)).toMatch(/invalid fork number 9/);
      // v3: the Error echoes the request's header (reqid and both LSNs); v2 echoes nothing.
      const e = answers[1]!;
      expect(e.kind === "error" ? e.hdr : undefined).toEqual(version === 3 ? missingHdr : null);
      expect(Buffer.from((answers[7] as { page: Uint8Array }).page).equals(Buffer.from(block(2)))).toBe(true);
      await s.close();
    } finally {
      c.close();
    }
  });
});

describe("backpressure", () => {
  it("a client that sends 100,000 GetPage and reads nothing stops being read; the server's buffers stay bounded", async () => {
    const sock = connect(fx.server.pgPort, "127.0.0.1");
    try {
      await new Promise((resolve, reject) => sock.once("connect", resolve).once("error", reject));
      sock.pause(); // read nothing
      sock.write(Buffer.concat([startupMessage({ user: "bp" }), query(`pagestream_v2 ${fx.tenant} ${fx.timeline}`)]));
      const N = 100_000;
      const one = copyData(encodeRequest({ kind: "get_page", hdr: header(0, LATEST_LSN, fx.lsn), rel: fx.rel, blkno: 1 }, 2));
      const all = Buffer.concat(Array.from({ length: N }, () => one));
      sock.write(all);
      // Wait (bounded) until the server's counters stop moving.
      let last = "";
      let stats = fx.server.pageService.connectionStats();
      for (let i = 0; i < 100; i++) {
        await new Promise((r) => setTimeout(r, 100));
        stats = fx.server.pageService.connectionStats();
        const now = JSON.stringify(stats);
        if (now === last) break;
        last = now;
      }
      const mine = stats.reduce((a, b) => (b.bytes_read > a.bytes_read ? b : a));
      // It stopped reading: far less than what was sent, and what it queued is bounded
      // (its write limit, plus one round of answers).
      expect(mine.bytes_read).toBeLessThan(all.length / 4);
      expect(mine.unwritten_bytes).toBeLessThan(4 * 1024 * 1024);
      expect(mine.bytes_written).toBeLessThan(64 * 1024 * 1024);
    } finally {
      sock.destroy();
    }
  });
});

describe("GC cutoff", () => {
  it("a request below the GC cutoff gets an Error response; the session goes on", async () => {
    const gc = await fx.http("PUT", `/v1/tenant/${fx.tenant}/timeline/${fx.timeline}/do_gc`, { gc_horizon: 0 });
    expect(gc.status, JSON.stringify(gc.json)).toBe(200);
    const cutoff = parseLsn(String(gc.json["latest_gc_cutoff_lsn"]));
    expect(cutoff).toBe(fx.lsn);
    const c = await fx.client();
    try {
      const s = await c.pagestream(fx.tenant, fx.timeline, 3);
      await expect(s.getPage(fx.rel, 0, asLsn(cutoff - 8), asLsn(cutoff - 8))).rejects.toThrow(/below the GC cutoff/);
      expect(Buffer.from(await s.getPage(fx.rel, 0, cutoff, cutoff)).equals(Buffer.from(block(0)))).toBe(true);
      await s.close();
    } finally {
      c.close();
    }
  });
});

describe("commands", () => {
  it("basebackup over CopyOut equals the HTTP base backup at the same LSN; --gzip gunzips to it", async () => {
    const c = await fx.client();
    try {
      // The backup carries the time it was made (pg_control, checkpoint record, tar mtimes):
      // the server runs in this process, so one fixed clock for the three backups.
      const clock = vi.spyOn(Date, "now").mockReturnValue(Date.UTC(2026, 0, 2, 3, 4, 5));
      let viaPg: Uint8Array;
      let viaHttp: Awaited<ReturnType<typeof fx.http>>;
      let gz: Uint8Array;
      try {
        viaPg = await c.basebackup(fx.tenant, fx.timeline, fx.lsn);
        viaHttp = await fx.http("GET", `/v1/tenant/${fx.tenant}/timeline/${fx.timeline}/basebackup?lsn=${lsnToString(fx.lsn)}`);
        gz = await c.basebackup(fx.tenant, fx.timeline, "latest", { gzip: true });
      } finally {
        clock.mockRestore();
      }
      expect(viaHttp.status).toBe(200);
      expect(viaPg.length).toBeGreaterThan(1024 * 1024);
      expect(Buffer.from(viaPg).equals(Buffer.from(viaHttp.bytes))).toBe(true);
      expect(gz[0]).toBe(0x1f);
      expect(gz[1]).toBe(0x8b);
      expect(gz.length).toBeLessThan(viaPg.length);
      expect(gunzipSync(gz).equals(Buffer.from(viaPg))).toBe(true);
    } finally {
      c.close();
    }
  });

  it("unknown tenant, timeline, command and bad arguments → ErrorResponse, and the connection goes on", async () => {
    const errors = async (code: string): Promise<number> => {
      const text = Buffer.from((await fx.http("GET", "/metrics")).bytes).toString("utf8");
      const m = new RegExp(`^pageserver_page_service_request_errors_total\\{code="${code}"\\} (\\d+)$`, "m").exec(text);
      expect(m, code).not.toBeNull();
      return Number(m![1]);
    };
    const notFound0 = await errors("not_found");
    const internal0 = await errors("internal");
    const c = await fx.client();
    try {
      const t = generateTenantId();
      await expect(c.pagestream(t, fx.timeline, 2)).rejects.toThrow(new RegExp(`tenant ${t} not found.*SQLSTATE 42704`));
      await expect(c.pagestream(fx.tenant, generateTimelineId(), 3)).rejects.toThrow(/timeline .* not found/);
      await expect(c.pagestream("nope", fx.timeline, 3)).rejects.toThrow(/invalid tenant id "nope".*SQLSTATE 22023/);
      await expect(c.command("SELECT 1")).rejects.toThrow(/unsupported command "SELECT 1".*SQLSTATE 0A000/);
      await expect(c.command(`basebackup ${fx.tenant} ${fx.timeline} 0/1 --replica`)).rejects.toThrow(/unexpected argument "--replica"/);
      await expect(c.basebackup(fx.tenant, fx.timeline, asLsn(1))).rejects.toThrow(PageServiceError);
      await expect(c.command(`pagestream_v3 ${fx.tenant}`)).rejects.toThrow(/usage: pagestream_v3/);
      // Still usable.
      const s = await c.pagestream(fx.tenant, fx.timeline, 2);
      expect(await s.nblocks(fx.rel, LATEST_LSN, fx.lsn)).toBe(nblocks);
      await s.close();
      // Counted by code in pageserver_page_service_request_errors_total; none was internal.
      expect(await errors("not_found")).toBe(notFound0 + 2);
      expect(await errors("internal")).toBe(internal0);
    } finally {
      c.close();
    }
  });

  it("counts connections and requests in /metrics", async () => {
    const c = await fx.client();
    try {
      const text = Buffer.from((await fx.http("GET", "/metrics")).bytes).toString("utf8");
      expect(text).toMatch(/^pageserver_page_service_connections [1-9]/m);
      expect(text).toMatch(/^pageserver_smgr_query_seconds_global_count\{smgr_query_type="get_page_at_lsn"\} [1-9]/m);
      expect(text).toMatch(/^pageserver_smgr_query_seconds_global_count\{smgr_query_type="get_rel_exists"\} [1-9]/m);
      expect(text).toMatch(/^pageserver_smgr_query_seconds_global_count\{smgr_query_type="get_slru_segment"\} [1-9]/m);
      expect(text).toMatch(/^pageserver_page_service_batch_size_count [1-9]/m);
      // Nobody was throttled: no series.
      expect(text).not.toMatch(/^pageserver_tenant_throttled_seconds_total\{/m);
    } finally {
      c.close();
    }
  });
});

async function batchHistogram(): Promise<{ count: number; sum: number; over32: number }> {
  const text = Buffer.from((await fx.http("GET", "/metrics")).bytes).toString("utf8");
  const num = (re: RegExp): number => Number(re.exec(text)?.[1] ?? "0");
  const le32 = num(/^pageserver_page_service_batch_size_bucket\{le="32"\} (\d+)/m);
  const inf = num(/^pageserver_page_service_batch_size_bucket\{le="\+Inf"\} (\d+)/m);
  return {
    count: num(/^pageserver_page_service_batch_size_count (\d+)/m),
    sum: num(/^pageserver_page_service_batch_size_sum (\d+)/m),
    over32: inf - le32,
  };
}
