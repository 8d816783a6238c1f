/**
 * Import of a PostgreSQL 15 data directory into an empty timeline, all at one LSN:
 * - `importDatadir(timeline, pgdata)`: a cleanly shut down cluster's files on disk, at the
 *   LSN of its last checkpoint (pg_control.checkPoint; the state must be "shut down").
 *   Create the timeline first at `(await readImportLsn(pgdata)).lsn`.
 * - `importTarStream(timeline, lsn, stream)`: a base.tar (as BASE_BACKUP sends it) at a
 *   given LSN; PostgreSQL puts pg_control last, so the caller names the LSN.
 *   `importArchives(timeline, lsn, archives)`: the same for every archive of a BASE_BACKUP:
 *   base.tar, then one tar per tablespace with a LOCATION (its entries are relative to the
 *   location: PG_15_202209061/<db>/…, imported as pg_tblspc/<oid>/PG_15_202209061/<db>/…).
 *
 * Tablespaces: every user tablespace is recorded with its location (TablespaceDirectory):
 * an in-place one (a directory pg_tblspc/<oid>) with "", one with a LOCATION (a symlink
 * pg_tblspc/<oid>, in a directory or a tar) with the symlink's target.
 *
 * What is imported (paths relative to the data directory):
 *   global/<relfilenode>[_fsm|_vm|_init][.<seg>]         relation forks of spc 1664, db 0
 *   base/<db>/<relfilenode>…                             relation forks of spc 1663
 *   pg_tblspc/<spc>/PG_15_202209061/<db>/<relfilenode>…  other tablespaces
 *   global/pg_filenode.map, base/<db>/pg_filenode.map    relmap files (512 bytes)
 *   pg_xact/, pg_multixact/{offsets,members}/<hex>       SLRU segments
 *   pg_twophase/<8 hex>                                  two-phase state files
 *   global/pg_control                                    control file; its checkPointCopy → checkpoint key
 * Everything else (configuration, pg_wal, stats, temp relations t<n>_…) is not part of
 * the timeline: a base backup regenerates what PostgreSQL needs.
 *
 * Relation segment k holds blocks [k·131072, (k+1)·131072); a file whose size is not a
 * multiple of 8192 is refused (ImportError). Large files are streamed page by page; the
 * writer puts data early, so memory stays bounded.
 *
 * Where from (`import_pgdata` over HTTP): only under the node's import root. resolveImportDir
 * resolves the requested directory (symlinks included) and refuses anything outside the root
 * with one message whatever the reason (missing, not a directory, outside, a symlink out), so
 * the error doesn't tell a prober which paths exist; with `within`, every file read is checked
 * the same way (a symlinked file or tablespace pointing out of the root is refused).
 *
 * Any size: the values go to a bulk import (src/tenant/bulk_import.ts), which sorts them into
 * image layers at the import LSN off the main thread, not into the in-memory layer (which
 * can't be frozen part way through one LSN). The importer waits for it between chunks.
 */
