/**
 * Page service bounds for a multi-tenant host (issue 16, item 9), on one server with auth on
 * (an Ed25519 key made here), at most 3 connections per tenant and 6 per peer (every test
 * client is 127.0.0.1), and a source whose clog segment 0000 is whole (32 pages, 256 KiB:
 * pg_resetwal -x puts the next xid on clog page 31, as ~1M used xids would):
 * - a client that pipelines 2,000 GetSlruSegment (54 KB) and reads nothing makes the server
 *   queue at most its unwritten limit plus one answer (before: a round of 256 segments,
 *   64 MiB), and another connection is served meanwhile;
 * - the 4th connection of a tenant (at login for a tenant token, at its command for an API
 *   token) and the 7th from one peer get FATAL 53300 and are closed; the others keep working;
 * - a connection whose token's exp passes gets FATAL 28000 and is closed;
 * - a 5,000-character user / application_name is logged cut to 64 characters.
 * The refusals and closes are counted in /metrics; the settings load from pageserver.json.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { SignJWT } from "jose";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PageServiceClient, PageServiceError } from "../src/client/page_service_client.js";
import { encodeRequest, header, LATEST_LSN } from "../src/protocol/pagestream.js";
import { copyData, MSG, parseErrorFields, passwordMessage, query, startupMessage } from "../src/protocol/pg_wire.js";
import { DEFAULT_NODE_CONFIG, loadNodeConfig } from "../src/main/config.js";
import { SOCKET_LIMITS } from "../src/main/page_service/page_service.js";
import { MAX_LOGGED_PARAM_CHARS } from "../src/main/page_service/connection.js";
import type { TenantId } from "../src/types/ids.js";
import { PageServiceFixture } from "./support/page_service_fixture.js";
import { within } from "./support/within.js";

const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const PER_TENANT = 3;
const PER_PEER = 6;
/** Clog pages a segment holds (SLRU_PAGES_PER_SEGMENT), and xids a clog page covers. */
const SLRU_PAGES = 32;
const CLOG_XACTS_PER_PAGE = 32768;
/** The largest single answer here: a v2 GetSlruSegment of 32 pages (CopyData header, tag, nblocks, pages). */
const LARGEST_ANSWER_BYTES = 5 + 1 + 4 + SLRU_PAGES * 8192;

async function token(claims: Record<string, unknown>, expiresAt?: number): Promise<string> {
  let j = new SignJWT(claims).setProtectedHeader({ alg: "EdDSA" }).setIssuedAt();
  if (expiresAt !== undefined) j = j.setExpirationTime(expiresAt);
  return await j.sign(privateKey);
}

const logLines: string[] = [];
const logSink = new Writable({
  write(chunk: Buffer, _enc, done) {
    for (const l of chunk.toString("utf8").split("\n")) if (l.length > 0) logLines.push(l);
    done();
  },
});

let fx: PageServiceFixture;
let apiToken: string;
let tenantToken: string;
let other: string; // a second tenant, same data
let otherTimeline: string;

beforeAll(async () => {
  apiToken = await token({ scope: "pageserverapi" });
  fx = await PageServiceFixture.start({
    rows: 200,
    authPublicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    httpToken: apiToken,
    logger: pino({ level: "info" }, logSink),
    nodeConfig: { page_service_max_connections_per_tenant: PER_TENANT, page_service_max_connections_per_peer: PER_PEER },
    beforeImport: async (pg) => {
      // The next xid is the first of clog page 31: PostgreSQL zeroes that page when it assigns
      // the xid (no read: it is the page's first), so segment 0000 has 32 pages.
      await pg.runChecked("pg_resetwal", ["-x", String(31 * CLOG_XACTS_PER_PAGE), "-D", pg.dataDir]);
      await pg.restart();
      await pg.psql("CREATE TABLE grow (x int); INSERT INTO grow VALUES (1); CHECKPOINT;");
      await pg.stop();
    },
  });
  tenantToken = await token({ scope: "tenant", tenant_id: fx.tenant });
  const t = await fx.http("POST", "/v1/tenant", { config: { compaction_period: 0, gc_period: 0 } });
  other = String(t.json["id"]);
  const tl = await fx.http("POST", `/v1/tenant/${other}/timeline`, { import_pgdata: fx.pg.dataDir });
  expect(tl.status, JSON.stringify(tl.json)).toBe(201);
  otherTimeline = String(tl.json["timeline_id"]);
}, 120_000);

