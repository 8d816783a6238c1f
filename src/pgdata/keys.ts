/**
 * The dense key map of a PostgreSQL 15 data directory: which Key holds which part of it.
 * The layout follows Neon's pgdatadir_mapping (things modified together sit together: a
 * relation's size key is right after its blocks).
 *
 *   object              f1  f2      f3      f4              f5        f6          value
 *   ------------------  --  ------  ------  --------------  --------  ----------  -----------------------
 *   DbDir               00  0       0       0               0         0           DbDirectory (directories.ts)
 *   TablespaceDir       00  0       0       0               0         1           TablespaceDirectory
 *   RelMap file         00  spc     db      0               0         0           pg_filenode.map, 512 bytes
 *   RelDir              00  spc     db      0               0         1           RelDirectory
 *   RelBlock            00  spc     db      rel (≠ 0)       fork      blkno       page image / WAL records
 *   RelSize             00  spc     db      rel             fork      FFFFFFFF    u32 LE nblocks
 *   SlruDir             01  kind    0       0               0         0           SlruDirectory
 *   SlruBlock           01  kind    1       segno           0         blkno       page image / records
 *   SlruSegSize         01  kind    1       segno           0         FFFFFFFF    u32 LE nblocks
 *   TwoPhaseDir         02  0       0       0               0         0           TwoPhaseDirectory
 *   TwoPhaseFile        02  0       0       xid>>40         (xid>>32)&FF  xid&FFFFFFFF  the state file
 *   ControlFile         03  0       0       0               0         0           pg_control (8192 bytes)
 *   Checkpoint          03  0       0       0               0         1           CheckPoint (88 bytes)
 *
 * SLRU kinds: clog 0, multixact members 1, multixact offsets 2. Forks: main 0, fsm 1, vm 2,
 * init 3. relnode 0 is never a relation (it is the relmap/reldir slot), so a rel block key
 * is `f1 = 0 && f4 ≠ 0 && f6 ≠ FFFFFFFF`.
 *
 * DbDir is the key (00 0 0 0 0 0), which is also "RelMap of spc 0 db 0", and TablespaceDir
 * (00 0 0 0 0 1) "RelDir of spc 0 db 0": spc 0 is not a tablespace OID PostgreSQL ever uses
 * (InvalidOid; global is 1664, default 1663), so they never collide. TablespaceDir sits beside
 * DbDir because a tablespace's DROP changes both. A database lives in one DbDir entry per
 * tablespace that holds a directory of it (its default one, and any other where it has
 * relations): DbDir is keyed by (spcnode, dbnode), as Neon's.
 */
import { InvalidArgumentError } from "../types/errors.js";
import { type Key, type KeyRange, keyFields, makeKey } from "../types/key.js";
import {
  DEFAULTTABLESPACE_OID,
  FSM_FORKNUM,
  GLOBALTABLESPACE_OID,
  INIT_FORKNUM,
  MAIN_FORKNUM,
  MAX_FORKNUM,
  SLRU_PAGES_PER_SEGMENT,
  VISIBILITYMAP_FORKNUM,
} from "../pg/consts.js";

/** PostgreSQL's own constants live in src/pg/consts.ts; re-exported for the pgdata modules. */
export {
  BLCKSZ,
  DEFAULTTABLESPACE_OID,
  FSM_FORKNUM,
  GLOBALTABLESPACE_OID,
  INIT_FORKNUM,
  MAIN_FORKNUM,
  MAX_FORKNUM,
  RELSEG_SIZE,
  SLRU_PAGES_PER_SEGMENT,
  VISIBILITYMAP_FORKNUM,
} from "../pg/consts.js";

/** The f6 value of size keys. */
export const SIZE_BLKNO = 0xffff_ffff;
/** The largest valid block number (InvalidBlockNumber is 0xFFFFFFFF). */
export const MAX_BLKNO = 0xffff_fffe;

