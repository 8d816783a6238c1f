/**
 * `pagectl doctor [--source CONNSTR]`: what stands between an operator and a working set-up,
 * one line per check, `ok` or `FAIL` and, on failure, the one-line fix:
 * - the node: reachable (GET /v1/status), its version against pagectl's, auth with the given
 *   token (GET /v1/tenant), its remote storage when it has one (GET /v1/remote_storage: the
 *   node HEADs a key that does not exist; "not found" means the bucket answered);
 * - the PostgreSQL 15 binaries (--pg-bin / PG_BIN, else pg_config, else Debian's path);
 * - with --source: the source answers, is PostgreSQL 15, wal_level replica or logical,
 *   max_wal_senders and max_replication_slots above 0, the role may replicate (REPLICATION or
 *   superuser), and pg_hba.conf admits a replication connection (IDENTIFY_SYSTEM) from here.
 * Checks that need an earlier one (the node's version after it is reachable) are left out when
 * it failed. Any failure: exit 1 after the report.
 */
import type { Command } from "commander";
import pg from "pg";
import { HttpApiError } from "../client/http_client.js";
import { PageserverError } from "../types/errors.js";
import { type Cli, cliOf } from "./context.js";
import { findPgBinDir, pgVersionOf } from "./endpoint.js";

const SOURCE_CONNECT_TIMEOUT_MS = 10_000;

export interface Check {
  check: string;
  ok: boolean;
  detail: string;
  /** What to do about a failure (null when ok). */
  fix: string | null;
}

const pass = (check: string, detail: string): Check => ({ check, ok: true, detail, fix: null });
const fail = (check: string, detail: string, fix: string): Check => ({ check, ok: false, detail, fix });
const messageOf = (e: unknown): string => (e instanceof Error ? e.message : String(e));

async function nodeChecks(cli: Cli, pagectlVersion: string): Promise<Check[]> {
  const url = cli.api.url;
  let version: string;
  try {
    const s = await cli.api.status();
    version = s.version;
  } catch (e) {
    return [fail("node", `${url} does not answer: ${messageOf(e)}`, "start the pageserver, or point --server (PAGESERVER_URL) at it")];
  }
  const out = [pass("node", `${url} answers`)];
  out.push(
    version === pagectlVersion
      ? pass("node version", version)
      : fail("node version", `the node runs ${version}, this pagectl is ${pagectlVersion}`, "use the pagectl of the node's release"),
  );
  const tokenGiven = cli.opts.token !== undefined && cli.opts.token !== "";
  let authOk = true;
  try {
    await cli.api.listTenants();
    out.push(pass("auth", tokenGiven ? "the token is accepted" : "auth is off on the node (no token needed)"));
  } catch (e) {
    if (e instanceof HttpApiError && e.code === "forbidden") {
      out.push(pass("auth", "the token is accepted, in a tenant's scope (management routes are refused)"));
    } else if (e instanceof HttpApiError && e.code === "unauthorized") {
      authOk = false;
      out.push(
        fail(
          "auth",
          `${tokenGiven ? "the token is refused" : "the node wants a token"}: ${e.message}`,
          tokenGiven ? "use a JWT signed by the key in the node's auth_public_key, not expired" : "pass --token JWT (or PAGESERVER_TOKEN)",
        ),
      );
    } else {
      authOk = false;
      out.push(fail("auth", messageOf(e), "see the node's log"));
    }
  }
  if (!authOk) return out;
  try {
    const r = await cli.api.remoteStorage();
    if (!r.configured) out.push(pass("remote storage", "none configured (tenants stay on this node)"));
    else if (r.reachable === true) out.push(pass("remote storage", `${r.description} answers`));
    else
      out.push(
        fail(
          "remote storage",
          `${r.description} does not answer the node: ${r.error}`,
          "check the node's remote_storage setting, its credentials and that the bucket is reachable from the node",
        ),
      );
  } catch (e) {
    // An older node has no such route: nothing to check there.
    if (e instanceof HttpApiError && e.code === "not_found") out.push(pass("remote storage", "the node does not report it"));
    else if (e instanceof HttpApiError && e.code === "forbidden")
      out.push(pass("remote storage", "not shown to a tenant's token (a management token sees it)"));
    else out.push(fail("remote storage", messageOf(e), "see the node's log"));
  }
  return out;
}

function binaryCheck(cli: Cli): Check {
  try {
    const dir = findPgBinDir(cli.opts.pgBin);
    return pass("postgres binaries", `${dir} (${pgVersionOf(dir) ?? "?"})`);
  } catch (e) {
    return fail(
      "postgres binaries",
      messageOf(e),
      "install PostgreSQL 15 (apt install postgresql-15), or pass --pg-bin DIR (PG_BIN) naming its bin directory",
    );
  }
}

