/**
 * Pageserver records: changes PostgreSQL makes to pages without a block image in the WAL
 * (even with wal_consistency_checking = all), stored as NATIVE values and applied here.
 * Payload = op byte + little-endian fields:
 *
 *   op    name              fields                                          page
 *   0x01  CLOG_SET          status u8, n u32, xid u32 × n                   pg_xact page
 *   0x02  MULTI_OFFSETS     n u32, (mxid u32, offset u32) × n               pg_multixact/offsets page
 *   0x03  MULTI_MEMBERS     n u32, (offset u32, xid u32, status u32) × n    pg_multixact/members page
 *   0x04  VM_CLEAR          heapBlkA u32, heapBlkB u32 (0xFFFFFFFF: none), flags u8   VM page
 *   0x05  VM_TRUNCATE       heapBlocks u32 (new heap size)                  last VM page
 *
 * Initializing records (tag NATIVE_INIT, will_init: they need no base page):
 *
 *   0x10  PG_IMAGE          bimg_info u8, hole_offset u16, hole_length u16, flags u8,
 *                           pad u8, pd_lsn hi u32, pd_lsn lo u32, stored image bytes
 *         A full-page image exactly as the WAL carried it (compressed, hole removed):
 *         decompressing is left to the reads that need the page, most versions never are.
 *         On decode: pd_lsn is set unless the page is new; flag 0x01 applies the GiST
 *         left-child fix-up (NSN = pd_lsn, F_FOLLOW_RIGHT cleared).
 *
 * Every op asserts that its entries belong to the page it is applied to (the key says which).
 */
import { UnsupportedError } from "../../types/errors.js";
import { type Lsn, lsnHi, lsnLo } from "../../types/lsn.js";
import { nativeValue, type Value, ValueTag } from "../../types/value.js";
import { readU16LE, writeU16LE } from "../../types/bytes.js";
import {
  BLCKSZ,
  CLOG_XACTS_PER_PAGE,
  HEAPBLOCKS_PER_VM_PAGE,
  MULTIXACT_MEMBERGROUP_SIZE,
  MULTIXACT_MEMBERGROUPS_PER_PAGE,
  MULTIXACT_MEMBERS_PER_GROUP,
  MULTIXACT_MEMBERS_PER_PAGE,
  MULTIXACT_OFFSETS_PER_PAGE,
  SIZE_OF_PAGE_HEADER,
  SLRU_PAGES_PER_SEGMENT,
} from "../consts.js";
import { pageIsNew, setPageLsn } from "../page.js";
import { restorePageImage } from "../wal/image.js";
import type { BlockImage } from "../wal/record.js";

export const OP_CLOG_SET = 0x01;
export const OP_MULTI_OFFSETS = 0x02;
export const OP_MULTI_MEMBERS = 0x03;
export const OP_VM_CLEAR = 0x04;
export const OP_VM_TRUNCATE = 0x05;
export const OP_PG_IMAGE = 0x10;
export const PG_IMAGE_GIST_FIXUP = 0x01;
const PG_IMAGE_HEADER = 16;
const F_FOLLOW_RIGHT = 1 << 3;

const VM_MAP_OFFSET = SIZE_OF_PAGE_HEADER;
const NONE = 0xffff_ffff;

export const CLOG_STATUS_COMMITTED = 1;
export const CLOG_STATUS_ABORTED = 2;
export const CLOG_STATUS_SUBCOMMITTED = 3;

function build(size: number, fill: (dv: DataView) => void): Value {
  const p = new Uint8Array(size);
  fill(new DataView(p.buffer));
  return nativeValue(p);
}

export function clogSet(status: number, xids: readonly number[]): Value {
  return build(6 + 4 * xids.length, (dv) => {
    dv.setUint8(0, OP_CLOG_SET);
    dv.setUint8(1, status);
    dv.setUint32(2, xids.length, true);
    for (let i = 0; i < xids.length; i++) dv.setUint32(6 + 4 * i, xids[i]!, true);
  });
}

export function multiOffsets(entries: readonly { mxid: number; offset: number }[]): Value {
  return build(5 + 8 * entries.length, (dv) => {
    dv.setUint8(0, OP_MULTI_OFFSETS);
    dv.setUint32(1, entries.length, true);
    for (let i = 0; i < entries.length; i++) {
      dv.setUint32(5 + 8 * i, entries[i]!.mxid, true);
      dv.setUint32(9 + 8 * i, entries[i]!.offset, true);
    }
  });
}

