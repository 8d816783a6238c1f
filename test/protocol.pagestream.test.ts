/**
 * Pagestream v2/v3 codec (src/protocol/pagestream.ts) against byte vectors written by hand
 * from the layouts in reference/neon-pagestream.md (and Neon's pagestream_api.rs): one per
 * request and response kind, in both versions, including Error. Each decodes to the expected
 * value and re-encodes to the same bytes; the vector cut short by one byte, and with one byte
 * more, is refused. Then the LSN rules: u64 max is LATEST_LSN (kept distinct), anything else
 * ≥ 2^53 is refused; reqid is any u64.
 */
import { describe, expect, it } from "vitest";
import {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  LATEST_LSN,
  PagestreamDecodeError,
  type PagestreamRequest,
  type PagestreamResponse,
  type PagestreamVersion,
} from "../src/protocol/pagestream.js";
import { asLsn } from "../src/types/lsn.js";

/** Hex with spaces for readability → bytes. */
function hex(s: string): Uint8Array {
  const h = s.replace(/\s+/g, "");
  if (h.length % 2 !== 0) throw new Error(`odd hex ${s}`);
  return Uint8Array.from(Buffer.from(h, "hex"));
}

const PAGE_HEX = "a5".repeat(8192);
const PAGE = new Uint8Array(8192).fill(0xa5);
const SEG_HEX = "01".repeat(8192) + "02".repeat(8192);
const SEG = new Uint8Array(16384);
SEG.fill(1, 0, 8192);
SEG.fill(2, 8192);

// Fields used below:
//   rel = 1663/5/16384 fork 0  → 0000067f 00000005 00004000 00
//   v2 header: request_lsn latest (ffffffffffffffff), not_modified_since 0/16B3748 (00000000 016b3748)
//   v3 header: reqid 0x0000000100000002, request_lsn 2/0, not_modified_since 1/0
const REL_HEX = "0000067f 00000005 00004000 00";
const rel = { spcnode: 1663, dbnode: 5, relnode: 16384, forknum: 0 };
const V2_HDR_HEX = "ffffffffffffffff 00000000016b3748";
const v2hdr = { reqidHi: 0, reqidLo: 0, requestLsn: LATEST_LSN, notModifiedSince: asLsn(0x16b3748) };
const V3_HDR_HEX = "0000000100000002 0000000200000000 0000000100000000";
const v3hdr = { reqidHi: 1, reqidLo: 2, requestLsn: asLsn(2 * 2 ** 32), notModifiedSince: asLsn(2 ** 32) };

interface ReqVector {
  name: string;
  version: PagestreamVersion;
  bytes: string;
  value: PagestreamRequest;
}

const REQUESTS: ReqVector[] = [
  { name: "Exists", version: 2, bytes: `00 ${V2_HDR_HEX} ${REL_HEX}`, value: { kind: "exists", hdr: v2hdr, rel } },
  { name: "Nblocks", version: 2, bytes: `01 ${V2_HDR_HEX} ${REL_HEX}`, value: { kind: "nblocks", hdr: v2hdr, rel } },
  { name: "GetPage", version: 2, bytes: `02 ${V2_HDR_HEX} ${REL_HEX} 0000002a`, value: { kind: "get_page", hdr: v2hdr, rel, blkno: 42 } },
  { name: "DbSize", version: 2, bytes: `03 ${V2_HDR_HEX} 00000005`, value: { kind: "db_size", hdr: v2hdr, dbnode: 5 } },
  {
    name: "GetSlruSegment",
    version: 2,
    bytes: `04 ${V2_HDR_HEX} 01 0000000c`,
    value: { kind: "get_slru_segment", hdr: v2hdr, slruKind: 1, segno: 12 },
  },
  { name: "Exists", version: 3, bytes: `00 ${V3_HDR_HEX} ${REL_HEX}`, value: { kind: "exists", hdr: v3hdr, rel } },
  { name: "Nblocks", version: 3, bytes: `01 ${V3_HDR_HEX} ${REL_HEX}`, value: { kind: "nblocks", hdr: v3hdr, rel } },
  {
    name: "GetPage",
    version: 3,
    bytes: `02 ${V3_HDR_HEX} ${REL_HEX} ffffffff`,
    value: { kind: "get_page", hdr: v3hdr, rel, blkno: 0xffffffff },
  },
  { name: "DbSize", version: 3, bytes: `03 ${V3_HDR_HEX} 00000005`, value: { kind: "db_size", hdr: v3hdr, dbnode: 5 } },
  {
    name: "GetSlruSegment",
    version: 3,
    bytes: `04 ${V3_HDR_HEX} 00 00000000`,
    value: { kind: "get_slru_segment", hdr: v3hdr, slruKind: 0, segno: 0 },
  },
];

