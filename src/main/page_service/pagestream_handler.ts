/**
 * One pagestream session (after `pagestream_v2|v3 <tenant> <timeline>` and CopyBothResponse):
 * every CopyData from the client is one request, every answer one CopyData back, in request
 * order (asserted: each answer sent is for the next request of the round, and a round ends
 * with every request answered unless the connection closed).
 *
 * Each round: wait for one frame, then take every frame already received (at most
 * MAX_ROUND_REQUESTS: the per-connection in-flight bound), and answer them in order. Before
 * each answer (a GetPage batch or one other request) the socket must be below its unwritten
 * limit, else the round waits for it to drain: a client that doesn't read its answers makes
 * us queue at most the limit plus one answer (≤ 32 pages, or one SLRU segment of 256 KiB),
 * not a round of 256 answers (256 SLRU segments: 64 MiB). Consecutive GetPage
 * requests with the same effective LSN (at most `max_batch_size`) are one batch: one
 * throttle wait, one wait for the LSN, one snapshot, one write. Snapshots are shared: a
 * request at the LSN of the timeline's previous one reuses its decoded directories and sizes.
 *
 * Effective LSN (as Neon's wait_or_get_last_lsn): request_lsn 0, request_lsn <
 * not_modified_since, or not_modified_since = latest are errors. If not_modified_since is
 * beyond last_record_lsn, wait for it and read there; else read at min(last_record_lsn,
 * request_lsn) (request_lsn latest → last_record_lsn). Below the GC cutoff → error.
 *
 * Errors: a request that fails (bad LSN, missing relation, timeout…) gets an Error response
 * (103; v3 echoes its header) and the session goes on. A frame that can't be decoded (bad
 * tag or length) or a message other than CopyData/CopyDone/Terminate gets an Error response
 * and ends the connection: the stream can't be resynchronised. Nothing throws out of run()
 * but bugs.
 */
import type { Logger } from "pino";
import {
  decodeRequest,
  encodeResponseInto,
  type GetPageRequest,
  LATEST_LSN,
  lsnText,
  type PagestreamRequest,
  type PagestreamResponse,
  type PagestreamVersion,
  type RequestHeader,
  responseBytes,
} from "../../protocol/pagestream.js";
import { COPY_DATA_HEADER_BYTES, MSG, typeName, writeCopyDataHeader } from "../../protocol/pg_wire.js";
import type { DatadirSnapshot } from "../../pgdata/reader.js";
import { DEFAULTTABLESPACE_OID, SLRU_KINDS, type SlruKind } from "../../pgdata/keys.js";
import type { Tenant } from "../../tenant/tenant.js";
import type { Timeline } from "../../tenant/timeline/index.js";
import { assert } from "../../types/assert.js";
import { InvalidArgumentError, PageserverError } from "../../types/errors.js";
import { INVALID_LSN, type Lsn, lsnMin, lsnToString } from "../../types/lsn.js";
import type { PageServiceMetrics, SmgrQueryType } from "./metrics.js";
import type { PgSocket } from "./pg_socket.js";

/** Requests taken from the socket per round: the per-connection in-flight bound. */
export const MAX_ROUND_REQUESTS = 256;

export interface PagestreamContext {
  metrics: PageServiceMetrics;
  /** ms to wait before serving `n` GetPage of `tenant` (its token bucket); 0 when not throttled. */
  throttle(tenant: Tenant, n: number): number;
  /** The datadir at `lsn` (waits for it; GC cutoff checked), shared between the timeline's sessions. */
  snapshot(tl: Timeline, lsn: Lsn): Promise<DatadirSnapshot>;
  max_batch_size: number;
}

/** How a session ended: the client sent CopyDone (back to the query loop) or the connection is over. */
export type SessionEnd = "copy_done" | "closed";

const ZERO_HEADER: RequestHeader = { reqidHi: 0, reqidLo: 0, requestLsn: INVALID_LSN, notModifiedSince: INVALID_LSN };

export class PagestreamHandler {
  private readonly io: PgSocket;
  private readonly tenant: Tenant;
  private readonly tl: Timeline;
  private readonly version: PagestreamVersion;
  private readonly ctx: PagestreamContext;
  private readonly log: Logger;
  private readonly batch: GetPageRequest[] = [];
  /**
   * The round being answered (null outside serve()) and how many of its requests have their
   * answer sent: each response must answer round[answered], so answers leave in request order,
   * one per request (asserted per response: a few compares).
   */
  private round: readonly PagestreamRequest[] | null = null;
  private answered = 0;

