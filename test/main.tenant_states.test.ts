/**
 * Tenant states across a restart (src/main/tenant_manager.ts, src/tenant/tenant.ts): a
 * workdir with healthy tenants and two that can't load (a config.json that is not JSON, a
 * timeline whose metadata fails its checksum). After a restart the healthy ones are Active
 * and serve; the others are Broken with their reason, answer 503 `bad_state` naming it, and
 * show in the tenant_states metric; the process and every other tenant keep working (a new
 * tenant can be created, a broken one can't be created over).
 */
import { readFileSync, rmSync, writeFileSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LogCapture } from "./support/log_check.js";
import { afterAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";

const logs = new LogCapture();
const dir = mkdtempSync(join(tmpdir(), "ps-states-"));
let server: Server | null = null;

async function start(): Promise<string> {
  server = new Server(
    loadNodeConfig({
      workdir: dir,
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      tenant_config: { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d" },
    }),
    logs.logger,
  );
  return `http://127.0.0.1:${await server.start()}`;
}

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> & unknown[] }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> & unknown[] };
}

afterAll(async () => {
  await server?.stop();
  logs.expectClean([/tenant is broken/]);
  rmSync(dir, { recursive: true, force: true });
});

describe("tenant states", () => {
  it("tenants that can't load are Broken with a reason; the rest serve", async () => {
    let base = await start();
    const ids: string[] = [];
    const timelines: string[] = [];
    for (let i = 0; i < 5; i++) {
      const t = await call(base, "POST", "/v1/tenant", {});
      expect(t.status).toBe(201);
      ids.push(t.json["id"] as string);
      const tl = await call(base, "POST", `/v1/tenant/${ids[i]}/timeline`, { start_lsn: "0/1000000" });
      expect(tl.status).toBe(201);
      timelines.push(tl.json["timeline_id"] as string);
    }
    await server!.stop();
    server = null;
    const [badConfig, badMetadata] = [ids[1]!, ids[3]!];
    writeFileSync(join(dir, "tenants", badConfig, "config.json"), "{ not json");
    const md = join(dir, "tenants", badMetadata, "timelines", timelines[3]!, "metadata");
    const bytes = readFileSync(md);
    bytes[20]! ^= 0xff;
    writeFileSync(md, bytes);

    base = await start();
    const list = (await call(base, "GET", "/v1/tenant")).json as unknown as { id: string; state: string }[];
    const stateOf = new Map(list.map((t) => [t.id, t.state]));
    for (const id of ids) expect(stateOf.get(id), id).toBe(id === badConfig || id === badMetadata ? "Broken" : "Active");

    const b1 = await call(base, "GET", `/v1/tenant/${badConfig}`);
    expect(b1.status).toBe(200);
    expect(b1.json["broken_reason"]).toMatch(/cannot read tenant config/);
    const b2 = await call(base, "GET", `/v1/tenant/${badMetadata}/timeline/${timelines[3]}`);
    expect(b2.status).toBe(503);
    expect(b2.json["code"]).toBe("bad_state");
    expect(b2.json["error"]).toMatch(/is Broken: cannot load: corrupt file .*metadata/);
    // Creating over a broken tenant is a conflict, not a silent replacement of its data.
    expect((await call(base, "POST", "/v1/tenant", { new_tenant_id: badConfig })).status).toBe(409);

    for (const i of [0, 2, 4]) {
      const ok = await call(base, "GET", `/v1/tenant/${ids[i]}/timeline/${timelines[i]}`);
      expect(ok.status).toBe(200);
      expect(ok.json["last_record_lsn"]).toBe("0/1000000");
    }
    expect((await call(base, "POST", "/v1/tenant", {})).status).toBe(201);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/pageserver_tenant_states\{state="Broken"\} 2/);
    expect(metrics).toMatch(/pageserver_tenant_states\{state="Active"\} 4/);
  });
});
