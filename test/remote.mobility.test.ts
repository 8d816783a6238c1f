/**
 * A tenant moves between two Servers sharing one bucket (Server.detachTenant /
 * Server.attachTenant over src/remote/attach.ts): A writes, checkpoints and detaches (it waits
 * for the bucket; A keeps nothing); B attaches in generation 2 and reads every value A had,
 * at A's disk_consistent_lsn, and publishes its own generation-2 index; A can't take the
 * tenant back in generation 1. Without remote storage both operations are refused.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WAIT_BOUND_MS, within } from "./support/within.js";
import { deltaLayerName } from "../src/layers/layer_name.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { listIndexGenerations } from "../src/remote/index_part.js";
import { checkRemoteTimeline } from "../src/remote/remote_check.js";
import { layerKey } from "../src/remote/remote_path.js";
import { BadStateError, NotFoundError } from "../src/types/errors.js";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { KEY_MAX, KEY_MIN, makeKey } from "../src/types/key.js";
import { imageValue } from "../src/types/value.js";
import { LogCapture } from "./support/log_check.js";
import { asLsn } from "../src/types/lsn.js";

const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);
const KEYS = 50;
const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d", compaction_threshold: 2, image_creation_threshold: 1 };

const PAGECTL = fileURLToPath(new URL("../src/cli/pagectl.ts", import.meta.url));

/** pagectl as a process (async: the Servers answering it run in this process). */
async function pagectl(server: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", PAGECTL, "--server", server, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), WAIT_BOUND_MS);
  const code = await new Promise<number>((r) => child.once("close", (c) => r(c ?? -1)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

const logs = new LogCapture();
const dirs: string[] = [];
let bucketUrl: string;
let a: Server;
let b: Server;

function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

async function server(workdir: string, remote: string | undefined): Promise<Server> {
  const s = new Server(
    loadNodeConfig({
      workdir,
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      ...(remote === undefined ? {} : { remote_storage: remote }),
    }),
    logs.logger,
  );
  // Every reply checked against its declared schema.
  s.http.checkResponses = true;
  await s.start();
  return s;
}

beforeAll(async () => {
  bucketUrl = `file://${tmp("mobility-bucket-")}`;
  a = await server(tmp("mobility-a-"), bucketUrl);
  b = await server(tmp("mobility-b-"), bucketUrl);
});

afterAll(async () => {
  await a?.stop();
  await b?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  // The refused attach of generation 1, provoked on purpose.
  logs.expectClean([/^tenant is broken$/]);
});

describe("tenant mobility", () => {
  const tenantId = generateTenantId();
  const timelineId = generateTimelineId();
  const values: (string | null)[] = [];
  let lsn = 0x1000;
  let dcl = 0;

  it("A detaches: it waits for the bucket, then keeps nothing", async () => {
    const t = await a.tenants.create(tenantId, QUIET);
    const tl = await t.createTimeline({ timelineId, startLsn: asLsn(lsn) });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < KEYS; i++) {
        lsn += 8;
        tl.put(k(i), asLsn(lsn), imageValue(Buffer.from(`a ${i} r${round}`)));
      }
      tl.finishWrite(asLsn(lsn));
      await tl.checkpoint();
    }
    // The last round stays in memory: detach flushes it.
    for (let i = 0; i < KEYS; i += 2) {
      lsn += 8;
      tl.put(k(i), asLsn(lsn), imageValue(Buffer.from(`a ${i} last`)));
    }
    tl.finishWrite(asLsn(lsn));
    for (let i = 0; i < KEYS; i++) {
      const v = await tl.get(k(i), asLsn(lsn));
      values.push(v === null ? null : Buffer.from(v).toString());
    }
    await within(a.detachTenant(tenantId), "detach");
    expect(() => a.tenants.get(tenantId)).toThrow(NotFoundError);
    expect(existsSync(join(a.config.workdir, "tenants", tenantId))).toBe(false);
    const check = await checkRemoteTimeline(a.remote!.storage, tenantId, timelineId, 1, { verify_checksums: true });
    expect(check.ok, JSON.stringify(check)).toBe(true);
    dcl = lsn;
  });

  it("B attaches in generation 2 and reads what A had", async () => {
    const t = await within(b.attachTenant(tenantId, 2), "attach");
    expect(t.state, t.brokenReason ?? "").toBe("Active");
    const tl = t.getTimeline(timelineId);
    expect(tl.diskConsistentLsn).toBe(dcl);
    for (let i = 0; i < KEYS; i++) {
      const v = await tl.get(k(i), asLsn(dcl));
      expect(v === null ? null : Buffer.from(v).toString(), `key ${i}`).toBe(values[i]);
    }
    await within(b.remote!.whenConnected(), "B's remote client");
    await within(b.remote!.clientOf(tl)!.waitUploaded(), "B's index");
    expect(await listIndexGenerations(b.remote!.storage, tenantId, timelineId)).toEqual([1, 2]);
    expect(b.remote!.clientOf(tl)!.stats().uploaded_layers_total).toBe(0);
    // B writes on, in generation 2.
    tl.put(k(0), asLsn(dcl + 8), imageValue(Buffer.from("b 0")));
    tl.finishWrite(asLsn(dcl + 8));
    await tl.checkpoint();
    await within(b.remote!.clientOf(tl)!.waitUploaded(), "B's upload");
    const check = await checkRemoteTimeline(b.remote!.storage, tenantId, timelineId, 2, { verify_checksums: true });
    expect(check.ok, JSON.stringify(check)).toBe(true);
    expect(b.remote!.remoteConsistentLsn(tl)).toBe(dcl + 8);
  });

  it("A can't take it back in an older generation; the failed attach leaves a Broken entry", async () => {
    const e = await a.attachTenant(tenantId, 1).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BadStateError);
    expect((e as Error).message).toContain("older than generation 2");
    expect(a.tenants.get(tenantId).state).toBe("Broken");
    // Nothing was written: a later attach (in a newer generation) may try again.
    expect(existsSync(join(a.config.workdir, "tenants", tenantId))).toBe(false);
    await b.detachTenant(tenantId);
    const back = await within(a.attachTenant(tenantId, 3), "attach back in generation 3");
    expect(back.state).toBe("Active");
    const v = await back.getTimeline(timelineId).get(k(0), asLsn(dcl + 8));
    expect(Buffer.from(v!).toString()).toBe("b 0");
  });

  it("over HTTP: POST …/detach on A, POST …/attach {generation} on B; both in the OpenAPI document", async () => {
    const call = async (srv: Server, method: string, path: string, body?: unknown) => {
      const res = await fetch(`http://127.0.0.1:${srv.port}${path}`, {
        method,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };
    // A holds the tenant now (generation 3): it moves to B in generation 4.
    expect(await call(a, "POST", `/v1/tenant/${tenantId}/detach`)).toEqual({ status: 200, json: { tenant_id: tenantId } });
    expect((await call(a, "GET", `/v1/tenant/${tenantId}`)).status).toBe(404);
    const bad = await call(b, "POST", `/v1/tenant/${tenantId}/attach`, { generation: 0 });
    expect(bad.status).toBe(400);
    expect(String(bad.json["error"])).toContain("generation");
    const r = await call(b, "POST", `/v1/tenant/${tenantId}/attach`, { generation: 4 });
    expect(r.status, JSON.stringify(r.json)).toBe(201);
    expect(r.json).toMatchObject({ id: tenantId, state: "Active", timeline_ids: [timelineId] });
    expect((await call(b, "POST", `/v1/tenant/${tenantId}/attach`, { generation: 5 })).status).toBe(409);
    const doc = (await call(b, "GET", "/v1/openapi.json")).json as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/tenant/{tenant_id}/detach", "/v1/tenant/{tenant_id}/attach"]));
    const v = await b.tenants
      .get(tenantId)
      .getTimeline(timelineId)
      .get(k(0), asLsn(dcl + 8));
    expect(Buffer.from(v!).toString()).toBe("b 0");
  });

  it("pagectl: remote check (exit 1 on an orphan), tenant detach, tenant attach --generation", async () => {
    const bUrl = `http://127.0.0.1:${b.port}`;
    const aUrl = `http://127.0.0.1:${a.port}`;
    const check = await pagectl(bUrl, ["remote", "check", tenantId, timelineId, "--verify-checksums"]);
    expect(check.code, check.stderr).toBe(0);
    expect(check.stdout).toMatch(/ok\s+true/);
    const json = await pagectl(bUrl, ["--json", "remote", "check", tenantId, timelineId]);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, index_generation: 4, missing: [], orphans: [] });
    // An object of B's generation that no index names.
    const orphan = layerKey(
      tenantId,
      timelineId,
      deltaLayerName({ start: KEY_MIN, end: KEY_MAX }, { start: asLsn(0x10), end: asLsn(0x20) }),
      4,
    );
    await b.remote!.storage.put(orphan, new Uint8Array(3), { size_bytes: 3 });
    const bad = await pagectl(bUrl, ["remote", "check", tenantId, timelineId]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/orphans\s+1/);
    expect(bad.stderr).toContain("inconsistent");
    await b.remote!.storage.delete([orphan]);
    const detach = await pagectl(bUrl, ["tenant", "detach", tenantId]);
    expect(detach.code, detach.stderr).toBe(0);
    expect(detach.stdout).toContain(`detached tenant ${tenantId}`);
    const attach = await pagectl(aUrl, ["tenant", "attach", tenantId, "--generation", "5"]);
    expect(attach.code, attach.stderr).toBe(0);
    expect(attach.stdout).toContain(`attached tenant ${tenantId} (Active)`);
    expect((await pagectl(aUrl, ["tenant", "attach", tenantId, "--generation", "zero"])).code).toBe(2);
  });

  it("deleting a timeline or a tenant stops its remote clients", async () => {
    const id = generateTenantId();
    const t = await b.tenants.create(id, QUIET);
    const [x, y] = [await t.createTimeline({ startLsn: asLsn(0x1000) }), await t.createTimeline({ startLsn: asLsn(0x1000) })];
    await within(b.remote!.whenConnected(), "clients");
    expect(b.remote!.clientOf(x)).toBeDefined();
    const base = `http://127.0.0.1:${b.port}`;
    expect((await fetch(`${base}/v1/tenant/${id}/timeline/${x.timelineId}`, { method: "DELETE" })).status).toBe(200);
    expect(b.remote!.clientOf(x)).toBeUndefined();
    expect(b.remote!.clientOf(y)).toBeDefined();
    expect((await fetch(`${base}/v1/tenant/${id}`, { method: "DELETE" })).status).toBe(200);
    expect(b.remote!.clientOf(y)).toBeUndefined();
  });

  it("without remote storage, attach and detach are refused", async () => {
    const s = await server(tmp("mobility-none-"), undefined);
    try {
      await expect(s.attachTenant(generateTenantId(), 1)).rejects.toThrow(/needs remote storage/);
      await expect(s.detachTenant(generateTenantId())).rejects.toThrow(/needs remote storage/);
    } finally {
      await s.stop();
    }
  });
});
