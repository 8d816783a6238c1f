/**
 * TLS on the page service (issue 18): a node started with tls_cert_file / tls_key_file
 * (certificates made by openssl here: a CA, a server certificate for IP:127.0.0.1) and JWT
 * auth. Our client with the CA (verify-full) logs in with its JWT over TLS and reads pages;
 * a client in clear text is refused with FATAL 28000 naming sslmode=require; a client
 * trusting another CA fails verification before it sends anything. psql's sslmode=verify-full
 * gets through the handshake and the login (then fails: it is not pagestream). A handshake of
 * garbage, bytes sent after SSLRequest before 'S', and a handshake that never comes are
 * closed without harm to the node; the per-peer limit and the idle timeout apply over TLS.
 * A node without a certificate answers SSLRequest 'N' (psql's sslmode=require fails there).
 */
import { spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { connect as netConnect, type Socket } from "node:net";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { fileURLToPath } from "node:url";
import { SignJWT } from "jose";
import { type Logger, pino } from "pino";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PageServiceClient, PageServiceError } from "../src/client/page_service_client.js";
import { LATEST_LSN } from "../src/protocol/pagestream.js";
import { GSSENC_REQUEST_CODE, MSG, parseErrorFields, sslRequest, startupMessage } from "../src/protocol/pg_wire.js";
import { loadNodeConfig } from "../src/main/config.js";
import { PageService } from "../src/main/page_service/page_service.js";
import { loadNodeTls } from "../src/main/tls.js";
import { lsnToString } from "../src/types/lsn.js";
import { PageServiceFixture } from "./support/page_service_fixture.js";
import { makeTestCerts, type TestCerts } from "./support/tls_certs.js";

const PAGECTL = fileURLToPath(new URL("../src/cli/pagectl.ts", import.meta.url));
const PAGESERVER = fileURLToPath(new URL("../src/main/pageserver.ts", import.meta.url));
const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const silent: Logger = pino({ level: "silent" });

let certs: TestCerts;
let fx: PageServiceFixture;
let apiToken: string;
/** Page services of their own (no TLS; TLS with tight limits), sharing the fixture's tenants. */
const extra: PageService[] = [];

beforeAll(async () => {
  certs = makeTestCerts();
  apiToken = await new SignJWT({ scope: "pageserverapi" }).setProtectedHeader({ alg: "EdDSA" }).sign(privateKey);
  fx = await PageServiceFixture.start({
    rows: 300,
    authPublicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    httpToken: apiToken,
    nodeConfig: { tls_cert_file: certs.cert_file, tls_key_file: certs.key_file },
    ca: certs.ca,
  });
}, 120_000);

afterAll(async () => {
  for (const ps of extra) await ps.close();
  await fx?.destroy();
  certs?.remove();
});

/** A second page service on the fixture's tenants: `tls` on or off, with these limits. */
async function pageService(
  tls: boolean,
  limits: { idle_ms?: number; per_peer?: number } = {},
  files = { tls_cert_file: certs.cert_file, tls_key_file: certs.key_file },
): Promise<number> {
  const ps = new PageService(
    fx.server.tenants,
    new Registry(),
    silent,
    () => fx.server.auth,
    {
      page_service_idle_timeout_ms: limits.idle_ms ?? 60_000,
      page_service_max_connections_per_tenant: 100,
      page_service_max_connections_per_peer: limits.per_peer ?? 100,
    },
    null,
    tls ? loadNodeTls(files) : null,
  );
  extra.push(ps);
  return await ps.listen("127.0.0.1", 0);
}

function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: "127.0.0.1", port }, () => resolve(s));
    s.once("error", reject);
  });
}

/** The next chunk the socket receives. */
function nextData(s: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    s.once("data", resolve);
    s.once("close", () => reject(new Error("closed")));
  });
}

function closed(s: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed) resolve();
    else s.once("close", () => resolve());
  });
}

/** A TypeScript entry point (pagectl, pageserver) run to its end. */
async function run(entry: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env["PAGESERVER_CA_FILE"];
  const child = spawn(process.execPath, ["--import", "tsx", entry, ...args], { stdio: ["ignore", "pipe", "pipe"], env });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const code = await new Promise<number>((r) => child.once("close", (c) => r(c ?? -1)));
  return { code, stdout, stderr };
}

/** What psql prints connecting with this conninfo (it runs `SELECT 1`, which the page service refuses). */
async function psql(conninfo: string): Promise<{ code: number; stderr: string }> {
  const r = await fx.pg.run("psql", ["-X", "-w", "-c", "SELECT 1", conninfo]);
  return { code: r.code, stderr: r.stderr };
}