afterAll(async () => {
  await fx?.destroy();
});

/** Until the server has closed every connection of the previous test. */
async function noConnections(): Promise<void> {
  await within(
    (async () => {
      while (fx.server.pageService.connectionStats().length > 0) await new Promise((r) => setTimeout(r, 20));
    })(),
    "the server closes the previous connections",
  );
}

async function metric(name: string, reason: string): Promise<number> {
  const text = Buffer.from((await fx.http("GET", "/metrics")).bytes).toString("utf8");
  const m = new RegExp(`^${name}\\{reason="${reason}"\\} (\\d+)`, "m").exec(text);
  expect(m, `${name}{reason="${reason}"} in /metrics`).not.toBeNull();
  return Number(m![1]);
}

/** The next frame must be a FATAL ErrorResponse with `sqlstate`; then the connection closes. */
async function expectFatal(c: PageServiceClient, sqlstate: string, message: RegExp): Promise<void> {
  const f = await within(c.recv(), `FATAL ${sqlstate} from the server`);
  expect(f.type).toBe(MSG.ErrorResponse);
  const fields = parseErrorFields(f.body);
  expect(fields.get("S")).toBe("FATAL");
  expect(fields.get("C")).toBe(sqlstate);
  expect(fields.get("M")).toMatch(message);
  await expect(within(c.recv(), "the close after the FATAL")).rejects.toThrow(/connection closed/);
}

async function refusedWith(p: Promise<unknown>, sqlstate: string, message: RegExp): Promise<void> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e, String(e)).toBeInstanceOf(PageServiceError);
  expect((e as PageServiceError).sqlstate, String(e)).toBe(sqlstate);
  expect((e as Error).message).toMatch(message);
}

describe("a client that doesn't read its answers", () => {
  it("2,000 pipelined GetSlruSegment, never read: the server queues at most its limit plus one answer; others are served", async () => {
    await noConnections();
    // Another connection, to check the segment is whole and to be served while the first is stuck.
    const c2 = await fx.client(apiToken);
    const sock: Socket = connect(fx.server.pgPort, "127.0.0.1");
    const connected = new Promise((resolve, reject) => sock.once("connect", resolve).once("error", reject));
    try {
      const s2 = await c2.pagestream(fx.tenant, fx.timeline, 2);
      const segment = await s2.getSlruSegment(0, 0, LATEST_LSN, fx.lsn);
      expect(segment.length).toBe(SLRU_PAGES * 8192);

      await within(connected, "connect");
      sock.pause(); // read nothing
      const one = copyData(encodeRequest({ kind: "get_slru_segment", hdr: header(0, LATEST_LSN, fx.lsn), slruKind: 0, segno: 0 }, 2));
      const N = 2000;
      sock.write(
        Buffer.concat([startupMessage({ user: "drain" }), passwordMessage(apiToken), query(`pagestream_v2 ${fx.tenant} ${fx.timeline}`)]),
      );
      sock.write(Buffer.concat(Array.from({ length: N }, () => one)));
      // Until the server is stuck on it: output queued, nothing more read or written for a while.
      const stuck = (): ReturnType<typeof fx.server.pageService.connectionStats>[number] | undefined =>
        fx.server.pageService.connectionStats().find((s) => s.bytes_read >= N * one.length);
      await within(
        (async () => {
          let last = "";
          for (let same = 0; same < 10; ) {
            await new Promise((r) => setTimeout(r, 100));
            const s = stuck();
            const now = s === undefined || s.unwritten_bytes === 0 ? "" : `${s.bytes_read}/${s.bytes_written}`;
            same = now !== "" && now === last ? same + 1 : 0;
            last = now;
          }
        })(),
        "the server stops serving the connection that reads nothing",
      );
      // It took every request (54 KB, below its input bound), answered a few and queued at most
      // the limit plus one answer.
      const s = stuck()!;
      expect(s.bytes_written).toBeLessThan((N / 4) * segment.length);
      expect(s.unwritten_bytes).toBeGreaterThan(0);
      expect(s.peak_unwritten_bytes).toBeLessThanOrEqual(SOCKET_LIMITS.max_unwritten_bytes + LARGEST_ANSWER_BYTES);

      // Meanwhile the other connection is served.
      expect(Buffer.from(await s2.getSlruSegment(0, 0, LATEST_LSN, fx.lsn)).equals(Buffer.from(segment))).toBe(true);
      expect(await s2.nblocks(fx.rel, LATEST_LSN, fx.lsn)).toBeGreaterThan(0);
      await s2.close();
    } finally {
      sock.destroy();
      c2.close();
    }
  });
});

