/**
 * pg_control (ControlFileData) and CheckPoint of PostgreSQL 15: decode, encode, CRC.
 * [src/include/catalog/pg_control.h]. All integers little-endian; u64 fields are kept as
 * Lsn numbers (LSNs), hi/lo u32 halves (system identifier) or safe-integer numbers (times,
 * i64 seconds), never BigInt.
 *
 * CheckPoint (88 bytes; also the main data of checkpoint WAL records):
 *   off size field                 off size field
 *    0   8   redo (LSN)             44   4   oldestXid
 *    8   4   ThisTimeLineID         48   4   oldestXidDB
 *   12   4   PrevTimeLineID         52   4   oldestMulti
 *   16   1   fullPageWrites (+7 pad)56   4   oldestMultiDB (+4 pad)
 *   24   8   nextXid = epoch<<32|xid 64  8   time (pg_time_t)
 *   32   4   nextOid                72   4   oldestCommitTsXid
 *   36   4   nextMulti              76   4   newestCommitTsXid
 *   40   4   nextMultiOffset        80   4   oldestActiveXid (+4 pad)
 *
 * ControlFileData (296 bytes, in an 8192-byte file of zeros; CRC-32C over [0, 288)):
 *   off size field                  off size field
 *    0   8   system_identifier      192  4   max_prepared_xacts
 *    8   4   pg_control_version     196  4   max_locks_per_xact
 *   12   4   catalog_version_no     200  1   track_commit_timestamp
 *   16   4   state (+4 pad)         204  4   maxAlign
 *   24   8   time                   208  8   floatFormat (double 1234567.0)
 *   32   8   checkPoint (LSN)       216  4   blcksz
 *   40  88   checkPointCopy         220  4   relseg_size
 *  128   8   unloggedLSN            224  4   xlog_blcksz
 *  136   8   minRecoveryPoint       228  4   xlog_seg_size
 *  144   4   minRecoveryPointTLI    232  4   nameDataLen
 *  152   8   backupStartPoint       236  4   indexMaxKeys
 *  160   8   backupEndPoint         240  4   toast_max_chunk_size
 *  168   1   backupEndRequired      244  4   loblksize
 *  172   4   wal_level              248  1   float8ByVal
 *  176   1   wal_log_hints          252  4   data_checksum_version
 *  180   4   MaxConnections         256 32   mock_authentication_nonce
 *  184   4   max_worker_processes   288  4   crc
 *  188   4   max_wal_senders
 *
 * Invariant: encodeControlFile writes every padding byte as zero, so for a file PostgreSQL
 * wrote (it zeroes its structs), encode(decode(file)) == file byte for byte.
 */
import { PageserverError, UnsupportedError } from "../types/errors.js";
import { type Lsn, readLsnLE, writeLsnLE } from "../types/lsn.js";
import { crc32c } from "./wal/crc32c.js";

export const PG_CONTROL_VERSION = 1300;
export const CATALOG_VERSION_NO = 202209061;
export const PG_CONTROL_FILE_SIZE = 8192;
export const SIZEOF_CONTROL_FILE_DATA = 296;
export const CONTROL_CRC_OFFSET = 288;
export const SIZEOF_CHECKPOINT = 88;

export const DbState = {
  Startup: 0,
  Shutdowned: 1,
  ShutdownedInRecovery: 2,
  Shutdowning: 3,
  InCrashRecovery: 4,
  InArchiveRecovery: 5,
  InProduction: 6,
} as const;
export type DbState = (typeof DbState)[keyof typeof DbState];

/** pg_controldata's words for each DbState. */
export const DB_STATE_NAMES = [
  "starting up",
  "shut down",
  "shut down in recovery",
  "shutting down",
  "in crash recovery",
  "in archive recovery",
  "in production",
] as const;

export class ControlFileError extends PageserverError {
  constructor(reason: string) {
    super("corrupt", `invalid pg_control: ${reason}`);
  }
}

export interface CheckPoint {
  redo: Lsn;
  thisTimeLineId: number;
  prevTimeLineId: number;
  fullPageWrites: boolean;
  /** nextXid's epoch (high 32 bits of the FullTransactionId). */
  nextXidEpoch: number;
  nextXid: number;
  nextOid: number;
  nextMulti: number;
  nextMultiOffset: number;
  oldestXid: number;
  oldestXidDb: number;
  oldestMulti: number;
  oldestMultiDb: number;
  /** Seconds since the Unix epoch. */
  time: number;
  oldestCommitTsXid: number;
  newestCommitTsXid: number;
  oldestActiveXid: number;
}

