/**
 * The codecs of the messages carried inside the CopyData of START_REPLICATION.
 *
 * Owns: XLogData ('w') and primary keepalive ('k') decoding, standby status update ('r')
 * encoding, and the PostgreSQL timestamp epoch.
 *
 * Invariants: a decoded XLogData's `data` is a view of the caller's buffer (which the caller
 * owns: CopyInbox copies every chunk on arrival); a message shorter than its fixed part or of
 * an unknown type is a "protocol" ReplicationError, never a partial result.
 *
 * Messages (all integers big-endian; times are µs since 2000-01-01 UTC):
 *
 *   S→C XLogData (25 + n bytes)
 *   ┌─────┬──────────────┬──────────────┬──────────────┬──────────────────┐
 *   │ 'w' │ dataStart u64│ walEnd u64   │ sendTime i64 │ WAL bytes (n)    │
 *   └─────┴──────────────┴──────────────┴──────────────┴──────────────────┘
 *    0     1              9              17             25
 *
 *   S→C primary keepalive (18 bytes)
 *   ┌─────┬──────────────┬──────────────┬────────────────┐
 *   │ 'k' │ walEnd u64   │ sendTime i64 │ replyRequested │
 *   └─────┴──────────────┴──────────────┴────────────────┘
 *    0     1              9              17 (u8)
 *
 *   C→S standby status update (34 bytes)
 *   ┌─────┬───────────┬───────────┬───────────┬──────────────┬────────────────┐
 *   │ 'r' │ write u64 │ flush u64 │ apply u64 │ sendTime i64 │ replyRequested │
 *   └─────┴───────────┴───────────┴───────────┴──────────────┴────────────────┘
 *    0     1           9           17          25             33 (u8)
 *
 * u64/i64 are read and written as two u32 halves: LSNs through readLsnBE / writeLsnBE (which
 * refuse anything beyond 2^53), times as hi * 2^32 + lo (µs since 2000 stay below 2^53 until
 * the year 2285). No BigInt.
 */
import { assert } from "../../types/assert.js";
import { isValidLsn, type Lsn, readLsnBE, writeLsnBE } from "../../types/lsn.js";
import { ReplicationError } from "./errors.js";

/** 2000-01-01T00:00:00Z in Unix ms: PostgreSQL's timestamp epoch. */
export const PG_EPOCH_UNIX_MS = 946_684_800_000;
const TWO_32 = 0x1_0000_0000;

export const XLOGDATA_HEADER_BYTES = 25;
export const KEEPALIVE_BYTES = 18;
export const STANDBY_STATUS_BYTES = 34;

export interface XLogDataMessage {
  kind: "xlogdata";
  /** LSN of data[0]. */
  dataStart: Lsn;
  /** The server's flush position when it sent this. */
  walEnd: Lsn;
  /** µs since 2000-01-01 UTC. */
  sendTime_us: number;
  /** Raw WAL, page headers included; owned by the receiver (a copy of the wire bytes). */
  data: Uint8Array;
}

export interface KeepaliveMessage {
  kind: "keepalive";
  walEnd: Lsn;
  sendTime_us: number;
  replyRequested: boolean;
}

export type ReplicationMessage = XLogDataMessage | KeepaliveMessage;

export interface StandbyStatus {
  /** Last WAL byte + 1 received (0 when unknown). */
  write: Lsn;
  /** Last WAL byte + 1 durably stored: a physical slot's restart_lsn follows it. */
  flush: Lsn;
  /** Last WAL byte + 1 applied (0 when unknown). */
  apply: Lsn;
  replyRequested: boolean;
  /** µs since 2000-01-01 UTC; default now. */
  sendTime_us?: number;
}

/** Now as µs since 2000-01-01 UTC: an exact integer in a JS number (ms × 1000 < 2^53). */
export function pgNow_us(): number {
  return (Date.now() - PG_EPOCH_UNIX_MS) * 1000;
}

function readI64BE(dv: DataView, off: number): number {
  return dv.getInt32(off, false) * TWO_32 + dv.getUint32(off + 4, false);
}

function writeI64BE(dv: DataView, off: number, value: number): void {
  assert(Number.isSafeInteger(value), `i64 ${value} is not a safe integer`);
  const hi = Math.floor(value / TWO_32);
  dv.setInt32(off, hi, false);
  dv.setUint32(off + 4, value - hi * TWO_32, false);
}

/** Decode one CopyData payload of START_REPLICATION ('w' or 'k'). `buf` must be owned by the caller. */
export function parseReplicationMessage(buf: Uint8Array): ReplicationMessage {
  if (buf.length === 0) throw new ReplicationError("protocol", "empty CopyData message in replication stream");
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const type = buf[0];
  if (type === 0x77 /* 'w' */) {
    if (buf.length < XLOGDATA_HEADER_BYTES)
      throw new ReplicationError("protocol", `XLogData message of ${buf.length} bytes, expected >= ${XLOGDATA_HEADER_BYTES}`);
    return {
      kind: "xlogdata",
      dataStart: readLsnBE(buf, 1),
      walEnd: readLsnBE(buf, 9),
      sendTime_us: readI64BE(dv, 17),
      // A plain Uint8Array view even when `buf` is a Buffer: the WAL decoder cuts every record
      // and its parts out of this with subarray(), which Buffer makes several times slower.
      data: new Uint8Array(buf.buffer, buf.byteOffset + XLOGDATA_HEADER_BYTES, buf.byteLength - XLOGDATA_HEADER_BYTES),
    };
  }
  if (type === 0x6b /* 'k' */) {
    if (buf.length < KEEPALIVE_BYTES)
      throw new ReplicationError("protocol", `keepalive message of ${buf.length} bytes, expected ${KEEPALIVE_BYTES}`);
    return { kind: "keepalive", walEnd: readLsnBE(buf, 1), sendTime_us: readI64BE(dv, 9), replyRequested: buf[17] !== 0 };
  }
  throw new ReplicationError("protocol", `unknown replication message type 0x${type!.toString(16)}`);
}

/** Encode a standby status update ('r'), 34 bytes. */
export function encodeStandbyStatus(s: StandbyStatus): Uint8Array {
  assert(isValidLsn(s.write) && isValidLsn(s.flush) && isValidLsn(s.apply), "status LSNs must be valid");
  const buf = new Uint8Array(STANDBY_STATUS_BYTES);
  const dv = new DataView(buf.buffer);
  buf[0] = 0x72; // 'r'
  writeLsnBE(buf, 1, s.write);
  writeLsnBE(buf, 9, s.flush);
  writeLsnBE(buf, 17, s.apply);
  writeI64BE(dv, 25, s.sendTime_us ?? pgNow_us());
  buf[33] = s.replyRequested ? 1 : 0;
  return buf;
}
