/**
 * PgRedo: the redo manager for PostgreSQL timelines. On top of a base image it applies, in
 * LSN order:
 *   - pageserver records (NATIVE / NATIVE_INIT: CLOG bits, multixacts, visibility-map
 *     clears, full-page images kept as the WAL carried them), see ./native.ts;
 *   - PostgreSQL WAL records (PG_RECORD / PG_RECORD_INIT) through the native redo registry
 *     (./redo_table.ts): the record is decoded once, the block reference whose relation, fork
 *     and block number match the key is redone by its rmgr's RmgrRedo. PG_RECORD_INIT
 *     (BKPBLOCK_WILL_INIT) starts from a zeroed page, PG_RECORD from the version before it.
 * A record whose rmgr has no RmgrRedo yet is an UnsupportedError naming the rmgr, the info
 * and the wal_consistency_checking setting that would have made the source send images
 * instead: never a wrong page.
 *
 * A value's LSN is the record's END LSN (ingest stores values there; it is also what redo
 * sets as pd_lsn). The start LSN, which only error messages use, is derived from it (see
 * recordStartLsn).
 *
 * Every relation page it returns carries a fresh data checksum (see src/pg/page.ts).
 * Allocation per call: one copy of the base page (or one zeroed page), one decode per record.
 */
import { CorruptionError, UnsupportedError } from "../../types/errors.js";
import { type Key, keyFields, keyToHex } from "../../types/key.js";
import { type Lsn, lsnToString } from "../../types/lsn.js";
import type { WalRedoManager } from "../../types/redo.js";
import { type Value, ValueTag } from "../../types/value.js";
import { BLCKSZ, XLOG_BLCKSZ } from "../consts.js";
import { setPageChecksum } from "../page.js";
import { DEFAULT_WAL_SEGMENT_SIZE, maxAlign, SIZE_OF_XLOG_LONG_PHD, SIZE_OF_XLOG_SHORT_PHD } from "../wal/page.js";
import { type DecodedBlock, type DecodedRecord, decodeRecord } from "../wal/record.js";
import { PageLayoutError } from "./bufpage.js";
import { applyNative, initNative } from "./native.js";
import { describeRecord, relFilePath } from "./rmgr_interface.js";
import { PAGE_RMGRS, rmgrRedo } from "./redo_table.js";

const XLOG_RECORD_TOT_LEN_BYTES = 4;

/** Multiples of `step` in the open interval (lo, hi). */
function multiplesBetween(lo: number, hi: number, step: number): number {
  return Math.max(0, Math.ceil(hi / step) - 1 - Math.floor(lo / step));
}

/**
 * The start LSN of a record of `totLen` bytes ending (MAXALIGNed) at `endLsn`: end minus the
 * MAXALIGNed record minus the WAL page headers inside it (start and headers are multiples of
 * 8, so the arithmetic is exact). A page boundary b holds a header inside the record iff
 * start < b + header size (a record never starts inside a header) and b < end. Iterating
 * from the headerless guess only moves the start down and stops at the one valid start.
 * Assumes 16 MiB segments for the long headers: it names records in messages, nothing else.
 */
export function recordStartLsn(endLsn: Lsn, totLen: number): Lsn {
  const body = maxAlign(totLen);
  const seg = DEFAULT_WAL_SEGMENT_SIZE;
  const shortHdr = SIZE_OF_XLOG_SHORT_PHD;
  const longHdr = SIZE_OF_XLOG_LONG_PHD;
  let start = endLsn - body;
  // A record is at most 1 GiB: each pass adds the headers the previous guess missed, and a
  // handful of passes converge.
  for (let pass = 0; pass < 16; pass++) {
    const pages = multiplesBetween(start - shortHdr, endLsn, XLOG_BLCKSZ);
    const segsAlsoPages = multiplesBetween(start - shortHdr, endLsn, seg);
    const segsOnlyLong = multiplesBetween(start - longHdr, endLsn, seg) - segsAlsoPages;
    const headers = pages * shortHdr + segsAlsoPages * (longHdr - shortHdr) + segsOnlyLong * longHdr;
    const next = endLsn - body - headers;
    if (next === start) break;
    start = next;
  }
  return start as Lsn;
}

/** Decode a PG_RECORD(_INIT) value (tag byte included) stored at end LSN `endLsn`. */
export function decodeRecordValue(v: Value, endLsn: Lsn): DecodedRecord {
  const rec = v.subarray(1);
  if (rec.length < XLOG_RECORD_TOT_LEN_BYTES) {
    throw new CorruptionError("(record value)", -1, `PostgreSQL record value of ${rec.length} bytes ending at ${lsnToString(endLsn)}`);
  }
  return decodeRecord(rec, recordStartLsn(endLsn, rec.length), endLsn);
}

/** The wal_consistency_checking name of a page rmgr, or null for rmgrs that have none. */
function consistencyName(rmid: number): string | null {
  for (const p of PAGE_RMGRS) if (p.rmid === rmid) return p.name;
  return null;
}

