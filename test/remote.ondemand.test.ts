/**
 * On-demand layer download and disk-usage eviction (issue 10): a tenant written on Server A
 * and detached is attached on Server B, which downloads only the index and the metadata; a
 * read downloads just the layers it visits (counted on disk and in the metrics) and returns
 * what A had. Concurrent readers of one evicted layer share one download. A corrupt object is
 * a CorruptionError that leaves nothing behind, and the read works once the object is fixed.
 * Run against LocalFs and against s3rver. Then, on LocalFs: eviction keeps the resident
 * bytes under max_local_disk_bytes while writes go on, and reads after it return the same
 * values; a pageserver process killed in the middle of a download (failpoint `exit`) leaves a
 * temp file that the restart deletes, never loads, and the read downloads the layer again.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WAIT_BOUND_MS, within } from "./support/within.js";
import { LayerEvictedError } from "../src/layers/historic_layer.js";
import { parseLayerName, TEMP_SUFFIX } from "../src/layers/layer_name.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { findLatestIndex } from "../src/remote/index_part.js";
import { layerKey } from "../src/remote/remote_path.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { CorruptionError } from "../src/types/errors.js";
import { generateTenantId, generateTimelineId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { freePort } from "./support/backup_server.js";
import { LogCapture } from "./support/log_check.js";
import { PageserverProcess } from "./support/pageserver_process.js";
import { TestS3 } from "./support/s3rver.js";
import { asLsn } from "../src/types/lsn.js";

const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
/** Each round writes its own keys and becomes one L0 layer: a read of round r's key stops in round r's layer. */
const ROUNDS = 6;
const KEYS_PER_ROUND = 40;
const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d", compaction_threshold: 100, image_creation_threshold: 100 };

const logs = new LogCapture();
const dirs: string[] = [];
const servers: Server[] = [];

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

async function server(
  workdir: string,
  remote: string,
  extra: { max_local_disk_bytes?: number; min_free_disk_bytes?: number } = {},
): Promise<Server> {
  const s = new Server(
    loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: remote, ...extra }),
    logs.logger,
  );
  // Every reply checked against its declared schema.
  s.http.checkResponses = true;
  await s.start();
  servers.push(s);
  return s;
}

function layerFiles(tl: Timeline): string[] {
  return readdirSync(tl.dir).filter((n) => parseLayerName(n) !== null);
}

function tempFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.endsWith(TEMP_SUFFIX));
}

function text(v: Uint8Array | null): string | null {
  return v === null ? null : Buffer.from(v).toString();
}

interface Written {
  tenantId: TenantId;
  timelineId: TimelineId;
  values: Map<number, string>;
  lsn: number;
  /** The key each round wrote first (round r's layer holds it). */
  roundKeys: number[];
}

/** On `a`: a tenant whose timeline has ROUNDS L0 layers, uploaded; then detached (the bucket holds it all). */
async function writeAndDetach(a: Server): Promise<Written> {
  const tenantId = generateTenantId();
  const timelineId = generateTimelineId();
  const t = await a.tenants.create(tenantId, QUIET);
  let lsn = 0x1000;
  const tl = await t.createTimeline({ timelineId, startLsn: asLsn(lsn) });
  const values = new Map<number, string>();
  const roundKeys: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    roundKeys.push(r * KEYS_PER_ROUND);
    for (let i = 0; i < KEYS_PER_ROUND; i++) {
      const key = r * KEYS_PER_ROUND + i;
      lsn += 8;
      const v = `value ${key} round ${r} ${"x".repeat(200)}`;
      tl.put(k(key), asLsn(lsn), imageValue(Buffer.from(v)));
      values.set(key, v);
    }
    tl.finishWrite(asLsn(lsn));
    await tl.checkpoint();
  }
  expect(tl.layerMap.size).toBe(ROUNDS);
  await within(a.detachTenant(tenantId), "detach");
  return { tenantId, timelineId, values, lsn, roundKeys };
}

afterAll(async () => {
  for (const s of servers) await s.stop().catch(() => undefined);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  // The corrupt object, provoked on purpose.
  logs.expectClean([/on-demand layer download failed/]);
});

const s3 = new TestS3();