describe("page service over TLS", () => {
  it("our client with the CA logs in with its JWT over TLS and reads pages; /v1/status says tls", async () => {
    const c = await PageServiceClient.connect({ host: "127.0.0.1", port: fx.server.pgPort, password: apiToken, tls: { ca: certs.ca } });
    try {
      const s = await c.pagestream(fx.tenant, fx.timeline, 3);
      expect(await s.exists(fx.rel, LATEST_LSN, fx.lsn)).toBe(true);
      const page = await s.getPage(fx.rel, 0, LATEST_LSN, fx.lsn);
      expect(Buffer.from(page).equals(Buffer.from(fx.tableFile().subarray(0, 8192)))).toBe(true);
      await s.close();
    } finally {
      c.close();
    }
    const status = await fx.http("GET", "/v1/status");
    expect(status.json["tls"]).toBe(true);
  });

  it("a startup in clear text is refused with FATAL 28000 naming sslmode=require", async () => {
    const p = PageServiceClient.connect({ host: "127.0.0.1", port: fx.server.pgPort, password: apiToken });
    await expect(p).rejects.toThrow(/requires TLS: connect with sslmode=require/);
    await p.catch((e: unknown) => expect((e as PageServiceError).sqlstate).toBe("28000"));
  });

  it("a client trusting another CA fails verification", async () => {
    const p = PageServiceClient.connect({ host: "127.0.0.1", port: fx.server.pgPort, password: apiToken, tls: { ca: certs.other_ca } });
    await expect(p).rejects.toThrow(/TLS with 127\.0\.0\.1:\d+: unable to (verify the first|get local issuer) certificate/);
    await p.catch((e: unknown) => expect(e).toBeInstanceOf(PageServiceError));
  });

  it("a certificate that doesn't name the host dialed fails verification (verify-full)", async () => {
    const port = await pageService(true, {}, { tls_cert_file: certs.other_host_cert_file, tls_key_file: certs.other_host_key_file });
    const p = PageServiceClient.connect({ host: "127.0.0.1", port, password: apiToken, tls: { ca: certs.ca } });
    await expect(p).rejects.toThrow(/TLS with 127\.0\.0\.1:\d+: Hostname\/IP does not match certificate's altnames/);
  });

  it("GSSENCRequest gets 'N', then SSLRequest gets 'S' and a TLS handshake", async () => {
    const s = await rawConnect(fx.server.pgPort);
    try {
      const gss = Buffer.alloc(8);
      gss.writeInt32BE(8, 0);
      gss.writeInt32BE(GSSENC_REQUEST_CODE, 4);
      s.write(gss);
      expect((await nextData(s)).toString()).toBe("N");
      s.write(sslRequest());
      expect((await nextData(s)).toString()).toBe("S");
      const t = tlsConnect({ socket: s, ca: certs.ca, host: "127.0.0.1" });
      await new Promise<void>((resolve, reject) => {
        t.once("secureConnect", () => resolve());
        t.once("error", reject);
      });
      expect(t.authorized).toBe(true);
      t.destroy();
    } finally {
      s.destroy();
    }
  });

  it("psql with sslmode=verify-full gets through the handshake and the login; in clear text or with another CA it fails", async () => {
    const base = `host=127.0.0.1 port=${fx.server.pgPort} user=x dbname=postgres password=${apiToken}`;
    const ok = await psql(`${base} sslmode=verify-full sslrootcert=${certs.ca_file}`);
    // Logged in over TLS: the page service answers the query itself, refusing it.
    expect(ok.stderr).toMatch(/unsupported command "SELECT 1"/);
    const clear = await psql(`${base} sslmode=disable`);
    expect(clear.code).not.toBe(0);
    expect(clear.stderr).toMatch(/requires TLS: connect with sslmode=require/);
    const wrongCa = await psql(`${base} sslmode=verify-full sslrootcert=${certs.other_ca_file}`);
    expect(wrongCa.code).not.toBe(0);
    expect(wrongCa.stderr).toMatch(/certificate verify failed/);
  });

  it("garbage instead of a handshake, or bytes after SSLRequest, close that connection only", async () => {
    const before = fx.server.pageService.connectionStats().length;
    const g = await rawConnect(fx.server.pgPort);
    g.write(sslRequest());
    expect((await nextData(g)).toString()).toBe("S");
    g.on("data", () => {});
    g.on("error", () => {});
    g.write("this is not a TLS ClientHello\r\n\r\n");
    await closed(g);
    // SSLRequest and a StartupMessage in one write: the startup must not pass as if encrypted.
    const stuffed = await rawConnect(fx.server.pgPort);
    const got: Buffer[] = [];
    stuffed.on("data", (d: Buffer) => got.push(d));
    stuffed.write(Buffer.concat([sslRequest(), startupMessage({ user: "x", database: "postgres" })]));
    await closed(stuffed);
    const reply = Buffer.concat(got);
    expect(reply[0]).toBe(MSG.ErrorResponse);
    const fields = parseErrorFields(reply.subarray(5, 1 + reply.readInt32BE(1)));
    expect(fields.get("C")).toBe("08P01");
    expect(fields.get("M")).toMatch(/unencrypted data after SSLRequest/);
    // The node goes on serving, and the closed connections are gone from its books.
    const c = await PageServiceClient.connect({ host: "127.0.0.1", port: fx.server.pgPort, password: apiToken, tls: { ca: certs.ca } });
    try {
      const s = await c.pagestream(fx.tenant, fx.timeline, 2);
      expect(await s.nblocks(fx.rel, LATEST_LSN, fx.lsn)).toBeGreaterThan(0);
      await s.close();
      expect(fx.server.pageService.connectionStats().length).toBe(before + 1);
    } finally {
      c.close();
    }
  });

  it("a handshake that never comes is closed by the startup timeout", async () => {
    const s = await rawConnect(fx.server.pgPort);
    s.write(sslRequest());
    expect((await nextData(s)).toString()).toBe("S");
    s.on("data", () => {});
    await closed(s); // STARTUP_TIMEOUT_MS (10 s) later
  }, 30_000);

  it("the per-peer limit and the idle timeout apply over TLS", async () => {
    const port = await pageService(true, { idle_ms: 300, per_peer: 1 });
    const c = await PageServiceClient.connect({ host: "127.0.0.1", port, password: apiToken, tls: { ca: certs.ca } });
    try {
      const second = PageServiceClient.connect({ host: "127.0.0.1", port, password: apiToken, tls: { ca: certs.ca } });
      await expect(second).rejects.toThrow(/too many connections from 127\.0\.0\.1/);
      await second.catch((e: unknown) => expect((e as PageServiceError).sqlstate).toBe("53300"));
      // Idle after the login: FATAL 57P05 over TLS, then the close.
      const f = await c.recv();
      expect(f.type).toBe(MSG.ErrorResponse);
      expect(parseErrorFields(f.body).get("C")).toBe("57P05");
      await expect(c.recv()).rejects.toThrow(/closed/);
    } finally {
      c.close();
    }
  });

  it("a node without a certificate answers SSLRequest 'N': verify-full clients and psql sslmode=require fail", async () => {
    const port = await pageService(false);
    const p = PageServiceClient.connect({ host: "127.0.0.1", port, password: apiToken, tls: { ca: certs.ca } });
    await expect(p).rejects.toThrow(/does not offer TLS/);
    const r = await psql(`host=127.0.0.1 port=${port} user=x dbname=postgres password=${apiToken} sslmode=require`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/server does not support SSL/);
    // In clear text it serves as before.
    const c = await PageServiceClient.connect({ host: "127.0.0.1", port, password: apiToken });
    c.close();
  });
});

describe("pagectl --ca-file", () => {
  it("getpage goes over TLS with the CA; without it the page service refuses", async () => {
    const args = [
      "--server",
      `https://127.0.0.1:${fx.server.port}`,
      "--pg-server",
      `127.0.0.1:${fx.server.pgPort}`,
      "--token",
      apiToken,
      "--json",
      "getpage",
      fx.tenant,
      fx.timeline,
      "--rel",
      `1663/${fx.dbOid}/${fx.relfilenode}`,
      "--blk",
      "0",
      // With the LSN given, pagectl goes straight to the page service (no HTTPS call first).
      "--lsn",
      lsnToString(fx.lsn),
    ];
    const ok = await run(PAGECTL, ["--ca-file", certs.ca_file, ...args]);
    expect(ok.code, ok.stderr).toBe(0);
    const page = Buffer.from((JSON.parse(ok.stdout) as { page_hex: string }).page_hex, "hex");
    expect(page.equals(Buffer.from(fx.tableFile().subarray(0, 8192)))).toBe(true);
    const clear = await run(PAGECTL, args);
    expect(clear.code).toBe(1);
    expect(clear.stderr).toMatch(/^pagectl: the page service requires TLS: connect with sslmode=require.*\(unauthorized\)\n$/);
  }, 60_000);
});

describe("HTTPS with the same certificate", () => {
  it("the HTTP API answers over TLS verified against the CA; clear HTTP gets no reply; pagectl --ca-file lists tenants", async () => {
    const status = await fx.http("GET", "/v1/status");
    expect(status.status).toBe(200);
    expect(status.json["tls"]).toBe(true);
    await expect(fetch(`http://127.0.0.1:${fx.server.port}/v1/status`)).rejects.toThrow();
    const server = ["--server", `https://127.0.0.1:${fx.server.port}`, "--token", apiToken, "--json"];
    const list = await run(PAGECTL, ["--ca-file", certs.ca_file, ...server, "tenant", "list"]);
    expect(list.code, list.stderr).toBe(0);
    expect((JSON.parse(list.stdout) as { id: string }[]).map((t) => t.id)).toContain(fx.tenant);
    const untrusted = await run(PAGECTL, ["--ca-file", certs.other_ca_file, ...server, "tenant", "list"]);
    expect(untrusted.code).not.toBe(0);
    expect(untrusted.stderr).toMatch(/certificate|self.signed|verify/i);
  }, 60_000);
});

describe("tls_cert_file / tls_key_file", () => {
  it("pageserver exits 2 with one line naming the file: one flag alone, a missing file, not PEM", async () => {
    const start = (flags: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
      run(PAGESERVER, ["--workdir", `${certs.dir}/workdir`, "--listen", "127.0.0.1:0", "--listen-pg", "127.0.0.1:0", ...flags]);
    const alone = await start(["--tls-cert", certs.cert_file]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toMatch(
      /^pageserver: tls_cert_file and tls_key_file \(--tls-cert, --tls-key\) go together: give both or neither\n$/,
    );
    const missing = await start(["--tls-cert", `${certs.dir}/nope.pem`, "--tls-key", certs.key_file]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^pageserver: tls_cert_file \/.*\/nope\.pem: cannot read it \(ENOENT\)\n$/);
    const notPem = await start(["--tls-cert", certs.cert_file, "--tls-key", `${certs.dir}/ext.cnf`]);
    expect(notPem.code).toBe(2);
    expect(notPem.stderr).toMatch(/^pageserver: tls_key_file \/.*\/ext\.cnf: not a PEM file\n$/);
  }, 60_000);

  it("go together: one alone is a config error", () => {
    expect(() => loadNodeConfig({ workdir: certs.dir, tls_cert_file: certs.cert_file })).toThrow(
      /tls_cert_file and tls_key_file \(--tls-cert, --tls-key\) go together/,
    );
    expect(() => loadNodeConfig({ workdir: certs.dir, tls_key_file: certs.key_file })).toThrow(/go together/);
    const c = loadNodeConfig({ workdir: certs.dir, tls_cert_file: certs.cert_file, tls_key_file: certs.key_file });
    expect([c.tls_cert_file, c.tls_key_file]).toEqual([certs.cert_file, certs.key_file]);
    // From pageserver.json too: one there and the other by flag is both.
    const workdir = join(certs.dir, "json");
    mkdirSync(workdir);
    writeFileSync(join(workdir, "pageserver.json"), JSON.stringify({ tls_cert_file: certs.cert_file }));
    expect(() => loadNodeConfig({ workdir })).toThrow(/go together/);
    expect(loadNodeConfig({ workdir, tls_key_file: certs.key_file }).tls_cert_file).toBe(certs.cert_file);
  });

  it("a missing file, a file that isn't PEM, or a key of another certificate is an error naming the file", () => {
    const load = (cert: string, key: string): unknown => loadNodeTls({ tls_cert_file: cert, tls_key_file: key });
    const missing = `${certs.dir}/nope.pem`;
    expect(() => load(missing, certs.key_file)).toThrow(new RegExp(`tls_cert_file ${missing}: cannot read it \\(ENOENT\\)`));
    expect(() => load(certs.cert_file, missing)).toThrow(new RegExp(`tls_key_file ${missing}: cannot read it \\(ENOENT\\)`));
    expect(() => load(`${certs.dir}/ext.cnf`, certs.key_file)).toThrow(/tls_cert_file .*ext\.cnf: not a PEM file/);
    expect(() => load(certs.key_file, certs.key_file)).toThrow(/tls_cert_file .*server\.key: not a PEM certificate/);
    expect(() => load(certs.cert_file, certs.cert_file)).toThrow(/tls_key_file .*server\.pem: not a PEM private key/);
    expect(() => load(certs.cert_file, `${certs.dir}/ca.key`)).toThrow(/tls_key_file .*ca\.key does not go with tls_cert_file/);
    const ok = loadNodeTls({ tls_cert_file: certs.cert_file, tls_key_file: certs.key_file });
    expect(ok?.cert.equals(certs.cert)).toBe(true);
    expect(loadNodeTls({ tls_cert_file: null, tls_key_file: null })).toBeNull();
  });
});
