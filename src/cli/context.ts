/**
 * What every pagectl command shares: the global options (--server, --pg-server, --token,
 * --ca-file, --pg-bin, --json), the HTTP client built from them, tenants and timelines named by id or
 * by name (a name resolved through the list routes: none or several with it is an error), and
 * output: a table or record for humans on stdout, or one JSON document for machines
 * (--json); notes for humans go to stderr so stdout stays parseable.
 */
import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { PageserverHttpClient } from "../client/http_client.js";
import { ConflictError, NotFoundError } from "../types/errors.js";
import { argHostPort, type Ref, UsageError } from "./args.js";

export const DEFAULT_SERVER = "http://127.0.0.1:9898";
export const DEFAULT_PG_SERVER = "127.0.0.1:6400";

export interface GlobalOptions {
  server: string;
  pgServer: string;
  token?: string;
  /** PEM CA file: https:// servers and the page service (then over TLS) are verified against it. */
  caFile?: string;
  /** The PostgreSQL 15 binaries' directory (--pg-bin / PG_BIN). */
  pgBin?: string;
  json?: boolean;
}

export class Cli {
  readonly opts: GlobalOptions;
  private api_: PageserverHttpClient | null = null;
  private ca_: Buffer | null = null;

  constructor(opts: GlobalOptions) {
    this.opts = opts;
  }

  get api(): PageserverHttpClient {
    this.api_ ??= this.httpClient(this.opts.server);
    return this.api_;
  }

  /** An HTTP client of `url` with the global options (token, CA). */
  httpClient(url: string): PageserverHttpClient {
    const ca = this.ca;
    return new PageserverHttpClient({ url, token: this.opts.token, ...(ca === undefined ? {} : { ca }) });
  }

  /** The --ca-file's bytes, read once; undefined without the option. */
  get ca(): Buffer | undefined {
    const file = this.opts.caFile;
    // An empty PAGESERVER_CA_FILE is no CA, as an unset one.
    if (file === undefined || file === "") return undefined;
    if (this.ca_ === null) {
      try {
        this.ca_ = readFileSync(file);
      } catch (e) {
        throw new UsageError(`--ca-file ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
      if (!this.ca_.toString("latin1").includes("-----BEGIN CERTIFICATE-----"))
        throw new UsageError(`--ca-file ${file}: not a PEM certificate`);
    }
    return this.ca_;
  }

  /** The page service's address and, with --ca-file, TLS verified against the CA. */
  get pgConnect(): { host: string; port: number; password?: string; tls?: { ca: Buffer } } {
    const { host, port } = this.pgServer;
    const ca = this.ca;
    return {
      host,
      port,
      ...(this.opts.token === undefined ? {} : { password: this.opts.token }),
      ...(ca === undefined ? {} : { tls: { ca } }),
    };
  }

  get pgServer(): { host: string; port: number } {
    return argHostPort("--pg-server", this.opts.pgServer);
  }

  /** The id of the tenant `ref` names (a name: the one tenant of the node with it). */
  async tenantId(ref: Ref): Promise<string> {
    if (ref.id !== undefined) return ref.id;
    const hits = (await this.api.listTenants()).filter((t) => t.name === ref.name);
    return oneOf(
      "tenant",
      ref.name,
      hits.map((t) => t.id),
    );
  }

  /** The id of the timeline `ref` names in `tenantId` (a name: the one timeline of the tenant with it). */
  async timelineId(tenantId: string, ref: Ref): Promise<string> {
    if (ref.id !== undefined) return ref.id;
    const hits = (await this.api.listTimelines(tenantId)).filter((t) => t.name === ref.name);
    return oneOf(
      `timeline of tenant ${tenantId}`,
      ref.name,
      hits.map((t) => t.timeline_id),
    );
  }

  /** A tenant and one of its timelines, each by id or name. */
  async ids(tenant: Ref, timeline: Ref): Promise<[string, string]> {
    const t = await this.tenantId(tenant);
    return [t, await this.timelineId(t, timeline)];
  }

  get json(): boolean {
    return this.opts.json === true;
  }

  /** The result: `machine` as JSON with --json, else `human()` (a table, a record, a line). */
  print(machine: unknown, human: () => string): void {
    const text = this.json ? JSON.stringify(machine, null, 2) : human();
    if (text.length > 0) process.stdout.write(`${text}\n`);
  }

  /** A remark for a human (what was done, where a file went): stderr, never with --json. */
  note(line: string): void {
    if (!this.json) process.stderr.write(`${line}\n`);
  }
}

/** The Cli for a command's action (its options merged with the program's). */
export function cliOf(cmd: Command): Cli {
  return new Cli(cmd.optsWithGlobals<GlobalOptions>());
}

function oneOf(what: string, name: string, ids: readonly string[]): string {
  if (ids.length === 1) return ids[0]!;
  if (ids.length === 0) throw new NotFoundError(`no ${what} is named '${name}'`);
  // The server keeps names unique; two hits mean an older server or a race with a rename.
  throw new ConflictError(`the name '${name}' is ambiguous: ${ids.length} ${what}s have it (${ids.join(", ")}): use the id`);
}
