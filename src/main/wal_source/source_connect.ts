/**
 * Reaching a WAL source before and outside streaming.
 *
 * Connection strings: libpq's URI and key=value forms; only what the string says is used (no
 * PG* environment, no ~/.pgpass: src/pg/replication/connection.ts); a unix-socket host only
 * where the node allows it (ConnstrPolicy). Clients see the string with every password masked,
 * and a failed connect as one message whatever the reason (the reason goes to the log).
 *
 * A new source is probed before anything changes (probeSource): reachable, settings, same
 * system.
 *
 * Bootstrap: BASE_BACKUP over a replication connection after creating the slot (so WAL from
 * the backup's start is kept), imported at the backup's start LSN; streaming then replays
 * from the start, and the timeline is readable from the backup's end LSN.
 */
import type { Logger } from "pino";
import { importArchives } from "../../pgdata/import.js";
import { startBaseBackup } from "../../pg/replication/base_backup.js";
import { CONNECT_ERROR_CONTEXT, ReplicationConnection } from "../../pg/replication/connection.js";
import { isUnixSocketHost, MAX_CONNINFO_LENGTH, maskConninfo, resolveConninfo } from "../../pg/replication/conninfo.js";
import { rmgrsWithoutNativeRedo } from "../../pg/redo/redo_table.js";
import type { Tenant, TimelineReservation } from "../../tenant/tenant.js";
import type { Timeline } from "../../tenant/timeline/index.js";
import { ConflictError, InvalidArgumentError, SourceUnavailableError, UnsupportedError } from "../../types/errors.js";
import type { TimelineId } from "../../types/ids.js";
import { type Lsn, lsnToString } from "../../types/lsn.js";

/** A timeline's source as persisted next to its metadata (timeline_wal_source.ts WAL_SOURCE_FILE). */
export interface WalSourceConfig {
  connstr: string;
  slot_name: string;
  /** Decimal pg_control system identifier, learned on first contact. */
  system_id: string | null;
  /**
   * A bootstrap from a fuzzy base backup is consistent only from the backup's end LSN: once
   * ingest passes it, reads and branches below it are refused (the GC cutoff is raised).
   */
  consistent_from_lsn?: string | null;
}

/** What a probe of a source learned (IDENTIFY_SYSTEM). */
export interface SourceInfo {
  systemId: string;
  timeline: number;
  xlogPos: Lsn;
}

/** The replication slot a timeline's source keeps its WAL in. */
export function slotNameFor(timelineId: TimelineId): string {
  return `pageserver_${timelineId}`;
}

/** Which connection strings a node accepts beyond TCP hosts (pageserver.json `wal_source_unix_sockets`). */
export interface ConnstrPolicy {
  /** A host that is a unix socket directory ('/…', or '@…' abstract): off unless the operator allows it. */
  allowUnixSockets: boolean;
}

/**
 * What every failed connect to a source answers, whatever the reason (closed port, another
 * protocol, no such host, bad password): the reason would tell a prober what is there, so it
 * goes to the log only.
 */
export const SOURCE_UNAVAILABLE_MESSAGE = "cannot connect to the WAL source (the reason is in the pageserver log)";

/**
 * A libpq connection string, URI or key=value (src/pg/replication/conninfo.ts): it must parse,
 * name a host and a user, and name a unix socket only where the node allows it. The error
 * never echoes the string (it may hold a password).
 */
export function parseConnstr(x: unknown, policy: ConnstrPolicy): string {
  if (typeof x !== "string" || x.length === 0 || x.length > MAX_CONNINFO_LENGTH)
    throw new InvalidArgumentError("wal_source.connstr must be a non-empty string");
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(x) && !/^postgres(ql)?:\/\//.test(x))
    throw new InvalidArgumentError("wal_source.connstr must be a postgresql:// URL or key=value pairs");
  let host: string;
  try {
    host = resolveConninfo(x).host;
  } catch (e) {
    throw new InvalidArgumentError(`wal_source.connstr: ${(e as Error).message}`);
  }
  if (isUnixSocketHost(host) && !policy.allowUnixSockets) {
    throw new InvalidArgumentError(
      "wal_source.connstr names a unix socket: this node allows TCP sources only (pageserver.json wal_source_unix_sockets)",
    );
  }
  return x;
}

/** A status or error text for clients: a failed connect's reason is replaced (see SOURCE_UNAVAILABLE_MESSAGE). */
export function publicSourceError(message: string): string {
  return message.includes(CONNECT_ERROR_CONTEXT) ? SOURCE_UNAVAILABLE_MESSAGE : message;
}

/**
 * Check a source's settings before using it: the error says what to change. Records of an
 * rmgr without native redo can only be stored as the images wal_consistency_checking puts
 * on every block they touch, so the source's setting must cover exactly those rmgrs
 * (nothing, once every rmgr is redone natively).
 */
