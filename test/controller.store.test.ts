/**
 * ControllerStore against a real PostgreSQL 15 (test/support/postgres.ts): self-applied
 * migrations (idempotent, concurrent-safe, refusing a newer schema), node registration, and
 * the generation invariant: two controllers (two stores, two pools) incrementing one tenant's
 * generation at once never issue the same number. Each test uses its own database.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ControllerStore, SCHEMA_VERSION, SchemaTooNewError } from "../src/controller/index.js";
import { ConflictError, NotFoundError } from "../src/types/index.js";
import { PgInstance } from "./support/postgres.js";

describe("ControllerStore", () => {
  let pg: PgInstance;
  const stores: ControllerStore[] = [];
  let dbs = 0;

  beforeAll(async () => {
    pg = await PgInstance.start();
  }, 120_000);

  // The test server allows 20 connections: each test's stores end their pools after it.
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
  });

  afterAll(async () => {
    await pg?.destroy();
  });

  /** A fresh database, and a store on it. */
  async function freshDb(): Promise<string> {
    dbs++;
    const db = `controller_${dbs}`;
    await pg.psql(`CREATE DATABASE ${db}`);
    return db;
  }
  function storeOn(db: string): ControllerStore {
    const s = new ControllerStore(pg.connectionConfig(db));
    stores.push(s);
    return s;
  }

  it("migrates once: a second migrate (and a second controller's, at once) changes nothing", async () => {
    const db = await freshDb();
    const a = storeOn(db);
    const b = storeOn(db);
    const [va, vb] = await Promise.all([a.migrate(), b.migrate()]);
    expect(va).toBe(SCHEMA_VERSION);
    expect(vb).toBe(SCHEMA_VERSION);
    expect(await a.migrate()).toBe(SCHEMA_VERSION);
    const versions = (await pg.psql("SELECT version FROM controller_schema_version ORDER BY version", db)).trim();
    expect(versions.split("\n").map(Number)).toEqual(Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    const tables = (
      await pg.psql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name", db)
    ).trim();
    expect(tables.split("\n")).toEqual(["controller_schema_version", "nodes", "operations", "tenants"]);
  });

  it("refuses a database whose schema version is newer than it knows, and changes nothing", async () => {
    const db = await freshDb();
    await storeOn(db).migrate();
    await pg.psql(`INSERT INTO controller_schema_version (version, description) VALUES (${SCHEMA_VERSION + 1}, 'from the future')`, db);
    const older = storeOn(db);
    const err = await older.migrate().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SchemaTooNewError);
    expect((err as SchemaTooNewError).database_version).toBe(SCHEMA_VERSION + 1);
    expect((err as SchemaTooNewError).message).toMatch(/newer than this controller knows/);
    const count = (await pg.psql("SELECT count(*) FROM controller_schema_version", db)).trim();
    expect(Number(count)).toBe(SCHEMA_VERSION + 1);
  });

  it("registerNode / listNodes round trip; registering again updates the addresses", async () => {
    const db = await freshDb();
    const s = storeOn(db);
    await s.migrate();
    await s.registerNode({ node_id: 2, http_addr: "127.0.0.1:9802", pg_addr: "127.0.0.1:6402" });
    await s.registerNode({ node_id: 1, http_addr: "127.0.0.1:9801", pg_addr: "127.0.0.1:6401" });
    await s.registerNode({ node_id: 2, http_addr: "127.0.0.1:9902", pg_addr: "127.0.0.1:6502" });
    const nodes = await s.listNodes();
    expect(nodes.map(({ node_id, http_addr, pg_addr, state }) => ({ node_id, http_addr, pg_addr, state }))).toEqual([
      { node_id: 1, http_addr: "127.0.0.1:9801", pg_addr: "127.0.0.1:6401", state: "active" },
      { node_id: 2, http_addr: "127.0.0.1:9902", pg_addr: "127.0.0.1:6502", state: "active" },
    ]);
    for (const n of nodes) expect(n.last_heartbeat_at).toBeInstanceOf(Date);
  });

  it("50 concurrent incrementGeneration calls from two controllers issue 50 distinct consecutive generations", async () => {
    const db = await freshDb();
    const a = storeOn(db);
    const b = storeOn(db);
    await a.migrate();
    await a.registerNode({ node_id: 1, http_addr: "127.0.0.1:9801", pg_addr: "127.0.0.1:6401" });
    await a.registerNode({ node_id: 2, http_addr: "127.0.0.1:9802", pg_addr: "127.0.0.1:6402" });
    const tenant_id = "0123456789abcdef0123456789abcdef";
    const created = await a.createTenant(tenant_id, 1, { gc_horizon: 1024 });
    expect(created.generation).toBe(1);
    const calls = Array.from({ length: 50 }, (_, i) =>
      i % 2 === 0 ? a.incrementGeneration(tenant_id, 1) : b.incrementGeneration(tenant_id, 2),
    );
    const generations = await Promise.all(calls);
    expect([...generations].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i + 2));
    const t = await b.getTenant(tenant_id);
    expect(t?.generation).toBe(51);
    expect(t?.config).toEqual({ gc_horizon: 1024 });
    // The node attached is the one whose call issued the last generation.
    const last = generations.indexOf(51);
    expect(t?.attached_node_id).toBe(last % 2 === 0 ? 1 : 2);
    expect(await a.getTenant("ffffffffffffffffffffffffffffffff")).toBeNull();
  });

  it("typed errors: a duplicate tenant, an unknown tenant, an unregistered node", async () => {
    const db = await freshDb();
    const s = storeOn(db);
    await s.migrate();
    await s.registerNode({ node_id: 1, http_addr: "127.0.0.1:9801", pg_addr: "127.0.0.1:6401" });
    const tenant_id = "00000000000000000000000000000001";
    await s.createTenant(tenant_id, 1, {});
    await expect(s.createTenant(tenant_id, 1, {})).rejects.toBeInstanceOf(ConflictError);
    await expect(s.createTenant("00000000000000000000000000000002", 7, {})).rejects.toBeInstanceOf(NotFoundError);
    await expect(s.incrementGeneration("00000000000000000000000000000003", 1)).rejects.toBeInstanceOf(NotFoundError);
    await expect(s.incrementGeneration(tenant_id, 7)).rejects.toBeInstanceOf(NotFoundError);
    // A failed increment issues nothing.
    expect((await s.getTenant(tenant_id))?.generation).toBe(1);
    expect(await s.incrementGeneration(tenant_id, 1)).toBe(2);
  });
});
