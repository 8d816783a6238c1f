/**
 * The upload queue (src/remote/upload_queue.ts) over LocalFs and S3 (s3rver), through a
 * recording storage wrapper that checks the ordering rules at the moment each operation
 * starts: an index put only when every layer it names is in the bucket; a deletion only when
 * the last index put no longer names the deleted objects. With injected transient failures,
 * random completion order, coalesced index uploads, deletions, remote_consistent_lsn,
 * generation suffixes, a newer generation stopping deletions, permanent local errors,
 * shutdown, limits, and s3rver killed and restarted mid-upload.
 */
import { mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { crc32c } from "@node-rs/crc32";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WAIT_BOUND_MS, within } from "./support/within.js";
import { deltaLayerName } from "../src/layers/layer_name.js";
import type { Generation } from "../src/remote/generation.js";
import { encodeIndexPart, findLatestIndex, parseIndexPart } from "../src/remote/index_part.js";
import { indexKey, layerKey, parseIndexKey, parseLayerKey, timelinePrefix } from "../src/remote/remote_path.js";
import {
  type ListOptions,
  type PutOptions,
  type RemoteCallOptions,
  type RemoteObject,
  type RemoteStorage,
  RemoteStorageError,
} from "../src/remote/remote_storage.js";
import { openRemoteStorage, parseRemoteStorageUrl } from "../src/remote/storage_url.js";
import { type LayerUpload, UploadQueue, type UploadQueueOptions, UploadQueueStoppedError } from "../src/remote/upload_queue.js";
import type { TimelineMetadata } from "../src/tenant/metadata.js";
import { applyFailpoints, clearFailpoints } from "../src/types/failpoints.js";
import { ConflictError, InvalidArgumentError, LimitReachedError, NotFoundError, ShutdownError } from "../src/types/errors.js";
import { generateTenantId, generateTimelineId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { KEY_MAX, KEY_MIN } from "../src/types/key.js";
import { TestS3 } from "./support/s3rver.js";
import { asLsn } from "../src/types/lsn.js";

const silent = pino({ level: "silent" });
/** Upper bound on any single wait in this file; a hang fails the test instead of stalling it. */

/** Polls cond every few ms, at most bound_ms. */
async function until(cond: () => boolean, what: string, bound_ms = WAIT_BOUND_MS): Promise<void> {
  for (let waited = 0; !cond(); waited += 5) {
    if (waited > bound_ms) throw new Error(`bound exceeded waiting for ${what}`);
    await sleep(5);
  }
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await within(p, "rejection");
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

/** Deterministic xorshift32. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

interface Hooks {
  /** Awaited before a put reaches the inner storage (delays, gates). */
  beforePut?: (key: string) => Promise<void> | void;
  /** A failure to inject instead of this put attempt (null: let it through). */
  failPut?: (key: string) => RemoteStorageError | null;
  failDelete?: (keys: readonly string[]) => RemoteStorageError | null;
}

/**
 * Wraps a storage, logs operations in order, and checks the queue's ordering rules when each
 * put of an index and each deletion starts.
 */
class RecordingStorage implements RemoteStorage {
  readonly description: string;
  readonly log: string[] = [];
  readonly violations: string[] = [];
  hooks: Hooks = {};
  /** The layer keys named by the last index put that completed, per index key. */
  private lastIndexLayers = new Map<string, Set<string>>();

  constructor(
    readonly inner: RemoteStorage,
    private readonly tenant: TenantId,
    private readonly timeline: TimelineId,
  ) {
    this.description = `recording ${inner.description}`;
  }

  countOps(prefix: string): number {
    return this.log.filter((l) => l.startsWith(prefix)).length;
  }

  async put(key: string, body: Uint8Array | Readable, opts: PutOptions): Promise<void> {
    await this.hooks.beforePut?.(key);
    const fail = this.hooks.failPut?.(key) ?? null;
    if (fail !== null) {
      if (!(body instanceof Uint8Array)) body.destroy();
      this.log.push(`put-failed ${key}`);
      throw fail;
    }
    let named: Set<string> | null = null;
    if (parseIndexKey(key) !== null) {
      assertBytes(body);
      const ip = parseIndexPart(key, body);
      named = new Set([...ip.layers].map(([name, l]) => layerKey(this.tenant, this.timeline, name, l.generation)));
      for (const k of named) {
        try {
          await this.inner.head(k);
        } catch {
          this.violations.push(`index ${key} put while its layer ${k} is not in the bucket`);
        }
      }
    }
    this.log.push(`put-start ${key}`);
    await this.inner.put(key, body, opts);
    this.log.push(`put-done ${key}`);
    if (named !== null) this.lastIndexLayers.set(key, named);
  }

  async delete(keys: readonly string[], opts?: RemoteCallOptions): Promise<void> {
    const fail = this.hooks.failDelete?.(keys) ?? null;
    if (fail !== null) throw fail;
    for (const [ik, named] of this.lastIndexLayers) {
      for (const k of keys) if (named.has(k)) this.violations.push(`deleting ${k} while ${ik} names it`);
    }
    this.log.push(`delete ${keys.join(",")}`);
    await this.inner.delete(keys, opts);
  }

  get(key: string, opts?: RemoteCallOptions): Promise<Uint8Array> {
    return this.inner.get(key, opts);
  }
  getStream(key: string, opts?: RemoteCallOptions): Promise<{ stream: Readable; size_bytes: number }> {
    return this.inner.getStream(key, opts);
  }
  head(key: string, opts?: RemoteCallOptions): Promise<RemoteObject> {
    return this.inner.head(key, opts);
  }
  list(prefix: string, opts?: ListOptions): Promise<RemoteObject[]> {
    return this.inner.list(prefix, opts);
  }
  close(): void {
    // The inner storage is shared by the file's tests; afterAll closes it.
  }
}

function assertBytes(b: Uint8Array | Readable): asserts b is Uint8Array {
  if (!(b instanceof Uint8Array)) throw new Error("index bodies are bytes");
}

/** A gate: puts whose key matches wait until open() (each wait bounded). */
class Gate {
  private opened = false;
  private waiting: (() => void)[] = [];
  entered = 0;
  async pass(): Promise<void> {
    this.entered++;
    if (this.opened) return;
    await within(new Promise<void>((res) => this.waiting.push(res)), "gate");
  }
  open(): void {
    this.opened = true;
    for (const w of this.waiting.splice(0)) w();
  }
}

let scratch: string;
let layerSeq = 0;

/** A local "layer file" with a real layer name, its size and CRC32C. */
function makeLayer(size_bytes: number): LayerUpload & { crc32c: number } {
  layerSeq++;
  const name = deltaLayerName({ start: KEY_MIN, end: KEY_MAX }, { start: asLsn(layerSeq * 0x1000), end: asLsn(layerSeq * 0x1000 + 0x800) });
  const bytes = Buffer.alloc(size_bytes);
  for (let i = 0; i < size_bytes; i += 4096) bytes.writeUInt32LE(layerSeq * 7919 + i, i);
  const local_path = join(scratch, name);
  writeFileSync(local_path, bytes);
  return { name, local_path, file_size: size_bytes, crc32c: crc32c(bytes) >>> 0 };
}

function meta(dcl: number): TimelineMetadata {
  return {
    disk_consistent_lsn: asLsn(dcl),
    prev_record_lsn: null,
    ancestor_timeline_id: null,
    ancestor_lsn: asLsn(0),
    latest_gc_cutoff_lsn: asLsn(0),
    initdb_lsn: asLsn(0x100),
    pg_version: 15,
  };
}

const s3 = new TestS3();
let localRoot: string;
const inner: Record<string, RemoteStorage> = {};

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "uq-layers-"));
  localRoot = mkdtempSync(join(tmpdir(), "uq-remote-"));
  await s3.start();
  inner["local"] = openRemoteStorage(parseRemoteStorageUrl(`file://${localRoot}`));
  inner["s3"] = openRemoteStorage(parseRemoteStorageUrl(s3.url("uq")));
});