import { createReadStream, existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { join, sep } from "node:path";
import type { Readable } from "node:stream";
import { extract } from "tar-stream";
import type { Timeline } from "../tenant/timeline/index.js";
import { PageserverError } from "../types/errors.js";
import { type Lsn, lsnToString } from "../types/lsn.js";
import { RELMAPPER_FILESIZE } from "../pg/consts.js";
import {
  type ControlFileData,
  DB_STATE_NAMES,
  DbState,
  decodeControlFile,
  PG_CONTROL_FILE_SIZE,
  SIZEOF_CHECKPOINT,
} from "../pg/control.js";
import {
  BLCKSZ,
  DBDIR_KEY,
  DEFAULTTABLESPACE_OID,
  GLOBALTABLESPACE_OID,
  RELSEG_SIZE,
  type RelTag,
  SLRU_PAGES_PER_SEGMENT,
  SlruKind,
  TABLESPACE_VERSION_DIR,
} from "./keys.js";
import { DatadirWriter } from "./writer.js";

/** A data directory or archive that cannot be imported (names the file and why). */
export class ImportError extends PageserverError {
  constructor(message: string) {
    super("invalid_argument", message);
  }
}

const FORKS: Record<string, number> = { "": 0, fsm: 1, vm: 2, init: 3 };
/** Bytes read per chunk from relation files. */
const READ_CHUNK_BYTES = 1024 * 1024;
const RELFILE_RE = /^(\d+)(?:_(fsm|vm|init))?(?:\.(\d+))?$/;

type Classified =
  | { kind: "rel"; rel: RelTag; segno: number }
  | { kind: "relmap"; spcnode: number; dbnode: number }
  | { kind: "dbversion"; spcnode: number; dbnode: number }
  | { kind: "slru"; slru: SlruKind; segno: number }
  | { kind: "twophase"; xid: number }
  | { kind: "control" }
  | { kind: "skip" };

function u32(text: string): number | null {
  const n = Number(text);
  return Number.isInteger(n) && n >= 0 && n <= 0xffff_ffff ? n : null;
}

/** What a data directory path is (relative, '/'-separated, no leading "./"). */
export function classifyPath(path: string): Classified {
  const parts = path.split("/");
  let spcnode: number | null = null;
  let dbnode: number | null = null;
  let name: string | undefined;
  if (parts.length === 2 && parts[0] === "global") {
    spcnode = GLOBALTABLESPACE_OID;
    dbnode = 0;
    name = parts[1];
    if (name === "pg_control") return { kind: "control" };
  } else if (parts.length === 3 && parts[0] === "base") {
    spcnode = DEFAULTTABLESPACE_OID;
    dbnode = u32(parts[1]!);
    name = parts[2];
  } else if (parts.length === 5 && parts[0] === "pg_tblspc" && parts[2] === TABLESPACE_VERSION_DIR) {
    spcnode = u32(parts[1]!);
    dbnode = u32(parts[3]!);
    name = parts[4];
  }
  if (spcnode !== null && dbnode !== null && name !== undefined) {
    if (name === "pg_filenode.map") return { kind: "relmap", spcnode, dbnode };
    if (name === "PG_VERSION") return { kind: "dbversion", spcnode, dbnode };
    const m = RELFILE_RE.exec(name);
    if (m !== null) {
      const relnode = u32(m[1]!);
      const segno = m[3] === undefined ? 0 : u32(m[3]);
      if (relnode !== null && relnode !== 0 && segno !== null) {
        return { kind: "rel", rel: { spcnode, dbnode, relnode, forknum: FORKS[m[2] ?? ""]! }, segno };
      }
    }
    return { kind: "skip" };
  }
  const slruDirs: [string, SlruKind][] = [
    ["pg_xact", SlruKind.Clog],
    ["pg_multixact/offsets", SlruKind.MultiXactOffsets],
    ["pg_multixact/members", SlruKind.MultiXactMembers],
  ];
  for (const [dir, slru] of slruDirs) {
    if (path.startsWith(`${dir}/`)) {
      const seg = path.slice(dir.length + 1);
      if (/^[0-9A-F]{4,8}$/.test(seg)) return { kind: "slru", slru, segno: Number.parseInt(seg, 16) };
      return { kind: "skip" };
    }
  }
  if (parts.length === 2 && parts[0] === "pg_twophase" && /^[0-9A-F]{8}$/.test(parts[1]!)) {
    return { kind: "twophase", xid: Number.parseInt(parts[1]!, 16) };
  }
  return { kind: "skip" };
}

/** Feeds files into a DatadirWriter that has begun a modification. */
class Importer {
  private readonly w: DatadirWriter;
  private readonly ready: () => Promise<void>;
  control: ControlFileData | null = null;
  files = 0;
  pages = 0;

  /** `ready` resolves when the sink can take more (awaited between chunks). */
  constructor(w: DatadirWriter, ready: () => Promise<void>) {
    this.w = w;
    this.ready = ready;
  }

  /** Import one file given as chunks (any sizes). */
  async file(path: string, sizeBytes: number, chunks: AsyncIterable<Uint8Array>): Promise<void> {
    const c = classifyPath(path);
    if (c.kind === "skip") {
      for await (const _ of chunks) {
        // drain
      }
      return;
    }
    this.files++;
    if (c.kind === "rel") {
      if (sizeBytes % BLCKSZ !== 0) throw new ImportError(`relation file ${path} has size ${sizeBytes}, not a multiple of ${BLCKSZ}`);
      if (sizeBytes > RELSEG_SIZE * BLCKSZ) throw new ImportError(`relation file ${path} is larger than a 1 GiB segment`);
      const first = c.segno * RELSEG_SIZE;
      if (sizeBytes === 0) {
        if (!this.w.relExists(c.rel)) this.w.createRel(c.rel);
        for await (const _ of chunks) {
          // drain
        }
        return;
      }
      const page = new Uint8Array(BLCKSZ);
      let fill = 0;
      let blk = first;
      for await (const chunk of chunks) {
        await this.ready();
        let off = 0;
        while (off < chunk.length) {
          const n = Math.min(BLCKSZ - fill, chunk.length - off);
          page.set(chunk.subarray(off, off + n), fill);
          fill += n;
          off += n;
          if (fill === BLCKSZ) {
            this.w.putRelPageImage(c.rel, blk++, page);
            this.pages++;
            fill = 0;
          }
        }
      }
      if (fill !== 0 || blk - first !== sizeBytes / BLCKSZ)
        throw new ImportError(`relation file ${path}: read ${(blk - first) * BLCKSZ + fill} of ${sizeBytes} bytes`);
      return;
    }
    const bytes = await collect(chunks, sizeBytes, path);
    switch (c.kind) {
      case "relmap":
        if (bytes.length !== RELMAPPER_FILESIZE) throw new ImportError(`${path} has ${bytes.length} bytes, expected ${RELMAPPER_FILESIZE}`);
        this.w.putRelmap(c.spcnode, c.dbnode, bytes);
        return;
      case "dbversion":
        this.w.createDb(c.spcnode, c.dbnode);
        return;
      case "slru":
        if (bytes.length % BLCKSZ !== 0 || bytes.length > SLRU_PAGES_PER_SEGMENT * BLCKSZ) {
          throw new ImportError(`SLRU segment ${path} has size ${bytes.length}`);
        }
        this.w.putSlruSegment(c.slru, c.segno, bytes);
        return;
      case "twophase":
        this.w.putTwophase(c.xid, bytes);
        return;
      case "control": {
        const ctl = decodeControlFile(bytes);
        this.control = ctl;
        this.w.putControlFile(bytes.length === PG_CONTROL_FILE_SIZE ? bytes : padTo(bytes, PG_CONTROL_FILE_SIZE));
        this.w.putCheckpoint(bytes.slice(40, 40 + SIZEOF_CHECKPOINT));
        return;
      }
    }
  }
}

function padTo(b: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  out.set(b.subarray(0, n));
  return out;
}

async function collect(chunks: AsyncIterable<Uint8Array>, sizeBytes: number, path: string): Promise<Uint8Array> {
  // Non-relation files are small (≤ 256 KiB SLRU segments, two-phase files); bound it anyway.
  if (sizeBytes > 64 * 1024 * 1024) throw new ImportError(`${path}: ${sizeBytes} bytes is too large for a metadata file`);
  const out = new Uint8Array(sizeBytes);
  let off = 0;
  for await (const c of chunks) {
    if (off + c.length > sizeBytes) throw new ImportError(`${path}: more bytes than its size ${sizeBytes}`);
    out.set(c, off);
    off += c.length;
  }
  if (off !== sizeBytes) throw new ImportError(`${path}: read ${off} of ${sizeBytes} bytes`);
  return out;
}

async function* fileChunks(path: string): AsyncIterable<Uint8Array> {
  for await (const c of createReadStream(path, { highWaterMark: READ_CHUNK_BYTES })) yield c as Buffer;
}

/** Is `real` (a resolved path) `root` or inside it? */
function isInside(real: string, root: string): boolean {
  return real === root || real.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * The data directory `requested` resolved (symlinks followed), if it is a directory under
 * `root` (resolved too); else one ImportError that says nothing about why. `root` null: the
 * node has no import root, and import_pgdata is refused.
 */
export function resolveImportDir(root: string | null, requested: string): { dir: string; root: string } {
  if (root === null)
    throw new PageserverError("unsupported", "import_pgdata is off on this node: it needs an import root (node config import_pgdata_root)");
  const refused = new ImportError(
    `import_pgdata: ${JSON.stringify(requested.slice(0, 200))} is not a data directory under the node's import root`,
  );
  try {
    const realRoot = realpathSync(root);
    const real = realpathSync(requested);
    if (!isInside(real, realRoot) || !statSync(real).isDirectory()) throw refused;
    return { dir: real, root: realRoot };
  } catch {
    throw refused;
  }
}

/** With an import root: refuse a file whose resolved path leaves it (same message for every reason). */
function checkWithin(path: string, within: string | undefined): void {
  if (within === undefined) return;
  let real: string;
  try {
    real = realpathSync(path);
  } catch {
    real = "";
  }
  if (!isInside(real, within)) throw new ImportError("import_pgdata: a file of the data directory resolves outside the node's import root");
}

/** The import LSN of a data directory: its checkpoint location; refuses a cluster not cleanly shut down. */
export function readImportLsn(pgdata: string, within?: string): { lsn: Lsn; control: ControlFileData } {
  const path = join(pgdata, "global", "pg_control");
  if (!existsSync(path)) throw new ImportError(`${pgdata} is not a PostgreSQL data directory (no global/pg_control)`);
  checkWithin(path, within);
  const control = decodeControlFile(new Uint8Array(readFileSync(path)));
  if (control.state !== DbState.Shutdowned) {
    throw new ImportError(
      `data directory ${pgdata} was not shut down cleanly: pg_control state is "${DB_STATE_NAMES[control.state] ?? control.state}", expected "shut down"`,
    );
  }
  return { lsn: control.checkPoint, control };
}

export interface ImportResult {
  lsn: Lsn;
  control: ControlFileData;
  files: number;
  pages: number;
}

function checkEmpty(timeline: Timeline, lsn: Lsn): void {
  if (timeline.lastRecordLsn > lsn) {
    throw new ImportError(`cannot import at ${lsnToString(lsn)}: timeline is already at ${lsnToString(timeline.lastRecordLsn)}`);
  }
  if (timeline.ancestor !== null) throw new ImportError("cannot import into a branch");
  if (timeline.getNow(DBDIR_KEY, timeline.lastRecordLsn) !== null) throw new ImportError(`timeline ${timeline.timelineId} is not empty`);
}

/**
 * Relative paths of every regular file under `dir` (symlinks to directories followed:
 * tablespaces; with `within`, only while they stay under it).
 */
function walk(root: string, within: string | undefined, rel = "", out: string[] = []): string[] {
  for (const name of readdirSync(join(root, rel)).sort()) {
    const p = rel === "" ? name : `${rel}/${name}`;
    checkWithin(join(root, p), within);
    const st = statSync(join(root, p));
    if (st.isDirectory()) walk(root, within, p, out);
    else if (st.isFile()) out.push(p);
  }
  return out;
}

/** Segment order within a fork: a file's segments in ascending order (no zero-filled gaps). */
function importOrder(paths: string[]): string[] {
  const seg = (p: string): number => {
    const m = /\.(\d+)$/.exec(p);
    return m === null ? 0 : Number(m[1]);
  };
  const base = (p: string): string => p.replace(/\.\d+$/, "");
  return paths.slice().sort((a, b) => (base(a) < base(b) ? -1 : base(a) > base(b) ? 1 : seg(a) - seg(b)));
}

/**
 * Import a cleanly shut down PostgreSQL 15 data directory into `timeline` (empty, created at
 * the directory's checkpoint LSN or below), then checkpoint the timeline (all on disk).
 */
export async function importDatadir(timeline: Timeline, pgdata: string, opts: { within?: string } = {}): Promise<ImportResult> {
  const { lsn, control } = readImportLsn(pgdata, opts.within);
  checkEmpty(timeline, lsn);
  const bulk = timeline.bulkImport(lsn);
  const w = new DatadirWriter(timeline, bulk);
  w.begin(lsn);
  const imp = new Importer(w, () => bulk.ready());
  try {
    // Databases exist as directories even before any file of theirs is seen.
    if (!existsSync(join(pgdata, "base"))) throw new ImportError(`${pgdata} is not a PostgreSQL data directory (no base/)`);
    for (const name of readdirSync(join(pgdata, "base"))) {
      const db = u32(name);
      if (db !== null) w.createDb(DEFAULTTABLESPACE_OID, db);
    }
    // Every path checked against the import root first (walk), then the tablespaces recorded.
    const paths = walk(pgdata, opts.within).filter((p) => p !== "global/pg_control" && classifyPath(p).kind !== "skip");
    importTablespaceDirs(w, pgdata);
    for (const p of importOrder(paths)) {
      await imp.file(p, statSync(join(pgdata, p)).size, fileChunks(join(pgdata, p)));
    }
    // pg_control last: it names the LSN everything else is stamped with.
    await imp.file("global/pg_control", statSync(join(pgdata, "global/pg_control")).size, fileChunks(join(pgdata, "global/pg_control")));
    w.commit();
    await bulk.finish();
  } catch (e) {
    if (w.pending) w.abort();
    await bulk.abort();
    throw e;
  }
  await timeline.checkpoint();
  return { lsn, control, files: imp.files, pages: imp.pages };
}

/** Tablespaces of a data directory on disk: pg_tblspc/<oid> symlinks (target = location) or in-place directories, and their databases' directories. */
function importTablespaceDirs(w: DatadirWriter, pgdata: string): void {
  const tblspc = join(pgdata, "pg_tblspc");
  if (!existsSync(tblspc)) return;
  for (const name of readdirSync(tblspc)) {
    const oid = u32(name);
    if (oid === null) continue;
    const link = join(tblspc, name);
    const st = lstatSync(link);
    if (st.isSymbolicLink()) w.createTablespace(oid, readlinkSync(link));
    else if (st.isDirectory()) w.createTablespace(oid, "");
    else continue;
    const versionDir = join(link, TABLESPACE_VERSION_DIR);
    if (!existsSync(versionDir)) continue;
    for (const db of readdirSync(versionDir)) {
      const dbnode = u32(db);
      if (dbnode !== null && statSync(join(versionDir, db)).isDirectory()) w.createDb(oid, dbnode);
    }
  }
}

/** One archive of a BASE_BACKUP: base.tar (spcnode null) or a tablespace's tar. */
export interface ImportArchive {
  /** null for the main data directory; else the tablespace OID. */
  spcnode: number | null;
  /** The tablespace's LOCATION (its symlink's target); "" for the main archive. */
  location: string;
  data: AsyncIterable<Uint8Array>;
}

/**
 * Import a base.tar stream (BASE_BACKUP's main archive, uncompressed) at `lsn` (the backup's
 * start LSN, which the caller knows from the protocol), then checkpoint the timeline.
 */
export function importTarStream(timeline: Timeline, lsn: Lsn, stream: Readable | AsyncIterable<Uint8Array>): Promise<ImportResult> {
  return importArchives(timeline, lsn, [{ spcnode: null, location: "", data: stream as AsyncIterable<Uint8Array> }]);
}

/**
 * Import every archive of a BASE_BACKUP (each read to its end before the next is asked
 * for) at `lsn`, then checkpoint the timeline.
 */
export async function importArchives(
  timeline: Timeline,
  lsn: Lsn,
  archives: AsyncIterable<ImportArchive> | Iterable<ImportArchive>,
): Promise<ImportResult> {
  checkEmpty(timeline, lsn);
  const bulk = timeline.bulkImport(lsn);
  const w = new DatadirWriter(timeline, bulk);
  w.begin(lsn);
  const imp = new Importer(w, () => bulk.ready());
  try {
    for await (const a of archives) {
      if (a.spcnode === null) {
        await importTar(w, imp, "", a.data);
      } else {
        // The main archive has pg_tblspc/<oid> as a symlink to the location; record it here too.
        w.createTablespace(a.spcnode, a.location);
        await importTar(w, imp, `pg_tblspc/${a.spcnode}/`, a.data);
      }
    }
    if (imp.control === null) throw new ImportError("archive has no global/pg_control");
    w.commit();
    await bulk.finish();
  } catch (e) {
    if (w.pending) w.abort();
    await bulk.abort();
    throw e;
  }
  await timeline.checkpoint();
  return { lsn, control: imp.control, files: imp.files, pages: imp.pages };
}

/** The entries of one tar into the modification, each named `prefix` + its name. */
async function importTar(w: DatadirWriter, imp: Importer, prefix: string, stream: AsyncIterable<Uint8Array>): Promise<void> {
  const ex = extract();
  const feeding = (async () => {
    try {
      for await (const chunk of stream) {
        if (!ex.write(chunk)) await new Promise<void>((r) => ex.once("drain", r));
      }
      ex.end(undefined);
    } catch (e) {
      ex.destroy(e as Error);
    }
  })();
  for await (const entry of ex) {
    const h = entry.header;
    const name = prefix + h.name.replace(/^\.\//, "").replace(/\/$/, "");
    if (h.type === "directory") {
      importDirectory(w, name);
      entry.resume();
      continue;
    }
    if (h.type === "symlink") {
      // pg_tblspc/<oid> → LOCATION: a tablespace whose files come in an archive of their own.
      const m = /^pg_tblspc\/(\d+)$/.exec(name);
      const oid = m === null ? null : u32(m[1]!);
      if (oid !== null) w.createTablespace(oid, h.linkname ?? "");
      entry.resume();
      continue;
    }
    if (h.type !== "file" && h.type !== "contiguous-file") {
      entry.resume();
      continue;
    }
    await imp.file(name, h.size ?? 0, entry as unknown as AsyncIterable<Uint8Array>);
  }
  await feeding;
}

/** A directory entry: a database's directory exists before any file of it; an in-place tablespace is a directory in pg_tblspc. */
function importDirectory(w: DatadirWriter, name: string): void {
  const base = /^base\/(\d+)$/.exec(name);
  if (base !== null && u32(base[1]!) !== null) {
    w.createDb(DEFAULTTABLESPACE_OID, Number(base[1]));
    return;
  }
  const spc = /^pg_tblspc\/(\d+)$/.exec(name);
  if (spc !== null && u32(spc[1]!) !== null) {
    // In place (a directory, not a symlink), unless a tablespace archive named its location.
    if (!w.tablespaces().has(Number(spc[1]))) w.createTablespace(Number(spc[1]), "");
    return;
  }
  const db = new RegExp(`^pg_tblspc/(\\d+)/${TABLESPACE_VERSION_DIR}/(\\d+)$`).exec(name);
  if (db !== null && u32(db[1]!) !== null && u32(db[2]!) !== null) w.createDb(Number(db[1]), Number(db[2]));
}
