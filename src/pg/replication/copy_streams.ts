/**
 * What a command that entered COPY hands to its caller: CopyOutCommand (BASE_BACKUP's COPY
 * OUT) and PhysicalReplicationStream (START_REPLICATION's CopyBoth).
 *
 * Owns: the reading side of one COPY (one reader at a time, through the command's inbox)
 * and, for CopyBoth, the writing side (standby status updates, our CopyDone) and the end of
 * the stream (the server's CopyDone and the optional next-timeline result set).
 *
 * Invariants: nothing is sent after our CopyDone or the server's; stop() sends CopyDone once,
 * drops what is still in flight, and destroys the connection when the server does not finish
 * the command within its bound.
 */
import { assert } from "../../types/assert.js";
import type { Lsn } from "../../types/lsn.js";
import type { Command } from "./command.js";
import type { ReplicationError } from "./errors.js";
import { encodeStandbyStatus, parseReplicationMessage, type ReplicationMessage, type StandbyStatus } from "./messages.js";
import { cell, intCell, lsnCell, type ResultSet } from "./result_set.js";

/** The connection a stream runs on, as the stream uses it (ReplicationConnection). */
export interface StreamConnection {
  /** Throws the ReplicationError the connection closed with, if it did. */
  checkOpen(): void;
  /** Drop the socket now. */
  destroy(reason?: ReplicationError): void;
}

/** A COPY OUT in progress (see ReplicationConnection.startCopyOut). */
export class CopyOutCommand {
  constructor(
    private readonly cmd: Command,
    /** The result sets before the COPY. */
    readonly resultsBefore: ResultSet[],
  ) {}

  /** The next CopyData payload (owned by the caller), or null after CopyDone. */
  read(): Promise<Uint8Array | null> {
    assert(this.cmd.inbox !== null, "COPY not started");
    return this.cmd.inbox.read();
  }

  /** Result sets after the COPY, at ReadyForQuery. */
  get done(): Promise<ResultSet[]> {
    return this.cmd.done.promise;
  }
}

/** How a replication stream ended from the server's side (CopyDone). */
export interface StreamEnd {
  /** After a historic timeline ends: the next timeline and where it starts. */
  nextTimeline: number | null;
  nextTimelineStart: Lsn | null;
}

/**
 * The CopyBoth stream of START_REPLICATION. Pull messages with next() (one reader); a null
 * means the server ended the COPY (end of a historic timeline: see `end`).
 */
export class PhysicalReplicationStream {
  private stopping = false;
  private stopPromise: Promise<void> | null = null;
  private serverEnded = false;
  end: StreamEnd | null = null;

  constructor(
    private readonly conn: StreamConnection,
    private readonly cmd: Command,
  ) {}

  get bufferedBytes(): number {
    return this.cmd.inbox?.bufferedBytes ?? 0;
  }

  async next(): Promise<ReplicationMessage | null> {
    assert(this.cmd.inbox !== null, "stream without COPY");
    const payload = await this.cmd.inbox.read();
    if (payload !== null) return parseReplicationMessage(payload);
    // The server sent CopyDone. Answer with ours (the protocol wants both sides to), then
    // read the optional next-timeline result set.
    if (!this.serverEnded) {
      this.serverEnded = true;
      if (!this.stopping) this.trySend(() => this.cmd.sendCopyDone());
    }
    const after = await this.cmd.done.promise;
    const rs = after.find((r) => r.columns.includes("next_tli"));
    this.end = { nextTimeline: null, nextTimelineStart: null };
    if (rs !== undefined && rs.rows.length === 1) {
      const tli = cell(rs, "next_tli", "end of timeline");
      const pos = cell(rs, "next_tli_startpos", "end of timeline");
      this.end = {
        nextTimeline: tli === null ? null : intCell(tli, "next_tli"),
        nextTimelineStart: pos === null ? null : lsnCell(pos, "next_tli_startpos"),
      };
    }
    return null;
  }

  /** Send a standby status update ('r'). Throws a ReplicationError if the connection is gone. */
  sendStatus(s: StandbyStatus): void {
    if (this.stopping || this.serverEnded) return;
    this.conn.checkOpen();
    this.cmd.sendCopyData(encodeStandbyStatus(s));
  }

  /**
   * End streaming: CopyDone, then wait (bounded by `timeout_ms`) for the server to finish the
   * command; data still in flight is dropped. The connection can run commands afterwards
   * unless this timed out, in which case it is destroyed.
   */
  stop(timeout_ms = 5_000): Promise<void> {
    if (this.stopPromise === null) this.stopPromise = this.doStop(timeout_ms);
    return this.stopPromise;
  }

  private async doStop(timeout_ms: number): Promise<void> {
    this.stopping = true;
    this.cmd.inbox?.discard();
    if (!this.serverEnded) this.trySend(() => this.cmd.sendCopyDone());
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.cmd.done.promise.then(
        () => false,
        () => false,
      ),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeout_ms);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) this.conn.destroy();
  }

  private trySend(f: () => void): void {
    try {
      this.conn.checkOpen();
      f();
    } catch {
      // The connection is gone; whoever reads will see why.
    }
  }
}