afterAll(async () => {
  inner["s3"]?.close();
  await s3.destroy();
  rmSync(scratch, { recursive: true, force: true });
  rmSync(localRoot, { recursive: true, force: true });
});

interface Fixture {
  tenant: TenantId;
  timeline: TimelineId;
  rec: RecordingStorage;
  queue: UploadQueue;
  stopped: [string, string][];
}

function fixture(backend: string, opts: Partial<UploadQueueOptions> = {}, gen: Generation = 1): Fixture {
  const tenant = generateTenantId();
  const timeline = generateTimelineId();
  const rec = new RecordingStorage(inner[backend]!, tenant, timeline);
  const stopped: [string, string][] = [];
  const queue = new UploadQueue({
    storage: rec,
    tenant_id: tenant,
    timeline_id: timeline,
    generation: gen,
    initial: null,
    log: silent,
    retry_base_ms: 2,
    retry_max_ms: 20,
    onStopped: (s, r) => stopped.push([s, r]),
    ...opts,
  });
  return { tenant, timeline, rec, queue, stopped };
}

/** The keys under the timeline's prefix, without it. */
async function bucketNames(f: Fixture): Promise<string[]> {
  const p = timelinePrefix(f.tenant, f.timeline);
  return (await f.rec.inner.list(p)).map((o) => o.key.slice(p.length));
}

