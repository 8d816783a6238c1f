/**
 * One replication command on `pg`, which has no CopyBoth API: a custom Submittable handed to
 * `client.query()`.
 *
 * Owns: the Command (its result sets, its COPY inbox, and the two promises a caller waits
 * on), and the parts of pg's Connection it talks to (PgWire).
 *
 * How pg drives it: pg routes RowDescription / DataRow / CommandComplete / ErrorResponse /
 * ReadyForQuery / CopyData of the active query to the handle* methods; CopyBothResponse ('W',
 * which pg parses as "replicationStart"), CopyOutResponse and CopyDone are NOT routed to
 * queries, so ReplicationConnection listens for them on the pg Connection and calls
 * onCopyStart / onCopyDone. CopyData and CopyDone go out with pg's own serializer
 * (`sendCopyFromChunk`, `endCopyFrom`).
 *
 * Invariants: `copyStarted` settles before or with `done`; each settles once (later
 * resolutions and rejections are ignored) and never counts as an unhandled rejection; the
 * inbox exists only once the server entered COPY. Internal to src/pg/replication (index.ts
 * does not re-export it).
 */
import type { Duplex } from "node:stream";
import { assert } from "../../types/assert.js";
import { CopyInbox } from "./copy_inbox.js";
import { ReplicationError, toReplicationError } from "./errors.js";
import type { ResultSet } from "./result_set.js";

/** The parts of pg's Connection we use; @types/pg does not declare the copy methods. */
export interface PgWire {
  readonly stream: Duplex;
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  sendCopyFail(msg: string): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
}

interface PgRowDescription {
  fields: { name: string }[];
}
interface PgDataRow {
  fields: unknown[];
}
interface PgCopyData {
  chunk: Buffer;
}

/** Make a promise whose rejection is never "unhandled" (callers may await it later or never). */
function quiet<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: Error) => void;
  settled: boolean;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: Error) => void;
  const d: Deferred<T> = {
    promise: undefined as unknown as Promise<T>,
    resolve: (v) => {
      if (d.settled) return;
      d.settled = true;
      resolve(v);
    },
    reject: (e) => {
      if (d.settled) return;
      d.settled = true;
      reject(e);
    },
    settled: false,
  };
  d.promise = quiet(
    new Promise<T>((res, rej) => {
      resolve = res;
      reject = rej;
    }),
  );
  return d;
}

/**
 * One simple-protocol command as a pg Submittable. Collects result sets; if the command
 * enters COPY (out or both), `copyStarted` resolves with the result sets so far and the
 * CopyData payloads go to `inbox`; `done` resolves at ReadyForQuery with the result sets that
 * followed the COPY (all of them when there was no COPY).
 */
export class Command {
  private results: ResultSet[] = [];
  private current: ResultSet | null = null;
  inbox: CopyInbox | null = null;
  readonly copyStarted = deferred<ResultSet[]>();
  readonly done = deferred<ResultSet[]>();
  private wire: PgWire | null = null;
  callback: undefined = undefined;

  constructor(
    readonly text: string,
    private readonly max_buffered_bytes: number,
  ) {}

  submit(connection: unknown): void {
    this.wire = connection as PgWire;
    this.wire.query(this.text);
  }

  // pg calls these on the active query.
  handleRowDescription(msg: PgRowDescription): void {
    this.current = { columns: msg.fields.map((f) => f.name), rows: [] };
  }
  handleDataRow(msg: PgDataRow): void {
    if (this.current === null) return;
    this.current.rows.push(msg.fields.map((v) => (v === null || v === undefined ? null : String(v))));
  }
  handleCommandComplete(_msg: unknown, _con: unknown): void {
    if (this.current !== null) this.results.push(this.current);
    this.current = null;
  }
  handleEmptyQuery(_con: unknown): void {}
  handlePortalSuspended(_con: unknown): void {}
  handleCopyInResponse(con: unknown): void {
    (con as PgWire).sendCopyFail("COPY FROM STDIN is not supported by the replication client");
  }
  handleCopyData(msg: PgCopyData, _con: unknown): void {
    if (this.inbox === null) {
      this.fail(new ReplicationError("protocol", `CopyData outside COPY in reply to ${this.text}`));
      return;
    }
    this.inbox.push(msg.chunk);
  }
  handleError(err: unknown, _con: unknown): void {
    this.fail(toReplicationError(err, this.text));
  }
  handleReadyForQuery(_con: unknown): void {
    if (this.current !== null) this.results.push(this.current);
    this.current = null;
    if (this.inbox !== null) this.inbox.end();
    this.copyStarted.resolve(this.results);
    this.done.resolve(this.results);
  }

  // Forwarded by ReplicationConnection from pg Connection events pg does not route.
  onCopyStart(): void {
    if (this.inbox !== null || this.wire === null) return;
    this.inbox = new CopyInbox(this.wire.stream, this.max_buffered_bytes);
    if (this.current !== null) this.results.push(this.current);
    this.current = null;
    const before = this.results;
    this.results = [];
    this.copyStarted.resolve(before);
  }
  onCopyDone(): void {
    this.inbox?.end();
  }

  fail(err: Error): void {
    this.inbox?.fail(err);
    this.copyStarted.reject(err);
    this.done.reject(err);
  }

  sendCopyData(bytes: Uint8Array): void {
    assert(this.wire !== null, "command not submitted");
    this.wire.sendCopyFromChunk(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  sendCopyDone(): void {
    assert(this.wire !== null, "command not submitted");
    this.wire.endCopyFrom();
  }
}