describe.each([
  ["LocalFs", async () => `file://${tmp("ondemand-bucket-")}`],
  [
    "s3rver",
    async () => {
      await s3.start();
      return s3.url("ondemand");
    },
  ],
] as const)("on-demand download from %s", (_name, bucketUrl) => {
  let a: Server;
  let b: Server;
  let n = 0;

  beforeAll(async () => {
    const url = await bucketUrl();
    a = await server(tmp("ondemand-a-"), url);
    b = await server(tmp("ondemand-b-"), url);
  }, WAIT_BOUND_MS);

  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    if (_name === "s3rver") await s3.destroy();
  });

  async function attach(w: Written): Promise<Timeline> {
    const t = await within(b.attachTenant(w.tenantId, 2 + n++), "attach");
    expect(t.state, t.brokenReason ?? "").toBe("Active");
    return t.getTimeline(w.timelineId);
  }

  it("attach downloads no layer; the first read downloads only the layers it visits; all values equal", async () => {
    const w = await writeAndDetach(a);
    const tl = await attach(w);
    expect(layerFiles(tl)).toEqual([]);
    expect(tl.evictedLayerNames().length).toBe(ROUNDS);
    const before = b.remote!.ondemand.downloads;
    // The newest round's key: its layer is the first the walk visits, and it ends the read.
    const newest = w.roundKeys[ROUNDS - 1]!;
    expect(text(await within(tl.get(k(newest), asLsn(w.lsn)), "first read"))).toBe(w.values.get(newest));
    expect(b.remote!.ondemand.downloads - before).toBe(1);
    expect(layerFiles(tl).length).toBe(1);
    const listed = (await (await fetch(`http://127.0.0.1:${b.port}/v1/tenant/${w.tenantId}/timeline/${w.timelineId}/layer`)).json()) as {
      name: string;
      remote: boolean;
    }[];
    expect(listed.filter((l) => !l.remote).map((l) => l.name)).toEqual(layerFiles(tl));
    expect(listed.filter((l) => l.remote).length).toBe(ROUNDS - 1);
    // Round 2's key: the walk visits rounds 5, 4, 3, 2 (one of them already here).
    expect(text(await tl.get(k(w.roundKeys[2]!), asLsn(w.lsn)))).toBe(w.values.get(w.roundKeys[2]!));
    expect(layerFiles(tl).length).toBe(ROUNDS - 2);
    for (const [key, v] of w.values) expect(text(await tl.get(k(key), asLsn(w.lsn))), `key ${key}`).toBe(v);
    expect(layerFiles(tl).length).toBe(ROUNDS);
    expect(b.remote!.ondemand.downloads - before).toBe(ROUNDS);
    expect(tempFiles(tl.dir)).toEqual([]);
    // The histogram moved.
    const metrics = await b.metrics.metrics();
    const count = /pageserver_remote_ondemand_download_seconds_count (\d+)/.exec(metrics);
    expect(Number(count?.[1] ?? 0)).toBeGreaterThanOrEqual(ROUNDS);
    expect(metrics).toMatch(/pageserver_remote_ondemand_downloaded_layers_total \d+/);
  });

  it("readAt answers at once from local layers and with a Promise that downloads evicted ones; applyRecord ingests a record again after its reads met one", async () => {
    const w = await writeAndDetach(a);
    const tl = await attach(w);
    const oldest = w.roundKeys[0]!;
    const first = tl.readAt(k(oldest), asLsn(w.lsn));
    expect(first).toBeInstanceOf(Promise);
    expect(text(await within(first as Promise<Uint8Array | null>, "readAt of evicted layers"))).toBe(w.values.get(oldest));
    expect(layerFiles(tl).length).toBe(ROUNDS);
    // Every layer the read visits is local now: the value itself, no Promise.
    const again = tl.readAt(k(oldest), asLsn(w.lsn));
    expect(again).not.toBeInstanceOf(Promise);
    expect(text(again as Uint8Array | null)).toBe(w.values.get(oldest));
    // A record whose lookups meet an evicted layer: applied again once it is downloaded.
    for (const l of tl.residentLayers()) expect(await tl.evictLayer(l)).toBe(true);
    let runs = 0;
    const applier = {
      ingest: (key: number): void => {
        runs++;
        tl.getNow(k(key), asLsn(w.lsn));
      },
    };
    const applying = tl.applyRecord(applier, oldest);
    expect(applying).toBeInstanceOf(Promise);
    await within(applying!, "applyRecord with evicted layers");
    // The walk meets the evicted layers one at a time: one run per download, then the one that succeeds.
    expect(runs).toBe(ROUNDS + 1);
    expect(layerFiles(tl).length).toBe(ROUNDS);
    expect(tl.applyRecord(applier, oldest)).toBeUndefined();
    expect(runs).toBe(ROUNDS + 2);
  });

  it("a synchronous read of an evicted layer is a typed error; compaction and image creation download their inputs first", async () => {
    const w = await writeAndDetach(a);
    const tl = await attach(w);
    const oldest = w.roundKeys[0]!;
    expect(() => tl.getNow(k(oldest), asLsn(w.lsn))).toThrow(LayerEvictedError);
    expect(() => tl.getNow(k(oldest), asLsn(w.lsn))).toThrow(/async path/);
    expect(layerFiles(tl)).toEqual([]);
    // Under withResidentLayers the same synchronous read downloads what it meets and runs again.
    expect(
      text(
        await within(
          tl.withResidentLayers(() => tl.getNow(k(oldest), asLsn(w.lsn))),
          "sync read made async",
        ),
      ),
    ).toBe(w.values.get(oldest));
    expect(layerFiles(tl).length).toBe(ROUNDS);
    // Back to all evicted, by hand (every layer is uploaded), then the jobs.
    const client = b.remote!.clientOf(tl)!;
    for (const l of tl.residentLayers()) {
      expect(client.isUploaded(l.desc.fileName, l.desc.fileSize)).toBe(true);
      expect(await tl.evictLayer(l)).toBe(true);
    }
    expect(layerFiles(tl)).toEqual([]);
    const t = b.tenants.get(w.tenantId);
    await t.setConfig({ ...QUIET, compaction_threshold: 2 });
    const r = await within(t.compact({ timeline: tl }), "compaction of evicted layers");
    expect(r.l0Compacted).toBe(ROUNDS);
    expect(tl.evictedLayerNames()).toEqual([]);
    for (const [key, v] of w.values) expect(text(await tl.get(k(key), asLsn(w.lsn))), `key ${key}`).toBe(v);
    // Image creation: its worker jobs read every layer of the chain, and its keyspace walk
    // (the datadir's, which these raw keys are not part of) reads on the main thread.
    await within(client.waitUploaded(), "L1 uploads");
    for (const l of tl.residentLayers()) expect(await tl.evictLayer(l)).toBe(true);
    expect(layerFiles(tl)).toEqual([]);
    await within(tl.createImageLayers(true), "image creation over evicted layers");
    expect(tl.evictedLayerNames()).toEqual([]);
  });

  it("concurrent reads of one evicted layer share one download", async () => {
    const w = await writeAndDetach(a);
    const tl = await attach(w);
    const before = b.remote!.ondemand.downloads;
    const newest = w.roundKeys[ROUNDS - 1]!;
    const reads = Array.from({ length: 16 }, (_, i) => tl.get(k(newest + (i % KEYS_PER_ROUND)), asLsn(w.lsn)));
    const got = await within(Promise.all(reads), "concurrent reads");
    for (let i = 0; i < got.length; i++) expect(text(got[i]!)).toBe(w.values.get(newest + (i % KEYS_PER_ROUND)));
    expect(b.remote!.ondemand.downloads - before).toBe(1);
    expect(layerFiles(tl).length).toBe(1);
  });

  it("a corrupt object: a CorruptionError, nothing half-written kept; the read works once the object is fixed", async () => {
    const w = await writeAndDetach(a);
    const storage = b.remote!.storage;
    const idx = (await findLatestIndex(storage, w.tenantId, w.timelineId, 1))!.index;
    const [victim, meta] = [...idx.layers].sort((x, y) => parseLayerName(y[0])!.lsnRange.end - parseLayerName(x[0])!.lsnRange.end)[0]!;
    const key = layerKey(w.tenantId, w.timelineId, victim, meta.generation);
    const good = await storage.get(key);
    const bad = Buffer.from(good);
    bad[bad.length >> 1]! ^= 0xff;
    await storage.put(key, bad, { size_bytes: bad.byteLength });
    const tl = await attach(w);
    const newest = w.roundKeys[ROUNDS - 1]!;
    const failures = b.remote!.ondemand.failures;
    const e = await within(tl.get(k(newest), asLsn(w.lsn)), "read of a corrupt layer").catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CorruptionError);
    expect((e as Error).message).toContain("CRC32C");
    expect(b.remote!.ondemand.failures).toBe(failures + 1);
    expect(existsSync(join(tl.dir, victim))).toBe(false);
    expect(tempFiles(tl.dir)).toEqual([]);
    expect(tl.evictedLayerNames()).toContain(victim);
    // Fixed: the same read again downloads it.
    await storage.put(key, good, { size_bytes: good.byteLength });
    expect(text(await within(tl.get(k(newest), asLsn(w.lsn)), "read after the fix"))).toBe(w.values.get(newest));
    expect(statSync(join(tl.dir, victim)).size).toBe(meta.file_size);
  });
});

