/**
 * Bad input on the page service: seeded random and mutated frames in each phase — startup
 * packets, simple queries, CopyData inside pagestream v2/v3 sessions — thousands of
 * connections, bounded in count and time. Each connection sends its bytes, half-closes, and
 * reads until the server closes. Every reply must be well-formed: whole frames of the types
 * the server sends, every ErrorResponse with a severity, a 5-character SQLSTATE and a
 * message, every CopyData in a session a decodable pagestream response (an answer or an
 * Error). The server never hangs or crashes: afterwards a fresh connection still gets the
 * right pages. Before that, the edges by hand: SSL/GSSENC requests, the extended protocol,
 * and a malformed request in a session (answered up to it, an Error, then the close).
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  decodeResponse,
  encodeRequest,
  header,
  LATEST_LSN,
  type PagestreamRequest,
  type PagestreamVersion,
} from "../src/protocol/pagestream.js";
import {
  copyData,
  copyDone,
  FrameReader,
  GSSENC_REQUEST_CODE,
  MSG,
  parseErrorFields,
  query,
  SSL_REQUEST_CODE,
  sslRequest,
  gssencRequest,
  startupMessage,
  terminate,
} from "../src/protocol/pg_wire.js";
import { PageServiceFixture } from "./support/page_service_fixture.js";
import { rng } from "./support/rng.js";

const CASES_PER_PHASE = 700;
const CONCURRENCY = 8;
const CASE_TIMEOUT_MS = 10_000;

let fx: PageServiceFixture;

beforeAll(async () => {
  // A mutated not_modified_since may lie beyond the last record: that request waits for WAL
  // (a legitimate wait), so keep the wait short.
  fx = await PageServiceFixture.start({ rows: 200, tenantConfig: { wait_lsn_timeout: "500ms" } });
}, 120_000);

afterAll(async () => {
  await fx?.destroy();
});

type Rand = () => number;
const int = (r: Rand, n: number): number => Math.floor(r() * n);

/** Flip, insert, delete, truncate or overwrite a few bytes. */
function mutate(r: Rand, b: Uint8Array): Uint8Array {
  const out = Array.from(b);
  const n = 1 + int(r, 3);
  for (let i = 0; i < n; i++) {
    const op = int(r, 5);
    const at = int(r, out.length + 1);
    if (op === 0 && out.length > 0) out[at % out.length] = (out[at % out.length]! ^ (1 << int(r, 8))) & 0xff;
    else if (op === 1) out.splice(at, 0, int(r, 256));
    else if (op === 2 && out.length > 0) out.splice(at % out.length, 1);
    else if (op === 3) out.length = Math.min(out.length, at);
    else if (out.length > 0) out[at % out.length] = [0, 0xff, 0x7f, 0x80][int(r, 4)]!;
  }
  return Uint8Array.from(out);
}

function randomBytes(r: Rand, max: number): Uint8Array {
  return Uint8Array.from({ length: int(r, max) }, () => int(r, 256));
}

const STARTUP = startupMessage({ user: "fuzz", database: "postgres" });

interface Reply {
  frames: { type: number; body: Uint8Array }[];
  closed: boolean;
}

