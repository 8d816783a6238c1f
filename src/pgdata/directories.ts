/**
 * Encodings of the directory values of the datadir key map (our own format; no byte
 * compatibility with Neon). A directory is rewritten whole on every change, as an image.
 *
 *   off  size  field
 *    0    1    kind: 'D' 0x44 DbDirectory, 'R' 0x52 RelDirectory, 'S' 0x53 SlruDirectory,
 *                    'T' 0x54 TwoPhaseDirectory, 'P' 0x50 TablespaceDirectory
 *    1    1    version = 1
 *    2    2    reserved, 0
 *    4    4    entry count n (u32 LE)
 *    8    n·E  entries, strictly ascending, fixed size E per kind (all integers LE):
 *
 *   kind  E  entry
 *   D     9  spcnode u32, dbnode u32, flags u8 (bit 0: the relmap file / PG_VERSION exist)
 *   R     5  relnode u32, forknum u8
 *   S     4  segno u32
 *   T     8  xid lo u32, xid hi u32 (64-bit so a later PostgreSQL fits)
 *   P     6+m  spcnode u32, m u16, the LOCATION's m UTF-8 bytes (m < 1024; "" in place):
 *              the only kind whose entries vary in size. pg_default and pg_global are
 *              never in it (they always exist).
 *
 * In memory: DbDirectory is a Map keyed "spc/db"; RelDirectory a Set of relnode·4 + forknum
 * (≤ 2^34, exact in a number, and sorts as (relnode, forknum)); the others Sets of numbers.
 * Invariant: encode(decode(b)) == b for every b decode accepts (ascending order is checked).
 * Decoding bad bytes throws DirectoryDecodeError (code "corrupt").
 */
import { PageserverError } from "../types/errors.js";
import { assert } from "../types/assert.js";

export class DirectoryDecodeError extends PageserverError {
  constructor(what: string, reason: string) {
    super("corrupt", `cannot decode ${what}: ${reason}`);
  }
}

const VERSION = 1;
const HEADER_BYTES = 8;
/** A bound on entries per directory (PostgreSQL's OIDs are u32; this is far beyond any real cluster). */
export const MAX_DIRECTORY_ENTRIES = 64 * 1024 * 1024;

const DirKind = { Db: 0x44, Rel: 0x52, Slru: 0x53, TwoPhase: 0x54, Tablespace: 0x50 } as const;
type DirKind = (typeof DirKind)[keyof typeof DirKind];

export interface DbEntry {
  spcnode: number;
  dbnode: number;
  /** Whether the database's pg_filenode.map (and PG_VERSION) exist. */
  relmapExists: boolean;
}
export type DbDirectory = Map<string, DbEntry>;
export type RelDirectory = Set<number>;
export type SlruDirectory = Set<number>;
export type TwoPhaseDirectory = Set<number>;
/** User tablespaces: OID → the LOCATION they were created with ("" for an in-place one). */
export type TablespaceDirectory = Map<number, string>;
/** MAXPGPATH: no tablespace location is longer (PostgreSQL refuses it). */
export const MAX_TABLESPACE_PATH_BYTES = 1024;

export function dbDirKey(spcnode: number, dbnode: number): string {
  return `${spcnode}/${dbnode}`;
}

export function relDirEntry(relnode: number, forknum: number): number {
  return relnode * 4 + forknum;
}
export function relDirEntryRelnode(e: number): number {
  return Math.floor(e / 4);
}
export function relDirEntryFork(e: number): number {
  return e % 4;
}

function header(kind: DirKind, n: number, entryBytes: number): { buf: Uint8Array; dv: DataView } {
  assert(n <= MAX_DIRECTORY_ENTRIES, "directory too large");
  const buf = new Uint8Array(HEADER_BYTES + n * entryBytes);
  const dv = new DataView(buf.buffer);
  buf[0] = kind;
  buf[1] = VERSION;
  dv.setUint32(4, n, true);
  return { buf, dv };
}

