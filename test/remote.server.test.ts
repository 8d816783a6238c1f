/**
 * Remote storage in a real Server (src/main/remote/remote_timelines.ts wiring the timeline's
 * LayerEvents to RemoteTimelineClient), on LocalFs and on S3 (s3rver): a tenant and timeline
 * created over HTTP, data written and checkpointed, then compaction and GC; after each step
 * the bucket holds exactly the timeline's local layers and an index naming exactly them
 * (checkRemoteTimeline: nothing missing, nothing orphaned, checksums right), timeline info
 * and /metrics report remote_consistent_lsn; a restart on the same workdir reconciles without
 * uploading a layer again. Server logs must stay clean.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WAIT_BOUND_MS, within } from "./support/within.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { ATTACHING_MARKER } from "../src/remote/attach.js";
import { applyFailpoints, clearFailpoints, parseFailpointSpec } from "../src/types/failpoints.js";
import { encodeIndexPart, findLatestIndex } from "../src/remote/index_part.js";
import { indexKey } from "../src/remote/remote_path.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import type { Timeline } from "../src/tenant/timeline/index.js";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { asLsn, lsnToString } from "../src/types/lsn.js";
import { imageValue } from "../src/types/value.js";
import { LogCapture } from "./support/log_check.js";
import { TestS3 } from "./support/s3rver.js";

const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d", compaction_threshold: 2, image_creation_threshold: 1 };
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);

const s3 = new TestS3();
const dirs: string[] = [];
beforeAll(async () => {
  await s3.start();
});
afterAll(async () => {
  await s3.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.each(["local", "s3"])("a Server with remote storage on %s", (backend) => {
  const logs = new LogCapture();
  let workdir: string;
  let url: string;
  let server: Server | null = null;
  let base = "";
  const tenantId = generateTenantId();
  const timelineId = generateTimelineId();

  async function start(): Promise<Server> {
    const s = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: url }), logs.logger);
    base = `http://127.0.0.1:${await s.start()}`;
    return s;
  }

  async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; text: string }> {
    const res = await fetch(`${base}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await res.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      // /metrics is text
    }
    return { status: res.status, json, text };
  }

  function timeline(): Timeline {
    return server!.tenants.get(tenantId).getTimeline(timelineId);
  }

  /** Waits until the timeline's client exists and its queue is drained. */
  async function drained(): Promise<void> {
    await within(server!.remote!.whenConnected(), "remote client connected");
    const c = server!.remote!.clientOf(timeline());
    expect(c, "remote client").toBeDefined();
    await within(c!.waitUploaded(), "uploads drained");
  }

  /** The bucket holds exactly the local layers and an index naming exactly them. */
  async function expectBucketMatchesLocal(): Promise<void> {
    await drained();
    const tl = timeline();
    const storage = server!.remote!.storage;
    const check = await checkRemoteTimeline(storage, tenantId, timelineId, 1, { verify_checksums: true });
    expect(check, JSON.stringify(check)).toMatchObject({
      ok: true,
      missing: [],
      orphans: [],
      size_mismatch: [],
      checksum_mismatch: [],
      unknown: [],
    });
    const latest = await findLatestIndex(storage, tenantId, timelineId, 1);
    expect([...latest!.index.layers.keys()].sort()).toEqual(
      tl
        .layerFiles()
        .map((l) => l.name)
        .sort(),
    );
    expect(latest!.index.metadata.disk_consistent_lsn).toBe(tl.diskConsistentLsn);
    const info = (await call("GET", `/v1/tenant/${tenantId}/timeline/${timelineId}`)).json as Record<string, string>;
    expect(info["remote_consistent_lsn"]).toBe(info["disk_consistent_lsn"]);
  }

  beforeAll(() => {
    workdir = mkdtempSync(join(tmpdir(), "ps-remote-"));
    dirs.push(workdir);
    if (backend === "local") {
      const root = mkdtempSync(join(tmpdir(), "ps-remote-bucket-"));
      dirs.push(root);
      url = `file://${root}`;
    } else {
      url = s3.url(`server-${tenantId.slice(0, 8)}`);
    }
  });

  afterAll(async () => {
    if (server !== null) await server.stop();
    // The superseded tenant's lines, provoked on purpose.
    logs.expectClean([/^tenant is broken$/]);
  });

  it("uploads a new timeline's index, then every checkpoint's layers", async () => {
    server = await start();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tenantId, config: QUIET })).status).toBe(201);
    expect((await call("POST", `/v1/tenant/${tenantId}/timeline`, { new_timeline_id: timelineId, start_lsn: "0/1000" })).status).toBe(201);
    await drained();
    expect(
      ((await call("GET", `/v1/tenant/${tenantId}/timeline/${timelineId}`)).json as Record<string, unknown>)["remote_consistent_lsn"],
    ).toBe("0/1000");
    const tl = timeline();
    let lsn = 0x1000;
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 40; i++) {
        lsn += 8;
        tl.put(k(i), asLsn(lsn), imageValue(Buffer.from(`v${i}r${round}`)));
      }
      tl.finishWrite(asLsn(lsn));
      expect((await call("PUT", `/v1/tenant/${tenantId}/timeline/${timelineId}/checkpoint`)).status).toBe(200);
    }
    expect(tl.l0Count).toBe(3);
    await expectBucketMatchesLocal();
    const metrics = (await call("GET", "/metrics")).text;
    expect(metrics).toContain(`pageserver_projected_remote_consistent_lsn{tenant_id="${tenantId}",timeline_id="${timelineId}"} ${lsn}`);
    expect(metrics).toMatch(/pageserver_remote_upload_queue_ops\{[^}]*op_kind="upload_layer",state="queued"\} 0/);
    expect(metrics).toMatch(/pageserver_remote_uploaded_layer_bytes_total\{[^}]*\} [1-9]/);
    const promtool = spawnSync("promtool", ["check", "metrics"], { input: metrics, encoding: "utf8", timeout: 20_000 });
    expect(promtool.status, `${promtool.stdout}${promtool.stderr}`).toBe(0);
    expect(lsnToString(server!.remote!.remoteConsistentLsn(tl)!)).toBe(lsnToString(asLsn(lsn)));
  });

  it("compaction and GC: the bucket follows, no orphans", async () => {
    const compact = await call("PUT", `/v1/tenant/${tenantId}/timeline/${timelineId}/compact?force_image_layer_creation=true`);
    expect(compact.status).toBe(200);
    expect((compact.json as { l0_compacted: number }).l0_compacted).toBe(3);
    await expectBucketMatchesLocal();
    const gc = await call("PUT", `/v1/tenant/${tenantId}/timeline/${timelineId}/do_gc`, { gc_horizon: 0 });
    expect(gc.status).toBe(200);
    expect((gc.json as { layers_removed: number }).layers_removed).toBeGreaterThan(0);
    await expectBucketMatchesLocal();
    const latest = await findLatestIndex(server!.remote!.storage, tenantId, timelineId, 1);
    expect(latest!.index.metadata.latest_gc_cutoff_lsn).toBe(timeline().latestGcCutoffLsn);
    expect(server!.remote!.clientOf(timeline())!.stats().deleted_layers_total).toBeGreaterThan(0);
  });

  it("a restart reconciles without uploading any layer again", async () => {
    const tl = timeline();
    const layers = tl
      .layerFiles()
      .map((l) => l.name)
      .sort();
    const dcl = tl.diskConsistentLsn;
    await server!.stop();
    server = await start();
    await expectBucketMatchesLocal();
    expect(server.remote!.clientOf(timeline())!.stats()).toMatchObject({ uploaded_layers_total: 0, deleted_layers_total: 0 });
    expect(
      timeline()
        .layerFiles()
        .map((l) => l.name)
        .sort(),
    ).toEqual(layers);
    expect(timeline().diskConsistentLsn).toBe(dcl);
  });

  it("a newer generation in the bucket: at restart the tenant is Broken (superseded) and nothing is deleted", async () => {
    const storage = server!.remote!.storage;
    const before = (await storage.list(`tenants/${tenantId}/`)).map((o) => o.key).sort();
    // Another pageserver attached the tenant in generation 2 and wrote its index.
    const theirs = await findLatestIndex(storage, tenantId, timelineId, 1);
    const bytes = encodeIndexPart(theirs!.index);
    await storage.put(indexKey(tenantId, timelineId, 2), bytes, { size_bytes: bytes.byteLength });
    await server!.stop();
    server = await start();
    await within(server.remote!.whenConnected(), "remote connect attempts");
    const t = (await call("GET", `/v1/tenant/${tenantId}`)).json as { state: string; broken_reason?: string };
    expect(t.state).toBe("Broken");
    expect(t.broken_reason).toContain("superseded by generation 2");
    expect((await server.remote!.storage.list(`tenants/${tenantId}/`)).map((o) => o.key).sort()).toEqual(
      [...before, indexKey(tenantId, timelineId, 2)].sort(),
    );
  });
});

