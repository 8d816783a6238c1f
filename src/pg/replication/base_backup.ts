/**
 * BASE_BACKUP client (PostgreSQL 15) over a replication connection: takes a backup of the
 * main data directory and streams base.tar to the caller, with the start LSN (the backup's
 * redo point, "START WAL LOCATION" in backup_label) and, once the archive is read, the end
 * LSN.
 *
 * Command (PG15 accepts only the parenthesized option list):
 *   BASE_BACKUP (LABEL '<label>', CHECKPOINT 'fast'|'spread', WAIT true|false, MANIFEST 'no')
 *
 * Response, in order:
 *   1. result set (recptr text, tli int8)             start LSN and timeline
 *   2. result set (spcoid oid, spclocation text, size int8)   one row per tablespace
 *   3. CommandComplete, CopyOutResponse ('H')
 *   4. CopyData messages, each led by a type byte:
 *        ┌─────┬──────────────────────────────────────────────────────────────┐
 *        │ 'n' │ archive name cstring ("base.tar") │ tablespace path cstring  │ new archive
 *        │ 'd' │ bytes of the current archive (or of the manifest after 'm')  │
 *        │ 'p' │ i64 bytes done so far (only with PROGRESS)                   │
 *        │ 'm' │ (nothing) the manifest follows in 'd' messages                │
 *        └─────┴──────────────────────────────────────────────────────────────┘
 *   5. CopyDone
 *   6. result set (recptr text, tli int8)             end LSN and timeline
 *   7. CommandComplete, ReadyForQuery
 *
 * Archives: PostgreSQL 15 sends one per tablespace with a LOCATION first ('n' with its name
 * "<oid>.tar" and the location; entries relative to the location: PG_15_202209061/<db>/…),
 * then base.tar ('n' with an empty path), which has pg_tblspc/<oid> as a symlink to each
 * location (in-place tablespaces are plain directories in it). `archives` yields them all;
 * `archive` is base.tar alone and refuses a backup that has any other. The tar bytes yielded
 * are owned by the consumer. The archive is read once; memory is bounded
 * by the connection's inbox (the socket pauses while the consumer is slow). Abandoning the
 * iteration early destroys the connection: a COPY OUT cannot be cancelled in-band.
 */
import { assert } from "../../types/assert.js";
import { UnsupportedError } from "../../types/errors.js";
import { type Lsn, parseLsn } from "../../types/lsn.js";
import type { ReplicationConnection } from "./connection.js";
import type { CopyOutCommand } from "./copy_streams.js";
import { ReplicationError } from "./errors.js";
import type { ResultSet } from "./result_set.js";

export interface BaseBackupOptions {
  label?: string;
  /** CHECKPOINT 'fast' (default) rather than 'spread'. */
  fast_checkpoint?: boolean;
  /** WAIT: wait for the WAL the backup needs to be archived (a no-op without archiving). */
  wait?: boolean;
}

export interface TablespaceInfo {
  /** null for the main data directory. */
  oid: number | null;
  location: string | null;
  /** kB, when the server computed it (PROGRESS); else null. */
  size_kb: number | null;
}

export interface BaseBackupEnd {
  endLsn: Lsn;
  timeline: number;
}

function lsnAndTli(rs: ResultSet | undefined, context: string): { lsn: Lsn; tli: number } {
  if (rs === undefined || rs.rows.length !== 1 || rs.rows[0]!.length < 2)
    throw new ReplicationError("protocol", `${context}: expected one (recptr, tli) row`);
  const [recptr, tli] = rs.rows[0]!;
  if (recptr === null || tli === null || tli === undefined || recptr === undefined)
    throw new ReplicationError("protocol", `${context}: NULL recptr or tli`);
  let lsn: Lsn;
  try {
    lsn = parseLsn(recptr);
  } catch (e) {
    throw new ReplicationError("protocol", `${context}: bad LSN '${recptr}'`, { cause: e });
  }
  const t = Number(tli);
  if (!(Number.isSafeInteger(t) && t > 0)) throw new ReplicationError("protocol", `${context}: bad timeline '${tli}'`);
  return { lsn, tli: t };
}