describe.each(["local", "s3"])("upload queue on %s", (backend) => {
  it("keeps the order under concurrency, random delays and injected transient failures", async () => {
    const f = fixture(backend, { max_concurrent_uploads: 3 });
    const r = rng(backend === "local" ? 11 : 12);
    let injected = 0;
    f.rec.hooks.beforePut = async () => {
      // Random completion order: some puts wait a few ms.
      if (r() < 0.5) await sleep(Math.floor(r() * 8));
    };
    f.rec.hooks.failPut = (key) => {
      if (r() < 0.3) {
        injected++;
        return new RemoteStorageError("transient", key, "injected");
      }
      return null;
    };
    const names: string[] = [];
    let dcl = 0x1000;
    const crcs = new Map<string, number>();
    for (let i = 0; i < 24; i++) {
      const l = makeLayer(1000 + i * 517);
      names.push(l.name);
      crcs.set(l.name, l.crc32c);
      // Half of them leave the CRC to the upload.
      f.queue.scheduleLayerUpload(i % 2 === 0 ? l : { ...l, crc32c: null });
      if (i % 3 === 2) {
        dcl += 0x1000;
        f.queue.scheduleIndexUpload(meta(dcl));
      }
    }
    expect(f.queue.depth).toBeGreaterThan(0);
    await within(f.queue.waitUploaded(), "waitUploaded");
    expect(f.rec.violations).toEqual([]);
    expect(injected).toBeGreaterThan(0);
    expect(f.queue.stats().retries_total).toBe(injected);
    expect(f.queue.depth).toBe(0);
    expect(f.queue.remote_consistent_lsn).toBe(dcl);
    const latest = await findLatestIndex(f.rec.inner, f.tenant, f.timeline, 1);
    expect([...latest!.index.layers.keys()].sort()).toEqual([...names].sort());
    expect(latest!.index.metadata.disk_consistent_lsn).toBe(dcl);
    // Every object carries generation 1; exactly the named layers and one index are there.
    const objs = await bucketNames(f);
    expect(objs.sort()).toEqual([...names.map((n) => `${n}-00000001`), "index_part.json-00000001"].sort());
    for (const [n, l] of latest!.index.layers) expect(l.crc32c, n).toBe(crcs.get(n));
    // Uploaded bytes are the local files' bytes.
    for (const n of names.slice(0, 3)) {
      const got = await f.rec.inner.get(layerKey(f.tenant, f.timeline, n, 1));
      expect(crc32c(got) >>> 0).toBe(latest!.index.layers.get(n)!.crc32c);
    }
    const st = f.queue.stats();
    expect(st.uploaded_layers_total).toBe(24);
    expect(st.queued).toEqual({ upload_layer: 0, upload_index: 0, delete_layers: 0 });
    await f.queue.shutdown();
  });

  it("deletes layers only after an index without them, and never a pending layer's file", async () => {
    const f = fixture(backend);
    const [a, b, c] = [makeLayer(3000), makeLayer(4000), makeLayer(5000)];
    const gate = new Gate();
    f.rec.hooks.beforePut = (key) => (key.includes(a.name) ? gate.pass() : undefined);
    for (const l of [a, b, c]) f.queue.scheduleLayerUpload(l);
    f.queue.scheduleIndexUpload(meta(0x5000));
    await until(() => gate.entered > 0, "upload of a started");
    expect(f.queue.isPending(a.name)).toBe(true);
    // The index waits for a, even when b and c are done.
    await until(() => !f.queue.isPending(b.name) && !f.queue.isPending(c.name), "b and c uploaded");
    expect(f.rec.countOps("put-start tenants") - f.rec.countOps(`put-start ${indexKey(f.tenant, f.timeline, 1)}`)).toBe(2);
    expect(f.queue.remote_consistent_lsn).toBeNull();
    f.queue.scheduleLayerDeletion([a.name, b.name]);
    expect([...f.queue.projectedIndex!.layers.keys()]).toEqual([c.name]);
    gate.open();
    await within(f.queue.waitUploaded(), "waitUploaded");
    expect(f.queue.isPending(a.name)).toBe(false);
    expect(f.rec.violations).toEqual([]);
    expect((await bucketNames(f)).sort()).toEqual([`${c.name}-00000001`, "index_part.json-00000001"].sort());
    const latest = await findLatestIndex(f.rec.inner, f.tenant, f.timeline, 1);
    expect([...latest!.index.layers.keys()]).toEqual([c.name]);
    // Order in the log: the index naming a, b, c; the index without a, b; then the deletion.
    const ops = f.rec.log.filter((l) => l.startsWith("put-done tenants") || l.startsWith("delete"));
    const del = ops.findIndex((l) => l.startsWith("delete"));
    expect(del).toBe(ops.length - 1);
    expect(ops[del]).toContain(`${a.name}-00000001`);
    expect(ops[del]).toContain(`${b.name}-00000001`);
    expect(f.queue.stats().deleted_layers_total).toBe(2);
    await f.queue.shutdown();
  });
});

