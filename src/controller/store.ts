/**
 * ControllerStore: the storage controller's state in PostgreSQL, over one `pg.Pool`. Owns the
 * SQL of nodes, tenants (placement, generation, WAL source) and operations; nothing else of
 * the controller speaks to its database.
 *
 * Invariants:
 * - migrate() applies the missing migrations of ./migrations.ts in ONE transaction under a
 *   transaction-level advisory lock, so controllers starting at once migrate exactly once and
 *   a failed migration leaves the schema as it was. It refuses (SchemaTooNewError) a database
 *   whose schema version is newer than this build knows: an older controller must not write
 *   rows whose meaning changed under it.
 * - A generation is issued only by one statement, `UPDATE … SET generation = generation + 1
 *   … RETURNING generation`: the row lock serialises concurrent issuers, so two controllers
 *   (two pools, two processes) never hand out the same generation for a tenant.
 * - Every other method is a single statement; none holds a client across awaits of the caller.
 *
 * Lock order: the migration advisory lock, then row locks (only migrate() takes both).
 */
import pg from "pg";
import { assert, ConflictError, NotFoundError, PageserverError } from "../types/index.js";
import { MIGRATIONS, SCHEMA_VERSION } from "./migrations.js";

/** The advisory lock key of migrations (any fixed bigint; "ctrlmigr" would not fit in 63 bits). */
const MIGRATION_LOCK_KEY = 0x7063_6d69_6772n; // "pcmigr"
/** SQLSTATEs this store turns into typed errors. */
const UNIQUE_VIOLATION = "23505";
const FOREIGN_KEY_VIOLATION = "23503";

/** The database's schema is newer than this build: run a newer controller. */
export class SchemaTooNewError extends PageserverError {
  constructor(
    readonly database_version: number,
    readonly known_version: number,
  ) {
    super(
      "unsupported",
      `the controller database is at schema version ${database_version}, newer than this controller knows (${known_version}): run a newer controller`,
    );
  }
}

export type NodeState = "active" | "offline" | "draining" | "filling";

export interface NodeRow {
  node_id: number;
  http_addr: string;
  pg_addr: string;
  state: NodeState;
  last_heartbeat_at: Date | null;
}

export interface TenantRow {
  tenant_id: string;
  generation: number;
  attached_node_id: number | null;
  config: Record<string, unknown>;
  wal_source_connstr: string | null;
}

export interface RegisterNodeArgs {
  node_id: number;
  http_addr: string;
  pg_addr: string;
}

/** A bigint column (pg returns int8 as text) as a number; generations stay far below 2^53. */
function int8(v: unknown): number {
  const n = typeof v === "number" ? v : Number(v);
  assert(Number.isSafeInteger(n), `int8 value out of range: ${String(v)}`);
  return n;
}

function sqlState(err: unknown): string | undefined {
  return typeof err === "object" && err !== null && "code" in err && typeof err.code === "string" ? err.code : undefined;
}

function tenantRow(r: Record<string, unknown>): TenantRow {
  return {
    tenant_id: String(r.tenant_id),
    generation: int8(r.generation),
    attached_node_id: r.attached_node_id === null ? null : Number(r.attached_node_id),
    config: (r.config ?? {}) as Record<string, unknown>,
    wal_source_connstr: r.wal_source_connstr === null ? null : String(r.wal_source_connstr),
  };
}

export class ControllerStore {
  private readonly pool: pg.Pool;
  private closed = false;

  /** `config`: how to reach the controller's database (a connection string or pg settings). */
  constructor(config: string | pg.PoolConfig, max_connections = 8) {
    assert(Number.isInteger(max_connections) && max_connections >= 1 && max_connections <= 64, "max_connections in 1..64");
    const base: pg.PoolConfig = typeof config === "string" ? { connectionString: config } : config;
    this.pool = new pg.Pool({ ...base, max: max_connections, application_name: "pageserver-controller" });
    // An idle connection the server ends (restart, admin shutdown, network) is an 'error' on the
    // pool, which pg-pool has already dropped; without a listener it would kill the process.
    // The next query opens a new connection, and its failure, if any, reaches its caller.
    this.pool.on("error", () => {});
  }