function readCString(buf: Uint8Array, off: number, context: string): { text: string; next: number } {
  const end = buf.indexOf(0, off);
  if (end < 0) throw new ReplicationError("protocol", `${context}: unterminated string`);
  return { text: Buffer.from(buf.buffer, buf.byteOffset + off, end - off).toString("utf8"), next: end + 1 };
}

/** One archive of the backup; read `data` to its end before asking for the next archive. */
export interface BaseBackupArchive {
  /** null for base.tar; else the tablespace's OID. */
  spcnode: number | null;
  /** The tablespace's location ("" for base.tar). */
  location: string;
  data: AsyncIterable<Uint8Array>;
}

/** A base backup in progress: iterate `archives` (or `archive`) to the end, then await `finished`. */
export class BaseBackup {
  /** Start LSN: the backup's redo point. */
  readonly startLsn: Lsn;
  readonly timeline: number;
  readonly tablespaces: TablespaceInfo[];
  /** Bytes done, from 'p' messages (PROGRESS only); also counts base.tar bytes yielded. */
  archive_bytes = 0;
  /** Resolves with the end LSN once the archive was read to its end. */
  readonly finished: Promise<BaseBackupEnd>;
  private resolveEnd!: (e: BaseBackupEnd) => void;
  private rejectEnd!: (e: Error) => void;
  private iterated = false;

  constructor(
    private readonly conn: ReplicationConnection,
    private readonly copy: CopyOutCommand,
    start: { lsn: Lsn; tli: number },
    tablespaces: TablespaceInfo[],
  ) {
    this.startLsn = start.lsn;
    this.timeline = start.tli;
    this.tablespaces = tablespaces;
    this.finished = new Promise<BaseBackupEnd>((resolve, reject) => {
      this.resolveEnd = resolve;
      this.rejectEnd = reject;
    });
    this.finished.catch(() => {});
  }

  /** The bytes of base.tar, in order (the server's two zero end blocks included). Read once; a tablespace archive is an UnsupportedError. */
  get archive(): AsyncIterable<Uint8Array> {
    const all = this.archives;
    return (async function* () {
      for await (const a of all) {
        if (a.spcnode !== null)
          throw new UnsupportedError(
            `BASE_BACKUP: archive for tablespace ${a.spcnode} ('${a.location}'): only the main data directory is read here`,
          );
        yield* a.data;
      }
    })();
  }

  /** Every archive in the order the server sends them (tablespaces first, base.tar last). Read once. */
  get archives(): AsyncIterable<BaseBackupArchive> {
    assert(!this.iterated, "BaseBackup archives are read once");
    this.iterated = true;
    return this.generate();
  }

  /** A CopyData message read ahead by an archive's data (the next archive's 'n'), or null at CopyDone. */
  private lookahead: Uint8Array | null | undefined = undefined;

  private async nextMessage(): Promise<Uint8Array | null> {
    if (this.lookahead !== undefined) {
      const m = this.lookahead;
      this.lookahead = undefined;
      return m;
    }
    const msg = await this.copy.read();
    if (msg !== null && msg.length === 0) throw new ReplicationError("protocol", "BASE_BACKUP: empty CopyData message");
    return msg;
  }

  /** The 'd' payloads of the current archive, up to the next 'n' or CopyDone (left for nextMessage). */
  private async *archiveData(): AsyncGenerator<Uint8Array, void, undefined> {
    for (;;) {
      const msg = await this.nextMessage();
      if (msg === null || msg[0] === 0x6e /* 'n' */ || msg[0] === 0x6d /* 'm' */) {
        this.lookahead = msg;
        return;
      }
      switch (msg[0]) {
        case 0x64 /* 'd' */:
          this.archive_bytes += msg.length - 1;
          yield msg.subarray(1);
          break;
        case 0x70 /* 'p' */:
          break;
        default:
          throw new ReplicationError("protocol", `BASE_BACKUP: unknown CopyData type 0x${msg[0]!.toString(16)}`);
      }
    }
  }

