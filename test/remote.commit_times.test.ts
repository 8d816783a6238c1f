/**
 * The commit-time index (src/tenant/commit_times.ts) travels with its timeline through remote
 * storage: A ingests commits, checkpoints and detaches; B attaches in generation 2 and answers
 * get_lsn_by_timestamp exactly as A did (and as PostgreSQL's recovery_target_time rule says,
 * checked against a model), keeps appending as it ingests, and publishes its own
 * `commit_times-<gen>` object (the older one deleted, remote check ok). A corrupt object in
 * the bucket: the attach still works, the index starts empty (answers `nodata`/`past`, never
 * a wrong LSN) and a warning is logged; the same for blocks failing their seals. An attach
 * resumed after a crash replaces stale files; remote deletion takes the objects along. Old indexes without the field still parse.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32c } from "@node-rs/crc32";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { attachTenant } from "../src/remote/attach.js";
import { encodeIndexPart, parseIndexPart } from "../src/remote/index_part.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import { deleteRemoteTenant } from "../src/remote/remote_delete.js";
import { type LsnForTime, pgTimestampToMs } from "../src/tenant/lsn_for_time.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { generateTenantId, generateTimelineId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { LogCapture } from "./support/log_check.js";
import { within } from "./support/within.js";
import { asLsn } from "../src/types/lsn.js";

const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" };
/** 2026-01-01 in µs since 2000-01-01. */
const BASE_US = 820_454_400_000_000;

const logs = new LogCapture();
const dirs: string[] = [];
let a: Server;
let b: Server;

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

async function server(workdir: string, remote: string): Promise<Server> {
  const s = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: remote }), logs.logger);
  await s.start();
  return s;
}

/** The object key of generation `gen` (remote_path.ts), spelled out. */
function objectKey(tenant: TenantId, timeline: TimelineId, gen: number): string {
  return `tenants/${tenant}/timelines/${timeline}/commit_times-${gen.toString(16).padStart(8, "0")}`;
}

beforeAll(async () => {
  const bucket = `file://${tmp("ct-bucket-")}`;
  a = await server(tmp("ct-a-"), bucket);
  b = await server(tmp("ct-b-"), bucket);
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  logs.expectClean([/commit-time snapshot: CRC32C mismatch/, /commit-time index corrupt/]);
});