describe("a tenant whose attach was cut short", () => {
  it("with remote storage, resumes at startup (in the marker's generation) and becomes Active with its data", async () => {
    const logs = new LogCapture();
    const bucket = mkdtempSync(join(tmpdir(), "ps-resume-bucket-"));
    const workA = mkdtempSync(join(tmpdir(), "ps-resume-a-"));
    const workB = mkdtempSync(join(tmpdir(), "ps-resume-b-"));
    dirs.push(bucket, workA, workB);
    const url = `file://${bucket}`;
    const id = generateTenantId();
    const tlId = generateTimelineId();
    const a = new Server(
      loadNodeConfig({ workdir: workA, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: url }),
      logs.logger,
    );
    await a.start();
    try {
      const t = await a.tenants.create(id, QUIET);
      const tl = await t.createTimeline({ timelineId: tlId, startLsn: asLsn(0x1000) });
      tl.put(k(1), asLsn(0x1008), imageValue(Buffer.from("resumed")));
      tl.finishWrite(asLsn(0x1008));
      await tl.checkpoint();
      await within(a.remote!.whenConnected(), "connect");
      await within(a.remote!.clientOf(tl)!.waitUploaded(), "uploads");
    } finally {
      await a.stop();
    }
    // B was SIGKILLed right after its attach (generation 2) wrote the marker.
    const tdir = join(workB, "tenants", id);
    mkdirSync(join(tdir, "timelines"), { recursive: true });
    writeFileSync(join(tdir, ATTACHING_MARKER), JSON.stringify({ generation: 2 }));
    const b = new Server(
      loadNodeConfig({ workdir: workB, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: url }),
      logs.logger,
    );
    await b.start();
    try {
      const deadline = Date.now() + WAIT_BOUND_MS;
      while (b.tenants.get(id).state !== "Active" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const t = b.tenants.get(id);
      expect(t.state, t.brokenReason ?? "").toBe("Active");
      const tl = t.getTimeline(tlId);
      expect(Buffer.from((await within(tl.get(k(1), asLsn(0x1008)), "read"))!).toString()).toBe("resumed");
    } finally {
      await b.stop();
    }
    logs.expectClean([/^tenant is broken$/]);
  });
});

describe("an attach that fails half way (failpoint remote-attach-timeline)", () => {
  it("shows Attaching, ends Broken with the reason, and a restart resumes it to Active with the data", async () => {
    const logs = new LogCapture();
    const bucket = mkdtempSync(join(tmpdir(), "ps-fp-bucket-"));
    const workA = mkdtempSync(join(tmpdir(), "ps-fp-a-"));
    const workB = mkdtempSync(join(tmpdir(), "ps-fp-b-"));
    dirs.push(bucket, workA, workB);
    const url = `file://${bucket}`;
    const id = generateTenantId();
    const tlId = generateTimelineId();
    const conf = (workdir: string) => loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: url });
    const a = new Server(conf(workA), logs.logger);
    await a.start();
    try {
      const tl = await (await a.tenants.create(id, QUIET)).createTimeline({ timelineId: tlId, startLsn: asLsn(0x1000) });
      tl.put(k(2), asLsn(0x1008), imageValue(Buffer.from("after the failpoint")));
      tl.finishWrite(asLsn(0x1008));
      await tl.checkpoint();
      await within(a.remote!.whenConnected(), "connect");
      await within(a.remote!.clientOf(tl)!.waitUploaded(), "uploads");
    } finally {
      await a.stop();
    }
    const b = new Server(conf(workB), logs.logger);
    await b.start();
    try {
      applyFailpoints(parseFailpointSpec("remote-attach-timeline=return"));
      const attaching = b.attachTenant(id, 2);
      expect(b.tenants.get(id).state).toBe("Attaching");
      await expect(attaching).rejects.toThrow(/remote-attach-timeline/);
      expect(b.tenants.get(id).state).toBe("Broken");
      expect(b.tenants.get(id).brokenReason).toMatch(/attach in generation 2 failed/);
    } finally {
      clearFailpoints();
      await b.stop();
    }
    const b2 = new Server(conf(workB), logs.logger);
    await b2.start();
    try {
      const deadline = Date.now() + WAIT_BOUND_MS;
      while (b2.tenants.get(id).state !== "Active" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const t = b2.tenants.get(id);
      expect(t.state, t.brokenReason ?? "").toBe("Active");
      expect(Buffer.from((await within(t.getTimeline(tlId).get(k(2), asLsn(0x1008)), "read"))!).toString()).toBe("after the failpoint");
    } finally {
      await b2.stop();
    }
    logs.expectClean([/^tenant is broken$/]);
  });
});

describe("a tenant whose attach was cut short, without remote storage", () => {
  it("is Broken at startup with the reason, and not loaded", async () => {
    const logs = new LogCapture();
    const workdir = mkdtempSync(join(tmpdir(), "ps-attaching-"));
    dirs.push(workdir);
    const id = generateTenantId();
    const tdir = join(workdir, "tenants", id);
    mkdirSync(join(tdir, "timelines", generateTimelineId()), { recursive: true });
    writeFileSync(join(tdir, ATTACHING_MARKER), JSON.stringify({ generation: 3 }));
    const s = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), logs.logger);
    await s.start();
    try {
      const t = s.tenants.get(id);
      expect(t.state).toBe("Broken");
      expect(t.brokenReason).toContain("an attach in generation 3 did not finish");
      expect(t.listTimelines()).toEqual([]);
    } finally {
      await s.stop();
    }
    logs.expectClean([/^tenant is broken$/]);
  });
});
