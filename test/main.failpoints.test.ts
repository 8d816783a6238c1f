/**
 * Failpoints (src/types/failpoints.ts) in an in-process Server: PUT/GET /v1/failpoints and
 * their validation; `return` on a flush fails the checkpoint with the failpoint's name while
 * the server keeps serving (and the checkpoint succeeds once the failpoint is off); `return`
 * before compaction swaps the layer map and before GC deletes files; `sleep` holds a flush at
 * the failpoint (the flushed file exists, the layer map doesn't have it yet). The FAILPOINTS
 * spec parser. Logs are checked: only the warnings these failures cause are allowed.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { activeFailpoints, clearFailpoints, parseFailpointSpec } from "../src/types/failpoints.js";
import { generateTenantId, type TenantId, type TimelineId } from "../src/types/ids.js";
import { makeKey } from "../src/types/key.js";
import { asLsn, lsnToString } from "../src/types/lsn.js";
import { imageValue } from "../src/types/value.js";
import { LogCapture } from "./support/log_check.js";

const logs = new LogCapture();
let dir = "";
let server: Server | null = null;
let base = "";
const QUIET = { compaction_period: 0, gc_period: 0, checkpoint_timeout: "1d", compaction_threshold: 2 };
const k = (n: number) => makeKey(0, 1663, 5, 16384, 0, n);

async function call(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

async function setFailpoints(body: unknown): Promise<void> {
  const r = await call("PUT", "/v1/failpoints", body);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
}

/**
 * A tenant with one timeline at 0/1000 (background loops off). Image layers only when forced:
 * they drop the test's keys, which lie outside any PostgreSQL directory.
 */
async function newTimeline(): Promise<{ tenant: TenantId; timeline: TimelineId }> {
  const tenant = generateTenantId();
  expect((await call("POST", "/v1/tenant", { new_tenant_id: tenant, config: { ...QUIET, image_creation_threshold: 1000 } })).status).toBe(
    201,
  );
  const r = await call("POST", `/v1/tenant/${tenant}/timeline`, { start_lsn: "0/1000" });
  expect(r.status).toBe(201);
  return { tenant, timeline: r.json["timeline_id"] as TimelineId };
}

/** Write 20 keys tagged `tag` after `from`; returns the new last LSN. */
function write(tenant: TenantId, timeline: TimelineId, from: number, tag: string): number {
  const tl = server!.tenants.get(tenant).getTimeline(timeline);
  let lsn = from;
  for (let i = 0; i < 20; i++) {
    lsn += 8;
    tl.put(k(i), asLsn(lsn), imageValue(Buffer.from(`${tag}${i}`)));
  }
  tl.finishWrite(asLsn(lsn));
  return lsn;
}

async function read(tenant: TenantId, timeline: TimelineId, i: number, lsn: number): Promise<string> {
  return Buffer.from((await server!.tenants.get(tenant).getTimeline(timeline).get(k(i), asLsn(lsn)))!).toString();
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "ps-failpoints-"));
  server = new Server(
    loadNodeConfig({ workdir: dir, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0", enable_failpoints: true }),
    logs.logger,
  );
  base = `http://127.0.0.1:${await server.start()}`;
});

afterEach(() => {
  clearFailpoints();
});

afterAll(async () => {
  clearFailpoints();
  if (server !== null) await server.stop();
  rmSync(dir, { recursive: true, force: true });
  logs.expectClean([
    // The flush failpoint: each attempt, then the round giving up.
    /^layer flush failed; retrying$/,
    /^layer flush failed; the layer stays frozen until the next flush request$/,
    // The HTTP layer logs every 5xx reply (the failed checkpoint, compaction and GC).
    /^request failed$/,
  ]);
});

