/**
 * Physical replication from a PostgreSQL 15 primary: the walsender connection
 * (connection.ts) with its commands (command.ts, copy_inbox.ts, result_set.ts), the COPY
 * handles it returns (copy_streams.ts) and the codecs of the messages inside CopyData
 * (messages.ts); the reconnecting WAL receiver with slot-based retention (walreceiver.ts),
 * and BASE_BACKUP streaming of base.tar (base_backup.ts).
 * Errors are ReplicationError (errors.ts, with `kind` and `retryable`).
 */
export * from "./base_backup.js";
export * from "./connection.js";
export { DEFAULT_MAX_BUFFERED_BYTES } from "./copy_inbox.js";
export * from "./copy_streams.js";
export * from "./errors.js";
export * from "./messages.js";
export type { ResultSet } from "./result_set.js";
export * from "./walreceiver.js";
