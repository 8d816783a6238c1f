/**
 * Neon's pagestream protocol, versions 2 and 3: the requests a compute sends inside CopyData
 * and the responses it gets back, typed, with their encoders and decoders (both directions:
 * the server decodes requests and encodes responses, the client the opposite).
 *
 * Layouts (big-endian; docs/pagestream.md has the tables):
 *   request  = u8 tag, [v3: u64 reqid], u64 request_lsn, u64 not_modified_since, body
 *     Exists 0 / Nblocks 1: RelTag (u32 spcnode, u32 dbnode, u32 relnode, u8 forknum)
 *     GetPage 2: RelTag, u32 blkno;  DbSize 3: u32 dbnode;  GetSlruSegment 4: u8 kind, u32 segno
 *   response = u8 tag, [v3: the request's header and fields echoed], payload
 *     Exists 100: u8;  Nblocks 101: u32;  GetPage 102: 8192 bytes;  DbSize 104: i64;
 *     GetSlruSegment 105: u32 n_blocks, n_blocks × 8192 bytes;
 *     Error 103: [v3: the 24-byte header only], message bytes, NUL
 *
 * Invariants:
 * - Every decoder checks the exact length for the tag: short or trailing bytes are a
 *   PagestreamDecodeError, never a silent 0 or an ignored tail.
 * - LSNs are JS numbers read as two u32 halves (no BigInt): u64 max is LATEST_LSN (kept
 *   distinct, re-encoded as u64 max); any other value ≥ 2^53 is refused.
 * - reqid is any u64: carried as two u32 halves so the echo is exact.
 */
import { readU32BE, writeU32BE } from "../types/bytes.js";
import { PageserverError } from "../types/errors.js";
import { type Lsn, lsnToString } from "../types/lsn.js";

export type PagestreamVersion = 2 | 3;

/** u64 max on the wire: "the latest version" (a primary's request_lsn). */
export const LATEST_LSN = Number.POSITIVE_INFINITY as Lsn;

export const PAGE_BYTES = 8192;
/** Pages in an SLRU segment file (SLRU_PAGES_PER_SEGMENT). */
export const SLRU_SEGMENT_MAX_BLOCKS = 32;

export const REQ = { Exists: 0, Nblocks: 1, GetPage: 2, DbSize: 3, GetSlruSegment: 4 } as const;
export const RESP = { Exists: 100, Nblocks: 101, GetPage: 102, Error: 103, DbSize: 104, GetSlruSegment: 105 } as const;

export class PagestreamDecodeError extends PageserverError {
  constructor(message: string) {
    super("invalid_argument", message);
  }
}

export interface RequestHeader {
  /** reqid (v3; 0 in v2) as two u32 halves. */
  reqidHi: number;
  reqidLo: number;
  /** An Lsn, or LATEST_LSN. */
  requestLsn: Lsn;
  /** An Lsn, or LATEST_LSN (which the server refuses). */
  notModifiedSince: Lsn;
}

/** Same fields as src/pgdata's RelTag (src/client can't import it). */
export interface RelTag {
  spcnode: number;
  dbnode: number;
  relnode: number;
  forknum: number;
}

export interface ExistsRequest {
  kind: "exists";
  hdr: RequestHeader;
  rel: RelTag;
}
export interface NblocksRequest {
  kind: "nblocks";
  hdr: RequestHeader;
  rel: RelTag;
}
export interface GetPageRequest {
  kind: "get_page";
  hdr: RequestHeader;
  rel: RelTag;
  blkno: number;
}
export interface DbSizeRequest {
  kind: "db_size";
  hdr: RequestHeader;
  dbnode: number;
}
export interface GetSlruSegmentRequest {
  kind: "get_slru_segment";
  hdr: RequestHeader;
  /** 0 clog, 1 multixact members, 2 multixact offsets (validated by the server, not here). */
  slruKind: number;
  segno: number;
}
export type PagestreamRequest = ExistsRequest | NblocksRequest | GetPageRequest | DbSizeRequest | GetSlruSegmentRequest;

/** Responses; `req` is the echoed request in v3 and null in v2 (which echoes nothing). */
export type PagestreamResponse =
  | { kind: "exists"; req: ExistsRequest | null; exists: boolean }
  | { kind: "nblocks"; req: NblocksRequest | null; nblocks: number }
  | { kind: "get_page"; req: GetPageRequest | null; page: Uint8Array }
  | { kind: "db_size"; req: DbSizeRequest | null; dbSizeBytes: number }
  | { kind: "get_slru_segment"; req: GetSlruSegmentRequest | null; segment: Uint8Array }
  | { kind: "error"; hdr: RequestHeader | null; message: string };

const TWO_32 = 0x1_0000_0000;

export function headerBytes(version: PagestreamVersion): number {
  return version === 3 ? 25 : 17;
}

