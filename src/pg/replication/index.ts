/**
 * Physical replication from a PostgreSQL 15 primary: the walsender connection and its
 * message codecs (connection.ts), the reconnecting WAL receiver with slot-based retention
 * (walreceiver.ts), and BASE_BACKUP streaming of base.tar (base_backup.ts).
 * Errors are ReplicationError (with `kind` and `retryable`).
 */
export * from "./base_backup.js";
export * from "./connection.js";
export * from "./walreceiver.js";
