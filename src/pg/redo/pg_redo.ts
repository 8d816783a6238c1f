/**
 * PgRedo: the redo manager for PostgreSQL timelines. It applies what the pageserver can
 * apply natively (pageserver records: CLOG bits, multixacts, visibility-map clears) on top
 * of a base image, and refuses PostgreSQL WAL records it cannot redo yet with an error
 * naming the rmgr and info, never a wrong page. With `wal_consistency_checking = all` on the
 * source, every block a PostgreSQL record touches comes with an image, so such records only
 * show up when a source runs without it.
 *
 * Every relation page it returns carries a fresh data checksum (see src/pg/page.ts).
 */
import { UnsupportedError } from "../../types/errors.js";
import { type Key, keyFields, keyToHex } from "../../types/key.js";
import { type Lsn, lsnToString } from "../../types/lsn.js";
import type { WalRedoManager } from "../../types/redo.js";
import { type Value, ValueTag } from "../../types/value.js";
import { BLCKSZ, setPageChecksum } from "../page.js";
import { describeRecordKind } from "../wal/rmgr.js";
import { applyNative, initNative } from "./native.js";

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
        const rec = r.subarray(1);
        const info = rec.length >= 18 ? rec[16]! : -1;
        const rmid = rec.length >= 18 ? rec[17]! : -1;
        throw new UnsupportedError(
          `cannot redo ${rmid >= 0 ? describeRecordKind(rmid, info) : "a truncated record"} (rmgr ${rmid}, info 0x${info.toString(16)}) at ${lsnToString(lsns[i]!)} for key ${keyToHex(key)}: native redo of PostgreSQL records is not implemented; run the source with wal_consistency_checking = all`,
        );
      }
      if (tag !== ValueTag.Native) throw new UnsupportedError(`value tag ${tag} is not a record at ${lsnToString(lsns[i]!)}`);
      if (page === null) throw new UnsupportedError(`pageserver record at ${lsnToString(lsns[i]!)} for key ${keyToHex(key)} has no base image`);
      if (page.length !== BLCKSZ) throw new UnsupportedError(`pageserver record at ${lsnToString(lsns[i]!)}: base is ${page.length} bytes, not a page`);
      applyNative(r, page, isSlruBlock ? f.field4 : 0, f.field6);
    }
    if (page === null) throw new UnsupportedError(`nothing to reconstruct key ${keyToHex(key)} from`);
    if (isRelBlock && page.length === BLCKSZ) setPageChecksum(page, f.field6);
    return page;
  }
}

const manager: WalRedoManager = new PgRedo();
export default manager;
