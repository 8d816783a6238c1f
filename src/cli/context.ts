/**
 * What every pagectl command shares: the global options (--server, --pg-server, --token,
 * --json), the HTTP client built from them, and output: a table or record for humans on
 * stdout, or one JSON document for machines (--json); notes for humans go to stderr so
 * stdout stays parseable.
 */
import type { Command } from "commander";
import { PageserverHttpClient } from "../client/http_client.js";
import { argHostPort } from "./args.js";

export const DEFAULT_SERVER = "http://127.0.0.1:9898";
export const DEFAULT_PG_SERVER = "127.0.0.1:6400";

export interface GlobalOptions {
  server: string;
  pgServer: string;
  token?: string;
  json?: boolean;
}

export class Cli {
  readonly opts: GlobalOptions;
  private api_: PageserverHttpClient | null = null;

  constructor(opts: GlobalOptions) {
    this.opts = opts;
  }

  get api(): PageserverHttpClient {
    this.api_ ??= new PageserverHttpClient({ url: this.opts.server, token: this.opts.token });
    return this.api_;
  }

  get pgServer(): { host: string; port: number } {
    return argHostPort("--pg-server", this.opts.pgServer);
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
