/**
 * TestRedo: a redo manager for synthetic values (tests, benchmarks, the kill -9 child),
 * like Neon's NeonWalRecord::Test. Records are NATIVE values whose payload starts with an op:
 *
 *   0xF0 APPEND    bytes…                 result = base ‖ bytes
 *   0xF1 WRITE_AT  u16 LE offset, bytes…  result = base with bytes written at offset (size kept)
 *   PG_RECORD_INIT payload                 result = payload (an initializing record)
 */
import { UnsupportedError } from "../../src/types/errors.js";
import type { Key } from "../../src/types/key.js";
import type { Lsn } from "../../src/types/lsn.js";
import { nativeValue, pgRecordValue, type Value, ValueTag } from "../../src/types/value.js";
import type { WalRedoManager } from "../../src/types/redo.js";

export const TEST_OP_APPEND = 0xf0;
export const TEST_OP_WRITE_AT = 0xf1;

export function testAppend(bytes: Uint8Array | string): Value {
  const b = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  const p = new Uint8Array(b.length + 1);
  p[0] = TEST_OP_APPEND;
  p.set(b, 1);
  return nativeValue(p);
}

export function testWriteAt(offset: number, bytes: Uint8Array): Value {
  const p = new Uint8Array(bytes.length + 3);
  p[0] = TEST_OP_WRITE_AT;
  p[1] = offset & 0xff;
  p[2] = offset >>> 8;
  p.set(bytes, 3);
  return nativeValue(p);
}

export function testInit(bytes: Uint8Array | string): Value {
  return pgRecordValue(true, typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);
}

export class TestRedo implements WalRedoManager {
  apply(key: Key, base: Uint8Array | null, _baseLsn: Lsn, records: readonly Value[], lsns: readonly Lsn[]): Uint8Array {
    let page: Uint8Array | null = base;
    // WRITE_AT copies the page once, then writes in place: `owned` says the copy is ours.
    let owned = false;
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      const tag = r[0] as ValueTag;
      if (tag === ValueTag.PgRecordInit) {
        page = r.slice(1);
        owned = true;
        continue;
      }
      if (tag !== ValueTag.Native) throw new UnsupportedError(`TestRedo cannot apply value tag ${tag} at LSN ${lsns[i]}`);
      if (page === null) throw new UnsupportedError(`TestRedo: record at LSN ${lsns[i]} for key ${JSON.stringify(key)} has no base image`);
      const op = r[1];
      if (op === TEST_OP_APPEND) {
        const next = new Uint8Array(page.length + r.length - 2);
        next.set(page, 0);
        next.set(r.subarray(2), page.length);
        page = next;
        owned = true;
      } else if (op === TEST_OP_WRITE_AT) {
        const off = r[2]! | (r[3]! << 8);
        const bytes = r.subarray(4);
        if (off + bytes.length > page.length) throw new UnsupportedError(`TestRedo: WRITE_AT beyond the page at LSN ${lsns[i]}`);
        if (!owned) {
          page = page.slice();
          owned = true;
        }
        page.set(bytes, off);
      } else {
        throw new UnsupportedError(`TestRedo: unknown op ${op} at LSN ${lsns[i]}`);
      }
    }
    if (page === null) throw new UnsupportedError("TestRedo: nothing to reconstruct from");
    return page;
  }
}

const manager: WalRedoManager = new TestRedo();
export default manager;
