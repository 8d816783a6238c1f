/**
 * Hosting safety of detach, DELETE and attach with remote storage (issue 16, items 1 and 4),
 * through real Servers over HTTP:
 * - a bucket that was never reachable (s3 endpoint 127.0.0.1:1): a detach is refused (503,
 *   naming the timeline), the tenant stays Active with its directory; with a second tenant
 *   that can't reach the bucket either the refusal still comes (no node-wide wait);
 * - the bucket going away after the timeline connected (a TCP proxy in front of s3rver that
 *   resets every connection while "down": the endpoint's port never changes hands, as it might
 *   if s3rver itself were killed while other test files pick ports): a detach whose uploads can't finish within
 *   detach_timeout_ms is refused, the tenant is Active again and serves its data, and once the
 *   bucket is back the detach goes through with the bucket holding everything;
 * - a timeline or tenant DELETE that can't reach the bucket fails and leaves it Active, with
 *   its changes still following to the bucket once it is back;
 * - attach: a generation equal to the bucket's newest is refused (409), an older one as before.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { type AddressInfo, connect as connectTcp, createServer as createNetServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { within } from "./support/within.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import type { TenantId, TimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { LogCapture } from "./support/log_check.js";
import { TestS3 } from "./support/s3rver.js";
import { asLsn, lsnAdd } from "../src/types/lsn.js";

const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" };
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
const DETACH_TIMEOUT_MS = 1500;

const dirs: string[] = [];
const tmp = (p: string): string => {
  const d = mkdtempSync(join(tmpdir(), p));
  dirs.push(d);
  return d;
};
const logs = new LogCapture();
const s3 = new TestS3();
const servers: Server[] = [];

beforeAll(async () => {
  await s3.start();
});
afterAll(async () => {
  for (const s of servers) await s.stop();
  await s3.destroy();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  logs.expectClean([
    /cannot open the timeline's remote state; retrying/,
    /remote operation failed, retrying/,
    /detach failed: the tenant stays on this node/,
    /remote uploads not drained at shutdown/,
    /could not remove|request failed|tenant is broken/,
    /a newer generation holds the tenant: nothing remote deleted/,
  ]);
});

async function server(remote: string): Promise<Server> {
  const s = new Server(
    loadNodeConfig({ workdir: tmp("ps-detach-"), listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", remote_storage: remote }),
    logs.logger,
  );
  servers.push(s);
  await s.start();
  return s;
}

async function call(s: Server, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${s.port}${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
  const text = await res.text();
  return { status: res.status, json: text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

async function tenantWithTimeline(s: Server): Promise<{ tenant: TenantId; timeline: TimelineId }> {
  const t = await call(s, "POST", "/v1/tenant", { config: QUIET });
  expect(t.status, JSON.stringify(t.json)).toBe(201);
  const tenant = String(t.json["id"]) as TenantId;
  const tl = await call(s, "POST", `/v1/tenant/${tenant}/timeline`, { start_lsn: "0/1000" });
  expect(tl.status, JSON.stringify(tl.json)).toBe(201);
  return { tenant, timeline: String(tl.json["timeline_id"]) as TimelineId };
}

/** Writes `n` values at the timeline's end and checkpoints: the new layer and index queue for upload. */
async function write(s: Server, tenant: TenantId, timeline: TimelineId, tag: string, n = 20): Promise<number> {
  const tl = s.tenants.get(tenant).getTimeline(timeline);
  let lsn = tl.lastRecordLsn;
  for (let i = 0; i < n; i++) {
    lsn = lsnAdd(lsn, 8);
    tl.put(k(i), lsn, imageValue(Buffer.from(`${tag} ${i}`)));
  }
  tl.finishWrite(lsn);
  expect((await call(s, "PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(200);
  return lsn;
}

async function waitFor(what: string, cond: () => boolean): Promise<void> {
  await within(
    (async () => {
      while (!cond()) await sleep(50);
    })(),
    what,
  );
}

describe("detach with a bucket that was never reachable", () => {
  it("is refused (503, naming the timeline); the tenant stays Active with its directory, also beside another such tenant", async () => {
    const s = await server(
      `s3://nowhere/p?endpoint=${encodeURIComponent("http://127.0.0.1:1")}&region=us-east-1&detach_timeout_ms=${DETACH_TIMEOUT_MS}`,
    );
    const one = await tenantWithTimeline(s);
    const other = await tenantWithTimeline(s);
    await write(s, one.tenant, one.timeline, "one");
    const r = await within(call(s, "POST", `/v1/tenant/${one.tenant}/detach`), "detach answers");
    expect(r.status, JSON.stringify(r.json)).toBe(503);
    expect(String(r.json["error"])).toContain(one.timeline);
    expect(String(r.json["error"])).toContain("never reached remote storage");
    expect(existsSync(join(s.config.workdir, "tenants", one.tenant, "timelines", one.timeline, "metadata"))).toBe(true);
    expect((await call(s, "GET", `/v1/tenant/${one.tenant}`)).json["state"]).toBe("Active");
    expect((await call(s, "GET", `/v1/tenant/${other.tenant}`)).json["state"]).toBe("Active");
    const v = await s.tenants
      .get(one.tenant)
      .getTimeline(one.timeline)
      .get(k(3), s.tenants.get(one.tenant).getTimeline(one.timeline).lastRecordLsn);
    expect(Buffer.from(v!).toString()).toBe("one 3");
  });
});

/** A TCP proxy to s3rver that resets every connection (new and open ones) while `down`. */
class OutageProxy {
  private readonly srv = createNetServer((c) => this.accept(c));
  private readonly sockets = new Set<Socket>();
  private down_ = false;
  port = 0;

  async start(): Promise<void> {
    await new Promise<void>((r) => this.srv.listen(0, "127.0.0.1", r));
    this.port = (this.srv.address() as AddressInfo).port;
  }

  private accept(client: Socket): void {
    if (this.down_) return void client.resetAndDestroy();
    const up = connectTcp(s3.port, "127.0.0.1");
    for (const x of [client, up]) {
      this.sockets.add(x);
      x.on("error", () => undefined);
      x.on("close", () => {
        this.sockets.delete(x);
        client.destroy();
        up.destroy();
      });
    }
    client.pipe(up);
    up.pipe(client);
  }

  set down(v: boolean) {
    this.down_ = v;
    if (v) for (const x of this.sockets) x.resetAndDestroy();
  }

  async close(): Promise<void> {
    this.down = true;
    await new Promise<void>((r) => this.srv.close(() => r()));
  }
}

describe("with the bucket going away and coming back", () => {
  let s: Server;
  const proxy = new OutageProxy();
  beforeAll(async () => {
    await proxy.start();
    const url = `s3://${s3.bucket}/detach-${Date.now()}?endpoint=${encodeURIComponent(`http://127.0.0.1:${proxy.port}`)}&region=us-east-1`;
    s = await server(`${url}&detach_timeout_ms=${DETACH_TIMEOUT_MS}`);
  });
  afterAll(async () => {
    // Stopped while the proxy still passes its last uploads; not again by the file's afterAll.
    servers.splice(servers.indexOf(s), 1);
    await s.stop();
    await proxy.close();
  });

  it("a detach whose uploads can't finish is refused and the tenant is Active again; once the bucket is back it detaches whole", async () => {
    const { tenant, timeline } = await tenantWithTimeline(s);
    await write(s, tenant, timeline, "a");
    await within(s.remote!.whenConnected(), "connected");
    await within(s.remote!.clientOf(s.tenants.get(tenant).getTimeline(timeline))!.waitUploaded(), "first uploads");
    proxy.down = true;
    const dcl = await write(s, tenant, timeline, "b");
    const r = await within(call(s, "POST", `/v1/tenant/${tenant}/detach`), "detach answers");
    expect(r.status, JSON.stringify(r.json)).toBe(503);
    expect(String(r.json["error"])).toContain(timeline);
    // Active again (not Stopping until a restart), with everything it had.
    const info = await call(s, "GET", `/v1/tenant/${tenant}`);
    expect(info.json["state"], JSON.stringify(info.json)).toBe("Active");
    const tl = s.tenants.get(tenant).getTimeline(timeline);
    expect(tl.diskConsistentLsn).toBe(dcl);
    expect(Buffer.from((await tl.get(k(5), asLsn(dcl)))!).toString()).toBe("b 5");

    proxy.down = false;
    await waitFor("reconnected and uploaded", () => s.remote!.remoteConsistentLsn(s.tenants.get(tenant).getTimeline(timeline)) === dcl);
    const ok = await within(call(s, "POST", `/v1/tenant/${tenant}/detach`), "detach answers");
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    expect(existsSync(join(s.config.workdir, "tenants", tenant))).toBe(false);
    const check = await checkRemoteTimeline(s.remote!.storage, tenant, timeline, 1, { verify_checksums: true });
    expect(check.ok, JSON.stringify(check)).toBe(true);
    expect(check.index_generation).toBe(1);
  });

  it("a timeline DELETE that can't reach the bucket fails; the timeline stays and its changes reach the bucket once it is back", async () => {
    const { tenant, timeline } = await tenantWithTimeline(s);
    await write(s, tenant, timeline, "a");
    await within(s.remote!.whenConnected(), "connected");
    proxy.down = true;
    const r = await within(call(s, "DELETE", `/v1/tenant/${tenant}/timeline/${timeline}`), "DELETE answers");
    expect(r.status, JSON.stringify(r.json)).toBe(503);
    expect((await call(s, "GET", `/v1/tenant/${tenant}/timeline/${timeline}`)).status).toBe(200);
    proxy.down = false;
    const dcl = await write(s, tenant, timeline, "after");
    const tl = s.tenants.get(tenant).getTimeline(timeline);
    await waitFor("the timeline's changes in the bucket", () => s.remote!.remoteConsistentLsn(tl) === dcl);
  });

  it("a tenant DELETE that can't reach the bucket fails and leaves the tenant Active, connected again", async () => {
    const { tenant, timeline } = await tenantWithTimeline(s);
    await write(s, tenant, timeline, "a");
    await within(s.remote!.whenConnected(), "connected");
    proxy.down = true;
    const r = await within(call(s, "DELETE", `/v1/tenant/${tenant}`), "DELETE answers");
    expect(r.status, JSON.stringify(r.json)).toBe(503);
    expect((await call(s, "GET", `/v1/tenant/${tenant}`)).json["state"]).toBe("Active");
    proxy.down = false;
    const dcl = await write(s, tenant, timeline, "after");
    await waitFor(
      "the tenant's changes in the bucket",
      () => s.remote!.remoteConsistentLsn(s.tenants.get(tenant).getTimeline(timeline)) === dcl,
    );
    expect((await call(s, "DELETE", `/v1/tenant/${tenant}`)).status).toBe(200);
  });
});

describe("attach generations", () => {
  it("a generation equal to the bucket's newest is refused (409); an older one too; a newer one attaches", async () => {
    const bucket = `file://${tmp("ps-attach-gen-")}`;
    const a = await server(bucket);
    const b = await server(bucket);
    const { tenant, timeline } = await tenantWithTimeline(a);
    await write(a, tenant, timeline, "a");
    await within(a.remote!.whenConnected(), "connected");
    await within(a.remote!.clientOf(a.tenants.get(tenant).getTimeline(timeline))!.waitUploaded(), "uploads");
    // A holds generation 1, still live: a second writer of generation 1 is refused.
    const same = await call(b, "POST", `/v1/tenant/${tenant}/attach`, { generation: 1 });
    expect(same.status, JSON.stringify(same.json)).toBe(409);
    expect(String(same.json["error"])).toContain("generation 1");
    // Nothing of it was written on B (the refused attach leaves only a Broken entry).
    expect(existsSync(join(b.config.workdir, "tenants", tenant))).toBe(false);
    const two = await call(b, "POST", `/v1/tenant/${tenant}/attach`, { generation: 2 });
    expect(two.status, JSON.stringify(two.json)).toBe(201);
    await within(b.remote!.whenConnected(), "B connected");
    await within(b.remote!.clientOf(b.tenants.get(tenant).getTimeline(timeline))!.waitUploaded(), "B's index");
    // Now generation 2 is the bucket's newest: A can't take it in 2 either, nor in 1.
    expect((await call(a, "DELETE", `/v1/tenant/${tenant}`)).status).toBe(200);
    expect((await call(a, "POST", `/v1/tenant/${tenant}/attach`, { generation: 2 })).status).toBe(409);
    expect((await call(a, "POST", `/v1/tenant/${tenant}/attach`, { generation: 1 })).status).toBe(503);
  });
});