async function sourceChecks(connstr: string): Promise<Check[]> {
  const client = new pg.Client({ connectionString: connstr, connectionTimeoutMillis: SOURCE_CONNECT_TIMEOUT_MS });
  try {
    await client.connect();
  } catch (e) {
    return [
      fail(
        "source",
        `cannot connect: ${messageOf(e)}`,
        "check the connection string, that PostgreSQL runs there and that pg_hba.conf admits this role",
      ),
    ];
  }
  const out: Check[] = [];
  try {
    const row = (
      await client.query<{ v: string; wal_level: string; senders: string; slots: string; role: string; may: boolean }>(
        `SELECT current_setting('server_version_num') AS v, current_setting('wal_level') AS wal_level,
                current_setting('max_wal_senders') AS senders, current_setting('max_replication_slots') AS slots,
                current_user AS role, (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS may`,
      )
    ).rows[0]!;
    const restart = "then restart PostgreSQL";
    const v = Number(row.v);
    out.push(
      v >= 150000 && v < 160000
        ? pass("source version", `PostgreSQL ${Math.floor(v / 10000)}.${v % 100}`)
        : fail("source version", `server_version_num ${row.v}: the pageserver reads PostgreSQL 15 only`, "use a PostgreSQL 15 source"),
    );
    out.push(
      row.wal_level === "replica" || row.wal_level === "logical"
        ? pass("source wal_level", row.wal_level)
        : fail("source wal_level", `${row.wal_level}: replica or logical needed`, `ALTER SYSTEM SET wal_level = replica; ${restart}`),
    );
    out.push(
      Number(row.senders) > 0
        ? pass("source max_wal_senders", row.senders)
        : fail(
            "source max_wal_senders",
            "0: the pageserver streams through a WAL sender",
            `ALTER SYSTEM SET max_wal_senders = 10; ${restart}`,
          ),
    );
    out.push(
      Number(row.slots) > 0
        ? pass("source max_replication_slots", row.slots)
        : fail(
            "source max_replication_slots",
            "0: the pageserver keeps its place in a slot",
            `ALTER SYSTEM SET max_replication_slots = 10; ${restart}`,
          ),
    );
    out.push(
      row.may
        ? pass("source role", `${row.role} may replicate`)
        : fail("source role", `${row.role} has neither REPLICATION nor superuser`, `ALTER ROLE "${row.role}" REPLICATION;`),
    );
  } catch (e) {
    out.push(fail("source settings", messageOf(e), "connect as a role that may read the settings (a superuser)"));
  } finally {
    await client.end().catch(() => undefined);
  }
  // The pageserver's own connection is a physical replication one: pg_hba.conf treats it apart.
  const repl = new pg.Client({
    connectionString: connstr,
    connectionTimeoutMillis: SOURCE_CONNECT_TIMEOUT_MS,
    replication: true,
  } as pg.ClientConfig);
  try {
    await repl.connect();
    const r = await repl.query<{ systemid: string }>("IDENTIFY_SYSTEM");
    out.push(pass("source replication connection", `admitted (system ${r.rows[0]?.systemid ?? "?"})`));
  } catch (e) {
    out.push(
      fail(
        "source replication connection",
        `refused from here: ${messageOf(e)}`,
        "add `host replication <role> <pageserver address>/32 scram-sha-256` to pg_hba.conf, then SELECT pg_reload_conf()",
      ),
    );
  } finally {
    await repl.end().catch(() => undefined);
  }
  return out;
}

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent !== null) c = c.parent;
  return c;
}

export function registerDoctorCommands(program: Command): void {
  program
    .command("doctor")
    .description(
      "check the node (reachable, version, auth, remote storage), the PostgreSQL 15 binaries and, with --source, a source's settings",
    )
    .option("--source <connstr>", "also check this PostgreSQL 15 as a WAL source")
    .action(async (o: { source?: string }, cmd: Command) => {
      const cli = cliOf(cmd);
      const checks = [...(await nodeChecks(cli, rootOf(cmd).version() ?? "unknown")), binaryCheck(cli)];
      if (o.source !== undefined) checks.push(...(await sourceChecks(o.source)));
      const width = Math.max(...checks.map((c) => c.check.length));
      cli.print(checks, () =>
        checks
          .map((c) => `${c.ok ? "ok  " : "FAIL"}  ${c.check.padEnd(width)}  ${c.detail}${c.fix === null ? "" : ` — fix: ${c.fix}`}`)
          .join("\n"),
      );
      const failed = checks.filter((c) => !c.ok).length;
      if (failed > 0) throw new PageserverError("bad_state", `${failed} of ${checks.length} checks failed`);
    });
}