describe("upload queue rules", () => {
  it("coalesces index uploads that are ready together", async () => {
    const f = fixture("local");
    const gate = new Gate();
    f.rec.hooks.beforePut = (key) => (parseIndexKey(key) !== null && gate.entered === 0 ? gate.pass() : undefined);
    f.queue.scheduleLayerUpload(makeLayer(100));
    f.queue.scheduleIndexUpload(meta(0x1000));
    await until(() => gate.entered === 1, "first index put started");
    for (let i = 2; i <= 6; i++) f.queue.scheduleIndexUpload(meta(0x1000 * i));
    expect(f.queue.stats().queued.upload_index).toBe(5);
    expect(f.queue.remote_consistent_lsn).toBeNull();
    const done = f.queue.waitUploaded();
    gate.open();
    await within(done, "waitUploaded");
    // The first index, then one put for the five that queued behind it.
    expect(f.rec.countOps(`put-done ${indexKey(f.tenant, f.timeline, 1)}`)).toBe(2);
    expect(f.queue.stats().uploaded_indexes_total).toBe(2);
    expect(f.queue.remote_consistent_lsn).toBe(0x6000);
    await f.queue.shutdown();
  });

  it("remote_consistent_lsn follows the last uploaded index, not the scheduled one", async () => {
    const f = fixture("local");
    expect(f.queue.remote_consistent_lsn).toBeNull();
    f.queue.scheduleIndexUpload(meta(0x2000));
    await within(f.queue.waitUploaded(), "first index");
    expect(f.queue.remote_consistent_lsn).toBe(0x2000);
    const gate = new Gate();
    f.rec.hooks.beforePut = () => gate.pass();
    f.queue.scheduleLayerUpload(makeLayer(10));
    f.queue.scheduleIndexUpload(meta(0x3000));
    expect(f.queue.projectedIndex!.metadata.disk_consistent_lsn).toBe(0x3000);
    expect(f.queue.remote_consistent_lsn).toBe(0x2000);
    gate.open();
    await within(f.queue.waitUploaded(), "second index");
    expect(f.queue.remote_consistent_lsn).toBe(0x3000);
    // Going backwards is refused.
    expect(() => f.queue.scheduleIndexUpload(meta(0x2500))).toThrow(InvalidArgumentError);
    await f.queue.shutdown();
  });

  it("writes its generation's suffix and deletes older generations' objects by their own keys", async () => {
    // Generation 2 wrote a layer and an index; we attach in generation 3 from that index.
    const g2 = fixture("local", {}, 2);
    const old = makeLayer(700);
    g2.queue.scheduleLayerUpload(old);
    g2.queue.scheduleIndexUpload(meta(0x4000));
    await within(g2.queue.waitUploaded(), "gen 2 uploads");
    await g2.queue.shutdown();
    const start = await findLatestIndex(g2.rec.inner, g2.tenant, g2.timeline, 3);
    expect(start!.generation).toBe(2);
    const rec = new RecordingStorage(g2.rec.inner, g2.tenant, g2.timeline);
    const q3 = new UploadQueue({
      storage: rec,
      tenant_id: g2.tenant,
      timeline_id: g2.timeline,
      generation: 3,
      initial: start!.index,
      log: silent,
    });
    expect(q3.remote_consistent_lsn).toBe(0x4000);
    const fresh = makeLayer(800);
    q3.scheduleLayerUpload(fresh);
    q3.scheduleIndexUpload(meta(0x5000));
    q3.scheduleLayerDeletion([old.name]);
    await within(q3.waitUploaded(), "gen 3 uploads");
    expect(rec.violations).toEqual([]);
    const f3 = { ...g2, rec };
    expect((await bucketNames(f3)).sort()).toEqual(
      [`${fresh.name}-00000003`, "index_part.json-00000002", "index_part.json-00000003"].sort(),
    );
    expect(rec.log.some((l) => l.startsWith("delete") && l.includes(`${old.name}-00000002`))).toBe(true);
    const latest = await findLatestIndex(rec.inner, g2.tenant, g2.timeline, 3);
    expect([...latest!.index.layers]).toEqual([[fresh.name, { file_size: 800, crc32c: fresh.crc32c, generation: 3 }]]);
    // Generation 2's index is untouched: a reader in generation 2 still sees its state.
    const back2 = await findLatestIndex(rec.inner, g2.tenant, g2.timeline, 2);
    expect([...back2!.index.layers.keys()]).toEqual([old.name]);
    await q3.shutdown();
  });

  it("a newer generation in the bucket stops deletions: superseded, nothing deleted", async () => {
    const f = fixture("local");
    const [a, b] = [makeLayer(100), makeLayer(200)];
    f.queue.scheduleLayerUpload(a);
    f.queue.scheduleLayerUpload(b);
    f.queue.scheduleIndexUpload(meta(0x1000));
    await within(f.queue.waitUploaded(), "uploads");
    expect(await f.queue.checkGeneration()).toBeNull();
    // Another pageserver attaches in generation 2 and writes its index.
    const theirs = encodeIndexPart({
      metadata: meta(0x1000),
      layers: new Map([[a.name, { file_size: 100, crc32c: a.crc32c, generation: 1 }]]),
    });
    await f.rec.inner.put(indexKey(f.tenant, f.timeline, 2), theirs, { size_bytes: theirs.byteLength });
    expect(await f.queue.checkGeneration()).toBe(2);
    f.queue.scheduleLayerDeletion([a.name]);
    const e = await rejection(f.queue.waitUploaded());
    expect(e).toBeInstanceOf(UploadQueueStoppedError);
    expect(e.message).toContain("superseded by generation 2");
    expect(f.queue.status).toBe("superseded");
    expect(f.queue.stop_reason).toBe("superseded by generation 2");
    expect(f.stopped).toEqual([["superseded", "superseded by generation 2"]]);
    expect(f.rec.countOps("delete")).toBe(0);
    expect(await bucketNames(f)).toContain(`${a.name}-00000001`);
    expect(() => f.queue.scheduleIndexUpload(meta(0x2000))).toThrow(UploadQueueStoppedError);
    await f.queue.shutdown();
    expect(f.queue.status).toBe("superseded");
  });

  it("a scheduled upload holds its file: unlinking it locally loses nothing", async () => {
    const f = fixture("local");
    const gate = new Gate();
    f.rec.hooks.beforePut = () => gate.pass();
    const l = makeLayer(20_000);
    f.queue.scheduleLayerUpload(l);
    f.queue.scheduleIndexUpload(meta(0x1000));
    unlinkSync(l.local_path);
    expect(f.queue.isPending(l.name)).toBe(true);
    gate.open();
    await within(f.queue.waitUploaded(), "upload of an unlinked file");
    const got = await f.rec.inner.get(layerKey(f.tenant, f.timeline, l.name, 1));
    expect(crc32c(got) >>> 0).toBe(l.crc32c);
    expect(f.queue.isPending(l.name)).toBe(false);
    // A file already gone when scheduled is refused at once.
    const gone = makeLayer(10);
    unlinkSync(gone.local_path);
    expect(() => f.queue.scheduleLayerUpload(gone)).toThrow(NotFoundError);
    expect(f.queue.projectedIndex!.layers.has(gone.name)).toBe(false);
    await f.queue.shutdown();
  });

  it("a local layer file that changed is a permanent error: the queue stops, its index is never written", async () => {
    for (const damage of ["resize", "rewrite"] as const) {
      // One upload at a time: the damaged layer's upload waits behind the gated one, so the
      // damage is done before it looks at its file.
      const f = fixture("local", { max_concurrent_uploads: 1 });
      const gate = new Gate();
      f.rec.hooks.beforePut = () => gate.pass();
      const ok = makeLayer(300);
      f.queue.scheduleLayerUpload(ok);
      await until(() => gate.entered === 1, "first upload started");
      const l = makeLayer(500);
      f.queue.scheduleLayerUpload(l);
      // Changed in place after scheduling (the queue holds the inode, not a copy).
      if (damage === "resize") writeFileSync(l.local_path, Buffer.alloc(499));
      if (damage === "rewrite") writeFileSync(l.local_path, Buffer.alloc(500, 1));
      f.queue.scheduleIndexUpload(meta(0x1000));
      const wait = f.queue.waitUploaded();
      gate.open();
      const e = await rejection(wait);
      expect(e, damage).toBeInstanceOf(UploadQueueStoppedError);
      expect(f.queue.status).toBe("failed");
      expect(f.queue.stop_reason).toContain(l.name);
      expect(f.queue.stop_reason).toContain({ resize: "499 bytes", rewrite: "CRC32C" }[damage]);
      expect(f.stopped.length).toBe(1);
      expect(f.rec.countOps("put-start") - f.rec.countOps(`put-start ${layerKey(f.tenant, f.timeline, l.name, 1)}`)).toBe(1);
      expect((await bucketNames(f)).filter((k) => k.startsWith("index_part"))).toEqual([]);
      await f.queue.shutdown();
    }
  });

  it("every storage error is retried, 'permanent' ones too (a clock-skew 403 heals); each retry is counted", async () => {
    const f = fixture("local");
    let n = 0;
    f.rec.hooks.failPut = (key) => {
      n++;
      if (n <= 3) return new RemoteStorageError("transient", key, "injected");
      if (n <= 6) return new RemoteStorageError("permanent", key, "access denied (injected)");
      return null;
    };
    const l = makeLayer(10);
    f.queue.scheduleLayerUpload(l);
    f.queue.scheduleIndexUpload(meta(0x1000));
    await within(f.queue.waitUploaded(), "uploads after the errors");
    expect(f.queue.stats().retries_total).toBe(6);
    expect(f.queue.status).toBe("active");
    expect(f.stopped).toEqual([]);
    expect(await bucketNames(f)).toContain(`${l.name}-00000001`);
    await f.queue.shutdown();
  });

  it("retry delays are jittered (no lockstep across queues) and capped at retry_max_ms", async () => {
    const lines: { delay_ms: number }[] = [];
    const log = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line) as { delay_ms: number }) });
    const qs = [0, 1, 2].map(() => fixture("local", { retry_base_ms: 100, retry_max_ms: 100, log }));
    for (const f of qs) {
      f.rec.hooks.failPut = (key) =>
        f.queue.stats().retries_total < 3 ? new RemoteStorageError("transient", key, "down (injected)") : null;
      f.queue.scheduleIndexUpload(meta(0x1000));
    }
    for (const f of qs) await within(f.queue.waitUploaded(), "drained");
    const delays = lines.map((l) => l.delay_ms).filter((d) => d !== undefined);
    expect(delays.length).toBe(9);
    for (const d of delays) expect(d >= 50 && d <= 100, String(d)).toBe(true);
    expect(new Set(delays).size).toBeGreaterThan(1);
    for (const f of qs) await f.queue.shutdown();
  });

  it("queued uploads hold no file descriptor; a layer unlinked after scheduling still uploads; nothing is left beside it", async () => {
    const fds = (): number => readdirSync("/proc/self/fd").length;
    const f = fixture("local", { max_concurrent_uploads: 2 });
    const gate = new Gate();
    f.rec.hooks.beforePut = (key) => (key.includes("index_part") ? undefined : gate.pass());
    const before = fds();
    const layers = Array.from({ length: 40 }, () => makeLayer(4096));
    for (const l of layers) f.queue.scheduleLayerUpload(l);
    f.queue.scheduleIndexUpload(meta(0x1000));
    await until(() => gate.entered >= 2, "two uploads in flight");
    // Two uploads in flight hold their files open; the 38 queued hold none.
    expect(fds() - before).toBeLessThanOrEqual(4);
    for (const l of layers) unlinkSync(l.local_path);
    gate.open();
    await within(f.queue.waitUploaded(), "drained");
    const names = await bucketNames(f);
    for (const l of layers) expect(names).toContain(`${l.name}-00000001`);
    expect(readdirSync(scratch).filter((n) => n.includes(".upload-"))).toEqual([]);
    await f.queue.shutdown();
  });

  it("a full queue holds a flush back (waitForRoom) instead of failing, and lets it go once it drains", async () => {
    const f = fixture("local", { max_queued_ops: 20, retry_base_ms: 5, retry_max_ms: 5 });
    let down = true;
    f.rec.hooks.failPut = (key) => (down ? new RemoteStorageError("transient", key, "outage (injected)") : null);
    let dcl = 0x1000;
    // What a flush does per layer: ask for room, then schedule a layer and an index.
    let scheduled = 0;
    for (let i = 0; i < 40; i++) {
      if (!(await f.queue.waitForRoom(20))) break;
      f.queue.scheduleLayerUpload(makeLayer(100));
      dcl += 0x100;
      f.queue.scheduleIndexUpload(meta(dcl));
      scheduled++;
    }
    expect(scheduled).toBeLessThan(40);
    expect(f.queue.status).toBe("active");
    expect(f.queue.stats().backpressure_waits_total).toBeGreaterThan(0);
    const waiting = f.queue.waitForRoom(60_000);
    down = false;
    expect(await within(waiting, "room after the outage")).toBe(true);
    await within(f.queue.waitUploaded(), "drained");
    expect(f.queue.remote_consistent_lsn).toBe(dcl);
    await f.queue.shutdown();
  });

  it("the remote failpoints fail attempts the way a transient error does", async () => {
    const f = fixture("local");
    try {
      for (const name of ["remote-upload-layer", "remote-upload-index", "remote-delete-layers"] as const) {
        const before = f.queue.stats().retries_total;
        applyFailpoints([{ name, action: { kind: "return" } }]);
        const l = makeLayer(100);
        f.queue.scheduleLayerUpload(l);
        f.queue.scheduleIndexUpload(meta(0x1000 * (before + 2)));
        if (name === "remote-delete-layers") f.queue.scheduleLayerDeletion([l.name]);
        const wait = f.queue.waitUploaded();
        await until(() => f.queue.stats().retries_total >= before + 3, `retries under ${name}`);
        expect(f.queue.depth, name).toBeGreaterThan(0);
        if (name === "remote-upload-layer") expect(await bucketNames(f)).not.toContain(`${l.name}-00000001`);
        applyFailpoints([{ name, action: { kind: "off" } }]);
        await within(wait, `drain after ${name}`);
      }
      expect(f.queue.status).toBe("active");
      expect(f.rec.violations).toEqual([]);
    } finally {
      clearFailpoints();
      await f.queue.shutdown();
    }
  });

  it("shutdown stops retrying and rejects pending waits with ShutdownError", async () => {
    const f = fixture("local", { retry_base_ms: 50, retry_max_ms: 50 });
    f.rec.hooks.failPut = (key) => new RemoteStorageError("transient", key, "down (injected)");
    f.queue.scheduleLayerUpload(makeLayer(10));
    f.queue.scheduleIndexUpload(meta(0x1000));
    const wait = f.queue.waitUploaded();
    await until(() => f.queue.stats().retries_total >= 3, "a few retries");
    await within(f.queue.shutdown(), "shutdown");
    expect(await rejection(wait)).toBeInstanceOf(ShutdownError);
    expect(f.queue.status).toBe("shutdown");
    const retries = f.queue.stats().retries_total;
    await sleep(120);
    expect(f.queue.stats().retries_total).toBe(retries);
    expect(() => f.queue.scheduleLayerUpload(makeLayer(10))).toThrow(ShutdownError);
    await expect(f.queue.waitUploaded()).rejects.toBeInstanceOf(ShutdownError);
  });

  it("waitUploaded covers only what was scheduled before it; an abort signal ends one wait", async () => {
    const f = fixture("local");
    const gate = new Gate();
    f.rec.hooks.beforePut = (key) => (key.includes("index_part") ? undefined : gate.pass());
    await within(f.queue.waitUploaded(), "empty queue");
    f.queue.scheduleIndexUpload(meta(0x1000));
    const first = f.queue.waitUploaded();
    await within(first, "index alone");
    f.queue.scheduleLayerUpload(makeLayer(10));
    const ac = new AbortController();
    const aborted = f.queue.waitUploaded({ signal: ac.signal });
    ac.abort(new Error("caller gave up"));
    expect((await rejection(aborted)).message).toBe("caller gave up");
    gate.open();
    await within(f.queue.waitUploaded(), "layer");
    await f.queue.shutdown();
  });

  it("refuses bad schedules: limits, unknown layers, a layer re-uploaded in the same generation", async () => {
    const f = fixture("local", { max_queued_ops: 3 });
    const gate = new Gate();
    f.rec.hooks.beforePut = () => gate.pass();
    const a = makeLayer(10);
    expect(() => f.queue.scheduleLayerDeletion([a.name])).toThrow(/no index scheduled/);
    f.queue.scheduleLayerUpload(a);
    expect(() => f.queue.scheduleLayerUpload(a)).toThrow(ConflictError);
    f.queue.scheduleLayerUpload(makeLayer(10));
    f.queue.scheduleIndexUpload(meta(0x1000));
    expect(() => f.queue.scheduleLayerUpload(makeLayer(10))).toThrow(LimitReachedError);
    expect(() => f.queue.scheduleLayerUpload({ ...makeLayer(10), name: "not-a-layer" })).toThrow(LimitReachedError);
    gate.open();
    await within(f.queue.waitUploaded(), "drain");
    expect(() => f.queue.scheduleLayerUpload({ ...makeLayer(10), name: "not-a-layer" })).toThrow(InvalidArgumentError);
    expect(() => f.queue.scheduleLayerDeletion(["nope"])).toThrow(InvalidArgumentError);
    // Orphan deletion: only unindexed layer objects of our own generation and timeline.
    expect(() => f.queue.scheduleOrphanDeletion([layerKey(f.tenant, f.timeline, a.name, 1)])).toThrow(ConflictError);
    expect(() => f.queue.scheduleOrphanDeletion([layerKey(f.tenant, f.timeline, makeLayer(10).name, 2)])).toThrow(InvalidArgumentError);
    expect(() => f.queue.scheduleOrphanDeletion([layerKey(f.tenant, generateTimelineId(), makeLayer(10).name, 1)])).toThrow(
      InvalidArgumentError,
    );
    expect(() => f.queue.scheduleOrphanDeletion([indexKey(f.tenant, f.timeline, 1)])).toThrow(InvalidArgumentError);
    await f.queue.shutdown();
  });
});

