/**
 * The PostgreSQL v3 frontend/backend wire protocol: framing in both directions, and the
 * messages the page service and its clients exchange. Pure bytes: no sockets here.
 *
 * Framing: every message is `u8 type, i32 length, body`, where length counts itself and the
 * body but not the type byte; the startup phase (StartupMessage, SSLRequest, GSSENCRequest,
 * CancelRequest) has no type byte: `i32 length, i32 code, body`. All integers big-endian.
 *
 * `FrameReader` is the incremental parser: bytes in (any split), whole frames out.
 * Invariants:
 * - A length below 4 (or below 8 for a startup packet) or above the reader's
 *   `max_frame_bytes` is a WireProtocolError: the stream can't be resynchronised after it.
 * - The reader holds at most one partial frame plus what was pushed and not yet taken; the
 *   caller bounds that by taking frames (or by pausing its socket): `buffered_bytes` says how
 *   much is held.
 * - A frame's body is a view into the reader's buffer, valid until the next push(); callers
 *   decode (copy out) before pushing more.
 *
 * Writers return one Buffer per message (or write a header in place for the hot path:
 * `writeCopyDataHeader`).
 */
import { assert } from "../types/assert.js";
import { readU32BE, writeU32BE } from "../types/bytes.js";
import { PageserverError } from "../types/errors.js";

/** A message that breaks the protocol (bad length, unexpected type, malformed body). */
export class WireProtocolError extends PageserverError {
  constructor(message: string) {
    super("invalid_argument", message);
  }
}

