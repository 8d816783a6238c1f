/**
 * PostgreSQL wire framing (src/protocol/pg_wire.ts): messages written by hand in bytes, parsed
 * whole and split at every byte; lengths out of range refused with a clear error; the
 * startup phase (no type byte) then typed messages; the writers' exact bytes.
 */
import { describe, expect, it } from "vitest";
import {
  authenticationCleartextPassword,
  authenticationOk,
  copyBothResponse,
  copyData,
  copyDone,
  copyOutResponse,
  errorResponse,
  FrameReader,
  parseCStringBody,
  parseErrorFields,
  parseStartupParams,
  PROTOCOL_V3,
  query,
  readyForQuery,
  SSL_REQUEST_CODE,
  sslRequest,
  startupMessage,
  WireProtocolError,
} from "../src/protocol/pg_wire.js";

function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s.replace(/\s+/g, ""), "hex"));
}
const h = (b: Uint8Array): string => Buffer.from(b).toString("hex");

// SSLRequest, then StartupMessage {user: "u"} (len 4+4+"user\0u\0"+"\0" = 16), then Query "x".
const STREAM = hex("00000008 04d2162f  00000010 00030000 7573657200 7500 00  51 00000006 7800");

describe("FrameReader", () => {
  it("parses a startup phase then typed messages, whole and split at every byte", () => {
    const parse = (pieces: Uint8Array[]): { type: number; code: number; body: string }[] => {
      const r = new FrameReader({ max_frame_bytes: 1024, startup: true });
      const frames: { type: number; code: number; body: string }[] = [];
      for (const p of pieces) {
        r.push(p);
        for (let f = r.next(); f !== null; f = r.next()) {
          frames.push({ type: f.type, code: f.code, body: h(f.body) });
          if (f.code === PROTOCOL_V3) r.endStartup();
        }
      }
      expect(r.buffered_bytes).toBe(0);
      return frames;
    };
    const want = [
      { type: 0, code: SSL_REQUEST_CODE, body: "" },
      { type: 0, code: PROTOCOL_V3, body: "7573657200750000" },
      { type: 0x51, code: 0, body: "7800" },
    ];
    for (let cut = 0; cut <= STREAM.length; cut++) expect(parse([STREAM.subarray(0, cut), STREAM.subarray(cut)])).toEqual(want);
    expect(parse(Array.from(STREAM, (_, i) => STREAM.subarray(i, i + 1)))).toEqual(want);
  });

  it("refuses lengths below the header or above the maximum, in both phases", () => {
    const s = new FrameReader({ max_frame_bytes: 1024, startup: true });
    s.push(hex("00000007"));
    expect(() => s.next()).toThrow(/invalid startup packet length 7/);
    const big = new FrameReader({ max_frame_bytes: 1 << 20, startup: true });
    big.push(hex("00002711")); // 10001 > MAX_STARTUP_PACKET_LENGTH
    expect(() => big.next()).toThrow(WireProtocolError);
    const t = new FrameReader({ max_frame_bytes: 1024, startup: false });
    t.push(hex("51 00000003"));
    expect(() => t.next()).toThrow(/invalid length 3 of message type 'Q'/);
    const u = new FrameReader({ max_frame_bytes: 1024, startup: false });
    u.push(hex("64 00000401"));
    expect(() => u.next()).toThrow(/invalid length 1025 of message type 'd' \(expected 4\.\.1024\)/);
    const n = new FrameReader({ max_frame_bytes: 1024, startup: false });
    n.push(hex("ff 80000000"));
    expect(() => n.next()).toThrow(/invalid length -2147483648 of message type 0xff/);
  });

  it("holds a partial frame across pushes and grows past its initial buffer", () => {
    const r = new FrameReader({ max_frame_bytes: 1 << 20, startup: false });
    const payload = new Uint8Array(200_000).fill(7);
    const msg = copyData(payload);
    r.push(msg.subarray(0, 100_000));
    expect(r.next()).toBeNull();
    r.push(msg.subarray(100_000));
    const f = r.next()!;
    expect(f.type).toBe(0x64);
    expect(f.body.length).toBe(200_000);
    expect(f.body.every((b) => b === 7)).toBe(true);
  });
});

describe("message bodies", () => {
  it("startup parameters: pairs then NUL; missing NUL, trailing bytes and too many pairs refused", () => {
    expect([...parseStartupParams(hex("7573657200 7500 646200 706f737400 00"))]).toEqual([
      ["user", "u"],
      ["db", "post"],
    ]);
    expect(() => parseStartupParams(hex("7573657200 7500"))).toThrow(/missing final NUL/);
    expect(() => parseStartupParams(hex("7573657200"))).toThrow(/missing NUL terminator/);
    expect(() => parseStartupParams(hex("00 00"))).toThrow(/bytes after the final NUL/);
    const many = Buffer.concat([...Array.from({ length: 70 }, () => hex("6100 6200")), hex("00")]);
    expect(() => parseStartupParams(many)).toThrow(/more than 64 parameters/);
  });

  it("a C-string body must be exactly one NUL-terminated string", () => {
    expect(parseCStringBody(hex("6869 00"), "query")).toBe("hi");
    expect(() => parseCStringBody(hex("6869"), "query")).toThrow(/query: missing NUL/);
    expect(() => parseCStringBody(hex("6869 00 00"), "query")).toThrow(/query: bytes after the NUL/);
  });
});

describe("writers (exact bytes)", () => {
  it("backend messages", () => {
    expect(h(authenticationOk())).toBe("520000000800000000");
    expect(h(authenticationCleartextPassword())).toBe("520000000800000003");
    expect(h(readyForQuery())).toBe("5a0000000549");
    expect(h(copyBothResponse())).toBe("570000000700" + "0000");
    expect(h(copyOutResponse())).toBe("480000000700" + "0000");
    expect(h(copyData(hex("0102")))).toBe("6400000006" + "0102");
    expect(h(copyDone())).toBe("6300000004");
    const e = errorResponse("28000", "bad\0token", "FATAL");
    expect(e[0]).toBe(0x45);
    const fields = parseErrorFields(e.subarray(5));
    expect([...fields]).toEqual([
      ["S", "FATAL"],
      ["V", "FATAL"],
      ["C", "28000"],
      ["M", "bad\\0token"],
    ]);
  });

  it("frontend messages", () => {
    expect(h(sslRequest())).toBe("0000000804d2162f");
    expect(h(startupMessage({ user: "u" }))).toBe("00000010000300007573657200750000");
    expect(h(query("x"))).toBe("51000000067800");
  });
});