describe("the FAILPOINTS spec", () => {
  it("parses name=action entries; refuses unknown names, bad actions and entries without '='", () => {
    expect(parseFailpointSpec("")).toEqual([]);
    expect(parseFailpointSpec(" flush-before-layer-map=return ; gc-before-delete=sleep(250);tenant-load=off;")).toEqual([
      { name: "flush-before-layer-map", action: { kind: "return" } },
      { name: "gc-before-delete", action: { kind: "sleep", ms: 250 } },
      { name: "tenant-load", action: { kind: "off" } },
    ]);
    expect(() => parseFailpointSpec("nope=return")).toThrow(/unknown failpoint 'nope': known failpoints are flush-before-layer-map/);
    expect(() => parseFailpointSpec("tenant-load=explode")).toThrow(
      "invalid failpoint action 'explode': expected return, exit, sleep(<ms>) or off",
    );
    expect(() => parseFailpointSpec("tenant-load=sleep(-1)")).toThrow("invalid failpoint action 'sleep(-1)'");
    expect(() => parseFailpointSpec("tenant-load=sleep(600001)")).toThrow("sleep is at most 600000 ms");
    expect(() => parseFailpointSpec("tenant-load")).toThrow("invalid FAILPOINTS entry 'tenant-load': expected name=action");
  });
});