export async function checkSource(conn: ReplicationConnection): Promise<{ systemId: string; timeline: number; xlogPos: Lsn }> {
  const needed = rmgrsWithoutNativeRedo();
  if (needed.length > 0) {
    const wcc = (await conn.show("wal_consistency_checking")).trim();
    const has = new Set(wcc.split(",").map((x) => x.trim().toLowerCase()));
    const missing = has.has("all") ? [] : needed.filter((n) => !has.has(n));
    if (missing.length > 0) {
      throw new UnsupportedError(
        `source has wal_consistency_checking = '${wcc}': the pageserver can't redo ${missing.join(", ")} records natively yet, so it needs wal_consistency_checking to include '${needed.join(",")}' (or 'all')`,
      );
    }
  }
  const level = (await conn.show("wal_level")).trim();
  if (level !== "replica" && level !== "logical")
    throw new UnsupportedError(`source has wal_level = '${level}': replica or logical is needed`);
  return conn.identifySystem();
}

/**
 * Check that `connstr` can feed a timeline before anything is changed: reachable and logged
 * into (else SourceUnavailableError, 422), its settings (UnsupportedError, 422), the same
 * system as `expectedSystemId` (else ConflictError, 409) and PostgreSQL timeline 1.
 */
export async function probeSource(connstr: string, expectedSystemId: string | null, log: Logger): Promise<SourceInfo> {
  const conn = await connectSource(connstr, "pageserver_probe", log);
  try {
    const info = await checkSource(conn);
    if (expectedSystemId !== null && info.systemId !== expectedSystemId) {
      throw new ConflictError(`source system identifier ${info.systemId} differs from this timeline's ${expectedSystemId}`);
    }
    if (info.timeline !== 1) throw new UnsupportedError(`source is on PostgreSQL timeline ${info.timeline}; only timeline 1 is supported`);
    return info;
  } finally {
    await conn.close();
  }
}

/**
 * A replication connection to a source named in a request; failing to connect is a 422 with
 * one message whatever the reason, which goes to the log (WARN) with the masked connstr.
 */
async function connectSource(connstr: string, application_name: string, log: Logger): Promise<ReplicationConnection> {
  try {
    return await ReplicationConnection.connect({ connstr, application_name, connect_timeout_ms: 10_000 });
  } catch (e) {
    log.warn({ err: e, connstr: maskConninfo(connstr) }, "cannot connect to the WAL source");
    throw new SourceUnavailableError(SOURCE_UNAVAILABLE_MESSAGE);
  }
}

/**
 * Create a timeline from a running source: slot (reserving WAL), BASE_BACKUP, import at the
 * backup's start LSN. Returns the timeline and the backup's end LSN (readable from there).
 */
export async function bootstrapFromSource(
  tenant: Tenant,
  reservation: TimelineReservation,
  connstr: string,
  log: Logger,
): Promise<{ timeline: Timeline; config: WalSourceConfig; endLsn: Lsn }> {
  const id = reservation.id;
  const slot = slotNameFor(id);
  const conn = await connectSource(connstr, "pageserver_bootstrap", log.child({ tenant_id: tenant.id, timeline_id: id }));
  let slotCreated = false;
  try {
    const info = await checkSource(conn);
    if (info.timeline !== 1) throw new UnsupportedError(`source is on PostgreSQL timeline ${info.timeline}; only timeline 1 is supported`);
    // The slot first, reserving WAL from now: the backup's start (its checkpoint's redo point)
    // comes later, so every byte streaming needs is kept from the start.
    slotCreated = await conn.createPhysicalSlot(slot, { reserveWal: true });
    const bb = await startBaseBackup(conn, { label: "pageserver bootstrap", fast_checkpoint: true, wait: true });
    const tl = await tenant.createTimeline({ reservation, startLsn: bb.startLsn, pgVersion: 15 });
    // One tar per tablespace with a LOCATION, then base.tar: all imported at the start LSN.
    await importArchives(tl, bb.startLsn, bb.archives);
    const end = await bb.finished;
    tl.log.info({ start_lsn: lsnToString(bb.startLsn), end_lsn: lsnToString(end.endLsn) }, "bootstrapped from base backup");
    return {
      timeline: tl,
      config: { connstr, slot_name: slot, system_id: info.systemId, consistent_from_lsn: lsnToString(end.endLsn) },
      endLsn: end.endLsn,
    };
  } catch (e) {
    // Don't leave a slot behind that would keep the source's WAL forever.
    if (slotCreated && !conn.closed) await conn.dropReplicationSlot(slot).catch(() => false);
    throw e;
  } finally {
    if (!conn.closed) await conn.close();
  }
}