/** Startup packet codes (the i32 after the length). */
export const PROTOCOL_V3 = 196608; // 3 << 16
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** PostgreSQL refuses startup packets above this (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET_BYTES = 10_000;

/** Message type bytes. */
export const MSG = {
  // backend → frontend
  Authentication: 0x52, // 'R'
  ParameterStatus: 0x53, // 'S'
  ReadyForQuery: 0x5a, // 'Z'
  CommandComplete: 0x43, // 'C'
  ErrorResponse: 0x45, // 'E'
  NoticeResponse: 0x4e, // 'N'
  CopyBothResponse: 0x57, // 'W'
  CopyOutResponse: 0x48, // 'H'
  // both directions
  CopyData: 0x64, // 'd'
  CopyDone: 0x63, // 'c'
  // frontend → backend
  Query: 0x51, // 'Q'
  PasswordMessage: 0x70, // 'p'
  Terminate: 0x58, // 'X'
  CopyFail: 0x66, // 'f'
} as const;

/** One frame: `type` is 0 for a startup-phase packet (then `code` is its first i32). */
export interface Frame {
  type: number;
  /** Startup packets: the request code (PROTOCOL_V3, SSL_REQUEST_CODE, …); else 0. */
  code: number;
  /** The bytes after the length (after the code for startup packets). A view: see header. */
  body: Uint8Array;
}

const INITIAL_BUFFER_BYTES = 64 * 1024;

export class FrameReader {
  private buf: Uint8Array = new Uint8Array(INITIAL_BUFFER_BYTES);
  private start = 0;
  private end = 0;
  private startup: boolean;
  readonly max_frame_bytes: number;

  /** `startup`: the next frame is a startup packet (the server side of a new connection). */
  constructor(opts: { max_frame_bytes: number; startup: boolean }) {
    assert(opts.max_frame_bytes >= 8, "max_frame_bytes too small");
    this.max_frame_bytes = opts.max_frame_bytes;
    this.startup = opts.startup;
  }

  get buffered_bytes(): number {
    return this.end - this.start;
  }

  /** After the StartupMessage: every later frame has a type byte. */
  endStartup(): void {
    this.startup = false;
  }

  push(chunk: Uint8Array): void {
    const held = this.end - this.start;
    if (this.end + chunk.length > this.buf.length) {
      if (held + chunk.length <= this.buf.length) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        let size = this.buf.length;
        while (size < held + chunk.length) size *= 2;
        const next = new Uint8Array(size);
        next.set(this.buf.subarray(this.start, this.end));
        this.buf = next;
      }
      this.start = 0;
      this.end = held;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
    if (this.start === this.end) {
      this.start = 0;
      this.end = 0;
    }
  }

  /** The next whole frame, or null when more bytes are needed. Throws WireProtocolError. */
  next(): Frame | null {
    const avail = this.end - this.start;
    const b = this.buf;
    const s = this.start;
    if (this.startup) {
      if (avail < 4) return null;
      // Lengths and codes are the protocol's Int32: `| 0` keeps the sign, so a length with the
      // high bit set is rejected as negative, as before.
      const len = readU32BE(b, s) | 0;
      if (len < 8 || len > Math.min(this.max_frame_bytes, MAX_STARTUP_PACKET_BYTES)) {
        throw new WireProtocolError(
          `invalid startup packet length ${len} (expected 8..${Math.min(this.max_frame_bytes, MAX_STARTUP_PACKET_BYTES)})`,
        );
      }
      if (avail < len) return null;
      const code = readU32BE(b, s + 4) | 0;
      this.start += len;
      return { type: 0, code, body: b.subarray(s + 8, s + len) };
    }
    if (avail < 5) return null;
    const type = b[s]!;
    const len = readU32BE(b, s + 1) | 0;
    if (len < 4 || len > this.max_frame_bytes) {
      throw new WireProtocolError(`invalid length ${len} of message type ${typeName(type)} (expected 4..${this.max_frame_bytes})`);
    }
    if (avail < len + 1) return null;
    this.start += len + 1;
    return { type, code: 0, body: b.subarray(s + 5, s + 1 + len) };
  }
}

/** A printable name of a message type byte, for error messages. */
export function typeName(type: number): string {
  return type >= 0x20 && type < 0x7f ? `'${String.fromCharCode(type)}'` : `0x${type.toString(16).padStart(2, "0")}`;
}

// ─── body readers ────────────────────────────────────────────────────────────────────────

/** A NUL-terminated string at `off` of `body`: its text and the offset after the NUL. */
export function readCString(body: Uint8Array, off: number, what: string): { text: string; next: number } {
  const nul = body.indexOf(0, off);
  if (nul < 0) throw new WireProtocolError(`${what}: missing NUL terminator`);
  return { text: Buffer.from(body.buffer, body.byteOffset + off, nul - off).toString("utf8"), next: nul + 1 };
}

/** StartupMessage parameters (name/value pairs, then a NUL); at most `max_params` pairs. */
export function parseStartupParams(body: Uint8Array, max_params = 64): Map<string, string> {
  const params = new Map<string, string>();
  let off = 0;
  for (let i = 0; i <= max_params; i++) {
    if (off >= body.length) throw new WireProtocolError("startup packet: missing final NUL");
    if (body[off] === 0) {
      if (off + 1 !== body.length) throw new WireProtocolError("startup packet: bytes after the final NUL");
      return params;
    }
    const name = readCString(body, off, "startup parameter name");
    const value = readCString(body, name.next, `startup parameter ${name.text}`);
    params.set(name.text, value.text);
    off = value.next;
  }
  throw new WireProtocolError(`startup packet: more than ${max_params} parameters`);
}

/** The body of a message that is exactly one NUL-terminated string (Query, PasswordMessage). */
export function parseCStringBody(body: Uint8Array, what: string): string {
  const s = readCString(body, 0, what);
  if (s.next !== body.length) throw new WireProtocolError(`${what}: bytes after the NUL terminator`);
  return s.text;
}

/** Fields of an ErrorResponse / NoticeResponse (keyed by field type letter: S, C, M, …). */
export function parseErrorFields(body: Uint8Array): Map<string, string> {
  const fields = new Map<string, string>();
  let off = 0;
  for (let i = 0; i < 64; i++) {
    if (off >= body.length) throw new WireProtocolError("ErrorResponse: missing final NUL");
    const t = body[off]!;
    if (t === 0) return fields;
    const v = readCString(body, off + 1, "ErrorResponse field");
    fields.set(String.fromCharCode(t), v.text);
    off = v.next;
  }
  throw new WireProtocolError("ErrorResponse: too many fields");
}

// ─── writers ─────────────────────────────────────────────────────────────────────────────

/** A typed message: type byte, length, body. */
export function message(type: number, body: Uint8Array = EMPTY): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  writeU32BE(out, 1, 4 + body.length);
  out.set(body, 5);
  return out;
}