describe("connection caps", () => {
  it(`a tenant's ${PER_TENANT + 1}th connection gets FATAL 53300 and is closed; its others and other tenants keep working`, async () => {
    await noConnections();
    const refusedBefore = await metric("pageserver_page_service_connections_refused_total", "tenant_limit");
    const held: PageServiceClient[] = [];
    try {
      // Tenant tokens count at login.
      for (let i = 0; i < PER_TENANT; i++) held.push(await fx.client(tenantToken));
      expect(fx.server.pageService.tenantConnections(fx.tenant as TenantId)).toBe(PER_TENANT);
      await refusedWith(fx.client(tenantToken), "53300", new RegExp(`too many connections for tenant ${fx.tenant}: at most ${PER_TENANT}`));
      // An API token counts for the tenant of its command: refused there, and closed.
      const api = await fx.client(apiToken);
      held.push(api);
      api.write(query(`pagestream_v3 ${fx.tenant} ${fx.timeline}`));
      await expectFatal(api, "53300", /too many connections for tenant/);
      // …while another tenant is served on the same kind of connection.
      const api2 = await fx.client(apiToken);
      held.push(api2);
      const o = await api2.pagestream(other, otherTimeline, 3);
      expect(await o.nblocks(fx.rel, LATEST_LSN, fx.lsn)).toBeGreaterThan(0);
      await o.close();
      // The tenant's connections still work.
      for (const c of held.slice(0, PER_TENANT)) {
        const s = await c.pagestream(fx.tenant, fx.timeline, 2);
        expect(await s.exists(fx.rel, LATEST_LSN, fx.lsn)).toBe(true);
        await s.close();
      }
      expect(await metric("pageserver_page_service_connections_refused_total", "tenant_limit")).toBe(refusedBefore + 2);
      // One closes: a new one is admitted.
      held.shift()!.close();
      await within(
        (async () => {
          while (fx.server.pageService.tenantConnections(fx.tenant as TenantId) >= PER_TENANT) await new Promise((r) => setTimeout(r, 20));
        })(),
        "the closed connection gives its slot back",
      );
      const again = await fx.client(tenantToken);
      held.push(again);
      const s = await again.pagestream(fx.tenant, fx.timeline, 2);
      expect(await s.exists(fx.rel, LATEST_LSN, fx.lsn)).toBe(true);
      await s.close();
    } finally {
      for (const c of held) c.close();
    }
  });

  it(`a peer's ${PER_PEER + 1}th connection gets FATAL 53300 at once and is closed; its others keep working`, async () => {
    await noConnections();
    const refusedBefore = await metric("pageserver_page_service_connections_refused_total", "peer_limit");
    const held: PageServiceClient[] = [];
    try {
      for (let i = 0; i < PER_PEER; i++) held.push(await fx.client(apiToken));
      await refusedWith(fx.client(apiToken), "53300", new RegExp(`too many connections from 127\\.0\\.0\\.1: at most ${PER_PEER}`));
      // Half on each tenant (each tenant's cap is 3).
      for (const [i, c] of held.entries()) {
        const s = i % 2 === 0 ? await c.pagestream(other, otherTimeline, 3) : await c.pagestream(fx.tenant, fx.timeline, 3);
        expect(await s.exists(fx.rel, LATEST_LSN, fx.lsn)).toBe(true);
        await s.close();
      }
      expect(await metric("pageserver_page_service_connections_refused_total", "peer_limit")).toBe(refusedBefore + 1);
    } finally {
      for (const c of held) c.close();
    }
  });
});