export function multiMembers(entries: readonly { offset: number; xid: number; status: number }[]): Value {
  return build(5 + 12 * entries.length, (dv) => {
    dv.setUint8(0, OP_MULTI_MEMBERS);
    dv.setUint32(1, entries.length, true);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      dv.setUint32(5 + 12 * i, e.offset, true);
      dv.setUint32(9 + 12 * i, e.xid, true);
      dv.setUint32(13 + 12 * i, e.status, true);
    }
  });
}

export function vmClear(heapBlkA: number | null, heapBlkB: number | null, flags: number): Value {
  return build(10, (dv) => {
    dv.setUint8(0, OP_VM_CLEAR);
    dv.setUint32(1, heapBlkA ?? NONE, true);
    dv.setUint32(5, heapBlkB ?? NONE, true);
    dv.setUint8(9, flags);
  });
}

export function vmTruncate(heapBlocks: number): Value {
  return build(5, (dv) => {
    dv.setUint8(0, OP_VM_TRUNCATE);
    dv.setUint32(1, heapBlocks, true);
  });
}

/** A WAL full-page image kept as stored in the record; `pdLsn` is the record's end LSN. */
export function pgImage(img: BlockImage, pdLsn: Lsn, gistFixup: boolean): Value {
  // Built in place, tag byte included: this runs for every block reference of every record.
  const v = new Uint8Array(1 + PG_IMAGE_HEADER + img.bytes.length);
  v[0] = ValueTag.NativeInit;
  v[1] = OP_PG_IMAGE;
  v[2] = img.bimgInfo;
  v[3] = img.holeOffset & 0xff;
  v[4] = img.holeOffset >>> 8;
  v[5] = img.holeLength & 0xff;
  v[6] = img.holeLength >>> 8;
  v[7] = gistFixup ? PG_IMAGE_GIST_FIXUP : 0;
  const hi = lsnHi(pdLsn);
  const lo = lsnLo(pdLsn);
  v[9] = hi & 0xff;
  v[10] = (hi >>> 8) & 0xff;
  v[11] = (hi >>> 16) & 0xff;
  v[12] = hi >>> 24;
  v[13] = lo & 0xff;
  v[14] = (lo >>> 8) & 0xff;
  v[15] = (lo >>> 16) & 0xff;
  v[16] = lo >>> 24;
  v.set(img.bytes, 1 + PG_IMAGE_HEADER);
  return v;
}

/** The page an initializing pageserver record (tag NATIVE_INIT) stands for. */
export function initNative(v: Value): Uint8Array {
  const op = v[1];
  if (op !== OP_PG_IMAGE || v.length < 1 + PG_IMAGE_HEADER) {
    throw new UnsupportedError(`initializing pageserver record op 0x${(op ?? 0).toString(16)} of ${v.length} bytes`);
  }
  const dv = new DataView(v.buffer, v.byteOffset + 1, PG_IMAGE_HEADER);
  const page = new Uint8Array(BLCKSZ);
  restorePageImage(
    {
      image: {
        bytes: v.subarray(1 + PG_IMAGE_HEADER),
        bimgInfo: dv.getUint8(1),
        holeOffset: dv.getUint16(2, true),
        holeLength: dv.getUint16(4, true),
      },
    },
    page,
  );
  if (pageIsNew(page)) return page;
  const pdLsn = (dv.getUint32(8, true) * 0x1_0000_0000 + dv.getUint32(12, true)) as Lsn;
  setPageLsn(page, pdLsn);
  if (dv.getUint8(6) & PG_IMAGE_GIST_FIXUP) {
    // The left child of a GiST split gets NSN = the record's LSN and F_FOLLOW_RIGHT cleared
    // after XLogInsert, so its image still shows the old state; redo would set them.
    const special = readU16LE(page, 16);
    if (special + 16 <= BLCKSZ) {
      setPageLsn(page.subarray(special, special + 8), pdLsn);
      writeU16LE(page, special + 12, readU16LE(page, special + 12) & ~F_FOLLOW_RIGHT);
    }
  }
  return page;
}

export function isNativeValue(v: Value): boolean {
  return v[0] === ValueTag.Native;
}

/**
 * Apply one native record (the Value, tag byte included) to `page` in place. `blkno` is the
 * page's block number within its SLRU segment or fork; `segno` its SLRU segment (0 for rel pages).
 */