const EMPTY = new Uint8Array(0);

function cstr(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, "utf8"), ZERO]);
}
const ZERO = Buffer.from([0]);

function int32s(...vs: number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * vs.length);
  for (let i = 0; i < vs.length; i++) writeU32BE(b, 4 * i, vs[i]!);
  return b;
}

export function authenticationOk(): Buffer {
  return message(MSG.Authentication, int32s(0));
}

export function authenticationCleartextPassword(): Buffer {
  return message(MSG.Authentication, int32s(3));
}

export function parameterStatus(name: string, value: string): Buffer {
  return message(MSG.ParameterStatus, Buffer.concat([cstr(name), cstr(value)]));
}

/** ReadyForQuery; status 'I' idle (we have no transactions). */
export function readyForQuery(): Buffer {
  return message(MSG.ReadyForQuery, Buffer.from("I", "latin1"));
}

export function commandComplete(tag: string): Buffer {
  return message(MSG.CommandComplete, cstr(tag));
}

/** ErrorResponse with severity, SQLSTATE and message (fields S, V, C, M). */
export function errorResponse(sqlstate: string, text: string, severity: "ERROR" | "FATAL" = "ERROR"): Buffer {
  assert(/^[0-9A-Z]{5}$/.test(sqlstate), `bad SQLSTATE ${sqlstate}`);
  // A NUL inside the text would end the field early: clients would misparse the rest.
  const clean = text.replaceAll("\0", "\\0");
  return message(
    MSG.ErrorResponse,
    Buffer.concat([
      Buffer.from("S"),
      cstr(severity),
      Buffer.from("V"),
      cstr(severity),
      Buffer.from("C"),
      cstr(sqlstate),
      Buffer.from("M"),
      cstr(clean),
      ZERO,
    ]),
  );
}

/** CopyBothResponse / CopyOutResponse: binary overall format, no columns. */
export function copyBothResponse(): Buffer {
  return message(MSG.CopyBothResponse, Buffer.from([0, 0, 0]));
}

export function copyOutResponse(): Buffer {
  return message(MSG.CopyOutResponse, Buffer.from([0, 0, 0]));
}

export function copyData(payload: Uint8Array): Buffer {
  return message(MSG.CopyData, payload);
}

/** The 5-byte CopyData header for a payload of `payload_bytes`, written at `off` of `buf`. */
export function writeCopyDataHeader(buf: Uint8Array, off: number, payload_bytes: number): void {
  buf[off] = MSG.CopyData;
  writeU32BE(buf, off + 1, 4 + payload_bytes);
}

export const COPY_DATA_HEADER_BYTES = 5;

export function copyDone(): Buffer {
  return message(MSG.CopyDone);
}

// frontend

/** StartupMessage, protocol 3.0, with the given parameters (user is required by PostgreSQL). */
export function startupMessage(params: Record<string, string>): Buffer {
  const parts: Buffer[] = [int32s(PROTOCOL_V3)];
  for (const [k, v] of Object.entries(params)) parts.push(cstr(k), cstr(v));
  parts.push(ZERO);
  const body = Buffer.concat(parts);
  return Buffer.concat([int32s(4 + body.length), body]);
}

export function sslRequest(): Buffer {
  return int32s(8, SSL_REQUEST_CODE);
}

export function gssencRequest(): Buffer {
  return int32s(8, GSSENC_REQUEST_CODE);
}

export function passwordMessage(password: string): Buffer {
  return message(MSG.PasswordMessage, cstr(password));
}

export function query(sql: string): Buffer {
  return message(MSG.Query, cstr(sql));
}

export function terminate(): Buffer {
  return message(MSG.Terminate);
}