const REQUEST_BODY_BYTES: Record<PagestreamRequest["kind"], number> = {
  exists: 13,
  nblocks: 13,
  get_page: 17,
  db_size: 4,
  get_slru_segment: 5,
};

export function requestBytes(kind: PagestreamRequest["kind"], version: PagestreamVersion): number {
  return headerBytes(version) + REQUEST_BODY_BYTES[kind];
}

/** A header for a client: reqid as a safe integer. */
export function header(reqid: number, requestLsn: Lsn, notModifiedSince: Lsn): RequestHeader {
  if (!(Number.isSafeInteger(reqid) && reqid >= 0)) throw new PagestreamDecodeError(`reqid ${reqid} is not a u64 we can write`);
  return { reqidHi: Math.floor(reqid / TWO_32), reqidLo: reqid % TWO_32, requestLsn, notModifiedSince };
}

export function lsnText(lsn: Lsn): string {
  return lsn === LATEST_LSN ? "latest" : lsnToString(lsn);
}

// ─── LSN, header and RelTag fields (big-endian) ─────────────────────────────────────────

function readLsn(b: Uint8Array, off: number, what: string): Lsn {
  const hi = readU32BE(b, off);
  const lo = readU32BE(b, off + 4);
  if (hi === 0xffff_ffff && lo === 0xffff_ffff) return LATEST_LSN;
  const v = hi * TWO_32 + lo;
  if (!Number.isSafeInteger(v))
    throw new PagestreamDecodeError(`${what} ${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()} is beyond 2^53`);
  return v as Lsn;
}

function putLsn(b: Uint8Array, off: number, lsn: Lsn): void {
  if (lsn === LATEST_LSN) {
    writeU32BE(b, off, 0xffff_ffff);
    writeU32BE(b, off + 4, 0xffff_ffff);
    return;
  }
  if (!(Number.isSafeInteger(lsn) && lsn >= 0)) throw new PagestreamDecodeError(`LSN ${lsn} can't be encoded`);
  writeU32BE(b, off, Math.floor(lsn / TWO_32));
  writeU32BE(b, off + 4, lsn % TWO_32);
}

function readHeader(b: Uint8Array, version: PagestreamVersion): RequestHeader {
  // b[0] is the tag
  if (version === 3) {
    return {
      reqidHi: readU32BE(b, 1),
      reqidLo: readU32BE(b, 5),
      requestLsn: readLsn(b, 9, "request_lsn"),
      notModifiedSince: readLsn(b, 17, "not_modified_since"),
    };
  }
  return { reqidHi: 0, reqidLo: 0, requestLsn: readLsn(b, 1, "request_lsn"), notModifiedSince: readLsn(b, 9, "not_modified_since") };
}

/** Writes the header after the tag at `off`; returns the offset after it. */
function putHeader(b: Uint8Array, off: number, h: RequestHeader, version: PagestreamVersion): number {
  let o = off;
  if (version === 3) {
    writeU32BE(b, o, h.reqidHi);
    writeU32BE(b, o + 4, h.reqidLo);
    o += 8;
  }
  putLsn(b, o, h.requestLsn);
  putLsn(b, o + 8, h.notModifiedSince);
  return o + 16;
}

function readRel(b: Uint8Array, off: number): RelTag {
  return { spcnode: readU32BE(b, off), dbnode: readU32BE(b, off + 4), relnode: readU32BE(b, off + 8), forknum: b[off + 12]! };
}

function putRel(b: Uint8Array, off: number, r: RelTag): number {
  writeU32BE(b, off, r.spcnode);
  writeU32BE(b, off + 4, r.dbnode);
  writeU32BE(b, off + 8, r.relnode);
  b[off + 12] = r.forknum;
  return off + 13;
}

function expectLength(b: Uint8Array, want: number, what: string): void {
  if (b.length !== want) {
    throw new PagestreamDecodeError(
      `${what}: ${b.length} bytes, expected ${want}${b.length > want ? " (trailing bytes)" : " (truncated)"}`,
    );
  }
}

// ─── requests ────────────────────────────────────────────────────────────────────────────

const REQ_KIND_BY_TAG: readonly PagestreamRequest["kind"][] = ["exists", "nblocks", "get_page", "db_size", "get_slru_segment"];

/** Decode one request (the whole CopyData payload). */
export function decodeRequest(b: Uint8Array, version: PagestreamVersion): PagestreamRequest {
  if (b.length === 0) throw new PagestreamDecodeError("empty pagestream request");
  const kind = REQ_KIND_BY_TAG[b[0]!];
  if (kind === undefined) throw new PagestreamDecodeError(`unknown pagestream request tag ${b[0]}`);
  expectLength(b, requestBytes(kind, version), `pagestream v${version} ${kind} request`);
  return readRequestFields(b, headerBytes(version), kind, readHeader(b, version));
}