describe("token expiry", () => {
  it("a connection whose token's exp passes gets FATAL 28000 and is closed, also inside a pagestream session", async () => {
    await noConnections();
    const closedBefore = await metric("pageserver_page_service_connections_closed_total", "token_expired");
    // exp is in whole seconds: 3 to 4 s from now (time for the login and one request first).
    const short = await token({ scope: "tenant", tenant_id: fx.tenant }, Math.floor(Date.now() / 1000) + 4);
    const c = await fx.client(short);
    try {
      const s = await c.pagestream(fx.tenant, fx.timeline, 3);
      expect(await s.exists(fx.rel, LATEST_LSN, fx.lsn)).toBe(true);
      // Nothing in flight: the next frame from the server is the FATAL.
      await expectFatal(c, "28000", /the token expired at/);
    } finally {
      c.close();
    }
    expect(await metric("pageserver_page_service_connections_closed_total", "token_expired")).toBe(closedBefore + 1);
    await refusedWith(fx.client(short), "28000", /token expired/);
  });
});

describe("logs", () => {
  it("a 5,000-character user and application_name are logged cut to 64 characters", async () => {
    await noConnections();
    const user = "u".repeat(5000);
    const app = "a".repeat(4000);
    const sock = connect(fx.server.pgPort, "127.0.0.1");
    try {
      await within(new Promise((resolve, reject) => sock.once("connect", resolve).once("error", reject)), "connect");
      const closed = new Promise((resolve) => sock.once("close", resolve));
      sock.on("data", () => {});
      // A bad password: the server logs the failure with the connection's user and application_name.
      sock.write(Buffer.concat([startupMessage({ user, application_name: app }), passwordMessage("not.a.jwt")]));
      await within(closed, "the server closes the connection");
    } finally {
      sock.destroy();
    }
    const mine = logLines.filter((l) => l.includes('"user":"uuuu'));
    expect(mine.length).toBeGreaterThan(0);
    for (const l of mine) {
      const j = JSON.parse(l) as { user: string; application_name: string };
      expect(j.user).toBe(`${"u".repeat(MAX_LOGGED_PARAM_CHARS)}… (5000 chars)`);
      expect(j.application_name).toBe(`${"a".repeat(MAX_LOGGED_PARAM_CHARS)}… (4000 chars)`);
      expect(l.length).toBeLessThan(1000);
    }
  });
});

describe("settings", () => {
  it("come from pageserver.json (defaults: 10 min, 512 per tenant, 1024 per peer) and refuse bad values", () => {
    expect(DEFAULT_NODE_CONFIG.page_service_idle_timeout_ms).toBe(600_000);
    expect(DEFAULT_NODE_CONFIG.page_service_max_connections_per_tenant).toBe(512);
    expect(DEFAULT_NODE_CONFIG.page_service_max_connections_per_peer).toBe(1024);
    const dir = mkdtempSync(join(tmpdir(), "ps-pagesvc-conf-"));
    try {
      const file = join(dir, "pageserver.json");
      writeFileSync(
        file,
        JSON.stringify({
          page_service_idle_timeout_ms: 30_000,
          page_service_max_connections_per_tenant: 8,
          page_service_max_connections_per_peer: 16,
        }),
      );
      const c = loadNodeConfig({ workdir: dir });
      expect([c.page_service_idle_timeout_ms, c.page_service_max_connections_per_tenant, c.page_service_max_connections_per_peer]).toEqual([
        30_000, 8, 16,
      ]);
      writeFileSync(file, JSON.stringify({ page_service_max_connections_per_peer: 0 }));
      expect(() => loadNodeConfig({ workdir: dir })).toThrow(/page_service_max_connections_per_peer: expected a positive integer/);
      writeFileSync(file, JSON.stringify({ page_service_idle_timeout_ms: 2 ** 31 }));
      expect(() => loadNodeConfig({ workdir: dir })).toThrow(/page_service_idle_timeout_ms: at most 2147483647/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