  constructor(io: PgSocket, tenant: Tenant, tl: Timeline, version: PagestreamVersion, ctx: PagestreamContext, log: Logger) {
    this.io = io;
    this.tenant = tenant;
    this.tl = tl;
    this.version = version;
    this.ctx = ctx;
    this.log = log;
  }

  async run(): Promise<SessionEnd> {
    const reqs: PagestreamRequest[] = [];
    for (;;) {
      const first = await this.io.next();
      if (first === null) return "closed";
      reqs.length = 0;
      let end: SessionEnd | null = null;
      let fatal: string | null = null;
      try {
        for (let f: typeof first | null = first; f !== null; f = reqs.length < MAX_ROUND_REQUESTS ? this.io.tryNext() : null) {
          if (f.type === MSG.CopyData) reqs.push(decodeRequest(f.body, this.version));
          else if (f.type === MSG.CopyDone) {
            end = "copy_done";
            break;
          } else if (f.type === MSG.Terminate) {
            end = "closed";
            break;
          } else {
            fatal = `unexpected message ${typeName(f.type)} in a pagestream session`;
            break;
          }
        }
      } catch (e) {
        // A bad frame length (WireProtocolError) or an undecodable request.
        fatal = e instanceof PageserverError ? e.message : String(e);
      }
      await this.serve(reqs);
      if (fatal !== null) {
        this.log.info({ reason: fatal }, "malformed pagestream message: closing the connection");
        this.write({ kind: "error", hdr: ZERO_HEADER, message: `malformed pagestream message: ${fatal}` });
        return "closed";
      }
      if (end !== null) return end;
      await this.io.drained();
      if (this.io.closed) return "closed";
    }
  }

  /** Answer `reqs` in order. */
  private async serve(reqs: PagestreamRequest[]): Promise<void> {
    this.round = reqs;
    this.answered = 0;
    let i = 0;
    while (i < reqs.length) {
      if (this.io.needsDrain) await this.io.drained();
      if (this.io.closed) break;
      const r = reqs[i]!;
      let lsn: Lsn;
      try {
        lsn = this.effectiveLsn(r.hdr);
      } catch (e) {
        this.write(this.errorFor(r, e));
        i++;
        continue;
      }
      if (r.kind !== "get_page") {
        await this.serveOne(r, lsn);
        i++;
        continue;
      }
      const batch = this.batch;
      batch.length = 0;
      batch.push(r);
      for (i++; i < reqs.length && batch.length < this.ctx.max_batch_size; i++) {
        const n = reqs[i]!;
        if (n.kind !== "get_page" || this.effectiveLsnOrNull(n.hdr) !== lsn) break;
        batch.push(n);
      }
      await this.serveGetPages(batch, lsn);
    }
    if (!this.io.closed && this.answered !== reqs.length)
      assert(false, `pagestream round of ${reqs.length} requests got ${this.answered} answers`);
    this.round = null;
  }

  /** Asserts `resp` answers the next request of the round; counts it. */
  private checkAnswerOrder(resp: PagestreamResponse): void {
    const round = this.round;
    if (round === null) return; // the closing error of a malformed stream answers no request
    const want = round[this.answered];
    const ok = want !== undefined && (resp.kind === "error" ? resp.hdr === want.hdr : resp.req === want);
    if (!ok)
      assert(
        false,
        `pagestream answer ${this.answered} (${resp.kind}) is not for request ${this.answered} of ${round.length} (${want?.kind ?? "none"})`,
      );
    this.answered++;
  }

  /** The LSN to read at (see the header); throws InvalidArgumentError for a bad pair. */
  private effectiveLsn(h: RequestHeader): Lsn {
    const req = h.requestLsn;
    const nms = h.notModifiedSince;
    if (req === 0) throw new InvalidArgumentError("invalid request_lsn 0");
    if (nms === LATEST_LSN) throw new InvalidArgumentError("not_modified_since can't be latest (u64 max)");
    if (req < nms)
      throw new InvalidArgumentError(`invalid request: request_lsn ${lsnText(req)} is below not_modified_since ${lsnToString(nms)}`);
    const last = this.tl.lastRecordLsn;
    return nms > last ? nms : lsnMin(last, req);
  }

  private effectiveLsnOrNull(h: RequestHeader): Lsn | null {
    try {
      return this.effectiveLsn(h);
    } catch {
      return null;
    }
  }