describe("failpoints in an in-process server", () => {
  it("PUT /v1/failpoints sets and clears them (Neon's body); GET lists the active set; bad input is 400 and changes nothing", async () => {
    await setFailpoints([
      { name: "gc-before-delete", actions: "return" },
      { name: "basebackup-start", actions: "sleep(10)" },
    ]);
    expect((await call("GET", "/v1/failpoints")).json).toEqual({ "gc-before-delete": "return", "basebackup-start": "sleep(10)" });
    await setFailpoints([{ name: "gc-before-delete", actions: "off" }]);
    expect(activeFailpoints()).toEqual({ "basebackup-start": "sleep(10)" });

    const bad = async (body: unknown, msg: string): Promise<void> => {
      const r = await call("PUT", "/v1/failpoints", body);
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      expect(Object.keys(r.json).sort()).toEqual(["code", "error"]);
      expect(r.json["code"]).toBe("invalid_argument");
      expect(String(r.json["error"])).toContain(msg);
    };
    // One bad entry: none of the others applies either.
    await bad(
      [
        { name: "tenant-load", actions: "return" },
        { name: "no-such-failpoint", actions: "return" },
      ],
      "unknown failpoint 'no-such-failpoint'",
    );
    await bad([{ name: "tenant-load", actions: "explode" }], "invalid failpoint action 'explode'");
    await bad([{ name: "tenant-load" }], "body.0.actions: required");
    await bad({ name: "tenant-load", actions: "return" }, 'body: expected array, got {"name":"tenant-load","actions":"return"}');
    await bad([42], "body.0: expected object, got 42");
    expect((await call("GET", "/v1/failpoints")).json).toEqual({ "basebackup-start": "sleep(10)" });
  });

  it("return on flush-before-layer-map: the checkpoint fails naming the failpoint, the server keeps serving, and it succeeds once off", async () => {
    const { tenant, timeline } = await newTimeline();
    const lsn = write(tenant, timeline, 0x1000, "a");
    await setFailpoints([{ name: "flush-before-layer-map", actions: "return" }]);
    const cp = await call("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`);
    expect(cp.status, JSON.stringify(cp.json)).toBe(503);
    expect(cp.json).toEqual({
      code: "bad_state",
      error: `layer flush failed on timeline ${timeline}: failpoint 'flush-before-layer-map' returned an error`,
    });
    // Still serving: status, the timeline's info, and its data (from the frozen layer).
    expect((await call("GET", "/v1/status")).status).toBe(200);
    const info = await call("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
    expect(info.json).toMatchObject({
      state: "Active",
      disk_consistent_lsn: "0/1000",
      last_record_lsn: lsnToString(asLsn(lsn)),
      layers: { l0: 0, frozen: 1 },
    });
    expect(await read(tenant, timeline, 7, lsn)).toBe("a7");
    // Another try fails the same way: the layer is still frozen, nothing half-done shows.
    expect((await call("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`)).status).toBe(503);

    await setFailpoints([{ name: "flush-before-layer-map", actions: "off" }]);
    const ok = await call("PUT", `/v1/tenant/${tenant}/timeline/${timeline}/checkpoint`);
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    expect(ok.json).toEqual({ disk_consistent_lsn: lsnToString(asLsn(lsn)) });
    const after = await call("GET", `/v1/tenant/${tenant}/timeline/${timeline}`);
    expect(after.json).toMatchObject({ state: "Active", layers: { l0: 1, frozen: 0 } });
    expect(await read(tenant, timeline, 7, lsn)).toBe("a7");
    // The failures were logged with the failpoint's name.
    const failed = logs.find(/^layer flush failed; the layer stays frozen/);
    expect(failed.length).toBe(2);
    expect(JSON.stringify(failed[0]!.raw)).toContain("failpoint 'flush-before-layer-map' returned an error");
  });

  it("sleep(ms) on flush-before-layer-map holds the flush there: the file is written, the layer map doesn't have it yet", async () => {
    const { tenant, timeline } = await newTimeline();
    const lsn = write(tenant, timeline, 0x1000, "s");
    const tl = server!.tenants.get(tenant).getTimeline(timeline);
    const SLEEP_MS = 1500;
    await setFailpoints([{ name: "flush-before-layer-map", actions: `sleep(${SLEEP_MS})` }]);
    const t0 = performance.now();
    const cp = tl.checkpoint();
    const layerFiles = (): string[] => readdirSync(tl.dir).filter((n) => /^[0-9A-F]{36}-[0-9A-F]{36}__[0-9A-F]{16}-[0-9A-F]{16}$/.test(n));
    let seen = false;
    for (let i = 0; i < 400 && !seen; i++) {
      seen = layerFiles().length === 1 && tl.layerMap.size === 0 && tl.frozenCount === 1;
      if (!seen) await new Promise((r) => setTimeout(r, 10));
    }
    expect(seen, "the flushed file on disk while the layer map is still empty").toBe(true);
    await cp;
    // Held at least the sleep (a lower bound: timers never fire early by more than a ms).
    expect(performance.now() - t0).toBeGreaterThanOrEqual(SLEEP_MS - 2);
    expect(tl.layerMap.size).toBe(1);
    expect(tl.diskConsistentLsn).toBe(lsn);
    expect(existsSync(join(tl.dir, layerFiles()[0]!))).toBe(true);
  });

  it("return before compaction swaps the layer map and before GC deletes files: clear errors, nothing lost, and both work once off", async () => {
    const { tenant, timeline } = await newTimeline();
    const path = `/v1/tenant/${tenant}/timeline/${timeline}`;
    let lsn = 0x1000;
    for (const tag of ["x", "y", "z"]) {
      lsn = write(tenant, timeline, lsn, tag);
      expect((await call("PUT", `${path}/checkpoint`)).status).toBe(200);
    }
    await setFailpoints([{ name: "compact-before-map-swap", actions: "return" }]);
    const c = await call("PUT", `${path}/compact`);
    expect(c.status).toBe(500);
    expect(c.json).toEqual({ code: "internal", error: "failpoint 'compact-before-map-swap' returned an error" });
    expect((await call("GET", path)).json).toMatchObject({ layers: { l0: 3 } });
    expect(await read(tenant, timeline, 3, lsn)).toBe("z3");
    // The L1 files of the failed attempt are on disk, outside the map: the retry writes the
    // same files and takes them into the map once.
    await setFailpoints([{ name: "compact-before-map-swap", actions: "off" }]);
    const c2 = await call("PUT", `${path}/compact`);
    expect(c2.status, JSON.stringify(c2.json)).toBe(200);
    expect(c2.json["l0_compacted"]).toBe(3);
    expect((await call("GET", path)).json).toMatchObject({ layers: { l0: 0 } });
    expect(await read(tenant, timeline, 3, lsn)).toBe("z3");
    expect(await read(tenant, timeline, 3, 0x1000 + 20 * 8 + 4 * 8)).toBe("y3");

    await setFailpoints([{ name: "gc-before-delete", actions: "return" }]);
    const files = readdirSync(server!.tenants.get(tenant).getTimeline(timeline).dir).sort();
    const g = await call("PUT", `${path}/do_gc`, { gc_horizon: 0 });
    expect(g.status).toBe(500);
    expect(g.json).toEqual({ code: "internal", error: "failpoint 'gc-before-delete' returned an error" });
    expect(readdirSync(server!.tenants.get(tenant).getTimeline(timeline).dir).sort()).toEqual(files);
    expect(await read(tenant, timeline, 3, lsn)).toBe("z3");
    await setFailpoints([{ name: "gc-before-delete", actions: "off" }]);
    // The cutoff was recorded before the failpoint: the next GC above it plans again. (Only
    // image layers let GC remove anything; they drop these keys, so reads end here.)
    lsn = write(tenant, timeline, lsn, "w");
    expect((await call("PUT", `${path}/checkpoint`)).status).toBe(200);
    expect((await call("PUT", `${path}/compact?force_image_layer_creation=true`)).status).toBe(200);
    const g2 = await call("PUT", `${path}/do_gc`, { gc_horizon: 0 });
    expect(g2.status, JSON.stringify(g2.json)).toBe(200);
    expect(g2.json["layers_removed"]).toBeGreaterThan(0);
  });

  it("storage operations are timed, failed ones too (pageserver_storage_operations_seconds_global)", async () => {
    const text = await (await fetch(`${base}/metrics`)).text();
    const count = (op: string): number => {
      const m = new RegExp(`^pageserver_storage_operations_seconds_global_count\\{operation="${op}"\\} (\\d+)$`, "m").exec(text);
      return m === null ? -1 : Number(m[1]);
    };
    // Flushes: 2 × 3 failed attempts + 1 (the return test), 1 (sleep), 3 + 1 (compaction test).
    expect(count("layer flush")).toBe(12);
    // Compactions that did work: the failed one and the retry (one new L0 is below the threshold).
    expect(count("compact")).toBe(2);
    expect(count("gc")).toBe(2);
    expect(count("create images")).toBeGreaterThanOrEqual(1);
    expect(count("basebackup")).toBe(0);
  });
});

describe("failpoints are off unless the node enables them (Neon gates them the same way)", () => {
  it("a node without enable_failpoints refuses PUT /v1/failpoints (422 unsupported) and arms nothing", async () => {
    const work = mkdtempSync(join(tmpdir(), "ps-failpoints-off-"));
    const off = new Server(loadNodeConfig({ workdir: work, listen: "127.0.0.1:0", listen_pg: "127.0.0.1:0" }), logs.logger);
    try {
      const url = `http://127.0.0.1:${await off.start()}`;
      const r = await fetch(`${url}/v1/failpoints`, { method: "PUT", body: JSON.stringify([{ name: "tenant-load", actions: "return" }]) });
      expect(r.status).toBe(422);
      const body = (await r.json()) as { code: string; error: string };
      expect(body.code).toBe("unsupported");
      expect(body.error).toContain("--enable-failpoints");
      expect(activeFailpoints()).toEqual({});
      expect(await (await fetch(`${url}/v1/failpoints`)).json()).toEqual({});
    } finally {
      await off.stop();
      rmSync(work, { recursive: true, force: true });
    }
  });

  it("the pageserver process refuses FAILPOINTS (exit 2) without --enable-failpoints or PAGESERVER_ENABLE_FAILPOINTS=1", () => {
    const work = mkdtempSync(join(tmpdir(), "ps-failpoints-env-"));
    const root = fileURLToPath(new URL("..", import.meta.url));
    const env: Record<string, string | undefined> = { ...process.env, FAILPOINTS: "tenant-load=explode" };
    delete env["PAGESERVER_ENABLE_FAILPOINTS"];
    try {
      const run = (args: string[], extraEnv: Record<string, string> = {}) =>
        spawnSync(process.execPath, ["--import", "tsx", "src/main/pageserver.ts", "--workdir", work, "--listen", "127.0.0.1:0", ...args], {
          cwd: root,
          encoding: "utf8",
          timeout: 20_000,
          env: { ...env, ...extraEnv },
        });
      const refused = run([]);
      expect(refused.status, refused.stderr).toBe(2);
      expect(refused.stderr).toContain("pageserver: FAILPOINTS is set but failpoints are off: start with --enable-failpoints");
      // Enabled (flag or environment), the spec itself is parsed (and this one is bad).
      for (const [args, extra] of [
        [["--enable-failpoints"], {}],
        [[], { PAGESERVER_ENABLE_FAILPOINTS: "1" }],
      ] as const) {
        const r = run([...args], extra);
        expect(r.status, r.stderr).toBe(2);
        expect(r.stderr).toContain("pageserver: FAILPOINTS: invalid failpoint action 'explode'");
      }
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  });
});