export enum SlruKind {
  Clog = 0,
  MultiXactMembers = 1,
  MultiXactOffsets = 2,
}
export const SLRU_KINDS: readonly SlruKind[] = [SlruKind.Clog, SlruKind.MultiXactMembers, SlruKind.MultiXactOffsets];

/** Directory of each SLRU inside the data directory. */
export function slruDirName(kind: SlruKind): string {
  switch (kind) {
    case SlruKind.Clog:
      return "pg_xact";
    case SlruKind.MultiXactMembers:
      return "pg_multixact/members";
    case SlruKind.MultiXactOffsets:
      return "pg_multixact/offsets";
  }
}

/** A relation fork: RelFileNode + fork number. */
export interface RelTag {
  spcnode: number;
  dbnode: number;
  relnode: number;
  forknum: number;
}

export function relTag(spcnode: number, dbnode: number, relnode: number, forknum: number): RelTag {
  return { spcnode, dbnode, relnode, forknum };
}

export function relTagToString(r: RelTag): string {
  return `${r.spcnode}/${r.dbnode}/${r.relnode}${r.forknum === 0 ? "" : `_${forkSuffix(r.forknum)}`}`;
}

export function forkSuffix(forknum: number): string {
  switch (forknum) {
    case MAIN_FORKNUM:
      return "";
    case FSM_FORKNUM:
      return "fsm";
    case VISIBILITYMAP_FORKNUM:
      return "vm";
    case INIT_FORKNUM:
      return "init";
    default:
      throw new InvalidArgumentError(`invalid fork number ${forknum}`);
  }
}

function u32ok(x: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= 0xffff_ffff;
}

/** Bad input (from WAL or a request) is an InvalidArgumentError, not an assertion. */
export function checkRelTag(r: RelTag): void {
  if (!(u32ok(r.spcnode) && u32ok(r.dbnode) && u32ok(r.relnode))) throw new InvalidArgumentError(`invalid relation ${JSON.stringify(r)}`);
  if (r.relnode === 0) throw new InvalidArgumentError(`invalid relnode 0 in ${relTagToString(r)}`);
  if (!(Number.isInteger(r.forknum) && r.forknum >= 0 && r.forknum <= MAX_FORKNUM)) {
    throw new InvalidArgumentError(`invalid fork number ${r.forknum}`);
  }
}

function checkBlkno(blkno: number): void {
  if (!(Number.isInteger(blkno) && blkno >= 0 && blkno <= MAX_BLKNO)) throw new InvalidArgumentError(`invalid block number ${blkno}`);
}

// ---------------------------------------------------------------------------------------
// Relations and databases

export const DBDIR_KEY: Key = makeKey(0, 0, 0, 0, 0, 0);
export const TABLESPACEDIR_KEY: Key = makeKey(0, 0, 0, 0, 0, 1);

export function relBlockKey(rel: RelTag, blkno: number): Key {
  checkRelTag(rel);
  checkBlkno(blkno);
  return makeKey(0, rel.spcnode, rel.dbnode, rel.relnode, rel.forknum, blkno);
}

export function relSizeKey(rel: RelTag): Key {
  checkRelTag(rel);
  return makeKey(0, rel.spcnode, rel.dbnode, rel.relnode, rel.forknum, SIZE_BLKNO);
}

export function relDirKey(spcnode: number, dbnode: number): Key {
  if (spcnode === 0) throw new InvalidArgumentError("reldir of tablespace 0");
  return makeKey(0, spcnode, dbnode, 0, 0, 1);
}

export function relmapFileKey(spcnode: number, dbnode: number): Key {
  if (spcnode === 0) throw new InvalidArgumentError("relmap of tablespace 0");
  return makeKey(0, spcnode, dbnode, 0, 0, 0);
}

