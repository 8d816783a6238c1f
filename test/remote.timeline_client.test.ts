/**
 * RemoteTimelineClient (src/remote/remote_timeline_client.ts) driven the way a timeline drives
 * its LayerEvents — flush, compaction (layers unlinked locally at once), GC, restart with
 * reconciliation — on LocalFs, with the bucket checked by checkRemoteTimeline
 * (src/remote/remote_check.ts) after each step; and the check itself against every kind of
 * damage it names.
 */
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { within } from "./support/within.js";
import { deltaLayerName, imageLayerName } from "../src/layers/layer_name.js";
import { encodeIndexPart, findLatestIndex } from "../src/remote/index_part.js";
import { LocalFs } from "../src/remote/local_fs.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import { indexKey, layerKey, timelinePrefix } from "../src/remote/remote_path.js";
import type { PutOptions, RemoteStorage } from "../src/remote/remote_storage.js";
import { RemoteTimelineClient, SupersededError } from "../src/remote/remote_timeline_client.js";
import type { AddedLayer } from "../src/tenant/layer_events.js";
import type { TimelineMetadata } from "../src/tenant/metadata.js";
import { BadStateError } from "../src/types/errors.js";
import { generateTenantId, generateTimelineId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { KEY_MAX, KEY_MIN } from "../src/types/key.js";
import { asLsn } from "../src/types/lsn.js";

const silent = pino({ level: "silent" });

let root: string;
let local: string;
let storage: LocalFs;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "rtc-remote-"));
  local = mkdtempSync(join(tmpdir(), "rtc-local-"));
  storage = new LocalFs(root);
});
afterAll(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(local, { recursive: true, force: true });
});

let seq = 0;
function layerFile(size_bytes: number, kind: "delta" | "image" = "delta"): AddedLayer {
  seq++;
  const name =
    kind === "delta"
      ? deltaLayerName({ start: KEY_MIN, end: KEY_MAX }, { start: asLsn(seq * 0x100), end: asLsn(seq * 0x100 + 0x80) })
      : imageLayerName({ start: KEY_MIN, end: KEY_MAX }, asLsn(seq * 0x100));
  const path = join(local, name);
  writeFileSync(path, Buffer.alloc(size_bytes, seq & 0xff));
  return { name, path };
}

function meta(dcl: number, gc_cutoff = 0): TimelineMetadata {
  return {
    disk_consistent_lsn: asLsn(dcl),
    prev_record_lsn: null,
    ancestor_timeline_id: null,
    ancestor_lsn: asLsn(0),
    latest_gc_cutoff_lsn: asLsn(gc_cutoff),
    initdb_lsn: asLsn(0x10),
    pg_version: 15,
  };
}

/** A storage whose layer puts wait while `hold` is set (to keep uploads pending). */
class HoldingStorage extends LocalFs {
  hold: Promise<void> | null = null;
  override async put(key: string, body: Uint8Array | Readable, opts: PutOptions): Promise<void> {
    if (this.hold !== null && !key.includes("index_part")) await within(this.hold, "hold");
    return super.put(key, body, opts);
  }
}

async function names(st: RemoteStorage, t: TenantId, tl: TimelineId): Promise<string[]> {
  const p = timelinePrefix(t, tl);
  return (await st.list(p)).map((o) => o.key.slice(p.length)).sort();
}