export function encodeRequest(r: PagestreamRequest, version: PagestreamVersion): Uint8Array {
  const b = new Uint8Array(requestBytes(r.kind, version));
  b[0] = REQ[KIND_NAME[r.kind]];
  const o = putHeader(b, 1, r.hdr, version);
  writeRequestFields(b, o, r);
  return b;
}

const KIND_NAME = {
  exists: "Exists",
  nblocks: "Nblocks",
  get_page: "GetPage",
  db_size: "DbSize",
  get_slru_segment: "GetSlruSegment",
} as const;

/** The request's own fields (after the header) at `off`; returns the offset after them. */
function writeRequestFields(b: Uint8Array, off: number, r: PagestreamRequest): number {
  switch (r.kind) {
    case "exists":
    case "nblocks":
      return putRel(b, off, r.rel);
    case "get_page":
      putRel(b, off, r.rel);
      writeU32BE(b, off + 13, r.blkno);
      return off + 17;
    case "db_size":
      writeU32BE(b, off, r.dbnode);
      return off + 4;
    case "get_slru_segment":
      b[off] = r.slruKind;
      writeU32BE(b, off + 1, r.segno);
      return off + 5;
  }
}

// ─── responses ───────────────────────────────────────────────────────────────────────────

const ENCODER = new TextEncoder();

/** An Error message as sent: it is NUL-terminated, so a NUL inside it would cut it short. */
function errorText(message: string): string {
  return message.includes("\0") ? message.replaceAll("\0", "\\0") : message;
}

/** Bytes of the encoded response (for sizing one buffer for a batch). */
export function responseBytes(r: PagestreamResponse, version: PagestreamVersion): number {
  if (r.kind === "error") return 1 + (version === 3 ? 24 : 0) + Buffer.byteLength(errorText(r.message), "utf8") + 1;
  const echo = version === 3 ? headerBytes(3) - 1 + REQUEST_BODY_BYTES[r.kind] : 0;
  return 1 + echo + payloadBytes(r);
}

function payloadBytes(r: Exclude<PagestreamResponse, { kind: "error" }>): number {
  switch (r.kind) {
    case "exists":
      return 1;
    case "nblocks":
      return 4;
    case "get_page":
      return PAGE_BYTES;
    case "db_size":
      return 8;
    case "get_slru_segment":
      return 4 + r.segment.length;
  }
}

/** Encode `r` into `b` at `off` (b must have responseBytes(r) room); returns the end offset. */
export function encodeResponseInto(b: Uint8Array, off: number, r: PagestreamResponse, version: PagestreamVersion): number {
  let o = off + 1;
  if (r.kind === "error") {
    b[off] = RESP.Error;
    if (version === 3) {
      if (r.hdr === null) throw new PagestreamDecodeError("a v3 Error response needs the request header");
      o = putHeader(b, o, r.hdr, 3);
    }
    const w = ENCODER.encodeInto(errorText(r.message), b.subarray(o));
    o += w.written;
    b[o] = 0;
    return o + 1;
  }
  b[off] = RESP[KIND_NAME[r.kind]];
  if (version === 3) {
    if (r.req === null) throw new PagestreamDecodeError(`a v3 ${r.kind} response needs its request`);
    o = putHeader(b, o, r.req.hdr, 3);
    o = writeRequestFields(b, o, r.req);
  }
  switch (r.kind) {
    case "exists":
      b[o] = r.exists ? 1 : 0;
      return o + 1;
    case "nblocks":
      writeU32BE(b, o, r.nblocks);
      return o + 4;
    case "get_page":
      if (r.page.length !== PAGE_BYTES) throw new PagestreamDecodeError(`page of ${r.page.length} bytes`);
      b.set(r.page, o);
      return o + PAGE_BYTES;
    case "db_size":
      if (!(Number.isSafeInteger(r.dbSizeBytes) && r.dbSizeBytes >= 0)) throw new PagestreamDecodeError(`db size ${r.dbSizeBytes}`);
      writeU32BE(b, o, Math.floor(r.dbSizeBytes / TWO_32));
      writeU32BE(b, o + 4, r.dbSizeBytes % TWO_32);
      return o + 8;
    case "get_slru_segment":
      if (r.segment.length % PAGE_BYTES !== 0) throw new PagestreamDecodeError(`SLRU segment of ${r.segment.length} bytes`);
      writeU32BE(b, o, r.segment.length / PAGE_BYTES);
      b.set(r.segment, o + 4);
      return o + 4 + r.segment.length;
  }
}

export function encodeResponse(r: PagestreamResponse, version: PagestreamVersion): Uint8Array {
  const b = new Uint8Array(responseBytes(r, version));
  const end = encodeResponseInto(b, 0, r, version);
  if (end !== b.length) throw new PagestreamDecodeError(`response encoded to ${end} bytes, sized ${b.length}`);
  return b;
}