function readHeader(b: Uint8Array, kind: DirKind, entryBytes: number, what: string): { n: number; dv: DataView } {
  if (b.length < HEADER_BYTES) throw new DirectoryDecodeError(what, `${b.length} bytes, shorter than the header`);
  if (b[0] !== kind) throw new DirectoryDecodeError(what, `kind byte 0x${b[0]!.toString(16)}, expected 0x${kind.toString(16)}`);
  if (b[1] !== VERSION) throw new DirectoryDecodeError(what, `unknown version ${b[1]}`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = dv.getUint32(4, true);
  if (n > MAX_DIRECTORY_ENTRIES) throw new DirectoryDecodeError(what, `${n} entries`);
  if (b.length !== HEADER_BYTES + n * entryBytes) throw new DirectoryDecodeError(what, `length ${b.length} does not match ${n} entries`);
  return { n, dv };
}

// ---------------------------------------------------------------------------------------

export function encodeDbDirectory(d: DbDirectory): Uint8Array {
  const entries = [...d.values()].sort((a, b) => a.spcnode - b.spcnode || a.dbnode - b.dbnode);
  const { buf, dv } = header(DirKind.Db, entries.length, 9);
  let off = HEADER_BYTES;
  for (const e of entries) {
    dv.setUint32(off, e.spcnode, true);
    dv.setUint32(off + 4, e.dbnode, true);
    buf[off + 8] = e.relmapExists ? 1 : 0;
    off += 9;
  }
  return buf;
}

export function decodeDbDirectory(b: Uint8Array): DbDirectory {
  const { n, dv } = readHeader(b, DirKind.Db, 9, "DbDirectory");
  const d: DbDirectory = new Map();
  let prevSpc = -1;
  let prevDb = -1;
  for (let i = 0, off = HEADER_BYTES; i < n; i++, off += 9) {
    const spcnode = dv.getUint32(off, true);
    const dbnode = dv.getUint32(off + 4, true);
    const flags = b[off + 8]!;
    if (flags > 1) throw new DirectoryDecodeError("DbDirectory", `unknown flags ${flags}`);
    if (!(spcnode > prevSpc || (spcnode === prevSpc && dbnode > prevDb)))
      throw new DirectoryDecodeError("DbDirectory", "entries not ascending");
    prevSpc = spcnode;
    prevDb = dbnode;
    d.set(dbDirKey(spcnode, dbnode), { spcnode, dbnode, relmapExists: flags === 1 });
  }
  return d;
}

export function encodeRelDirectory(d: RelDirectory): Uint8Array {
  const entries = [...d].sort((a, b) => a - b);
  const { buf, dv } = header(DirKind.Rel, entries.length, 5);
  let off = HEADER_BYTES;
  for (const e of entries) {
    dv.setUint32(off, relDirEntryRelnode(e), true);
    buf[off + 4] = relDirEntryFork(e);
    off += 5;
  }
  return buf;
}

export function decodeRelDirectory(b: Uint8Array): RelDirectory {
  const { n, dv } = readHeader(b, DirKind.Rel, 5, "RelDirectory");
  const d: RelDirectory = new Set();
  let prev = -1;
  for (let i = 0, off = HEADER_BYTES; i < n; i++, off += 5) {
    const fork = b[off + 4]!;
    if (fork > 3) throw new DirectoryDecodeError("RelDirectory", `fork ${fork}`);
    const e = relDirEntry(dv.getUint32(off, true), fork);
    if (e <= prev) throw new DirectoryDecodeError("RelDirectory", "entries not ascending");
    prev = e;
    d.add(e);
  }
  return d;
}

function encodeU32Set(kind: DirKind, d: Set<number>): Uint8Array {
  const entries = [...d].sort((a, b) => a - b);
  const { buf, dv } = header(kind, entries.length, 4);
  let off = HEADER_BYTES;
  for (const e of entries) {
    assert(Number.isInteger(e) && e >= 0 && e <= 0xffff_ffff, "u32 directory entry");
    dv.setUint32(off, e, true);
    off += 4;
  }
  return buf;
}

function decodeU32Set(b: Uint8Array, kind: DirKind, what: string): Set<number> {
  const { n, dv } = readHeader(b, kind, 4, what);
  const d = new Set<number>();
  let prev = -1;
  for (let i = 0, off = HEADER_BYTES; i < n; i++, off += 4) {
    const e = dv.getUint32(off, true);
    if (e <= prev) throw new DirectoryDecodeError(what, "entries not ascending");
    prev = e;
    d.add(e);
  }
  return d;
}

export function encodeSlruDirectory(d: SlruDirectory): Uint8Array {
  return encodeU32Set(DirKind.Slru, d);
}

export function decodeSlruDirectory(b: Uint8Array): SlruDirectory {
  return decodeU32Set(b, DirKind.Slru, "SlruDirectory");
}

export function encodeTwoPhaseDirectory(d: TwoPhaseDirectory): Uint8Array {
  const entries = [...d].sort((a, b) => a - b);
  const { buf, dv } = header(DirKind.TwoPhase, entries.length, 8);
  let off = HEADER_BYTES;
  for (const e of entries) {
    assert(Number.isSafeInteger(e) && e >= 0, "two-phase xid");
    dv.setUint32(off, e % 0x1_0000_0000, true);
    dv.setUint32(off + 4, Math.floor(e / 0x1_0000_0000), true);
    off += 8;
  }
  return buf;
}

export function decodeTwoPhaseDirectory(b: Uint8Array): TwoPhaseDirectory {
  const { n, dv } = readHeader(b, DirKind.TwoPhase, 8, "TwoPhaseDirectory");
  const d: TwoPhaseDirectory = new Set();
  let prev = -1;
  for (let i = 0, off = HEADER_BYTES; i < n; i++, off += 8) {
    const hi = dv.getUint32(off + 4, true);
    if (hi >= 0x20_0000) throw new DirectoryDecodeError("TwoPhaseDirectory", "xid beyond 2^53");
    const e = hi * 0x1_0000_0000 + dv.getUint32(off, true);
    if (e <= prev) throw new DirectoryDecodeError("TwoPhaseDirectory", "entries not ascending");
    prev = e;
    d.add(e);
  }
  return d;
}

export function encodeTablespaceDirectory(d: TablespaceDirectory): Uint8Array {
  const entries = [...d.entries()].sort((a, b) => a[0] - b[0]).map(([oid, path]) => ({ oid, path: new TextEncoder().encode(path) }));
  assert(entries.length <= MAX_DIRECTORY_ENTRIES, "directory too large");
  let size = HEADER_BYTES;
  for (const e of entries) {
    assert(Number.isInteger(e.oid) && e.oid > 0 && e.oid <= 0xffff_ffff, "tablespace OID");
    assert(e.path.length < MAX_TABLESPACE_PATH_BYTES, "tablespace location too long");
    size += 6 + e.path.length;
  }
  const buf = new Uint8Array(size);
  const dv = new DataView(buf.buffer);
  buf[0] = DirKind.Tablespace;
  buf[1] = VERSION;
  dv.setUint32(4, entries.length, true);
  let off = HEADER_BYTES;
  for (const e of entries) {
    dv.setUint32(off, e.oid, true);
    dv.setUint16(off + 4, e.path.length, true);
    buf.set(e.path, off + 6);
    off += 6 + e.path.length;
  }
  return buf;
}

export function decodeTablespaceDirectory(b: Uint8Array): TablespaceDirectory {
  const what = "TablespaceDirectory";
  if (b.length < HEADER_BYTES) throw new DirectoryDecodeError(what, `${b.length} bytes, shorter than the header`);
  if (b[0] !== DirKind.Tablespace)
    throw new DirectoryDecodeError(what, `kind byte 0x${b[0]!.toString(16)}, expected 0x${DirKind.Tablespace.toString(16)}`);
  if (b[1] !== VERSION) throw new DirectoryDecodeError(what, `unknown version ${b[1]}`);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = dv.getUint32(4, true);
  // Each entry takes at least 6 bytes: a count the bytes can't hold is corrupt.
  if (n > (b.length - HEADER_BYTES) / 6) throw new DirectoryDecodeError(what, `${n} entries in ${b.length} bytes`);
  const d: TablespaceDirectory = new Map();
  const dec = new TextDecoder("utf-8", { fatal: true });
  let prev = 0;
  let off = HEADER_BYTES;
  for (let i = 0; i < n; i++) {
    if (off + 6 > b.length) throw new DirectoryDecodeError(what, "truncated entry");
    const oid = dv.getUint32(off, true);
    const m = dv.getUint16(off + 4, true);
    if (oid <= prev) throw new DirectoryDecodeError(what, "entries not ascending");
    if (m >= MAX_TABLESPACE_PATH_BYTES || off + 6 + m > b.length) throw new DirectoryDecodeError(what, `location of ${m} bytes`);
    let path: string;
    try {
      path = dec.decode(b.subarray(off + 6, off + 6 + m));
    } catch {
      throw new DirectoryDecodeError(what, "location is not UTF-8");
    }
    d.set(oid, path);
    prev = oid;
    off += 6 + m;
  }
  if (off !== b.length) throw new DirectoryDecodeError(what, `length ${b.length} does not match ${n} entries`);
  return d;
}