export function applyNative(v: Value, page: Uint8Array, segno: number, blkno: number): void {
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const op = v[1];
  const pv = new DataView(page.buffer, page.byteOffset, page.byteLength);
  const bad = (why: string): never => {
    throw new UnsupportedError(`pageserver record op 0x${(op ?? 0).toString(16)}: ${why}`);
  };
  switch (op) {
    case OP_CLOG_SET: {
      const status = dv.getUint8(2);
      const n = dv.getUint32(3, true);
      const pageno = segno * SLRU_PAGES_PER_SEGMENT + blkno;
      for (let i = 0; i < n; i++) {
        const xid = dv.getUint32(7 + 4 * i, true);
        if (Math.floor(xid / CLOG_XACTS_PER_PAGE) !== pageno) bad(`xid ${xid} is not on CLOG page ${pageno}`);
        const idx = xid % CLOG_XACTS_PER_PAGE;
        const byte = idx >>> 2;
        const shift = (idx & 3) * 2;
        page[byte] = (page[byte]! & ~(3 << shift)) | (status << shift);
      }
      return;
    }
    case OP_MULTI_OFFSETS: {
      const n = dv.getUint32(2, true);
      const pageno = segno * SLRU_PAGES_PER_SEGMENT + blkno;
      for (let i = 0; i < n; i++) {
        const mxid = dv.getUint32(6 + 8 * i, true);
        if (Math.floor(mxid / MULTIXACT_OFFSETS_PER_PAGE) !== pageno) bad(`multixact ${mxid} is not on offsets page ${pageno}`);
        pv.setUint32((mxid % MULTIXACT_OFFSETS_PER_PAGE) * 4, dv.getUint32(10 + 8 * i, true), true);
      }
      return;
    }
    case OP_MULTI_MEMBERS: {
      const n = dv.getUint32(2, true);
      const pageno = segno * SLRU_PAGES_PER_SEGMENT + blkno;
      for (let i = 0; i < n; i++) {
        const off = dv.getUint32(6 + 12 * i, true);
        if (Math.floor(off / MULTIXACT_MEMBERS_PER_PAGE) !== pageno) bad(`member offset ${off} is not on members page ${pageno}`);
        const group = Math.floor(off / MULTIXACT_MEMBERS_PER_GROUP) % MULTIXACT_MEMBERGROUPS_PER_PAGE;
        const inGroup = off % MULTIXACT_MEMBERS_PER_GROUP;
        const flagsAt = group * MULTIXACT_MEMBERGROUP_SIZE;
        const shift = inGroup * 8;
        const flags = pv.getUint32(flagsAt, true);
        const status = dv.getUint32(14 + 12 * i, true) & 0xff;
        pv.setUint32(flagsAt, ((flags & ~(0xff << shift)) | (status << shift)) >>> 0, true);
        pv.setUint32(flagsAt + 4 + inGroup * 4, dv.getUint32(10 + 12 * i, true), true);
      }
      return;
    }
    case OP_VM_CLEAR: {
      const flags = dv.getUint8(10);
      for (const at of [2, 6]) {
        const h = dv.getUint32(at, true);
        if (h === NONE) continue;
        if (Math.floor(h / HEAPBLOCKS_PER_VM_PAGE) !== blkno) bad(`heap block ${h} is not on VM page ${blkno}`);
        const idx = h % HEAPBLOCKS_PER_VM_PAGE;
        const byte = VM_MAP_OFFSET + (idx >>> 2);
        page[byte] = page[byte]! & ~(flags << ((idx & 3) * 2));
      }
      return;
    }
    case OP_VM_TRUNCATE: {
      const heapBlocks = dv.getUint32(2, true);
      if (Math.floor(heapBlocks / HEAPBLOCKS_PER_VM_PAGE) !== blkno) bad(`truncation point ${heapBlocks} is not on VM page ${blkno}`);
      const idx = heapBlocks % HEAPBLOCKS_PER_VM_PAGE;
      const byte = VM_MAP_OFFSET + (idx >>> 2);
      const bits = (idx & 3) * 2;
      // Keep the bits of heap blocks below the truncation point; clear everything after.
      page[byte] = page[byte]! & ((1 << bits) - 1);
      page.fill(0, byte + 1);
      return;
    }
    default:
      bad("unknown op");
  }
}
