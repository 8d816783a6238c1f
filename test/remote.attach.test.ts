/**
 * Attach (src/remote/attach.ts): a tenant uploaded in generation 1 is attached in generation 2
 * into an empty directory and loads with the same values; its remote client then writes
 * generation-2 keys. An attach cut short (a corrupt object) leaves the `attaching` marker, is
 * not a whole tenant, and resumes (skipping what it already has) once the object is good;
 * an attach in a generation older than the bucket's is refused, as is a second attach over
 * an attached tenant.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ATTACHING_MARKER, attachPending, attachTenant, GENERATION_FILE, readTenantGeneration } from "../src/remote/attach.js";
import { FIRST_GENERATION } from "../src/remote/generation.js";
import { encodeIndexPart, findLatestIndex, listIndexGenerations } from "../src/remote/index_part.js";
import { LocalFs } from "../src/remote/local_fs.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import { indexKey, layerKey } from "../src/remote/remote_path.js";
import { RemoteTimelineClient } from "../src/remote/remote_timeline_client.js";
import { BadStateError, CorruptionError } from "../src/types/errors.js";
import { generateTenantId, generateTimelineId, parseTimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { asLsn } from "../src/types/lsn.js";

const silent = pino({ level: "silent" });
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
const KEYS = 40;

let root: string;
let storage: LocalFs;
let src: TenantHarness;
const dirs: string[] = [];
const values: (string | null)[] = [];
let lsn = 0x1000;

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

beforeAll(async () => {
  root = tmp("attach-bucket-");
  storage = new LocalFs(root);
  src = new TenantHarness({ conf: { compaction_threshold: 2, image_creation_threshold: 1 } });
  const tenant = await src.create();
  const tl = await tenant.createTimeline({ startLsn: asLsn(lsn) });
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < KEYS; i++) {
      lsn += 8;
      tl.put(k(i), asLsn(lsn), imageValue(Buffer.from(`v ${i} r${round}`)));
    }
    tl.finishWrite(asLsn(lsn));
    await tl.checkpoint();
  }
  const c = await RemoteTimelineClient.open({ storage, tenant_id: src.tenantId, timeline_id: tl.timelineId, generation: 1, log: silent });
  c.reconcile({ layers: tl.layerFiles(), metadata: tl.metadata() });
  await c.waitUploaded();
  await c.shutdown();
  for (let i = 0; i < KEYS; i++) {
    const v = await tl.get(k(i), asLsn(lsn));
    values.push(v === null ? null : Buffer.from(v).toString());
  }
}, 120_000);

afterAll(async () => {
  await src.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("attach", () => {
  it("a tenant created here is in the first generation", () => {
    expect(readTenantGeneration(src.tenantDir)).toBe(FIRST_GENERATION);
    expect(attachPending(src.tenantDir)).toBeNull();
  });

  it("an attach cut short leaves its marker, then resumes; the tenant loads with the same values and writes generation 2", async () => {
    const home = tmp("attach-home-");
    const tdir = join(home, src.tenantId);
    const [tlId] = (await storage.list(`tenants/${src.tenantId}/timelines/`)).map((o) => parseTimelineId(o.key.split("/")[3]));
    const idx = (await findLatestIndex(storage, src.tenantId, tlId!, 1))!.index;
    const [victim, meta] = [...idx.layers][idx.layers.size - 1]!;
    const key = layerKey(src.tenantId, tlId!, victim, meta.generation);
    const good = await storage.get(key);
    const bad = Buffer.from(good);
    bad[0]! ^= 1;
    await storage.put(key, bad, { size_bytes: bad.byteLength });

    await expect(attachTenant(storage, src.tenantId, 2, tdir, { concurrency: 1 })).rejects.toBeInstanceOf(CorruptionError);
    expect(attachPending(tdir)).toBe(2);
    expect(existsSync(join(tdir, GENERATION_FILE))).toBe(false);
    // Another generation can't take over a pending attach.
    await expect(attachTenant(storage, src.tenantId, 3, tdir)).rejects.toBeInstanceOf(BadStateError);

    await storage.put(key, good, { size_bytes: good.byteLength });
    const r = await attachTenant(storage, src.tenantId, 2, tdir, { concurrency: 1 });
    expect(r.timelines.length).toBe(1);
    expect(r.timelines[0]!.present).toBeGreaterThan(0);
    expect(r.timelines[0]!.present + r.timelines[0]!.downloaded).toBe(idx.layers.size);
    expect(existsSync(join(tdir, ATTACHING_MARKER))).toBe(false);
    expect(readTenantGeneration(tdir)).toBe(2);
    expect(JSON.parse(readFileSync(join(tdir, GENERATION_FILE), "utf8"))).toEqual({ generation: 2 });
    await expect(attachTenant(storage, src.tenantId, 2, tdir)).rejects.toThrow(/attached here already/);

    const copy = new TenantHarness({ dir: home, tenantId: src.tenantId });
    try {
      const t = copy.load();
      expect(t.state, t.brokenReason ?? "").toBe("Active");
      const tl = t.listTimelines()[0]!;
      expect(tl.diskConsistentLsn).toBe(lsn);
      for (let i = 0; i < KEYS; i++) {
        const v = await tl.get(k(i), asLsn(lsn));
        expect(v === null ? null : Buffer.from(v).toString()).toBe(values[i]);
      }
      // The attached copy's remote client writes generation 2 and starts from generation 1's index.
      const c = await RemoteTimelineClient.open({
        storage,
        tenant_id: src.tenantId,
        timeline_id: tl.timelineId,
        generation: readTenantGeneration(tdir),
        log: silent,
      });
      expect(c.remote_consistent_lsn).toBe(lsn);
      c.reconcile({ layers: tl.layerFiles(), metadata: tl.metadata() });
      await c.waitUploaded();
      await c.shutdown();
      expect(c.stats().uploaded_layers_total).toBe(0);
      expect(await listIndexGenerations(storage, src.tenantId, tl.timelineId)).toEqual([1, 2]);
      expect((await checkRemoteTimeline(storage, src.tenantId, tl.timelineId, 2, { verify_checksums: true })).ok).toBe(true);
      // Generation 1 is stale now.
      await expect(
        RemoteTimelineClient.open({ storage, tenant_id: src.tenantId, timeline_id: tl.timelineId, generation: 1, log: silent }),
      ).rejects.toThrow(/superseded by generation 2/);
    } finally {
      await copy.close();
    }
  });

  it("refuses a generation older than the bucket's", async () => {
    const other = generateTenantId();
    const bytes = encodeIndexPart({
      metadata: {
        disk_consistent_lsn: asLsn(0x100),
        prev_record_lsn: null,
        ancestor_timeline_id: null,
        ancestor_lsn: asLsn(0),
        latest_gc_cutoff_lsn: asLsn(0),
        initdb_lsn: asLsn(0x100),
        pg_version: 15,
      },
      layers: new Map(),
    });
    await storage.put(indexKey(other, generateTimelineId(), 5), bytes, { size_bytes: bytes.byteLength });
    const tdir = join(tmp("attach-old-"), other);
    const e = await attachTenant(storage, other, 4, tdir).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BadStateError);
    expect((e as Error).message).toContain("older than generation 5");
    expect(existsSync(join(tdir, ATTACHING_MARKER))).toBe(false);
  });

  it("a corrupt generation file is a CorruptionError naming it", () => {
    const d = tmp("attach-gen-");
    writeFileSync(join(d, GENERATION_FILE), '{"generation": 0}');
    expect(() => readTenantGeneration(d)).toThrow(CorruptionError);
    expect(() => readTenantGeneration(d)).toThrow(GENERATION_FILE);
  });
});