const SIZES: Record<string, [number, number]> = {
  Exists: [30, 38],
  Nblocks: [30, 38],
  GetPage: [34, 42],
  DbSize: [21, 29],
  GetSlruSegment: [22, 30],
};

interface RespVector {
  name: string;
  version: PagestreamVersion;
  bytes: string;
  value: PagestreamResponse;
}

const [existsReq3, nblocksReq3, getPageReq3, dbSizeReq3, slruReq3] = REQUESTS.slice(5).map((r) => r.value) as [
  Extract<PagestreamRequest, { kind: "exists" }>,
  Extract<PagestreamRequest, { kind: "nblocks" }>,
  Extract<PagestreamRequest, { kind: "get_page" }>,
  Extract<PagestreamRequest, { kind: "db_size" }>,
  Extract<PagestreamRequest, { kind: "get_slru_segment" }>,
];

const RESPONSES: RespVector[] = [
  { name: "Exists", version: 2, bytes: "64 01", value: { kind: "exists", req: null, exists: true } },
  { name: "Nblocks", version: 2, bytes: "65 00000010", value: { kind: "nblocks", req: null, nblocks: 16 } },
  { name: "GetPage", version: 2, bytes: `66 ${PAGE_HEX}`, value: { kind: "get_page", req: null, page: PAGE } },
  { name: "Error", version: 2, bytes: "67 6f6f7073 00", value: { kind: "error", hdr: null, message: "oops" } },
  { name: "DbSize", version: 2, bytes: "68 0000000100000000", value: { kind: "db_size", req: null, dbSizeBytes: 2 ** 32 } },
  { name: "GetSlruSegment", version: 2, bytes: `69 00000002 ${SEG_HEX}`, value: { kind: "get_slru_segment", req: null, segment: SEG } },
  { name: "Exists", version: 3, bytes: `64 ${V3_HDR_HEX} ${REL_HEX} 00`, value: { kind: "exists", req: existsReq3, exists: false } },
  { name: "Nblocks", version: 3, bytes: `65 ${V3_HDR_HEX} ${REL_HEX} 00000010`, value: { kind: "nblocks", req: nblocksReq3, nblocks: 16 } },
  {
    name: "GetPage",
    version: 3,
    bytes: `66 ${V3_HDR_HEX} ${REL_HEX} ffffffff ${PAGE_HEX}`,
    value: { kind: "get_page", req: getPageReq3, page: PAGE },
  },
  // Error in v3: only the 24-byte header is echoed, then the message and its NUL.
  {
    name: "Error",
    version: 3,
    bytes: `67 ${V3_HDR_HEX} 6e6f20737563682072656c 00`,
    value: { kind: "error", hdr: v3hdr, message: "no such rel" },
  },
  {
    name: "DbSize",
    version: 3,
    bytes: `68 ${V3_HDR_HEX} 00000005 0000000000002000`,
    value: { kind: "db_size", req: dbSizeReq3, dbSizeBytes: 8192 },
  },
  {
    name: "GetSlruSegment",
    version: 3,
    bytes: `69 ${V3_HDR_HEX} 00 00000000 00000002 ${SEG_HEX}`,
    value: { kind: "get_slru_segment", req: slruReq3, segment: SEG },
  },
];

