/**
 * import_pgdata reads only under the node's import root (node config import_pgdata_root;
 * src/pgdata/import.ts resolveImportDir), with a real PostgreSQL 15 data directory:
 * - no import root: import_pgdata is refused (422) and reads nothing;
 * - outside the root, missing, a file, a symlink out of the root: one 400 whose text is the
 *   same whatever the reason (only the requested path differs), so a prober learns nothing
 *   about which paths exist; nothing is created;
 * - a data directory under the root with one relation file symlinked out of it: refused;
 *   the same directory without the symlink imports (201).
 */
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadNodeConfig } from "../src/main/config.js";
import { Server } from "../src/main/server.js";
import { LogCapture } from "./support/log_check.js";
import { PgInstance } from "./support/postgres.js";

const logs = new LogCapture();
let pg: PgInstance;
let outside = "";
const servers: Server[] = [];

async function start(root: string | undefined): Promise<string> {
  const work = mkdtempSync(join(tmpdir(), "ps-import-root-"));
  const s = new Server(
    loadNodeConfig({
      workdir: work,
      listen: "127.0.0.1:0",
      listen_pg: "127.0.0.1:0",
      ...(root === undefined ? {} : { import_pgdata_root: root }),
      tenant_config: { compaction_period: 0, gc_period: 0 },
    }),
    logs.logger,
  );
  servers.push(s);
  return `http://127.0.0.1:${await s.start()}`;
}

async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${base}${path}`, { method, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

async function newTenant(base: string): Promise<string> {
  const r = await call(base, "POST", "/v1/tenant", {});
  expect(r.status).toBe(201);
  return String(r.json["id"]);
}

beforeAll(async () => {
  pg = await PgInstance.start();
  await pg.psql("CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000); CHECKPOINT;");
  await pg.stop();
  outside = mkdtempSync(join(tmpdir(), "ps-import-outside-"));
}, 120_000);

afterAll(async () => {
  for (const s of servers) await s.stop();
  await pg?.destroy();
  rmSync(outside, { recursive: true, force: true });
  logs.expectClean([]);
});

describe("import_pgdata and the import root", () => {
  it("without an import root, import_pgdata is refused (422)", async () => {
    const base = await start(undefined);
    const t = await newTenant(base);
    const r = await call(base, "POST", `/v1/tenant/${t}/timeline`, { import_pgdata: pg.dataDir });
    expect(r.status).toBe(422);
    expect(r.json["code"]).toBe("unsupported");
    expect(String(r.json["error"])).toContain("import_pgdata_root");
    expect((await call(base, "GET", `/v1/tenant/${t}/timeline`)).json).toEqual([]);
  });

  it("outside, missing, a file, a symlink out: the same 400 whatever the reason; a data directory under the root imports", async () => {
    const root = pg.baseDir;
    symlinkSync(outside, join(root, "link-out"));
    writeFileSync(join(root, "a-file"), "x");
    writeFileSync(join(outside, "secret"), "x");
    const base = await start(root);
    const t = await newTenant(base);
    const probes = [
      "/etc", // exists, outside
      join(outside, "secret"), // a file, outside
      "/no/such/dir", // missing, outside
      join(root, "missing"), // missing, inside
      join(root, "a-file"), // a file, inside
      join(root, "link-out"), // a symlink out of the root
      join(root, "..", "..", "etc"), // dot-dot out
    ];
    const texts = new Set<string>();
    for (const p of probes) {
      const r = await call(base, "POST", `/v1/tenant/${t}/timeline`, { import_pgdata: p });
      expect(r.status, `${p}: ${JSON.stringify(r.json)}`).toBe(400);
      texts.add(String(r.json["error"]).replace(JSON.stringify(p), "<requested>"));
    }
    expect([...texts]).toEqual(["import_pgdata: <requested> is not a data directory under the node's import root"]);
    expect((await call(base, "GET", `/v1/tenant/${t}/timeline`)).json).toEqual([]);
    // A relation file of the data directory symlinked out of the root: refused, nothing created.
    const db = readdirSync(join(pg.dataDir, "base")).find((d) => d !== "1" && /^\d+$/.test(d))!;
    const rel = readdirSync(join(pg.dataDir, "base", db)).find((f) => /^\d+$/.test(f))!;
    const relPath = join(pg.dataDir, "base", db, rel);
    mkdirSync(join(outside, "rel"), { recursive: true });
    copyFileSync(relPath, join(outside, "rel", rel));
    renameSync(relPath, `${relPath}.orig`);
    symlinkSync(join(outside, "rel", rel), relPath);
    try {
      const r = await call(base, "POST", `/v1/tenant/${t}/timeline`, { import_pgdata: pg.dataDir });
      expect(r.status, JSON.stringify(r.json)).toBe(400);
      expect(String(r.json["error"])).toBe("import_pgdata: a file of the data directory resolves outside the node's import root");
      expect((await call(base, "GET", `/v1/tenant/${t}/timeline`)).json).toEqual([]);
    } finally {
      rmSync(relPath);
      renameSync(`${relPath}.orig`, relPath);
    }
    const ok = await call(base, "POST", `/v1/tenant/${t}/timeline`, { import_pgdata: pg.dataDir });
    expect(ok.status, JSON.stringify(ok.json)).toBe(201);
  });
});
