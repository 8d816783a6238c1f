/**
 * A pageserver (in-process Server, HTTP and page service on free ports, silent logger) with
 * one tenant whose timeline is a real PostgreSQL 15 data directory imported after a clean
 * shutdown: a table `t` of `rows` rows, CHECKPOINT, pg_ctl stop, `import_pgdata`. Keeps what
 * the page service tests compare against: the table's relfilenode and database oid, its
 * file bytes, the datadir path, and the timeline's LSN.
 *
 *   const fx = await PageServiceFixture.start({ rows: 5000 });
 *   try { … fx.client() … } finally { await fx.destroy(); }
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Logger, pino } from "pino";
import { PageServiceClient } from "../../src/client/page_service_client.js";
import { type ConfigOverrides, loadNodeConfig } from "../../src/main/config.js";
import { Server } from "../../src/main/server.js";
import { type Lsn, parseLsn } from "../../src/types/lsn.js";
import { PgInstance } from "./postgres.js";

export interface FixtureOptions {
  rows?: number;
  /** PEM public key file contents: turns auth on (then `httpToken` is used for the setup). */
  authPublicKeyPem?: string;
  httpToken?: string;
  tenantConfig?: Record<string, unknown>;
  /** Node settings besides the fixture's own (workdir, listen addresses, auth, import root). */
  nodeConfig?: ConfigOverrides;
  /** The server's logger (default: silent). */
  logger?: Logger;
  /** The CA of the node's certificate (nodeConfig tls_cert_file): HTTP calls go over HTTPS verified against it. */
  ca?: Buffer;
  /** Runs on the stopped source PostgreSQL before its data directory is imported. */
  beforeImport?: (pg: PgInstance) => Promise<void>;
}

export interface HttpReply {
  status: number;
  json: Record<string, unknown>;
  bytes: Uint8Array;
}

/** One request; with `ca`, over HTTPS verified against it (the node has a certificate). */
async function httpCall(
  port: number,
  token: string | undefined,
  method: string,
  path: string,
  body?: unknown,
  ca?: Buffer,
): Promise<HttpReply> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers["authorization"] = `Bearer ${token}`;
  const payload = body === undefined ? undefined : JSON.stringify(body);
  let status: number;
  let bytes: Uint8Array;
  if (ca === undefined) {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, { method, headers, body: payload });
    status = r.status;
    bytes = new Uint8Array(await r.arrayBuffer());
  } else {
    [status, bytes] = await new Promise<[number, Uint8Array]>((resolve, reject) => {
      const req = httpsRequest({ host: "127.0.0.1", port, path, method, headers, ca }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve([res.statusCode ?? 0, new Uint8Array(Buffer.concat(chunks))]));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end(payload);
    });
  }
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(Buffer.from(bytes).toString("utf8")) as Record<string, unknown>;
  } catch {
    // not JSON (a tar)
  }
  return { status, json, bytes };
}

export class PageServiceFixture {
  readonly server: Server;
  readonly pg: PgInstance;
  readonly workdir: string;
  readonly tenant: string;
  readonly timeline: string;
  readonly lsn: Lsn;
  readonly dbOid: number;
  readonly relfilenode: number;
  readonly httpToken: string | undefined;
  readonly ca: Buffer | undefined;

  private constructor(f: {
    server: Server;
    pg: PgInstance;
    workdir: string;
    tenant: string;
    timeline: string;
    lsn: Lsn;
    dbOid: number;
    relfilenode: number;
    httpToken: string | undefined;
    ca: Buffer | undefined;
  }) {
    this.server = f.server;
    this.pg = f.pg;
    this.workdir = f.workdir;
    this.tenant = f.tenant;
    this.timeline = f.timeline;
    this.lsn = f.lsn;
    this.dbOid = f.dbOid;
    this.relfilenode = f.relfilenode;
    this.httpToken = f.httpToken;
    this.ca = f.ca;
  }

  static async start(opts: FixtureOptions = {}): Promise<PageServiceFixture> {
    const pg = await PgInstance.start();
    const workdir = mkdtempSync(join(tmpdir(), "ps-pagesvc-"));
    let server: Server | null = null;
    try {
      const rows = opts.rows ?? 2000;
      await pg.psql(
        `CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, repeat('x', 100) || g FROM generate_series(1, ${rows}) g; VACUUM t; CHECKPOINT;`,
      );
      const [dbOid, relfilenode] = (
        await pg.psql("SELECT d.oid, c.relfilenode FROM pg_database d, pg_class c WHERE d.datname = 'postgres' AND c.relname = 't'")
      )
        .split("|")
        .map(Number) as [number, number];
      await pg.stop();
      if (opts.beforeImport !== undefined) await opts.beforeImport(pg);
      let authPath: string | undefined;
      if (opts.authPublicKeyPem !== undefined) {
        authPath = join(workdir, "auth_public_key.pem");
        writeFileSync(authPath, opts.authPublicKeyPem);
      }
      server = new Server(
        loadNodeConfig({
          workdir,
          listen: "127.0.0.1:0",
          listen_pg: "127.0.0.1:0",
          import_pgdata_root: tmpdir(),
          ...(authPath ? { auth_public_key: authPath } : {}),
          ...(opts.nodeConfig ?? {}),
        }),
        opts.logger ?? pino({ level: "silent" }),
      );
      await server.start();
      const http = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
        const r = await httpCall(server!.port, opts.httpToken, method, path, body, opts.ca);
        if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.json)}`);
        return r.json;
      };
      const config = { compaction_period: 0, gc_period: 0, ...(opts.tenantConfig ?? {}) };
      const tenant = String((await http("POST", "/v1/tenant", { config }))["id"]);
      const tl = await http("POST", `/v1/tenant/${tenant}/timeline`, { import_pgdata: pg.dataDir });
      return new PageServiceFixture({
        server,
        pg,
        workdir,
        tenant,
        timeline: String(tl["timeline_id"]),
        lsn: parseLsn(String(tl["last_record_lsn"])),
        dbOid,
        relfilenode,
        httpToken: opts.httpToken,
        ca: opts.ca,
      });
    } catch (e) {
      if (server !== null) await server.stop();
      await pg.destroy();
      rmSync(workdir, { recursive: true, force: true });
      throw e;
    }
  }

  /** HTTP call to this server (with the setup token, if any). */
  http(method: string, path: string, body?: unknown): Promise<HttpReply> {
    return httpCall(this.server.port, this.httpToken, method, path, body, this.ca);
  }

  /** The table's main fork from the data directory (8192-byte blocks). */
  tableFile(): Uint8Array {
    return readFileSync(join(this.pg.dataDir, "base", String(this.dbOid), String(this.relfilenode)));
  }

  get rel(): { spcnode: number; dbnode: number; relnode: number; forknum: number } {
    return { spcnode: 1663, dbnode: this.dbOid, relnode: this.relfilenode, forknum: 0 };
  }

  client(password?: string): Promise<PageServiceClient> {
    return PageServiceClient.connect({ host: "127.0.0.1", port: this.server.pgPort, ...(password === undefined ? {} : { password }) });
  }

  async destroy(): Promise<void> {
    try {
      await this.server.stop();
    } finally {
      await this.pg.destroy();
      rmSync(this.workdir, { recursive: true, force: true });
    }
  }
}
