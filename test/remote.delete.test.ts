/**
 * Remote deletion (src/remote/remote_delete.ts, wired in src/main/remote/remote_timelines.ts):
 * - directly on LocalFs: a tenant's timelines' layer and index objects of generations ≤ ours
 *   go, keys we don't know stay (reported); one timeline holding a newer generation's index
 *   makes the whole deletion refused (SupersededError) with nothing deleted anywhere;
 * - through a real Server on LocalFs and on S3 (s3rver): DELETE of a branch, of its parent,
 *   and of a tenant empties their prefixes in the bucket after the clients stopped; another
 *   tenant's objects stay and its index-vs-bucket check stays clean (nothing orphaned, nothing
 *   missing); a timeline whose bucket holds a newer generation is deleted locally and its
 *   objects all stay; a deletion cut short after the indexes (failpoint
 *   remote-delete-timeline) fails the DELETE, never leaves an index naming a missing layer,
 *   keeps the timeline here and connects it again (the bucket holds it whole again), and a
 *   retry removes both. Server logs are checked.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { within } from "./support/within.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { encodeIndexPart, findLatestIndex } from "../src/remote/index_part.js";
import { LocalFs } from "../src/remote/local_fs.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import { deleteRemoteTenant } from "../src/remote/remote_delete.js";
import { indexKey, layerKey, tenantPrefix, timelinePrefix } from "../src/remote/remote_path.js";
import type { RemoteStorage } from "../src/remote/remote_storage.js";
import { generateTenantId, generateTimelineId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { lsnAdd } from "../src/types/lsn.js";
import { imageValue } from "../src/types/value.js";
import { LogCapture } from "./support/log_check.js";
import { TestS3 } from "./support/s3rver.js";

const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" };
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
const LAYER = "000000000000000000000000000000000000-FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF__0000000000001000";

const dirs: string[] = [];
const tmp = (p: string): string => {
  const d = mkdtempSync(join(tmpdir(), p));
  dirs.push(d);
  return d;
};
const s3 = new TestS3();
beforeAll(async () => {
  await s3.start();
});
afterAll(async () => {
  await s3.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const keysUnder = async (storage: RemoteStorage, prefix: string): Promise<string[]> =>
  (await storage.list(prefix)).map((o) => o.key).sort();

describe("deleteRemoteTenant on LocalFs", () => {
  async function put(storage: RemoteStorage, key: string): Promise<void> {
    const b = Buffer.from("x");
    await storage.put(key, b, { size_bytes: b.byteLength });
  }

  it("deletes our generations' layers and indexes, leaves unknown keys; a newer generation anywhere refuses it all", async () => {
    const storage = new LocalFs(tmp("ps-rdel-"));
    const tenant = generateTenantId();
    const [a, b] = [generateTimelineId(), generateTimelineId()];
    for (const tl of [a, b]) {
      await put(storage, layerKey(tenant, tl, LAYER, 1));
      await put(storage, layerKey(tenant, tl, LAYER, 2));
      await put(storage, indexKey(tenant, tl, 1));
      await put(storage, indexKey(tenant, tl, 2));
    }
    const stranger = `${timelinePrefix(tenant, a)}notes.txt`;
    await put(storage, stranger);
    // Generation 3 of timeline b: we (2) are stale: nothing goes, not even a's objects.
    await put(storage, indexKey(tenant, b, 3));
    const all = await keysUnder(storage, tenantPrefix(tenant));
    await expect(deleteRemoteTenant(storage, tenant, 2)).rejects.toThrow(/generation 2 is superseded by generation 3/);
    expect(await keysUnder(storage, tenantPrefix(tenant))).toEqual(all);
    // As generation 3: everything of ours goes, the stranger stays and is reported.
    const r = await deleteRemoteTenant(storage, tenant, 3);
    expect(r).toEqual({ deleted: 9, left: [stranger] });
    expect(await keysUnder(storage, tenantPrefix(tenant))).toEqual([stranger]);
  });
});

describe.each(["local", "s3"])("DELETE with remote storage on %s", (backend) => {
  const logs = new LogCapture();
  let server: Server | null = null;
  let base = "";

  async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> {
    const res = await fetch(`${base}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await res.text();
    return { status: res.status, json: text.length > 0 ? JSON.parse(text) : null };
  }

  /** A timeline with data in two checkpoints; returns once the bucket holds it all. */
  async function timelineWithData(tenant: TenantId, ancestor?: TimelineId): Promise<TimelineId> {
    const id = generateTimelineId();
    const body =
      ancestor === undefined ? { new_timeline_id: id, start_lsn: "0/1000" } : { new_timeline_id: id, ancestor_timeline_id: ancestor };
    const r = await call("POST", `/v1/tenant/${tenant}/timeline`, body);
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    const tl = server!.tenants.get(tenant).getTimeline(id);
    let lsn = tl.lastRecordLsn;
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 20; i++) {
        lsn = lsnAdd(lsn, 8);
        tl.put(k(i), lsn, imageValue(Buffer.from(`v${i}r${round}`)));
      }
      tl.finishWrite(lsn);
      expect((await call("PUT", `/v1/tenant/${tenant}/timeline/${id}/checkpoint`)).status).toBe(200);
    }
    await within(server!.remote!.whenConnected(), "remote client connected");
    await within(server!.remote!.clientOf(tl)!.waitUploaded(), "uploads drained");
    return id;
  }

  async function expectClean(storage: RemoteStorage, tenant: TenantId, tl: TimelineId): Promise<void> {
    const check = await checkRemoteTimeline(storage, tenant, tl, 1, { verify_checksums: true });
    expect(check, JSON.stringify(check)).toMatchObject({ ok: true, missing: [], orphans: [], unknown: [] });
  }

  beforeAll(async () => {
    const workdir = tmp("ps-rdel-node-");
    const url = backend === "local" ? `file://${tmp("ps-rdel-bucket-")}` : s3.url(`del-${generateTenantId().slice(0, 8)}`);
    server = new Server(
      loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: url, enable_failpoints: true }),
      logs.logger,
    );
    server.http.checkResponses = true;
    base = `http://127.0.0.1:${await server.start()}`;
  });

  afterAll(async () => {
    await server?.stop();
    // The failpoint's failed DELETE, provoked on purpose.
    logs.expectClean([/^a newer generation holds the tenant: nothing remote deleted$/, /^request failed$/]);
  });

  it("a branch, then its parent, then a tenant: their objects leave the bucket; another tenant's stay consistent", async () => {
    const storage = server!.remote!.storage;
    const [t1, t2] = [generateTenantId(), generateTenantId()];
    for (const t of [t1, t2]) expect((await call("POST", "/v1/tenant", { new_tenant_id: t, config: QUIET })).status).toBe(201);
    const main = await timelineWithData(t1);
    const branch = await timelineWithData(t1, main);
    const other = await timelineWithData(t2);
    const otherKeys = await keysUnder(storage, tenantPrefix(t2));
    expect(await keysUnder(storage, timelinePrefix(t1, branch))).not.toEqual([]);
    await expectClean(storage, t1, main);
    await expectClean(storage, t1, branch);

    expect((await call("DELETE", `/v1/tenant/${t1}/timeline/${branch}`)).status).toBe(200);
    expect(await keysUnder(storage, timelinePrefix(t1, branch))).toEqual([]);
    await expectClean(storage, t1, branch);
    await expectClean(storage, t1, main);

    expect((await call("DELETE", `/v1/tenant/${t1}/timeline/${main}`)).status).toBe(200);
    expect(await keysUnder(storage, tenantPrefix(t1))).toEqual([]);

    // A tenant with a timeline and a branch, deleted whole.
    const t3 = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: t3, config: QUIET })).status).toBe(201);
    const m3 = await timelineWithData(t3);
    const b3 = await timelineWithData(t3, m3);
    expect(await keysUnder(storage, tenantPrefix(t3))).not.toEqual([]);
    expect((await call("DELETE", `/v1/tenant/${t3}`)).status).toBe(200);
    expect(await keysUnder(storage, tenantPrefix(t3))).toEqual([]);
    await expectClean(storage, t3, m3);
    await expectClean(storage, t3, b3);

    expect(await keysUnder(storage, tenantPrefix(t2))).toEqual(otherKeys);
    await expectClean(storage, t2, other);
  });

  it("a deletion cut short after the indexes: the DELETE fails, no index names a missing layer, the timeline connects again; a retry finishes it", async () => {
    const storage = server!.remote!.storage;
    const t = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: t, config: QUIET })).status).toBe(201);
    const tl = await timelineWithData(t);
    expect((await call("PUT", "/v1/failpoints", [{ name: "remote-delete-timeline", actions: "return" }])).status).toBe(200);
    try {
      const failed = await call("DELETE", `/v1/tenant/${t}/timeline/${tl}`);
      expect(failed.status).toBe(500);
      expect((failed.json as { error: string }).error).toContain("failpoint 'remote-delete-timeline'");
    } finally {
      expect((await call("PUT", "/v1/failpoints", [{ name: "remote-delete-timeline", actions: "off" }])).status).toBe(200);
    }
    expect((await call("GET", `/v1/tenant/${t}/timeline/${tl}`)).status).toBe(200);
    // Never an index naming a missing layer; the timeline stays and connects again, so the
    // bucket holds it whole once its client reconciled.
    expect((await checkRemoteTimeline(storage, t, tl, 1)).missing).toEqual([]);
    const timeline = server!.tenants.get(t).getTimeline(tl);
    await within(
      (async () => {
        while (server!.remote!.clientOf(timeline) === undefined) await new Promise((r) => setTimeout(r, 20));
      })(),
      "the timeline's client again",
    );
    await within(server!.remote!.clientOf(timeline)!.waitUploaded(), "reconciled");
    const check = await checkRemoteTimeline(storage, t, tl, 1, { verify_checksums: true });
    expect(check, JSON.stringify(check)).toMatchObject({ ok: true, missing: [], orphans: [] });
    expect(server!.remote!.remoteConsistentLsn(timeline)).toBe(timeline.diskConsistentLsn);
    expect((await call("DELETE", `/v1/tenant/${t}/timeline/${tl}`)).status).toBe(200);
    expect(await keysUnder(storage, tenantPrefix(t))).toEqual([]);
    expect((await call("GET", `/v1/tenant/${t}/timeline/${tl}`)).status).toBe(404);
  });

  it("a newer generation in the bucket: the timeline goes locally, every remote object stays", async () => {
    const storage = server!.remote!.storage;
    const t = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: t, config: QUIET })).status).toBe(201);
    const tl = await timelineWithData(t);
    // Another pageserver attached the tenant in generation 2 and wrote its index.
    const theirs = await findLatestIndex(storage, t, tl, 1);
    const bytes = encodeIndexPart(theirs!.index);
    await storage.put(indexKey(t, tl, 2), bytes, { size_bytes: bytes.byteLength });
    const before = await keysUnder(storage, tenantPrefix(t));
    expect((await call("DELETE", `/v1/tenant/${t}/timeline/${tl}`)).status).toBe(200);
    expect((await call("GET", `/v1/tenant/${t}/timeline/${tl}`)).status).toBe(404);
    expect(await keysUnder(storage, tenantPrefix(t))).toEqual(before);
  });
});
