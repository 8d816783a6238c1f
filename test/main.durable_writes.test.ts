/**
 * Durable writes under concurrency, and creation next to what is already on disk (issue 16,
 * item 2 and "Smaller"), in-process over HTTP:
 * - concurrent `PUT /v1/tenant/:id/config` (WRITERS at once, ROUNDS rounds): every one 200,
 *   config.json on disk always whole JSON equal to the config served, no temp file left; after
 *   a restart the tenant is Active with the last config;
 * - concurrent writeFileDurable of one path: each succeeds, the last call's bytes stay; a
 *   removal queued after a write of the path lands after it;
 * - a temp file a crash left in a tenant directory is removed at startup;
 * - creating a tenant or a timeline whose directory already exists on disk is 409 (conflict)
 *   and leaves the directory and its files as they were.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TEMP_SUFFIX } from "../src/layers/layer_name.js";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { removeFileDurable, writeFileDurable } from "../src/layers/durable_file.js";
import { generateTenantId, generateTimelineId } from "../src/types/ids.js";
import { LogCapture } from "./support/log_check.js";

const logs = new LogCapture();
const WRITERS = 8;
const ROUNDS = 30;

let workdir: string;
let server: Server | null = null;
let base = "";

async function start(): Promise<void> {
  server = new Server(loadNodeConfig({ workdir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", max_tenants: 100 }), logs.logger);
  base = `http://127.0.0.1:${await server.start()}`;
}

async function call(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown>; text: string }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  return {
    status: r.status,
    json: r.headers.get("content-type") === "application/json" ? (JSON.parse(text) as Record<string, unknown>) : {},
    text,
  };
}

const tenantDir = (t: string): string => join(workdir, "tenants", t);
const tempFilesIn = (dir: string): string[] => readdirSync(dir).filter((n) => n.endsWith(TEMP_SUFFIX));

beforeAll(async () => {
  workdir = mkdtempSync(join(tmpdir(), "ps-durable-"));
  await start();
});

afterAll(async () => {
  await server?.stop();
  if (workdir) rmSync(workdir, { recursive: true, force: true });
  logs.expectClean([]);
});

describe("durable writes", { timeout: 120_000 }, () => {
  it(`concurrent config PUTs (${WRITERS} × ${ROUNDS} rounds): all 200, config.json always whole, Active with the last config after a restart`, async () => {
    const tid = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tid })).status).toBe(201);
    const configPath = join(tenantDir(tid), "config.json");
    let last: Record<string, unknown> = {};
    for (let round = 0; round < ROUNDS; round++) {
      const bodies = Array.from({ length: WRITERS }, (_, w) => ({
        gc_horizon: 1_000_000 + round * WRITERS + w,
        compaction_period: `${w + 1}s`,
      }));
      const replies = await Promise.all(bodies.map((b) => call("PUT", `/v1/tenant/${tid}/config`, b)));
      for (const r of replies) expect(r.status, r.text).toBe(200);
      const served = (await call("GET", `/v1/tenant/${tid}/config`)).json["overrides"] as Record<string, unknown>;
      const onDisk = JSON.parse(readFileSync(configPath, "utf8")) as Record<string, unknown>;
      expect(onDisk).toEqual(served);
      expect(bodies).toContainEqual(served);
      expect(tempFilesIn(tenantDir(tid))).toEqual([]);
      last = served;
    }
    await server!.stop();
    await start();
    const after = await call("GET", `/v1/tenant/${tid}`);
    expect(after.json["state"], after.text).toBe("Active");
    expect((await call("GET", `/v1/tenant/${tid}/config`)).json["overrides"]).toEqual(last);
  });

  it("concurrent writeFileDurable of one path: every write succeeds, the last call's bytes stay, no temp file is left", async () => {
    const dir = mkdtempSync(join(workdir, "w-"));
    const path = join(dir, "f.json");
    const n = 64;
    await Promise.all(
      Array.from({ length: n }, (_, i) => writeFileDurable(path, Buffer.from(JSON.stringify({ i, pad: "x".repeat(i * 100) })))),
    );
    expect(JSON.parse(readFileSync(path, "utf8"))).toEqual({ i: n - 1, pad: "x".repeat((n - 1) * 100) });
    expect(readdirSync(dir)).toEqual(["f.json"]);
  });

  it("a removal queued after a write of one path lands last: the file is gone", async () => {
    const dir = mkdtempSync(join(workdir, "r-"));
    const path = join(dir, "f.json");
    const writes = [writeFileDurable(path, Buffer.from("1")), removeFileDurable(path)];
    await Promise.all(writes);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("a temp file a crash left in a tenant directory is removed at startup", async () => {
    const tid = generateTenantId();
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tid })).status).toBe(201);
    await server!.stop();
    const leftover = join(tenantDir(tid), `config.json.4242.7${TEMP_SUFFIX}`);
    writeFileSync(leftover, '{"gc_hori');
    await start();
    expect((await call("GET", `/v1/tenant/${tid}`)).json["state"]).toBe("Active");
    expect(existsSync(leftover)).toBe(false);
  });

  it("creating a tenant or a timeline whose directory exists on disk is 409 and deletes nothing", async () => {
    const tid = generateTenantId();
    mkdirSync(tenantDir(tid), { recursive: true });
    writeFileSync(join(tenantDir(tid), "keep.txt"), "precious");
    const refused = await call("POST", "/v1/tenant", { new_tenant_id: tid });
    expect(refused.status, refused.text).toBe(409);
    expect(refused.json["code"]).toBe("conflict");
    expect(readFileSync(join(tenantDir(tid), "keep.txt"), "utf8")).toBe("precious");
    expect(readdirSync(tenantDir(tid))).toEqual(["keep.txt"]);
    expect((await call("GET", `/v1/tenant/${tid}`)).status).toBe(404);
    // The id stays free for when the operator has dealt with the directory.
    rmSync(tenantDir(tid), { recursive: true });
    expect((await call("POST", "/v1/tenant", { new_tenant_id: tid })).status).toBe(201);

    const tl = generateTimelineId();
    const tlDir = join(tenantDir(tid), "timelines", tl);
    mkdirSync(tlDir);
    writeFileSync(join(tlDir, "keep.txt"), "precious");
    const tlRefused = await call("POST", `/v1/tenant/${tid}/timeline`, { new_timeline_id: tl, start_lsn: "0/1000" });
    expect(tlRefused.status, tlRefused.text).toBe(409);
    expect(tlRefused.json["code"]).toBe("conflict");
    expect(readdirSync(tlDir)).toEqual(["keep.txt"]);
    expect(readFileSync(join(tlDir, "keep.txt"), "utf8")).toBe("precious");
    expect((await call("GET", `/v1/tenant/${tid}/timeline/${tl}`)).status).toBe(404);
  });
});