function matchingBlock(rec: DecodedRecord, spc: number, db: number, rel: number, fork: number, blkno: number): DecodedBlock | undefined {
  const blocks = rec.blocks;
  for (let i = 0; i < blocks.length; i++) {
    const b = blocks[i]!;
    if (b.blkno === blkno && b.forkNum === fork && b.rnode.relNode === rel && b.rnode.dbNode === db && b.rnode.spcNode === spc) return b;
  }
  return undefined;
}

/** rel block key: field1 0, relnode ≠ 0, blkno ≠ size marker. SLRU block: field1 1, field3 1. */
export class PgRedo implements WalRedoManager {
  apply(key: Key, base: Uint8Array | null, _baseLsn: Lsn, records: readonly Value[], lsns: readonly Lsn[]): Uint8Array {
    const f = keyFields(key);
    const isRelBlock = f.field1 === 0 && f.field4 !== 0 && f.field6 !== 0xffff_ffff;
    const isSlruBlock = f.field1 === 1 && f.field3 === 1 && f.field6 !== 0xffff_ffff;
    let page: Uint8Array | null = base === null ? null : base.slice();
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const tag = r[0] as ValueTag;
      if (tag === ValueTag.NativeInit) {
        page = initNative(r);
        continue;
      }
      if (tag === ValueTag.PgRecord || tag === ValueTag.PgRecordInit) {
        if (!isRelBlock) throw new UnsupportedError(`PostgreSQL record at ${lsnToString(lsns[i]!)} for non-relation key ${keyToHex(key)}`);
        const init = tag === ValueTag.PgRecordInit;
        if (init) {
          if (page === null || page.length !== BLCKSZ) page = new Uint8Array(BLCKSZ);
          else page.fill(0);
        } else if (page === null || page.length !== BLCKSZ) {
          throw new UnsupportedError(
            `PostgreSQL record at ${lsnToString(lsns[i]!)} for key ${keyToHex(key)} has ${page === null ? "no base page" : `a base of ${page.length} bytes`}`,
          );
        }
        this.redoRecord(r, lsns[i]!, init, f.field2, f.field3, f.field4, f.field5, f.field6, page);
        continue;
      }
      if (tag !== ValueTag.Native) throw new UnsupportedError(`value tag ${tag} is not a record at ${lsnToString(lsns[i]!)}`);
      if (page === null)
        throw new UnsupportedError(`pageserver record at ${lsnToString(lsns[i]!)} for key ${keyToHex(key)} has no base image`);
      if (page.length !== BLCKSZ)
        throw new UnsupportedError(`pageserver record at ${lsnToString(lsns[i]!)}: base is ${page.length} bytes, not a page`);
      applyNative(r, page, isSlruBlock ? f.field4 : 0, f.field6);
    }
    if (page === null) throw new UnsupportedError(`nothing to reconstruct key ${keyToHex(key)} from`);
    if (isRelBlock && page.length === BLCKSZ) setPageChecksum(page, f.field6);
    return page;
  }

  private redoRecord(
    v: Value,
    endLsn: Lsn,
    init: boolean,
    spc: number,
    db: number,
    rel: number,
    fork: number,
    blkno: number,
    page: Uint8Array,
  ): void {
    const rec = decodeRecordValue(v, endLsn);
    const blk = matchingBlock(rec, spc, db, rel, fork, blkno);
    if (blk === undefined) {
      throw new CorruptionError(
        relFilePath({ spcNode: spc, dbNode: db, relNode: rel }, fork),
        blkno,
        `${describeRecord(rec)} stored for this block has no reference to it`,
      );
    }
    if (blk.willInit !== init) {
      throw new CorruptionError(
        relFilePath(blk.rnode, fork),
        blkno,
        `${describeRecord(rec)}: stored as ${init ? "PG_RECORD_INIT" : "PG_RECORD"} but block reference ${blk.id} ${blk.willInit ? "has" : "lacks"} BKPBLOCK_WILL_INIT`,
      );
    }
    const redo = rmgrRedo(rec.rmid);
    if (redo === undefined) {
      const name = consistencyName(rec.rmid);
      throw new UnsupportedError(
        `cannot redo ${describeRecord(rec)} for ${relFilePath(blk.rnode, fork)} block ${blkno}: no native redo for this rmgr yet. ` +
          (name === null
            ? "This rmgr has no wal_consistency_checking setting; its records can't be served."
            : `Run the source with wal_consistency_checking including '${name}' (or 'all'), so that every block its records touch carries an image.`),
      );
    }
    try {
      redo.redo(rec, blk.id, page);
    } catch (e) {
      if (e instanceof PageLayoutError) {
        throw new CorruptionError(
          relFilePath(blk.rnode, fork),
          blkno,
          `redo of ${describeRecord(rec)}, block reference ${blk.id}: ${e.message}`,
        );
      }
      throw e;
    }
  }
}

const manager: WalRedoManager = new PgRedo();
export default manager;
