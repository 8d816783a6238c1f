/**
 * Downloads (src/remote/download.ts), the ground of attach: a tenant with a branch, written,
 * checkpointed and compacted, is uploaded through RemoteTimelineClients; into an empty
 * directory its timelines are listed and downloaded; the tenant loaded from there reads every
 * value the original reads. A corrupt object fails its download with a CorruptionError and
 * leaves no metadata, so the half-downloaded timeline is not loaded; a retry after the object
 * is repaired downloads only what is missing.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { downloadTimeline, listRemoteTimelines, TIMELINE_METADATA_FILE } from "../src/remote/download.js";
import { findLatestIndex } from "../src/remote/index_part.js";
import { LocalFs } from "../src/remote/local_fs.js";
import { layerKey } from "../src/remote/remote_path.js";
import { RemoteTimelineClient } from "../src/remote/remote_timeline_client.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { CorruptionError, NotFoundError } from "../src/types/errors.js";
import { generateTimelineId, type TimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { TenantHarness } from "./support/tenant_harness.js";
import { asLsn, lsnAdd } from "../src/types/lsn.js";

const silent = pino({ level: "silent" });
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
const KEYS = 60;

let root: string;
let storage: LocalFs;
let src: TenantHarness;
let copyDir: string;
const expected = new Map<TimelineId, { lsn: number; values: (string | null)[] }>();

async function snapshot(tl: Timeline): Promise<{ lsn: number; values: (string | null)[] }> {
  const lsn = tl.lastRecordLsn;
  const values: (string | null)[] = [];
  for (let i = 0; i < KEYS; i++) {
    const v = await tl.get(k(i), lsn);
    values.push(v === null ? null : Buffer.from(v).toString());
  }
  return { lsn, values };
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "dl-bucket-"));
  copyDir = mkdtempSync(join(tmpdir(), "dl-copy-"));
  storage = new LocalFs(root);
  src = new TenantHarness({ conf: { compaction_threshold: 2, image_creation_threshold: 1 } });
  const tenant = await src.create();
  const main = await tenant.createTimeline({ startLsn: asLsn(0x1000) });
  let lsn = 0x1000;
  for (let round = 0; round < 4; round++) {
    for (let i = 0; i < KEYS; i++) {
      lsn += 8;
      main.put(k(i), asLsn(lsn), imageValue(Buffer.from(`main ${i} r${round}`)));
    }
    main.finishWrite(asLsn(lsn));
    await main.checkpoint();
  }
  await tenant.compact({ timeline: main });
  const branch = await tenant.createTimeline({ ancestorId: main.timelineId, ancestorLsn: asLsn(lsn - 8 * KEYS) });
  let blsn = branch.lastRecordLsn;
  for (let i = 0; i < KEYS; i += 3) {
    blsn = lsnAdd(blsn, 8);
    branch.put(k(i), blsn, imageValue(Buffer.from(`branch ${i}`)));
  }
  branch.finishWrite(blsn);
  await branch.checkpoint();
  for (const tl of [main, branch]) {
    const c = await RemoteTimelineClient.open({ storage, tenant_id: src.tenantId, timeline_id: tl.timelineId, generation: 1, log: silent });
    c.reconcile({ layers: tl.layerFiles(), metadata: tl.metadata() });
    await c.waitUploaded();
    await c.shutdown();
    expected.set(tl.timelineId, await snapshot(tl));
  }
}, 120_000);

afterAll(async () => {
  await src.close();
  rmSync(root, { recursive: true, force: true });
  rmSync(copyDir, { recursive: true, force: true });
});

describe("downloads", () => {
  it("a tenant downloaded into an empty directory loads and reads what the original reads", async () => {
    const ids = await listRemoteTimelines(storage, src.tenantId);
    expect(ids).toEqual([...expected.keys()].sort());
    const tdir = join(copyDir, src.tenantId);
    mkdirSync(join(tdir, "timelines"), { recursive: true });
    writeFileSync(join(tdir, "config.json"), "{}");
    for (const id of ids) {
      const r = await downloadTimeline(storage, src.tenantId, id, 1, join(tdir, "timelines", id), { concurrency: 2 });
      expect(r.downloaded).toBe(r.index.layers.size);
      expect(r.present).toBe(0);
    }
    const copy = new TenantHarness({ dir: copyDir, tenantId: src.tenantId });
    try {
      const t = copy.load();
      expect(t.state, t.brokenReason ?? "").toBe("Active");
      for (const [id, want] of expected) {
        const tl = t.getTimeline(id);
        expect(tl.diskConsistentLsn).toBe(want.lsn);
        expect(await snapshot(tl)).toEqual(want);
      }
    } finally {
      await copy.close();
    }
  });

  it("a corrupt object fails the download, leaves no metadata, and a retry fetches only what is missing", async () => {
    const [id] = [...expected.keys()];
    const idx = (await findLatestIndex(storage, src.tenantId, id!, 1))!.index;
    const [victim, meta] = [...idx.layers].find(([, m]) => m.file_size > 0)!;
    const key = layerKey(src.tenantId, id!, victim, meta.generation);
    const good = await storage.get(key);
    const bad = Buffer.from(good);
    bad[bad.length - 1]! ^= 0xff;
    await storage.put(key, bad, { size_bytes: bad.byteLength });
    const dir = join(mkdtempSync(join(tmpdir(), "dl-bad-")), id!);
    try {
      const e = await downloadTimeline(storage, src.tenantId, id!, 1, dir, { concurrency: 1 }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(CorruptionError);
      expect((e as Error).message).toContain(key);
      expect((e as Error).message).toContain("CRC32C");
      expect(existsSync(join(dir, TIMELINE_METADATA_FILE))).toBe(false);
      expect(existsSync(join(dir, victim))).toBe(false);
      await storage.put(key, good, { size_bytes: good.byteLength });
      const r = await downloadTimeline(storage, src.tenantId, id!, 1, dir, { concurrency: 1 });
      expect(r.downloaded).toBeGreaterThanOrEqual(1);
      expect(r.downloaded + r.present).toBe(idx.layers.size);
      expect(existsSync(join(dir, TIMELINE_METADATA_FILE))).toBe(true);
    } finally {
      rmSync(join(dir, ".."), { recursive: true, force: true });
    }
  });

  it("a timeline without an index is not found", async () => {
    await expect(downloadTimeline(storage, src.tenantId, generateTimelineId(), 1, join(copyDir, "none"))).rejects.toBeInstanceOf(
      NotFoundError,
    );
  });
});
