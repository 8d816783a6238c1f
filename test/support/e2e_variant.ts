/**
 * The source settings an end-to-end suite runs with. Each suite runs once with images on
 * every block reference (wal_consistency_checking = all: ingest stores PostgreSQL's own
 * pages) and once on default WAL settings (full_page_writes on, no check images: every
 * record without a full-page image is redone natively).
 */
export interface E2eVariant {
  /** Shown in the describe() name. */
  name: string;
  /** postgresql.conf of the source. */
  source_conf: Record<string, string | number>;
  /** postgresql.conf of endpoints started from our base backups (streaming back into a branch). */
  endpoint_conf?: Record<string, string>;
}

const REPLICATION = { wal_level: "replica", max_wal_senders: 10, max_replication_slots: 10 };

export const IMAGES_LZ4: E2eVariant = {
  name: "wal_consistency_checking = all, wal_compression = lz4",
  source_conf: { ...REPLICATION, wal_consistency_checking: "all", wal_compression: "lz4" },
  endpoint_conf: { wal_level: "replica", wal_consistency_checking: "all", max_wal_senders: "5", max_replication_slots: "5" },
};

export const DEFAULT_WAL: E2eVariant = {
  name: "default WAL settings",
  source_conf: { ...REPLICATION },
  endpoint_conf: { wal_level: "replica", max_wal_senders: "5", max_replication_slots: "5" },
};

export const DEFAULT_WAL_LZ4: E2eVariant = {
  name: "default WAL settings, wal_compression = lz4",
  source_conf: { ...REPLICATION, wal_compression: "lz4" },
  endpoint_conf: { wal_level: "replica", wal_compression: "lz4", max_wal_senders: "5", max_replication_slots: "5" },
};