const DECODER = new TextDecoder("utf-8", { fatal: false });

/** Decode one response (the whole CopyData payload). `page`/`segment` are views into `b`: the caller owns `b`. */
export function decodeResponse(b: Uint8Array, version: PagestreamVersion): PagestreamResponse {
  if (b.length === 0) throw new PagestreamDecodeError("empty pagestream response");
  const tag = b[0]!;
  const v3 = version === 3;
  if (tag === RESP.Error) {
    const start = v3 ? 25 : 1;
    if (b.length < start + 1) throw new PagestreamDecodeError(`pagestream v${version} error response: ${b.length} bytes (truncated)`);
    const nul = b.indexOf(0, start);
    if (nul < 0) throw new PagestreamDecodeError("pagestream error response: message without NUL terminator");
    if (nul !== b.length - 1)
      throw new PagestreamDecodeError(`pagestream error response: ${b.length - 1 - nul} trailing bytes after the message`);
    return { kind: "error", hdr: v3 ? readHeader(b, 3) : null, message: DECODER.decode(b.subarray(start, nul)) };
  }
  const kinds: Record<number, PagestreamRequest["kind"]> = {
    100: "exists",
    101: "nblocks",
    102: "get_page",
    104: "db_size",
    105: "get_slru_segment",
  };
  const kind = kinds[tag];
  if (kind === undefined) throw new PagestreamDecodeError(`unknown pagestream response tag ${tag}`);
  let req: PagestreamRequest | null = null;
  let o = 1;
  const echo = v3 ? headerBytes(3) - 1 + REQUEST_BODY_BYTES[kind] : 0;
  if (b.length < 1 + echo) throw new PagestreamDecodeError(`pagestream v${version} ${kind} response: ${b.length} bytes (truncated)`);
  if (v3) {
    const hdr = readHeader(b, 3);
    o = 25;
    req = readRequestFields(b, o, kind, hdr);
    o += REQUEST_BODY_BYTES[kind];
  }
  const what = `pagestream v${version} ${kind} response`;
  switch (kind) {
    case "exists": {
      expectLength(b, o + 1, what);
      const e = b[o]!;
      if (e > 1) throw new PagestreamDecodeError(`${what}: exists byte ${e}`);
      return { kind, req: req as ExistsRequest | null, exists: e === 1 };
    }
    case "nblocks":
      expectLength(b, o + 4, what);
      return { kind, req: req as NblocksRequest | null, nblocks: readU32BE(b, o) };
    case "get_page":
      expectLength(b, o + PAGE_BYTES, what);
      return { kind, req: req as GetPageRequest | null, page: b.subarray(o, o + PAGE_BYTES) };
    case "db_size": {
      expectLength(b, o + 8, what);
      const hi = readU32BE(b, o);
      const size = hi * TWO_32 + readU32BE(b, o + 4);
      if (!Number.isSafeInteger(size)) throw new PagestreamDecodeError(`${what}: db size beyond 2^53 (or negative)`);
      return { kind, req: req as DbSizeRequest | null, dbSizeBytes: size };
    }
    case "get_slru_segment": {
      if (b.length < o + 4) throw new PagestreamDecodeError(`${what}: ${b.length} bytes (truncated)`);
      const n = readU32BE(b, o);
      if (n > SLRU_SEGMENT_MAX_BLOCKS) throw new PagestreamDecodeError(`${what}: ${n} blocks (at most ${SLRU_SEGMENT_MAX_BLOCKS})`);
      expectLength(b, o + 4 + n * PAGE_BYTES, what);
      return { kind, req: req as GetSlruSegmentRequest | null, segment: b.subarray(o + 4, o + 4 + n * PAGE_BYTES) };
    }
  }
}

function readRequestFields(b: Uint8Array, o: number, kind: PagestreamRequest["kind"], hdr: RequestHeader): PagestreamRequest {
  switch (kind) {
    case "exists":
      return { kind, hdr, rel: readRel(b, o) };
    case "nblocks":
      return { kind, hdr, rel: readRel(b, o) };
    case "get_page":
      return { kind, hdr, rel: readRel(b, o), blkno: readU32BE(b, o + 13) };
    case "db_size":
      return { kind, hdr, dbnode: readU32BE(b, o) };
    case "get_slru_segment":
      return { kind, hdr, slruKind: b[o]!, segno: readU32BE(b, o + 1) };
  }
}

/** Whether two headers are the same (a v3 client checks the echo). */
export function sameHeader(a: RequestHeader, b: RequestHeader): boolean {
  return a.reqidHi === b.reqidHi && a.reqidLo === b.reqidLo && a.requestLsn === b.requestLsn && a.notModifiedSince === b.notModifiedSince;
}
