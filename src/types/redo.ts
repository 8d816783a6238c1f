/**
 * WalRedoManager: turns a base image and the records above it into a page version. The
 * storage core does not know what records mean; the PostgreSQL layer plugs in the real redo
 * (src/pg), tests plug in TestRedo. A redo module is also loadable by URL in workers (image
 * creation), so an implementation lives in a module whose default export is the manager.
 */
import type { Key } from "./key.js";
import type { Lsn } from "./lsn.js";
import type { Value } from "./value.js";

export interface WalRedoManager {
  /**
   * `base` is the payload of the newest image below the records (null when the oldest record
   * initializes the page). `records` and `lsns` ascend by LSN. Must throw a typed error
   * naming what it can't apply; never return a wrong page.
   */
  apply(key: Key, base: Uint8Array | null, baseLsn: Lsn, records: readonly Value[], lsns: readonly Lsn[]): Uint8Array;
}