describe("commit-time index in remote storage", () => {
  const tenantId = generateTenantId();
  const timelineId = generateTimelineId();
  const commits: { lsn: number; t: number }[] = [];
  let lsn = 0x10000;

  /** `n` commits: 64 bytes of WAL apart, ~1 ms apart, every 7th 1.5 ms early (times not monotonic). */
  const ingest = (tl: Timeline, n: number): void => {
    for (let i = 0; i < n; i++) {
      lsn += 0x40;
      const j = commits.length;
      const t = BASE_US + j * 1000 - (j % 7 === 3 ? 1500 : 0);
      if (i % 500 === 0) tl.put(k(j % 10), asLsn(lsn), imageValue(Buffer.from(`v${j}`)));
      tl.noteCommit(asLsn(lsn), t);
      tl.finishWrite(asLsn(lsn));
      commits.push({ lsn, t });
    }
  };

  /** PostgreSQL's rule: stop before the first record (LSN order) later than T. */
  const model = (tl: Timeline, t_us: number): LsnForTime => {
    const earliest = tl.earliestBranchLsn();
    const j = commits.findIndex((c) => c.t > t_us);
    if (j < 0) return { kind: "future", lsn: tl.lastRecordLsn };
    if (j === 0 || commits[j]!.lsn <= earliest) return { kind: "past", lsn: earliest };
    return { kind: "present", lsn: asLsn(Math.max(commits[j - 1]!.lsn, earliest)) };
  };

  /** Times to ask: before all, every commit's time and ±1 µs around some, after all. */
  const asks = (): number[] => {
    const ts = [BASE_US - 10_000, commits.at(-1)!.t + 10_000];
    for (let j = 0; j < commits.length; j += 7) ts.push(commits[j]!.t, commits[j]!.t - 1, commits[j]!.t + 1);
    return ts;
  };

  const expectModel = (tl: Timeline): void => {
    let present = 0;
    for (const t of asks()) {
      const got = tl.lsnForTime(pgTimestampToMs(t));
      expect(got, `T = ${t}`).toEqual(model(tl, t));
      if (got.kind === "present") present++;
    }
    expect(present).toBeGreaterThan(commits.length / 7);
  };

  it("A → B: B answers every time lookup exactly as A did, then keeps appending", async () => {
    const t = await a.tenants.create(tenantId, QUIET);
    const tl = await t.createTimeline({ timelineId, startLsn: asLsn(lsn) });
    tl.put(k(0), asLsn(lsn), imageValue(Buffer.from("init")));
    tl.finishWrite(asLsn(lsn));
    // Several sealed 8 kB blocks (~1,500 commits each) and a partial one.
    ingest(tl, 4000);
    await tl.checkpoint();
    ingest(tl, 1500);
    await tl.checkpoint();
    // In memory only: detach flushes them.
    ingest(tl, 37);
    expectModel(tl);
    const times = asks();
    const answersA = times.map((x) => tl.lsnForTime(pgTimestampToMs(x)));
    await within(a.detachTenant(tenantId), "detach");
    const check1 = await checkRemoteTimeline(a.remote!.storage, tenantId, timelineId, 1);
    expect(check1.ok, JSON.stringify(check1)).toBe(true);

    const tb = await within(b.attachTenant(tenantId, 2), "attach");
    expect(tb.state, tb.brokenReason ?? "").toBe("Active");
    const tlb = tb.getTimeline(timelineId);
    expect(tlb.diskConsistentLsn).toBe(lsn);
    expect(times.map((x) => tlb.lsnForTime(pgTimestampToMs(x)))).toEqual(answersA);
    expectModel(tlb);

    // B ingests on: appended to the same index, exact, and published in generation 2.
    ingest(tlb, 2100);
    expectModel(tlb);
    await tlb.checkpoint();
    await within(b.remote!.whenConnected(), "B's remote client");
    await within(b.remote!.clientOf(tlb)!.waitUploaded(), "B's upload");
    const storage = b.remote!.storage;
    const check2 = await checkRemoteTimeline(storage, tenantId, timelineId, 2, { verify_checksums: true });
    expect(check2.ok, JSON.stringify(check2)).toBe(true);
    const keys = (await storage.list(`tenants/${tenantId}/timelines/${timelineId}/commit_times`)).map((o) => o.key);
    expect(keys).toEqual([objectKey(tenantId, timelineId, 2)]);

    // And A (generation 3) gets B's appends too.
    await within(b.detachTenant(tenantId), "detach B");
    const ta = await within(a.attachTenant(tenantId, 3), "attach A");
    const tla = ta.getTimeline(timelineId);
    expect(tla.diskConsistentLsn).toBe(lsn);
    expectModel(tla);
  });

  it("a corrupt object in the bucket: the attach works, lookups answer nodata/past (never a wrong LSN), a warning is logged", async () => {
    await within(a.remote!.whenConnected(), "A's remote client");
    const tla = a.tenants.get(tenantId).getTimeline(timelineId);
    await within(a.remote!.clientOf(tla)!.waitUploaded(), "A's upload");
    await within(a.detachTenant(tenantId), "detach A");
    const storage = a.remote!.storage;
    const key = objectKey(tenantId, timelineId, 3);
    const bytes = await storage.get(key);
    bytes[bytes.length - 100]! ^= 0x40;
    await storage.put(key, bytes, { size_bytes: bytes.length });

    const tb = await within(b.attachTenant(tenantId, 4), "attach");
    expect(tb.state, tb.brokenReason ?? "").toBe("Active");
    expect(logs.find(/commit-time snapshot: CRC32C mismatch/).length).toBeGreaterThan(0);
    const tlb = tb.getTimeline(timelineId);
    for (const t of asks()) {
      const got = tlb.lsnForTime(pgTimestampToMs(t));
      expect(["nodata", "past"], `T = ${t}: ${JSON.stringify(got)}`).toContain(got.kind);
    }
    // New commits are indexed from here on and published; the bad object is deleted.
    const from = commits.length;
    ingest(tlb, 10);
    expect(tlb.lsnForTime(pgTimestampToMs(commits[from + 5]!.t))).toEqual({ kind: "present", lsn: commits[from + 5]!.lsn });
    await tlb.checkpoint();
    await within(b.remote!.whenConnected(), "B's remote client");
    await within(b.remote!.clientOf(tlb)!.waitUploaded(), "B's upload");
    const check = await checkRemoteTimeline(storage, tenantId, timelineId, 4);
    expect(check.ok, JSON.stringify(check)).toBe(true);
    expect((await storage.list(`tenants/${tenantId}/timelines/${timelineId}/commit_times`)).map((o) => o.key)).toEqual([
      objectKey(tenantId, timelineId, 4),
    ]);
  });

  it("blocks that fail their seal (the object's own CRC32C made to match): the timeline keeps them aside and starts the index empty", async () => {
    const tlb = b.tenants.get(tenantId).getTimeline(timelineId);
    await within(b.remote!.clientOf(tlb)!.waitUploaded(), "B's upload");
    await within(b.detachTenant(tenantId), "detach B");
    const storage = a.remote!.storage;
    const key = objectKey(tenantId, timelineId, 4);
    const bytes = await storage.get(key);
    expect(bytes.length).toBeGreaterThan(16 + 8192);
    // A byte inside block 1 of `commit_times` (after the 16-byte header and block 0).
    bytes[16 + 8192 + 100]! ^= 0x01;
    new DataView(bytes.buffer, bytes.byteOffset).setUint32(12, crc32c(bytes.subarray(16)) >>> 0);
    await storage.put(key, bytes, { size_bytes: bytes.length });
    const warned = logs.find(/commit-time index corrupt/).length;

    const ta = await within(a.attachTenant(tenantId, 5), "attach");
    expect(ta.state, ta.brokenReason ?? "").toBe("Active");
    expect(logs.find(/commit-time index corrupt/).length).toBe(warned + 1);
    const tla = ta.getTimeline(timelineId);
    for (const t of asks()) expect(["nodata", "past"]).toContain(tla.lsnForTime(pgTimestampToMs(t)).kind);
    // More commits, published in generation 5 (the bad object is deleted).
    ingest(tla, 20);
    await tla.checkpoint();
    await within(a.remote!.whenConnected(), "A's remote client");
    await within(a.remote!.clientOf(tla)!.waitUploaded(), "A's upload");
    expect((await storage.list(`tenants/${tenantId}/timelines/${timelineId}/commit_times`)).map((o) => o.key)).toEqual([
      objectKey(tenantId, timelineId, 5),
    ]);
    await within(a.detachTenant(tenantId), "detach A");
  });

  it("an attach resumed after a crash replaces the commit-time files its first attempt left", async () => {
    const storage = a.remote!.storage;
    const dir = tmp("ct-resume-");
    const tlDir = join(dir, "timelines", timelineId);
    mkdirSync(tlDir, { recursive: true });
    // What an attach in generation 6 cut short could have left: its marker and stale files.
    writeFileSync(join(dir, "attaching"), JSON.stringify({ generation: 6 }));
    writeFileSync(join(tlDir, "commit_times"), Buffer.alloc(8192, 7));
    writeFileSync(join(tlDir, "commit_times.tail"), Buffer.alloc(8192, 9));
    const r = await attachTenant(storage, tenantId, 6, dir, { lazy_layers: true });
    expect(r.timelines).toEqual([{ id: timelineId, downloaded: 0, present: 0, warning: null }]);
    const obj = await storage.get(objectKey(tenantId, timelineId, 5));
    const mainLen = new DataView(obj.buffer, obj.byteOffset).getUint32(8);
    expect(readFileSync(join(tlDir, "commit_times")).equals(Buffer.from(obj.subarray(16, 16 + mainLen)))).toBe(true);
    expect(readFileSync(join(tlDir, "commit_times.tail")).equals(Buffer.from(obj.subarray(16 + mainLen)))).toBe(true);
    expect(existsSync(join(dir, "attaching"))).toBe(false);
  });

  it("remote deletion of the tenant deletes its commit-time objects too (nothing left)", async () => {
    const storage = a.remote!.storage;
    expect((await storage.list(`tenants/${tenantId}/timelines/${timelineId}/commit_times`)).length).toBe(1);
    const r = await deleteRemoteTenant(storage, tenantId, 6);
    expect(r.left).toEqual([]);
    expect(await storage.list(`tenants/${tenantId}/`)).toEqual([]);
  });

  it("index_part.json: commit_times is optional (older indexes parse), and round-trips", () => {
    const metadata = {
      disk_consistent_lsn: asLsn(0x100),
      prev_record_lsn: null,
      ancestor_timeline_id: null,
      ancestor_lsn: asLsn(0),
      latest_gc_cutoff_lsn: asLsn(0),
      initdb_lsn: asLsn(0x100),
      pg_version: 15,
    };
    const key = "tenants/t/timelines/x/index_part.json-00000002";
    const old = parseIndexPart(key, encodeIndexPart({ metadata, layers: new Map() }));
    expect(old.commit_times ?? null).toBeNull();
    expect(parseIndexPart(key, encodeIndexPart({ metadata, layers: new Map(), commit_times: { generation: 2 } })).commit_times).toEqual({
      generation: 2,
    });
    // Not from a newer generation than the index's own.
    expect(() => parseIndexPart(key, encodeIndexPart({ metadata, layers: new Map(), commit_times: { generation: 3 } }))).toThrow(
      /commit_times has generation 3/,
    );
  });
});