describe("disk-usage eviction (LocalFs)", () => {
  it("keeps the resident layer bytes under max_local_disk_bytes while writes go on; reads after eviction return the same values", async () => {
    const url = `file://${tmp("evict-bucket-")}`;
    // Room for about three of the layers written below.
    const limit = 3 * 12 * 1024;
    const s = await server(tmp("evict-node-"), url, { max_local_disk_bytes: limit });
    const tenantId = generateTenantId();
    const t = await s.tenants.create(tenantId, QUIET);
    let lsn = 0x1000;
    const tl = await t.createTimeline({ timelineId: generateTimelineId(), startLsn: asLsn(lsn) });
    await within(s.remote!.whenConnected(), "remote connect");
    const client = s.remote!.clientOf(tl)!;
    const values = new Map<number, string>();
    const EVICT_ROUNDS = 10;
    for (let r = 0; r < EVICT_ROUNDS; r++) {
      for (let i = 0; i < KEYS_PER_ROUND; i++) {
        const key = r * KEYS_PER_ROUND + i;
        lsn += 8;
        const v = `evict ${key} round ${r} ${"y".repeat(200)}`;
        tl.put(k(key), asLsn(lsn), imageValue(Buffer.from(v)));
        values.set(key, v);
      }
      tl.finishWrite(asLsn(lsn));
      await tl.checkpoint();
      await within(client.waitUploaded(), "uploads");
      await s.eviction!.round();
      const onDisk = layerFiles(tl).reduce((acc, name) => acc + statSync(join(tl.dir, name)).size, 0);
      expect(onDisk, `round ${r}`).toBeLessThanOrEqual(limit);
      expect(tl.residentBytes()).toBe(onDisk);
    }
    expect(s.eviction!.counters.evictions).toBeGreaterThan(0);
    expect(tl.evictedLayerNames().length).toBe(s.eviction!.counters.evictions);
    // The coldest went first: the newest layer is still here.
    const newestName = [...tl.layerMap.layers].sort((x, y) => y.desc.lsnRange.end - x.desc.lsnRange.end)[0]!.desc.fileName;
    expect(layerFiles(tl)).toContain(newestName);
    for (const [key, v] of values) expect(text(await within(tl.get(k(key), asLsn(lsn)), "read after eviction")), `key ${key}`).toBe(v);
    // Reading everything brought layers back over the limit; the node's own loop evicts again (bounded wait).
    const deadline = Date.now() + WAIT_BOUND_MS;
    while (tl.residentBytes() > limit && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(tl.residentBytes()).toBeLessThanOrEqual(limit);
    const metrics = await s.metrics.metrics();
    expect(metrics).toMatch(/pageserver_layer_evictions_total [1-9]/);
    expect(metrics).toMatch(/pageserver_resident_layer_bytes \d+/);
    // A restart keeps the evicted layers evicted (the manifest), and reads still return the values.
    await s.stop();
    servers.splice(servers.indexOf(s), 1);
    const again = await server(s.config.workdir, url);
    const tl2 = again.tenants.get(tenantId).getTimeline(tl.timelineId);
    expect(tl2.evictedLayerNames().length).toBeGreaterThan(0);
    expect(tl2.layerMap.size).toBe(tl.layerMap.size);
    for (const [key, v] of values) expect(text(await within(tl2.get(k(key), asLsn(lsn)), "read after restart")), `key ${key}`).toBe(v);
  }, 120_000);

  it("min_free_disk_bytes: a floor above the free space evicts every uploaded layer; a floor below it evicts none; reads come back", async () => {
    const url = `file://${tmp("floor-bucket-")}`;
    // No filesystem has 2^50 bytes free here: the floor can't be met, so every candidate goes.
    const s = await server(tmp("floor-node-"), url, { min_free_disk_bytes: 2 ** 50 });
    expect(s.eviction!.freeDiskBytes()).toBeGreaterThan(0);
    const t = await s.tenants.create(generateTenantId(), QUIET);
    let lsn = 0x1000;
    const tl = await t.createTimeline({ timelineId: generateTimelineId(), startLsn: asLsn(lsn) });
    await within(s.remote!.whenConnected(), "remote connect");
    const client = s.remote!.clientOf(tl)!;
    const values = new Map<number, string>();
    for (let r = 0; r < 3; r++) {
      for (let i = 0; i < KEYS_PER_ROUND; i++) {
        const key = r * KEYS_PER_ROUND + i;
        lsn += 8;
        values.set(key, `floor ${key}`);
        tl.put(k(key), asLsn(lsn), imageValue(Buffer.from(`floor ${key}`)));
      }
      tl.finishWrite(asLsn(lsn));
      await tl.checkpoint();
    }
    await within(client.waitUploaded(), "uploads");
    await s.eviction!.round();
    expect(layerFiles(tl)).toEqual([]);
    expect(tl.evictedLayerNames().length).toBe(3);
    for (const [key, v] of values) expect(text(await within(tl.get(k(key), asLsn(lsn)), "read after eviction")), `key ${key}`).toBe(v);

    // A floor the filesystem meets evicts nothing.
    const s2 = await server(tmp("floor-node2-"), `file://${tmp("floor-bucket2-")}`, { min_free_disk_bytes: 1 });
    const t2 = await s2.tenants.create(generateTenantId(), QUIET);
    const tl2 = await t2.createTimeline({ timelineId: generateTimelineId(), startLsn: asLsn(0x1000) });
    await within(s2.remote!.whenConnected(), "remote connect");
    tl2.put(k(1), asLsn(0x1008), imageValue(Buffer.from("kept")));
    tl2.finishWrite(asLsn(0x1008));
    await tl2.checkpoint();
    await within(s2.remote!.clientOf(tl2)!.waitUploaded(), "uploads");
    await s2.eviction!.round();
    expect(layerFiles(tl2).length).toBe(1);
    expect(s2.eviction!.counters.evictions).toBe(0);
  });
});

describe("SIGKILL during an on-demand download (LocalFs)", () => {
  it("leaves a temp file the restart deletes and never loads; the read downloads the layer again", async () => {
    const bucketDir = tmp("kill-bucket-");
    const url = `file://${bucketDir}`;
    const a = await server(tmp("kill-a-"), url);
    const w = await writeAndDetach(a);
    await a.stop();
    servers.splice(servers.indexOf(a), 1);
    const home = tmp("kill-node-");
    const workdir = join(home, "workdir");
    rmSync(workdir, { recursive: true, force: true });
    mkdirSync(workdir, { recursive: true });
    writeFileSync(join(workdir, "pageserver.json"), JSON.stringify({ remote_storage: url }));
    const ps = new PageserverProcess(workdir, await freePort(), join(home, "pageserver.log"));
    ps.extraArgs.push("--enable-failpoints");
    try {
      await ps.start(WAIT_BOUND_MS, { FAILPOINTS: "remote-download-layer=exit" });
      const r = await fetch(`${ps.url}/v1/tenant/${w.tenantId}/attach`, { method: "POST", body: JSON.stringify({ generation: 2 }) });
      expect(r.status, await r.text()).toBe(201);
      // The timeline view computes the logical size: its walk meets an evicted layer, and
      // downloads it in the background, where the failpoint ends the process.
      for (let i = 0; i < 100; i++) {
        const res = await fetch(`${ps.url}/v1/tenant/${w.tenantId}/timeline/${w.timelineId}`).catch(() => null);
        if (res === null) break;
        await res.text();
        await new Promise((x) => setTimeout(x, 100));
      }
      expect(await ps.waitExit(WAIT_BOUND_MS)).toBe(1);
    } finally {
      await ps.kill();
    }
    const tlDir = join(workdir, "tenants", w.tenantId, "timelines", w.timelineId);
    expect(tempFiles(tlDir).length).toBe(1);
    const partial = tempFiles(tlDir)[0]!.slice(0, -TEMP_SUFFIX.length);
    expect(existsSync(join(tlDir, partial))).toBe(false);

    const b = await server(workdir, url);
    const tl = b.tenants.get(w.tenantId).getTimeline(w.timelineId);
    expect(tempFiles(tlDir)).toEqual([]);
    expect(tl.evictedLayerNames()).toContain(partial);
    expect(tl.evictedLayerNames().length).toBe(ROUNDS);
    for (const [key, v] of w.values) expect(text(await within(tl.get(k(key), asLsn(w.lsn)), "read after restart")), `key ${key}`).toBe(v);
    expect(statSync(join(tlDir, partial)).isFile()).toBe(true);
  }, 120_000);
});