  private async *generate(): AsyncGenerator<BaseBackupArchive, void, undefined> {
    let complete = false;
    try {
      let main = 0;
      let inManifest = false;
      for (;;) {
        const msg = await this.nextMessage();
        if (msg === null) break;
        switch (msg[0]) {
          case 0x6e /* 'n' */:
            {
              const name = readCString(msg, 1, "BASE_BACKUP 'n'");
              const path = readCString(msg, name.next, "BASE_BACKUP 'n'");
              let spcnode: number | null = null;
              if (path.text === "") main++;
              else {
                const m = /^(\d+)\.tar$/.exec(name.text);
                spcnode = m === null ? Number.NaN : Number(m[1]);
                if (!(Number.isInteger(spcnode) && spcnode > 0 && spcnode <= 0xffff_ffff)) {
                  throw new ReplicationError("protocol", `BASE_BACKUP: tablespace archive named '${name.text}' (expected <oid>.tar)`);
                }
              }
              if (main > 1) throw new ReplicationError("protocol", "BASE_BACKUP: two archives of the main data directory");
              const data = this.archiveData();
              yield { spcnode, location: path.text, data };
              // Whatever the consumer left unread of this archive is skipped.
              for await (const _ of data) {
                // drain
              }
              break;
            }
          case 0x64 /* 'd' */:
            if (inManifest) break; // MANIFEST 'no' is asked for; ignore one if sent anyway
            throw new ReplicationError("protocol", "BASE_BACKUP: data before any archive");
          case 0x70 /* 'p' */:
            break;
          case 0x6d /* 'm' */:
            inManifest = true;
            break;
          default:
            throw new ReplicationError("protocol", `BASE_BACKUP: unknown CopyData type 0x${msg[0]!.toString(16)}`);
        }
      }
      if (main !== 1) throw new ReplicationError("protocol", "BASE_BACKUP: no base.tar archive in the stream");
      const after = await this.copy.done;
      const end = lsnAndTli(after[0], "BASE_BACKUP end");
      complete = true;
      this.resolveEnd({ endLsn: end.lsn, timeline: end.tli });
    } catch (e) {
      this.rejectEnd(e instanceof Error ? e : new Error(String(e)));
      throw e;
    } finally {
      if (!complete) {
        this.rejectEnd(new ReplicationError("stopped", "BASE_BACKUP abandoned before the end of the archive", { retryable: false }));
        this.conn.destroy();
      }
    }
  }
}

function quoteLiteral(s: string): string {
  if (s.includes("\0")) throw new ReplicationError("protocol", "label must not contain NUL", { retryable: false });
  return `'${s.replace(/'/g, "''")}'`;
}

/** The BASE_BACKUP command text for `opts` (exported for tests and logs). */
export function baseBackupCommand(opts: BaseBackupOptions = {}): string {
  const parts = [
    `LABEL ${quoteLiteral(opts.label ?? "pageserver")}`,
    `CHECKPOINT '${opts.fast_checkpoint === false ? "spread" : "fast"}'`,
    `WAIT ${opts.wait === false ? "false" : "true"}`,
    "MANIFEST 'no'",
  ];
  return `BASE_BACKUP (${parts.join(", ")})`;
}

/**
 * Run BASE_BACKUP on `conn` (a replication connection with nothing else active). Resolves
 * when the server has made its checkpoint and starts sending the archive.
 */
export async function startBaseBackup(conn: ReplicationConnection, opts: BaseBackupOptions = {}): Promise<BaseBackup> {
  const copy = await conn.startCopyOut(baseBackupCommand(opts));
  const [startRs, spcRs] = copy.resultsBefore;
  const start = lsnAndTli(startRs, "BASE_BACKUP start");
  const tablespaces: TablespaceInfo[] = (spcRs?.rows ?? []).map((r) => ({
    oid: r[0] === null || r[0] === undefined ? null : Number(r[0]),
    location: r[1] ?? null,
    size_kb: r[2] === null || r[2] === undefined ? null : Number(r[2]),
  }));
  return new BaseBackup(conn, copy, start, tablespaces);
}