describe("RemoteTimelineClient", () => {
  it("follows flush, compaction and GC; reconciles at restart; the bucket checks clean each time", async () => {
    const tenant = generateTenantId();
    const timeline = generateTimelineId();
    const st = new HoldingStorage(root);
    const stopped: string[] = [];
    const o = {
      storage: st,
      tenant_id: tenant,
      timeline_id: timeline,
      generation: 1,
      log: silent,
      onStopped: (_s: string, r: string) => stopped.push(r),
    };

    // Load: two local layers, an empty bucket.
    const c1 = await RemoteTimelineClient.open(o);
    expect(c1.remote_consistent_lsn).toBeNull();
    const [a, b] = [layerFile(1000), layerFile(2000)];
    c1.reconcile({ layers: [a, b], metadata: meta(0x300) });
    await within(c1.waitUploaded(), "reconcile uploads");
    expect(c1.remote_consistent_lsn).toBe(0x300);
    let check = await checkRemoteTimeline(st, tenant, timeline, 1, { verify_checksums: true });
    expect(check).toMatchObject({ ok: true, layers_named: 2, missing: [], orphans: [] });

    // Flush: a new L0 whose upload is held, then the metadata that covers it.
    let release!: () => void;
    st.hold = new Promise<void>((res) => (release = res));
    const c = layerFile(3000);
    c1.layersAdded([c]);
    c1.metadataChanged(meta(0x400));
    expect(c1.isPending(c.name)).toBe(true);
    // Compaction right away: c and a become d; the timeline unlinks c and a at once.
    const d = layerFile(4000);
    c1.layersAdded([d]);
    c1.layersRemoved([a.name, c.name]);
    unlinkSync(a.path);
    unlinkSync(c.path);
    expect(c1.remote_consistent_lsn).toBe(0x300);
    st.hold = null;
    release();
    await within(c1.waitUploaded(), "compaction uploads");
    expect(c1.remote_consistent_lsn).toBe(0x400);
    check = await checkRemoteTimeline(st, tenant, timeline, 1, { verify_checksums: true });
    expect(check).toMatchObject({ ok: true, layers_named: 2 });
    expect(await names(st, tenant, timeline)).toEqual([`${b.name}-00000001`, `${d.name}-00000001`, "index_part.json-00000001"].sort());

    // A rewrite under an existing name is not uploaded again.
    const before = c1.stats().uploaded_layers_total;
    c1.layersAdded([d]);
    await within(c1.waitUploaded(), "no-op");
    expect(c1.stats().uploaded_layers_total).toBe(before);

    // GC: the cutoff rises, then b goes.
    c1.metadataChanged(meta(0x400, 0x380));
    c1.layersRemoved([b.name]);
    unlinkSync(b.path);
    await within(c1.waitUploaded(), "gc");
    const idx = await findLatestIndex(st, tenant, timeline, 1);
    expect(idx!.index.metadata.latest_gc_cutoff_lsn).toBe(0x380);
    expect([...idx!.index.layers.keys()]).toEqual([d.name]);
    expect((await checkRemoteTimeline(st, tenant, timeline, 1)).ok).toBe(true);
    await c1.shutdown();

    // Restart in generation 2 with local changes made while offline: e appeared, d is gone.
    const e = layerFile(500, "image");
    unlinkSync(d.path);
    // A crash in generation 2 had left garbage: a layer uploaded but never indexed (its local
    // file gone since), and a half-written copy of e.
    const junk = layerFile(50);
    unlinkSync(junk.path);
    const put = (key: string, bytes: Uint8Array) => st.put(key, bytes, { size_bytes: bytes.byteLength });
    await put(layerKey(tenant, timeline, junk.name, 2), new Uint8Array(50));
    await put(layerKey(tenant, timeline, e.name, 2), new Uint8Array(7));
    const c2 = await RemoteTimelineClient.open({ ...o, generation: 2 });
    expect(c2.remote_consistent_lsn).toBe(0x400);
    c2.reconcile({ layers: [e], metadata: meta(0x500, 0x380) });
    await within(c2.waitUploaded(), "restart reconcile");
    check = await checkRemoteTimeline(st, tenant, timeline, 2, { verify_checksums: true });
    expect(check).toMatchObject({ ok: true, layers_named: 1, index_generation: 2, stale_indexes: [indexKey(tenant, timeline, 1)] });
    expect(await names(st, tenant, timeline)).toEqual(
      [`${e.name}-00000002`, "index_part.json-00000001", "index_part.json-00000002"].sort(),
    );

    // Generation 1 is stale now: it can't open.
    await expect(RemoteTimelineClient.open(o)).rejects.toBeInstanceOf(SupersededError);
    // A local layer under a name the bucket has with another size (written again after a
    // crash, say): the remote copy is dropped from the index, deleted, and uploaded anew.
    await c2.shutdown();
    writeFileSync(e.path, Buffer.alloc(777, 9));
    const c2b = await RemoteTimelineClient.open({ ...o, generation: 2 });
    c2b.reconcile({ layers: [e], metadata: meta(0x500, 0x380) });
    await within(c2b.waitUploaded(), "replace reconcile");
    check = await checkRemoteTimeline(st, tenant, timeline, 2, { verify_checksums: true });
    expect(check).toMatchObject({ ok: true, layers_named: 1 });
    expect((await findLatestIndex(st, tenant, timeline, 2))!.index.layers.get(e.name)!.file_size).toBe(777);
    expect(c2b.stats()).toMatchObject({ uploaded_layers_total: 1, deleted_layers_total: 1 });
    // A restart with nothing changed uploads only an index.
    await c2b.shutdown();
    const c3 = await RemoteTimelineClient.open({ ...o, generation: 2 });
    c3.reconcile({ layers: [e], metadata: meta(0x500, 0x380) });
    await within(c3.waitUploaded(), "idle reconcile");
    expect(c3.stats()).toMatchObject({ uploaded_layers_total: 0, uploaded_indexes_total: 1, deleted_layers_total: 0 });
    // Local behind the bucket: refused, nothing scheduled.
    expect(() => c3.reconcile({ layers: [], metadata: meta(0x400) })).toThrow(BadStateError);
    expect(c3.stats().queued.upload_index).toBe(0);
    await c3.shutdown();
    expect(stopped).toEqual([]);
  });

  it("an event it can't schedule stops it instead of throwing into the timeline", async () => {
    const tenant = generateTenantId();
    const timeline = generateTimelineId();
    const stopped: [string, string][] = [];
    const c = await RemoteTimelineClient.open({
      storage,
      tenant_id: tenant,
      timeline_id: timeline,
      generation: 1,
      log: silent,
      onStopped: (s, r) => stopped.push([s, r]),
    });
    c.metadataChanged(meta(0x100));
    const gone = layerFile(10);
    unlinkSync(gone.path);
    expect(() => c.layersAdded([gone])).not.toThrow();
    expect(c.status).toBe("failed");
    expect(c.stop_reason).toContain("layersAdded");
    expect(stopped.length).toBe(1);
    expect(() => c.metadataChanged(meta(0x200))).not.toThrow();
    await c.shutdown();
  });
});