  private async serveOne(r: Exclude<PagestreamRequest, GetPageRequest>, lsn: Lsn): Promise<void> {
    const t0 = performance.now();
    let resp: PagestreamResponse;
    let type: SmgrQueryType;
    try {
      const snap = await this.ctx.snapshot(this.tl, lsn);
      switch (r.kind) {
        case "exists":
          type = "get_rel_exists";
          resp = { kind: "exists", req: r, exists: await snap.relExists(r.rel) };
          break;
        case "nblocks":
          type = "get_rel_size";
          resp = { kind: "nblocks", req: r, nblocks: await snap.relSize(r.rel) };
          break;
        case "db_size":
          type = "get_db_size";
          resp = { kind: "db_size", req: r, dbSizeBytes: await snap.dbSize(DEFAULTTABLESPACE_OID, r.dbnode) };
          break;
        case "get_slru_segment":
          type = "get_slru_segment";
          resp = { kind: "get_slru_segment", req: r, segment: await snap.getSlruSegment(slruKind(r.slruKind), r.segno) };
          break;
      }
    } catch (e) {
      this.write(this.errorFor(r, e));
      return;
    }
    this.write(resp);
    this.ctx.metrics.observe(type, (performance.now() - t0) / 1000);
  }

  private async serveGetPages(batch: GetPageRequest[], lsn: Lsn): Promise<void> {
    const n = batch.length;
    const wait_ms = this.ctx.throttle(this.tenant, n);
    if (wait_ms > 0) {
      await new Promise((resolve) => setTimeout(resolve, wait_ms));
      if (this.io.closed) return;
    }
    const t0 = performance.now();
    let snap: DatadirSnapshot;
    try {
      snap = await this.ctx.snapshot(this.tl, lsn);
    } catch (e) {
      for (const r of batch) this.write(this.errorFor(r, e));
      return;
    }
    // The pages together: most are reconstructed at once, long record chains on the redo pool
    // meanwhile. Then one buffer for the batch's answers.
    const settled = await Promise.allSettled(batch.map((r) => snap.readRelPage(r.rel, r.blkno)));
    if (this.io.closed) return;
    const resps: PagestreamResponse[] = new Array(n);
    let total = 0;
    for (let k = 0; k < n; k++) {
      const r = batch[k]!;
      const s = settled[k]!;
      const resp: PagestreamResponse = s.status === "fulfilled" ? { kind: "get_page", req: r, page: s.value } : this.errorFor(r, s.reason);
      resps[k] = resp;
      total += COPY_DATA_HEADER_BYTES + responseBytes(resp, this.version);
    }
    const out = Buffer.allocUnsafe(total);
    let off = 0;
    for (const resp of resps) {
      this.checkAnswerOrder(resp);
      const len = responseBytes(resp, this.version);
      writeCopyDataHeader(out, off, len);
      off = encodeResponseInto(out, off + COPY_DATA_HEADER_BYTES, resp, this.version);
    }
    // The CopyData lengths were computed before encoding: a mismatch would desync the client.
    if (off !== total) assert(false, `pagestream batch encoded ${off} bytes, sized ${total}`);
    this.io.send(out);
    const s = (performance.now() - t0) / 1000;
    for (let k = 0; k < n; k++) this.ctx.metrics.observe("get_page_at_lsn", s);
    this.ctx.metrics.batchSize.observe(n);
  }

  private errorFor(r: PagestreamRequest, e: unknown): PagestreamResponse {
    this.ctx.metrics.requestError(e);
    if (!(e instanceof PageserverError)) {
      // Not bad input: a bug. Answer it like any error (the session can go on), but loudly.
      this.log.error({ err: e, request: r.kind }, "pagestream request failed unexpectedly");
    }
    const message = e instanceof Error ? e.message : String(e);
    return { kind: "error", hdr: r.hdr, message };
  }

  private write(resp: PagestreamResponse): void {
    this.checkAnswerOrder(resp);
    const len = responseBytes(resp, this.version);
    const out = Buffer.allocUnsafe(COPY_DATA_HEADER_BYTES + len);
    writeCopyDataHeader(out, 0, len);
    const end = encodeResponseInto(out, COPY_DATA_HEADER_BYTES, resp, this.version);
    if (end !== out.length) assert(false, `pagestream ${resp.kind} response encoded ${end} bytes, sized ${out.length}`);
    this.io.send(out);
  }
}

function slruKind(k: number): SlruKind {
  const kind = SLRU_KINDS[k];
  if (kind === undefined) throw new InvalidArgumentError(`invalid SLRU kind ${k} (0 clog, 1 multixact members, 2 multixact offsets)`);
  return kind;
}