  /**
   * Bring the schema to SCHEMA_VERSION (idempotent). Returns the version the database is at.
   * Throws SchemaTooNewError, changing nothing, when the database is newer than this build.
   */
  async migrate(): Promise<number> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      try {
        await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_KEY.toString()]);
        await client.query(
          `CREATE TABLE IF NOT EXISTS controller_schema_version (
             version int PRIMARY KEY CHECK (version >= 1),
             description text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now())`,
        );
        const res = await client.query("SELECT coalesce(max(version), 0) AS v FROM controller_schema_version");
        const current = Number(res.rows[0]?.v ?? 0);
        if (current > SCHEMA_VERSION) throw new SchemaTooNewError(current, SCHEMA_VERSION);
        for (const m of MIGRATIONS) {
          if (m.version <= current) continue;
          await client.query(m.sql);
          await client.query("INSERT INTO controller_schema_version (version, description) VALUES ($1, $2)", [m.version, m.description]);
        }
        await client.query("COMMIT");
        return SCHEMA_VERSION;
      } catch (err) {
        await client.query("ROLLBACK");
        throw err;
      }
    } finally {
      client.release();
    }
  }

  /** Register a node, or update its addresses and mark it active when it registers again. */
  async registerNode(args: RegisterNodeArgs): Promise<NodeRow> {
    assert(Number.isInteger(args.node_id) && args.node_id >= 0, "node_id is a non-negative integer");
    const res = await this.pool.query(
      `INSERT INTO nodes (node_id, http_addr, pg_addr, state, last_heartbeat_at)
       VALUES ($1, $2, $3, 'active', now())
       ON CONFLICT (node_id) DO UPDATE
         SET http_addr = EXCLUDED.http_addr, pg_addr = EXCLUDED.pg_addr,
             state = 'active', last_heartbeat_at = EXCLUDED.last_heartbeat_at
       RETURNING node_id, http_addr, pg_addr, state, last_heartbeat_at`,
      [args.node_id, args.http_addr, args.pg_addr],
    );
    const row = res.rows[0];
    assert(row !== undefined, "INSERT … RETURNING returned no row");
    return row as NodeRow;
  }

  /** Every node, by node_id. */
  async listNodes(): Promise<NodeRow[]> {
    const res = await this.pool.query("SELECT node_id, http_addr, pg_addr, state, last_heartbeat_at FROM nodes ORDER BY node_id");
    return res.rows as NodeRow[];
  }

  /** A new tenant in generation 1, attached to `node_id` (null: not placed yet). */
  async createTenant(tenant_id: string, node_id: number | null, config: Record<string, unknown>): Promise<TenantRow> {
    try {
      const res = await this.pool.query(
        `INSERT INTO tenants (tenant_id, generation, attached_node_id, config)
         VALUES ($1, 1, $2, $3::jsonb)
         RETURNING tenant_id, generation, attached_node_id, config, wal_source_connstr`,
        [tenant_id, node_id, JSON.stringify(config)],
      );
      const row = res.rows[0];
      assert(row !== undefined, "INSERT … RETURNING returned no row");
      return tenantRow(row);
    } catch (err) {
      if (sqlState(err) === UNIQUE_VIOLATION) throw new ConflictError(`tenant ${tenant_id} already exists`);
      if (sqlState(err) === FOREIGN_KEY_VIOLATION) throw new NotFoundError(`node ${String(node_id)} is not registered`);
      throw err;
    }
  }

  /**
   * Issue the tenant's next generation and attach it to `node_id`, in one statement (see the
   * header): the returned generation is this caller's alone.
   */
  async incrementGeneration(tenant_id: string, node_id: number): Promise<number> {
    let res: pg.QueryResult;
    try {
      res = await this.pool.query(
        "UPDATE tenants SET generation = generation + 1, attached_node_id = $2 WHERE tenant_id = $1 RETURNING generation",
        [tenant_id, node_id],
      );
    } catch (err) {
      if (sqlState(err) === FOREIGN_KEY_VIOLATION) throw new NotFoundError(`node ${node_id} is not registered`);
      throw err;
    }
    const row = res.rows[0];
    if (row === undefined) throw new NotFoundError(`tenant ${tenant_id} not found`);
    return int8(row.generation);
  }

  /** The tenant's row, or null when there is none. */
  async getTenant(tenant_id: string): Promise<TenantRow | null> {
    const res = await this.pool.query(
      "SELECT tenant_id, generation, attached_node_id, config, wal_source_connstr FROM tenants WHERE tenant_id = $1",
      [tenant_id],
    );
    const row = res.rows[0];
    return row === undefined ? null : tenantRow(row);
  }

  /** End the pool (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}