describe("checkRemoteTimeline", () => {
  it("names every kind of damage", async () => {
    const tenant = generateTenantId();
    const timeline = generateTimelineId();
    const c = await RemoteTimelineClient.open({ storage, tenant_id: tenant, timeline_id: timeline, generation: 3, log: silent });
    const ls = [layerFile(100), layerFile(200), layerFile(300), layerFile(400)];
    c.reconcile({ layers: ls, metadata: meta(0x1000) });
    await within(c.waitUploaded(), "uploads");
    await c.shutdown();
    expect((await checkRemoteTimeline(storage, tenant, timeline, 3, { verify_checksums: true })).ok).toBe(true);
    const k = (i: number) => layerKey(tenant, timeline, ls[i]!.name, 3);
    const put = (key: string, bytes: Uint8Array) => storage.put(key, bytes, { size_bytes: bytes.byteLength });
    await storage.delete([k(0)]);
    await put(k(1), new Uint8Array(7));
    await put(k(2), new Uint8Array(300));
    const orphan = layerKey(tenant, timeline, layerFile(10).name, 2);
    await put(orphan, new Uint8Array(10));
    const junk = `${timelinePrefix(tenant, timeline)}junk.txt`;
    await put(junk, new Uint8Array(1));
    // A newer generation's objects are listed, not judged.
    const newer = [layerKey(tenant, timeline, layerFile(10).name, 4), indexKey(tenant, timeline, 4)];
    await put(newer[0]!, new Uint8Array(1));
    const newerIndex = encodeIndexPart({ metadata: meta(0x2000), layers: new Map() });
    await put(newer[1]!, newerIndex);
    const r = await checkRemoteTimeline(storage, tenant, timeline, 3, { verify_checksums: true });
    expect(r).toMatchObject({
      ok: false,
      index_generation: 3,
      layers_named: 4,
      missing: [k(0)],
      size_mismatch: [{ key: k(1), index_bytes: 200, object_bytes: 7 }],
      checksum_mismatch: [k(2)],
      orphans: [orphan],
      unknown: [junk],
      stale_indexes: [],
    });
    expect([...r.newer_generation_keys].sort()).toEqual([...newer].sort());
    // Without checksums the same-size rewrite goes unseen; the rest stays.
    expect((await checkRemoteTimeline(storage, tenant, timeline, 3)).checksum_mismatch).toEqual([]);
    // No index at all: every layer object is an orphan.
    const t2 = generateTimelineId();
    await put(layerKey(tenant, t2, ls[3]!.name, 1), new Uint8Array(1));
    expect(await checkRemoteTimeline(storage, tenant, t2, 1)).toMatchObject({
      ok: false,
      index_key: null,
      orphans: [layerKey(tenant, t2, ls[3]!.name, 1)],
    });
  });
});