export interface ControlFileData {
  systemIdHi: number;
  systemIdLo: number;
  pgControlVersion: number;
  catalogVersionNo: number;
  state: DbState;
  time: number;
  checkPoint: Lsn;
  checkPointCopy: CheckPoint;
  unloggedLsn: Lsn;
  minRecoveryPoint: Lsn;
  minRecoveryPointTli: number;
  backupStartPoint: Lsn;
  backupEndPoint: Lsn;
  backupEndRequired: boolean;
  walLevel: number;
  walLogHints: boolean;
  maxConnections: number;
  maxWorkerProcesses: number;
  maxWalSenders: number;
  maxPreparedXacts: number;
  maxLocksPerXact: number;
  trackCommitTimestamp: boolean;
  maxAlign: number;
  floatFormat: number;
  blcksz: number;
  relsegSize: number;
  xlogBlcksz: number;
  xlogSegSize: number;
  nameDataLen: number;
  indexMaxKeys: number;
  toastMaxChunkSize: number;
  loblksize: number;
  float8ByVal: boolean;
  dataChecksumVersion: number;
  mockAuthenticationNonce: Uint8Array;
  /** As stored (decode) — encode recomputes it. */
  crc: number;
}

function dv(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function readI64(v: DataView, off: number): number {
  return v.getInt32(off + 4, true) * 0x1_0000_0000 + v.getUint32(off, true);
}

function writeI64(v: DataView, off: number, x: number): void {
  const hi = Math.floor(x / 0x1_0000_0000);
  v.setUint32(off, x - hi * 0x1_0000_0000, true);
  v.setInt32(off + 4, hi, true);
}

export function decodeCheckPoint(b: Uint8Array, off = 0): CheckPoint {
  if (b.length - off < SIZEOF_CHECKPOINT) throw new ControlFileError(`CheckPoint of ${b.length - off} bytes`);
  const v = dv(b);
  return {
    redo: readLsnLE(b, off),
    thisTimeLineId: v.getUint32(off + 8, true),
    prevTimeLineId: v.getUint32(off + 12, true),
    fullPageWrites: b[off + 16] !== 0,
    nextXid: v.getUint32(off + 24, true),
    nextXidEpoch: v.getUint32(off + 28, true),
    nextOid: v.getUint32(off + 32, true),
    nextMulti: v.getUint32(off + 36, true),
    nextMultiOffset: v.getUint32(off + 40, true),
    oldestXid: v.getUint32(off + 44, true),
    oldestXidDb: v.getUint32(off + 48, true),
    oldestMulti: v.getUint32(off + 52, true),
    oldestMultiDb: v.getUint32(off + 56, true),
    time: readI64(v, off + 64),
    oldestCommitTsXid: v.getUint32(off + 72, true),
    newestCommitTsXid: v.getUint32(off + 76, true),
    oldestActiveXid: v.getUint32(off + 80, true),
  };
}

/** The 88 bytes of a CheckPoint (padding zero), into `out` at `off` or a new buffer. */
export function encodeCheckPoint(c: CheckPoint, out = new Uint8Array(SIZEOF_CHECKPOINT), off = 0): Uint8Array {
  const v = dv(out);
  out.fill(0, off, off + SIZEOF_CHECKPOINT);
  writeLsnLE(out, off, c.redo);
  v.setUint32(off + 8, c.thisTimeLineId, true);
  v.setUint32(off + 12, c.prevTimeLineId, true);
  out[off + 16] = c.fullPageWrites ? 1 : 0;
  v.setUint32(off + 24, c.nextXid, true);
  v.setUint32(off + 28, c.nextXidEpoch, true);
  v.setUint32(off + 32, c.nextOid, true);
  v.setUint32(off + 36, c.nextMulti, true);
  v.setUint32(off + 40, c.nextMultiOffset, true);
  v.setUint32(off + 44, c.oldestXid, true);
  v.setUint32(off + 48, c.oldestXidDb, true);
  v.setUint32(off + 52, c.oldestMulti, true);
  v.setUint32(off + 56, c.oldestMultiDb, true);
  writeI64(v, off + 64, c.time);
  v.setUint32(off + 72, c.oldestCommitTsXid, true);
  v.setUint32(off + 76, c.newestCommitTsXid, true);
  v.setUint32(off + 80, c.oldestActiveXid, true);
  return out;
}

/** CRC-32C of bytes [0, 288) of a pg_control image. */
export function controlFileCrc(file: Uint8Array): number {
  return crc32c(file.subarray(0, CONTROL_CRC_OFFSET));
}

/**
 * Decode pg_control. Checks size, CRC and the PG15 version (ControlFileError /
 * UnsupportedError); the build constants are returned as found, for the caller to judge.
 */
export function decodeControlFile(file: Uint8Array): ControlFileData {
  if (file.length < SIZEOF_CONTROL_FILE_DATA) throw new ControlFileError(`${file.length} bytes, expected ${PG_CONTROL_FILE_SIZE}`);
  const v = dv(file);
  const crc = v.getUint32(CONTROL_CRC_OFFSET, true);
  const version = v.getUint32(8, true);
  if (version !== PG_CONTROL_VERSION)
    throw new UnsupportedError(`pg_control version ${version} (PostgreSQL 15 uses ${PG_CONTROL_VERSION})`);
  const computed = controlFileCrc(file);
  if (computed !== crc) throw new ControlFileError(`CRC mismatch: stored ${crc.toString(16)}, computed ${computed.toString(16)}`);
  return {
    systemIdLo: v.getUint32(0, true),
    systemIdHi: v.getUint32(4, true),
    pgControlVersion: version,
    catalogVersionNo: v.getUint32(12, true),
    state: v.getUint32(16, true) as DbState,
    time: readI64(v, 24),
    checkPoint: readLsnLE(file, 32),
    checkPointCopy: decodeCheckPoint(file, 40),
    unloggedLsn: readLsnLE(file, 128),
    minRecoveryPoint: readLsnLE(file, 136),
    minRecoveryPointTli: v.getUint32(144, true),
    backupStartPoint: readLsnLE(file, 152),
    backupEndPoint: readLsnLE(file, 160),
    backupEndRequired: file[168] !== 0,
    walLevel: v.getUint32(172, true),
    walLogHints: file[176] !== 0,
    maxConnections: v.getUint32(180, true),
    maxWorkerProcesses: v.getUint32(184, true),
    maxWalSenders: v.getUint32(188, true),
    maxPreparedXacts: v.getUint32(192, true),
    maxLocksPerXact: v.getUint32(196, true),
    trackCommitTimestamp: file[200] !== 0,
    maxAlign: v.getUint32(204, true),
    floatFormat: v.getFloat64(208, true),
    blcksz: v.getUint32(216, true),
    relsegSize: v.getUint32(220, true),
    xlogBlcksz: v.getUint32(224, true),
    xlogSegSize: v.getUint32(228, true),
    nameDataLen: v.getUint32(232, true),
    indexMaxKeys: v.getUint32(236, true),
    toastMaxChunkSize: v.getUint32(240, true),
    loblksize: v.getUint32(244, true),
    float8ByVal: file[248] !== 0,
    dataChecksumVersion: v.getUint32(252, true),
    mockAuthenticationNonce: file.slice(256, 288),
    crc,
  };
}

/** Encode into a fresh 8192-byte file with a freshly computed CRC. */
export function encodeControlFile(c: ControlFileData): Uint8Array {
  const file = new Uint8Array(PG_CONTROL_FILE_SIZE);
  const v = dv(file);
  v.setUint32(0, c.systemIdLo, true);
  v.setUint32(4, c.systemIdHi, true);
  v.setUint32(8, c.pgControlVersion, true);
  v.setUint32(12, c.catalogVersionNo, true);
  v.setUint32(16, c.state, true);
  writeI64(v, 24, c.time);
  writeLsnLE(file, 32, c.checkPoint);
  encodeCheckPoint(c.checkPointCopy, file, 40);
  writeLsnLE(file, 128, c.unloggedLsn);
  writeLsnLE(file, 136, c.minRecoveryPoint);
  v.setUint32(144, c.minRecoveryPointTli, true);
  writeLsnLE(file, 152, c.backupStartPoint);
  writeLsnLE(file, 160, c.backupEndPoint);
  file[168] = c.backupEndRequired ? 1 : 0;
  v.setUint32(172, c.walLevel, true);
  file[176] = c.walLogHints ? 1 : 0;
  v.setUint32(180, c.maxConnections, true);
  v.setUint32(184, c.maxWorkerProcesses, true);
  v.setUint32(188, c.maxWalSenders, true);
  v.setUint32(192, c.maxPreparedXacts, true);
  v.setUint32(196, c.maxLocksPerXact, true);
  file[200] = c.trackCommitTimestamp ? 1 : 0;
  v.setUint32(204, c.maxAlign, true);
  v.setFloat64(208, c.floatFormat, true);
  v.setUint32(216, c.blcksz, true);
  v.setUint32(220, c.relsegSize, true);
  v.setUint32(224, c.xlogBlcksz, true);
  v.setUint32(228, c.xlogSegSize, true);
  v.setUint32(232, c.nameDataLen, true);
  v.setUint32(236, c.indexMaxKeys, true);
  v.setUint32(240, c.toastMaxChunkSize, true);
  v.setUint32(244, c.loblksize, true);
  file[248] = c.float8ByVal ? 1 : 0;
  v.setUint32(252, c.dataChecksumVersion, true);
  if (c.mockAuthenticationNonce.length !== 32) throw new ControlFileError("mock_authentication_nonce must be 32 bytes");
  file.set(c.mockAuthenticationNonce, 256);
  v.setUint32(CONTROL_CRC_OFFSET, controlFileCrc(file), true);
  return file;
}

/** The 64-bit system identifier in decimal, as pg_controldata prints it (display only). */
export function systemIdentifierString(c: Pick<ControlFileData, "systemIdHi" | "systemIdLo">): string {
  return ((BigInt(c.systemIdHi) << 32n) | BigInt(c.systemIdLo)).toString();
}
