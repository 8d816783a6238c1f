/**
 * The storage controller's schema, as an ordered list of migrations. Owns the SQL of every
 * schema version; src/controller/store.ts applies them.
 *
 * Invariants: versions are 1, 2, 3… without gaps, in order; a migration, once released, is
 * never edited (a database that applied it would not see the change): changes are new rows.
 * MIGRATIONS.length is the newest schema version this build knows.
 */

export interface Migration {
  /** The schema version the database is at once this migration is applied. */
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: "nodes, tenants (placement and generation), operations",
    sql: `
      CREATE TABLE nodes (
        node_id int PRIMARY KEY CHECK (node_id >= 0),
        http_addr text NOT NULL,
        pg_addr text NOT NULL,
        state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'offline', 'draining', 'filling')),
        last_heartbeat_at timestamptz
      );
      CREATE TABLE tenants (
        tenant_id text PRIMARY KEY,
        generation bigint NOT NULL CHECK (generation >= 1),
        attached_node_id int NULL REFERENCES nodes (node_id),
        config jsonb NOT NULL DEFAULT '{}'::jsonb,
        wal_source_connstr text NULL
      );
      CREATE INDEX tenants_attached_node_id ON tenants (attached_node_id);
      CREATE TABLE operations (
        id bigserial PRIMARY KEY,
        tenant_id text NOT NULL,
        kind text NOT NULL,
        state text NOT NULL,
        payload jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
      );
      CREATE INDEX operations_tenant_id ON operations (tenant_id);
    `,
  },
];

/** The newest schema version this build knows (and migrates databases to). */
export const SCHEMA_VERSION = MIGRATIONS.length;
