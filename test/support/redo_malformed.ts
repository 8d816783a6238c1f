/**
 * Malformed-input checks for typed decoders and redo, driven by real records: a record taken
 * from a PostgreSQL corpus is cut short — its main data, or one block's data, at every length
 * below the real one (every length up to 64, then a spread) — and its decoder and redo must
 * then either succeed (some prefixes are still well-formed, e.g. a generic delta cut at a
 * fragment boundary) or fail with an error of code "corrupt" (CorruptionError, or bufpage's
 * PageLayoutError). Anything else — a RangeError, a TypeError from an undefined read, an
 * AssertionError — is a bug. Redo runs on a copy of the block's check image (a well-formed
 * page of the right kind), never on the harness's pages.
 *
 * Also a sampler that keeps a few records of each rmgr/info kind seen during a run, a
 * hand-made record (fakeRecord), and corruptionOf for asserting on a decoder's error.
 */
import { expect } from "vitest";
import type { RmgrRedo } from "../../src/pg/redo/rmgr_interface.js";
import { BLCKSZ } from "../../src/pg/page.js";
import { restorePageImage } from "../../src/pg/wal/image.js";
import type { DecodedBlock, DecodedRecord } from "../../src/pg/wal/record.js";
import { describeRecordKind } from "../../src/pg/wal/rmgr_ids.js";
import { CorruptionError, PageserverError } from "../../src/types/errors.js";
import { asLsn, lsnToString } from "../../src/types/lsn.js";

/** Lengths to cut a field of `len` bytes to: all below 64, then 16 spread over the rest. */
export function cutLengths(len: number): number[] {
  const out: number[] = [];
  for (let n = 0; n < Math.min(len, 64); n++) out.push(n);
  if (len > 64) for (let i = 1; i <= 16; i++) out.push(64 + Math.floor(((len - 64) * i) / 17));
  return [...new Set(out)].filter((n) => n < len);
}

/** A copy of `rec` with its main data cut to `n` bytes. */
export function withMainData(rec: DecodedRecord, n: number): DecodedRecord {
  return { ...rec, mainData: rec.mainData.slice(0, n) };
}

/** A copy of `rec` with block `id`'s data cut to `n` bytes. */
export function withBlockData(rec: DecodedRecord, id: number, n: number): DecodedRecord {
  const blocks: DecodedBlock[] = rec.blocks.map((b) => (b.id === id ? { ...b, data: b.data.slice(0, n), hasData: n > 0 } : b));
  return { ...rec, blocks };
}

/** Every cut-short variant of `rec`: main data first, then each block's data. */
export function truncatedVariants(rec: DecodedRecord): { what: string; rec: DecodedRecord }[] {
  const out: { what: string; rec: DecodedRecord }[] = [];
  for (const n of cutLengths(rec.mainData.length))
    out.push({ what: `main data cut to ${n} of ${rec.mainData.length}`, rec: withMainData(rec, n) });
  for (const b of rec.blocks) {
    for (const n of cutLengths(b.data.length))
      out.push({ what: `block ${b.id} data cut to ${n} of ${b.data.length}`, rec: withBlockData(rec, b.id, n) });
  }
  return out;
}

/** Run `fn`; a failure other than a "corrupt" PageserverError is returned as a message. */
export function unexpectedFailure(fn: () => void): string | null {
  try {
    fn();
    return null;
  } catch (e) {
    if (e instanceof PageserverError && e.code === "corrupt") return null;
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  }
}

/** The CorruptionError `f` throws (the test fails when it throws anything else, or nothing). */
export function corruptionOf(f: () => unknown): CorruptionError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CorruptionError);
    return e as CorruptionError;
  }
  throw new Error("expected a CorruptionError");
}

/** Whether `fn` fails with a "corrupt" PageserverError. */
export function failsCorrupt(fn: () => void): boolean {
  try {
    fn();
    return false;
  } catch (e) {
    return e instanceof PageserverError && e.code === "corrupt";
  }
}

/**
 * Feed every cut-short variant of `rec` to `decode` and to `redo` on each of its blocks that
 * has an image; returns the unexpected failures (empty when all is well).
 */
export function checkTruncations(rec: DecodedRecord, decode: (r: DecodedRecord) => unknown, redo: RmgrRedo): string[] {
  const problems: string[] = [];
  const page = new Uint8Array(BLCKSZ);
  const kind = `${describeRecordKind(rec.rmid, rec.info)} at ${lsnToString(rec.lsn)}`;
  for (const v of truncatedVariants(rec)) {
    const d = unexpectedFailure(() => decode(v.rec));
    if (d !== null) problems.push(`${kind}, ${v.what}: decode threw ${d}`);
    for (const b of v.rec.blocks) {
      if (!b.hasImage) continue;
      restorePageImage(b, page, rec.lsn);
      const r = unexpectedFailure(() => redo.redo(v.rec, b.id, page));
      if (r !== null) problems.push(`${kind}, ${v.what}: redo of block ${b.id} threw ${r}`);
    }
  }
  return problems;
}

/** Keeps up to `perKind` records of each rmgr/info kind, and counts every kind (blockless ones too). */
export class RecordSampler {
  readonly counts = new Map<string, number>();
  readonly samples = new Map<string, DecodedRecord[]>();
  constructor(
    private readonly rmids: readonly number[],
    private readonly perKind = 4,
  ) {}

  readonly onRecord = (rec: DecodedRecord): void => {
    if (!this.rmids.includes(rec.rmid)) return;
    const kind = describeRecordKind(rec.rmid, rec.info);
    const n = (this.counts.get(kind) ?? 0) + 1;
    this.counts.set(kind, n);
    let list = this.samples.get(kind);
    if (list === undefined) {
      list = [];
      this.samples.set(kind, list);
    }
    // The first few, then every 101st: early records and later, larger ones.
    if (list.length < this.perKind && (list.length < this.perKind / 2 || n % 101 === 0)) list.push(rec);
  };
}

/** A hand-made decoded record: `blocks` get a default relation and no image. */
export function fakeRecord(
  rmid: number,
  info: number,
  mainData: number[] | Uint8Array,
  blocks: { id: number; blkno?: number; data?: number[] | Uint8Array; willInit?: boolean }[] = [],
): DecodedRecord {
  const rnode = { spcNode: 1663, dbNode: 5, relNode: 16384 };
  return {
    lsn: asLsn(0x100_0028),
    endLsn: asLsn(0x100_0080),
    xid: 0,
    prev: asLsn(0x100_0000),
    info,
    rmid,
    totLen: 0,
    blocks: blocks.map((b) => {
      const data = Uint8Array.from(b.data ?? []);
      return {
        id: b.id,
        rnode,
        forkNum: 0,
        blkno: b.blkno ?? b.id,
        flags: 0,
        hasImage: false,
        applyImage: false,
        willInit: b.willInit ?? false,
        hasData: data.length > 0,
        data,
      };
    }),
    mainData: Uint8Array.from(mainData),
    record: new Uint8Array(0),
  };
}