/** Send `bytes`, half-close, collect every frame until the server closes (or the timeout fails the case). */
function exchange(bytes: Uint8Array): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = connect(fx.server.pgPort, "127.0.0.1");
    const reader = new FrameReader({ max_frame_bytes: 1 << 20, startup: false });
    const frames: { type: number; body: Uint8Array }[] = [];
    let failed: Error | null = null;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no close within ${CASE_TIMEOUT_MS} ms`));
    }, CASE_TIMEOUT_MS);
    sock.on("connect", () => sock.end(bytes));
    sock.on("data", (d: Buffer) => {
      try {
        reader.push(d);
        for (let f = reader.next(); f !== null; f = reader.next()) frames.push({ type: f.type, body: f.body.slice() });
      } catch (e) {
        failed = e as Error;
      }
    });
    sock.on("error", () => undefined); // a reset after the server closed is fine
    sock.on("close", () => {
      clearTimeout(timer);
      if (failed !== null) reject(failed);
      else if (reader.buffered_bytes !== 0) reject(new Error(`${reader.buffered_bytes} bytes of a partial frame at close`));
      else resolve({ frames, closed: true });
    });
  });
}

const SERVER_TYPES = new Set([
  MSG.Authentication,
  MSG.ParameterStatus,
  MSG.ReadyForQuery,
  MSG.ErrorResponse,
  MSG.CopyBothResponse,
  MSG.CopyOutResponse,
  MSG.CopyData,
  MSG.CopyDone,
  MSG.CommandComplete,
]);

/** The checks every reply passes; `version` set when the case opened a session of that version. */
function checkReply(reply: Reply, version: PagestreamVersion | null, what: string): { errors: number } {
  let errors = 0;
  let inSession = false;
  for (const f of reply.frames) {
    expect(SERVER_TYPES.has(f.type as never), `${what}: unexpected type ${f.type}`).toBe(true);
    if (f.type === MSG.ErrorResponse) {
      const fields = parseErrorFields(f.body);
      expect(fields.get("S"), what).toMatch(/^(ERROR|FATAL)$/);
      expect(fields.get("C"), what).toMatch(/^[0-9A-Z]{5}$/);
      expect(fields.get("M")?.length ?? 0, what).toBeGreaterThan(0);
      errors++;
    }
    if (f.type === MSG.CopyBothResponse) inSession = true;
    if (f.type === MSG.CopyDone || f.type === MSG.ReadyForQuery) inSession = false;
    if (f.type === MSG.CopyData && inSession && version !== null) {
      const r = decodeResponse(f.body, version);
      if (r.kind === "error") {
        expect(r.message.length, what).toBeGreaterThan(0);
        errors++;
      }
    }
  }
  expect(reply.closed).toBe(true);
  return { errors };
}

function validRequests(r: Rand, version: PagestreamVersion): PagestreamRequest[] {
  const rel = fx.rel;
  const hdr = () => header(version === 3 ? int(r, 1e9) : 0, [LATEST_LSN, fx.lsn][int(r, 2)]!, fx.lsn);
  const all: PagestreamRequest[] = [
    { kind: "get_page", hdr: hdr(), rel, blkno: int(r, 4) },
    { kind: "exists", hdr: hdr(), rel },
    { kind: "nblocks", hdr: hdr(), rel },
    { kind: "db_size", hdr: hdr(), dbnode: fx.dbOid },
    { kind: "get_slru_segment", hdr: hdr(), slruKind: 0, segno: 0 },
  ];
  return Array.from({ length: 1 + int(r, 6) }, () => all[int(r, all.length)]!);
}

interface Case {
  bytes: Uint8Array;
  version: PagestreamVersion | null;
  /** When every request of the session is well-formed: the answers it must get (one each, none an Error). */
  answers?: number;
}

async function runCases(n: number, make: (r: Rand, i: number) => Case, seed: number): Promise<number> {
  let next = 0;
  let errors = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      const r = rng(seed * 100_003 + i);
      const c = make(r, i);
      const reply = await exchange(c.bytes);
      const what = `case ${i} (seed ${seed}): ${Buffer.from(c.bytes.subarray(0, 64)).toString("hex")}`;
      const checked = checkReply(reply, c.version, what);
      errors += checked.errors;
      if (c.answers !== undefined) {
        // All well-formed, and the client half-closed after sending: still every answer comes.
        expect(checked.errors, what).toBe(0);
        expect(reply.frames.filter((f) => f.type === MSG.CopyData).length, what).toBe(c.answers);
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return errors;
}

async function stillServes(): Promise<void> {
  const c = await fx.client();
  try {
    const s = await c.pagestream(fx.tenant, fx.timeline, 3);
    const file = fx.tableFile();
    for (let b = 0; b < 3; b++)
      expect(Buffer.from(await s.getPage(fx.rel, b, LATEST_LSN, fx.lsn)).equals(Buffer.from(file.subarray(b * 8192, (b + 1) * 8192)))).toBe(
        true,
      );
    await s.close();
  } finally {
    c.close();
  }
}

describe("protocol edges, byte by byte", () => {
  it("SSLRequest and GSSENCRequest are answered 'N', then the startup goes on", async () => {
    for (const first of [sslRequest(), gssencRequest()]) {
      const bytes = Buffer.concat([first, STARTUP, terminate()]);
      const raw = await rawExchange(bytes);
      expect(raw[0]).toBe(0x4e); // 'N'
      const r = new FrameReader({ max_frame_bytes: 1 << 20, startup: false });
      r.push(raw.subarray(1));
      const types: number[] = [];
      for (let f = r.next(); f !== null; f = r.next()) types.push(f.type);
      expect(types).toEqual([MSG.Authentication, MSG.ParameterStatus, MSG.ParameterStatus, MSG.ReadyForQuery]);
    }
  });

  it("an extended-protocol exchange gets one ErrorResponse 0A000, and Sync a ReadyForQuery", async () => {
    const parse = Buffer.from([0x50, 0, 0, 0, 9, 0, 0x78, 0, 0, 0]); // Parse: statement "", query "x", 0 parameter types
    const sync = Buffer.from([0x53, 0, 0, 0, 4]);
    const reply = await exchange(Buffer.concat([STARTUP, parse, Buffer.from([0x42, 0, 0, 0, 4]), sync, query("SELECT 1"), terminate()]));
    const types = reply.frames.map((f) => String.fromCharCode(f.type));
    expect(types.join("")).toBe("RSSZ" + "EZ" + "EZ");
    expect(parseErrorFields(reply.frames[4]!.body).get("C")).toBe("0A000");
  });

  it("a malformed request inside a session: the requests before it are answered, then an Error, then the connection closes", async () => {
    for (const version of [2, 3] as PagestreamVersion[]) {
      const good = encodeRequest({ kind: "get_page", hdr: header(7, LATEST_LSN, fx.lsn), rel: fx.rel, blkno: 0 }, version);
      const badTag = Uint8Array.from(good);
      badTag[0] = 9;
      const bigLsn = Uint8Array.from(good);
      bigLsn.set([0, 0x20, 0, 0, 0, 0, 0, 0], version === 3 ? 9 : 1); // request_lsn 2^53
      for (const bad of [badTag, bigLsn, good.subarray(0, good.length - 1)]) {
        const reply = await exchange(
          Buffer.concat([
            STARTUP,
            query(`pagestream_v${version} ${fx.tenant} ${fx.timeline}`),
            copyData(good),
            copyData(bad),
            copyData(good),
            copyDone(),
          ]),
        );
        const types = reply.frames.map((f) => String.fromCharCode(f.type)).join("");
        // Startup, CopyBoth, the first answer, the Error — and nothing after: no answer to the third request, no ReadyForQuery.
        expect(types).toBe("RSSZWdd");
        expect(decodeResponse(reply.frames[5]!.body, version).kind).toBe("get_page");
        const e = decodeResponse(reply.frames[6]!.body, version);
        expect(e.kind).toBe("error");
        expect(e.kind === "error" && e.message).toMatch(
          /malformed pagestream message: (unknown pagestream request tag 9|request_lsn 200000\/0 is beyond 2\^53|.*truncated)/,
        );
      }
    }
  });
});

/** Send `bytes`, half-close, return every byte received until the server closes. */
function rawExchange(bytes: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect(fx.server.pgPort, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error("no close"));
    }, CASE_TIMEOUT_MS);
    sock.on("connect", () => sock.end(bytes));
    sock.on("data", (d: Buffer) => chunks.push(d));
    sock.on("error", () => undefined);
    sock.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

describe("bad input never crashes the page service", () => {
  it(`startup phase: ${CASES_PER_PHASE} random and mutated startup packets`, async () => {
    const errors = await runCases(
      CASES_PER_PHASE,
      (r) => {
        let bytes = int(r, 4) === 0 ? randomBytes(r, 64) : mutate(r, STARTUP);
        // An SSL/GSSENC request is answered with a bare 'N' (no frame): keep those out of the random set.
        if (bytes.length >= 8) {
          const code = Buffer.from(bytes).readInt32BE(4);
          if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) bytes = bytes.slice(0, 7);
        }
        return { bytes, version: null };
      },
      1,
    );
    expect(errors).toBeGreaterThan(CASES_PER_PHASE / 4);
    await stillServes();
  }, 120_000);

  it(`query phase: ${CASES_PER_PHASE} mutated queries and messages after a valid startup`, async () => {
    const tl = `${fx.tenant} ${fx.timeline}`;
    const good = [`pagestream_v2 ${tl}`, `pagestream_v3 ${tl}`, `basebackup ${tl} latest`, "SELECT 1", "", `pagestream_v3 ${fx.tenant}`];
    const errors = await runCases(
      CASES_PER_PHASE,
      (r) => {
        const q = good[int(r, good.length)]!;
        const msg = int(r, 3) === 0 ? randomBytes(r, 40) : mutate(r, query(q));
        return { bytes: Buffer.concat([STARTUP, msg, terminate()]), version: q.startsWith("pagestream_v2") ? 2 : 3 };
      },
      2,
    );
    expect(errors).toBeGreaterThan(CASES_PER_PHASE / 4);
    await stillServes();
  }, 180_000);

  it(`pagestream phase: ${CASES_PER_PHASE} sessions of valid and mutated CopyData`, async () => {
    const errors = await runCases(
      CASES_PER_PHASE,
      (r) => {
        const version: PagestreamVersion = int(r, 2) === 0 ? 2 : 3;
        const parts: Uint8Array[] = [STARTUP, query(`pagestream_v${version} ${fx.tenant} ${fx.timeline}`)];
        const reqs = validRequests(r, version);
        let intact = true;
        for (const req of reqs) {
          const body = encodeRequest(req, version);
          const k = int(r, 4);
          if (k === 0)
            parts.push(mutate(r, copyData(body))); // the frame itself (type, length)
          else if (k === 1)
            parts.push(copyData(mutate(r, body))); // the request inside
          else parts.push(copyData(body));
          intact &&= k >= 2;
        }
        if (int(r, 2) === 0) parts.push(copyDone());
        return { bytes: Buffer.concat(parts), version, ...(intact ? { answers: reqs.length } : {}) };
      },
      3,
    );
    expect(errors).toBeGreaterThan(CASES_PER_PHASE / 4);
    await stillServes();
  }, 180_000);
});