describe("pagestream requests", () => {
  for (const v of REQUESTS) {
    it(`v${v.version} ${v.name}: hand-written bytes decode, re-encode identically; truncated and trailing refused`, () => {
      const b = hex(v.bytes);
      expect(b.length).toBe(SIZES[v.name]![v.version - 2]);
      expect(decodeRequest(b, v.version)).toEqual(v.value);
      expect(Buffer.from(encodeRequest(v.value, v.version)).toString("hex")).toBe(Buffer.from(b).toString("hex"));
      expect(() => decodeRequest(b.subarray(0, b.length - 1), v.version)).toThrow(/truncated/);
      expect(() => decodeRequest(Uint8Array.from([...b, 0]), v.version)).toThrow(/trailing bytes/);
      // The other version's length is wrong for the same bytes.
      expect(() => decodeRequest(b, v.version === 2 ? 3 : 2)).toThrow(PagestreamDecodeError);
    });
  }

  it("refuses an empty message and unknown tags", () => {
    expect(() => decodeRequest(new Uint8Array(0), 2)).toThrow(/empty/);
    expect(() => decodeRequest(hex(`05 ${V2_HDR_HEX} 00000005`), 2)).toThrow(/unknown pagestream request tag 5/);
    expect(() => decodeRequest(hex(`63 ${V2_HDR_HEX}`), 2)).toThrow(/tag 99/);
  });

  it("LSNs: u64 max is latest (distinct), 2^53 - 1 is fine, 2^53 and above (not max) are refused", () => {
    const maxSafe = decodeRequest(hex(`03 001fffffffffffff 001fffffffffffff 00000005`), 2);
    expect(maxSafe.hdr.requestLsn).toBe(2 ** 53 - 1);
    expect(maxSafe.hdr.requestLsn).not.toBe(LATEST_LSN);
    expect(() => decodeRequest(hex(`03 0020000000000000 0000000000000001 00000005`), 2)).toThrow(/request_lsn 200000\/0 is beyond 2\^53/);
    expect(() => decodeRequest(hex(`03 0000000000000001 fffffffffffffffe 00000005`), 2)).toThrow(
      /not_modified_since FFFFFFFF\/FFFFFFFE is beyond 2\^53/,
    );
    const latestBoth = decodeRequest(hex(`03 ffffffffffffffff ffffffffffffffff 00000005`), 2);
    expect(latestBoth.hdr).toEqual({ reqidHi: 0, reqidLo: 0, requestLsn: LATEST_LSN, notModifiedSince: LATEST_LSN });
    expect(Buffer.from(encodeRequest(latestBoth, 2)).toString("hex")).toBe("03ffffffffffffffffffffffffffffffff00000005");
  });

  it("v3 reqid is any u64, echoed exactly", () => {
    const b = hex(`03 ffffffffffffffff 0000000000000001 0000000000000001 00000005`);
    const r = decodeRequest(b, 3);
    expect(r.hdr.reqidHi).toBe(0xffffffff);
    expect(r.hdr.reqidLo).toBe(0xffffffff);
    expect(Buffer.from(encodeRequest(r, 3)).equals(Buffer.from(b))).toBe(true);
    const resp = encodeResponse({ kind: "db_size", req: r as Extract<PagestreamRequest, { kind: "db_size" }>, dbSizeBytes: 0 }, 3);
    expect(Buffer.from(resp.subarray(1, 9)).toString("hex")).toBe("ffffffffffffffff");
  });
});

describe("pagestream responses", () => {
  for (const v of RESPONSES) {
    it(`v${v.version} ${v.name}: hand-written bytes decode, re-encode identically; truncated and trailing refused`, () => {
      const b = hex(v.bytes);
      expect(decodeResponse(b, v.version)).toEqual(v.value);
      expect(Buffer.from(encodeResponse(v.value, v.version)).equals(Buffer.from(b))).toBe(true);
      expect(() => decodeResponse(b.subarray(0, b.length - 1), v.version)).toThrow(PagestreamDecodeError);
      expect(() => decodeResponse(Uint8Array.from([...b, 0]), v.version)).toThrow(/trailing/);
    });
  }

  it("refuses unknown tags, bad exists bytes, oversized SLRU segments, messages without NUL", () => {
    expect(() => decodeResponse(hex("6a 00"), 2)).toThrow(/unknown pagestream response tag 106/);
    expect(() => decodeResponse(hex("64 02"), 2)).toThrow(/exists byte 2/);
    expect(() => decodeResponse(hex("69 00000021"), 2)).toThrow(/33 blocks/);
    expect(() => decodeResponse(hex("67 6f6f7073"), 2)).toThrow(/without NUL/);
    expect(() => decodeResponse(hex("67 6f00 7073 00"), 2)).toThrow(/trailing bytes/);
    expect(() => decodeResponse(hex(`67 ${V3_HDR_HEX}`), 3)).toThrow(/truncated/);
    // A DbSize with the sign bit (negative i64) is not a size.
    expect(() => decodeResponse(hex("68 ffffffffffffffff"), 2)).toThrow(/db size/);
  });

  it("an Error message with a NUL inside is escaped, so the frame stays well-formed", () => {
    const b = encodeResponse({ kind: "error", hdr: null, message: "a\0b" }, 2);
    expect(decodeResponse(b, 2)).toEqual({ kind: "error", hdr: null, message: "a\\0b" });
  });

  it("v3 responses need their request (v2 needs none)", () => {
    expect(() => encodeResponse({ kind: "exists", req: null, exists: true }, 3)).toThrow(/needs its request/);
    expect(() => encodeResponse({ kind: "error", hdr: null, message: "x" }, 3)).toThrow(/needs the request header/);
  });
});