/** All keys of one fork: blocks 0.. and its size key. */
export function relKeyRange(rel: RelTag): KeyRange {
  checkRelTag(rel);
  const start = makeKey(0, rel.spcnode, rel.dbnode, rel.relnode, rel.forknum, 0);
  const end =
    rel.forknum < 0xff
      ? makeKey(0, rel.spcnode, rel.dbnode, rel.relnode, rel.forknum + 1, 0)
      : makeKey(0, rel.spcnode, rel.dbnode, rel.relnode + 1, 0, 0);
  return { start, end };
}

/** Blocks [fromBlkno, toBlkno) of one fork (no size key). */
export function relBlockRange(rel: RelTag, fromBlkno: number, toBlkno: number): KeyRange {
  checkRelTag(rel);
  return {
    start: makeKey(0, rel.spcnode, rel.dbnode, rel.relnode, rel.forknum, fromBlkno),
    end: makeKey(0, rel.spcnode, rel.dbnode, rel.relnode, rel.forknum, toBlkno),
  };
}

/** Everything of one database: relmap, reldir, every relation. */
export function dbdirKeyRange(spcnode: number, dbnode: number): KeyRange {
  const start = makeKey(0, spcnode, dbnode, 0, 0, 0);
  const end = dbnode < 0xffff_ffff ? makeKey(0, spcnode, dbnode + 1, 0, 0, 0) : makeKey(0, spcnode + 1, 0, 0, 0, 0);
  return { start, end };
}

// ---------------------------------------------------------------------------------------
// SLRUs

function checkSlru(kind: SlruKind, segno: number): void {
  if (!(kind === SlruKind.Clog || kind === SlruKind.MultiXactMembers || kind === SlruKind.MultiXactOffsets)) {
    throw new InvalidArgumentError(`invalid SLRU kind ${kind}`);
  }
  if (!u32ok(segno)) throw new InvalidArgumentError(`invalid SLRU segment ${segno}`);
}

export function slruDirKey(kind: SlruKind): Key {
  checkSlru(kind, 0);
  return makeKey(1, kind, 0, 0, 0, 0);
}

export function slruBlockKey(kind: SlruKind, segno: number, blkno: number): Key {
  checkSlru(kind, segno);
  if (!(Number.isInteger(blkno) && blkno >= 0 && blkno < SLRU_PAGES_PER_SEGMENT))
    throw new InvalidArgumentError(`invalid SLRU block ${blkno}`);
  return makeKey(1, kind, 1, segno, 0, blkno);
}

export function slruSegmentSizeKey(kind: SlruKind, segno: number): Key {
  checkSlru(kind, segno);
  return makeKey(1, kind, 1, segno, 0, SIZE_BLKNO);
}

/** Blocks and size key of one SLRU segment. */
export function slruSegmentKeyRange(kind: SlruKind, segno: number): KeyRange {
  checkSlru(kind, segno);
  return { start: makeKey(1, kind, 1, segno, 0, 0), end: makeKey(1, kind, 1, segno, 1, 0) };
}

// ---------------------------------------------------------------------------------------
// Two-phase state files, control file, checkpoint

export const TWOPHASEDIR_KEY: Key = makeKey(2, 0, 0, 0, 0, 0);

export function twophaseFileKey(xid: number): Key {
  if (!(Number.isSafeInteger(xid) && xid > 0)) throw new InvalidArgumentError(`invalid two-phase xid ${xid}`);
  const hi = Math.floor(xid / 0x1_0000_0000);
  const lo = xid % 0x1_0000_0000;
  return makeKey(2, 0, 0, hi >>> 8, hi & 0xff, lo);
}

export function twophaseKeyRange(xid: number): KeyRange {
  const start = twophaseFileKey(xid);
  const f = keyFields(start);
  const end = f.field6 < 0xffff_ffff ? makeKey(2, 0, 0, f.field4, f.field5, f.field6 + 1) : makeKey(2, 0, 0, f.field4, f.field5 + 1, 0);
  return { start, end };
}