describe("upload queue with S3 going away", () => {
  it("s3rver killed and restarted mid-upload: the queue finishes once it is back", async () => {
    const f = fixture("s3", { max_concurrent_uploads: 2, retry_base_ms: 20, retry_max_ms: 200 });
    let puts = 0;
    f.rec.hooks.beforePut = () => {
      puts++;
    };
    const layers = Array.from({ length: 6 }, () => makeLayer(6 * 1024 * 1024));
    for (const [i, l] of layers.entries()) {
      f.queue.scheduleLayerUpload(l);
      if (i % 2 === 1) f.queue.scheduleIndexUpload(meta(0x1000 * (i + 1)));
    }
    await until(() => puts >= 1, "first put started");
    await s3.stop();
    await until(() => f.queue.stats().retries_total >= 2, "retries while s3rver is down");
    expect(f.queue.depth).toBeGreaterThan(0);
    await s3.start();
    await within(f.queue.waitUploaded(), "uploads after restart");
    expect(f.rec.violations).toEqual([]);
    expect(f.queue.remote_consistent_lsn).toBe(0x6000);
    const latest = await findLatestIndex(f.rec.inner, f.tenant, f.timeline, 1);
    expect([...latest!.index.layers.keys()].sort()).toEqual(layers.map((l) => l.name).sort());
    for (const l of layers) {
      const got = await f.rec.inner.get(layerKey(f.tenant, f.timeline, l.name, 1));
      expect(crc32c(got) >>> 0).toBe(l.crc32c);
    }
    // Nothing but the named layers and the index: no partial objects left by the crash.
    const objs = await bucketNames(f);
    expect(objs.filter((k) => parseLayerKey(k) === null && parseIndexKey(k) === null)).toEqual([]);
    expect(objs.length).toBe(layers.length + 1);
    await f.queue.shutdown();
  });

  it("an S3 endpoint answering 403 (RequestTimeTooSkewed, AccessDenied) for a while: retried, the queue finishes once it recovers", async () => {
    // A proxy in front of s3rver: the first requests get an S3 403, then it passes everything.
    let refuse = 6;
    let refused = 0;
    const proxy = createServer((req, res) => {
      if (refuse > 0) {
        refuse--;
        refused++;
        req.resume();
        const code = refused % 2 === 0 ? "AccessDenied" : "RequestTimeTooSkewed";
        res.writeHead(403, { "content-type": "application/xml" });
        res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected</Message></Error>`);
        return;
      }
      const up = httpRequest({ host: "127.0.0.1", port: s3.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const port = (proxy.address() as AddressInfo).port;
    const storage = openRemoteStorage(
      parseRemoteStorageUrl(`s3://${s3.bucket}/uq403?endpoint=${encodeURIComponent(`http://127.0.0.1:${port}`)}&region=us-east-1`),
    );
    const tenant = generateTenantId();
    const timeline = generateTimelineId();
    const stopped: string[] = [];
    const queue = new UploadQueue({
      storage,
      tenant_id: tenant,
      timeline_id: timeline,
      generation: 1,
      initial: null,
      log: silent,
      retry_base_ms: 5,
      retry_max_ms: 50,
      onStopped: (_st, r) => stopped.push(r),
    });
    try {
      const l = makeLayer(8192);
      queue.scheduleLayerUpload(l);
      queue.scheduleIndexUpload(meta(0x1000));
      await within(queue.waitUploaded(), "uploads after the 403s");
      expect(stopped).toEqual([]);
      expect(queue.status).toBe("active");
      expect(queue.stats().retries_total).toBeGreaterThanOrEqual(6);
      expect(refused).toBe(6);
      expect(crc32c(await storage.get(layerKey(tenant, timeline, l.name, 1))) >>> 0).toBe(l.crc32c);
    } finally {
      await queue.shutdown();
      storage.close();
      await new Promise<void>((r) => proxy.close(() => r()));
    }
  });
});