export const CONTROLFILE_KEY: Key = makeKey(3, 0, 0, 0, 0, 0);
export const CHECKPOINT_KEY: Key = makeKey(3, 0, 0, 0, 0, 1);

// ---------------------------------------------------------------------------------------
// Predicates and decoding

export function isRelBlockKey(k: Key): boolean {
  const f = keyFields(k);
  return f.field1 === 0 && f.field4 !== 0 && f.field6 !== SIZE_BLKNO;
}

export function isRelSizeKey(k: Key): boolean {
  const f = keyFields(k);
  return f.field1 === 0 && f.field4 !== 0 && f.field6 === SIZE_BLKNO;
}

export function isSlruBlockKey(k: Key): boolean {
  const f = keyFields(k);
  return f.field1 === 1 && f.field3 === 1 && f.field6 !== SIZE_BLKNO;
}

/** Relation and SLRU blocks: the bulk "data" keys (the rest is metadata). */
export function isDataKey(k: Key): boolean {
  const f1 = k.charCodeAt(0);
  if (f1 === 0) return isRelBlockKey(k);
  if (f1 === 1) return isSlruBlockKey(k);
  return false;
}

/** The relation and block of a rel block key; null for any other key. */
export function relBlockOfKey(k: Key): { rel: RelTag; blkno: number } | null {
  if (!isRelBlockKey(k)) return null;
  const f = keyFields(k);
  return { rel: { spcnode: f.field2, dbnode: f.field3, relnode: f.field4, forknum: f.field5 }, blkno: f.field6 };
}

export function slruBlockOfKey(k: Key): { kind: SlruKind; segno: number; blkno: number } | null {
  if (!isSlruBlockKey(k)) return null;
  const f = keyFields(k);
  return { kind: f.field2 as SlruKind, segno: f.field4, blkno: f.field6 };
}

/** u32 LE nblocks, the value of size keys. */
export function encodeNblocks(nblocks: number): Uint8Array {
  if (!u32ok(nblocks)) throw new InvalidArgumentError(`invalid block count ${nblocks}`);
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, nblocks, true);
  return b;
}

export function decodeNblocks(b: Uint8Array): number {
  if (b.length !== 4) throw new InvalidArgumentError(`size value of ${b.length} bytes (expected 4)`);
  return new DataView(b.buffer, b.byteOffset, 4).getUint32(0, true);
}

/** TABLESPACE_VERSION_DIRECTORY of PostgreSQL 15 (catversion 202209061). */
export const TABLESPACE_VERSION_DIR = "PG_15_202209061";

/** A user tablespace's directory in a data directory: pg_tblspc/<oid> (a symlink, or a directory when in place). */
export function tablespaceLinkPath(spcnode: number): string {
  return `pg_tblspc/${spcnode}`;
}

/** Path of a relation segment file relative to the data directory (relpath.c). */
export function relSegmentPath(rel: RelTag, segno: number): string {
  const suffix = forkSuffix(rel.forknum);
  let base: string;
  if (rel.spcnode === GLOBALTABLESPACE_OID) base = `global/${rel.relnode}`;
  else if (rel.spcnode === DEFAULTTABLESPACE_OID) base = `base/${rel.dbnode}/${rel.relnode}`;
  else base = `pg_tblspc/${rel.spcnode}/${TABLESPACE_VERSION_DIR}/${rel.dbnode}/${rel.relnode}`;
  if (suffix !== "") base += `_${suffix}`;
  return segno === 0 ? base : `${base}.${segno}`;
}

/** Directory of a database (where its relmap and PG_VERSION live). */
export function dbDirPath(spcnode: number, dbnode: number): string {
  if (spcnode === GLOBALTABLESPACE_OID) return "global";
  if (spcnode === DEFAULTTABLESPACE_OID) return `base/${dbnode}`;
  return `pg_tblspc/${spcnode}/${TABLESPACE_VERSION_DIR}/${dbnode}`;
}
