#!/usr/bin/env node
/**
 * pagectl: the pageserver's command line (issue 11). Every HTTP API action, base backups and
 * pages, and endpoints (a stock PostgreSQL 15 started on a branch, streaming back into it).
 * One file per command group: tenant_commands, timeline_commands, data_commands,
 * node_commands, endpoint_commands, remote_commands, doctor_commands. A tenant or timeline
 * argument is its id or its name (context.ts resolves names through the list routes).
 *
 * Exit codes: 0 done; 1 the action failed (one line on stderr: `pagectl: <message> (<code>)`,
 * the code being the server's error code, e.g. not_found); 2 a usage error (unknown command
 * or option, a malformed id / LSN / time: nothing was sent).
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, Option } from "commander";
import { PageserverError } from "../types/errors.js";
import { UsageError } from "./args.js";
import { DEFAULT_PG_SERVER, DEFAULT_SERVER } from "./context.js";
import { registerDataCommands } from "./data_commands.js";
import { registerDoctorCommands } from "./doctor_commands.js";
import { registerEndpointCommands } from "./endpoint_commands.js";
import { registerNodeCommands } from "./node_commands.js";
import { registerRemoteCommands } from "./remote_commands.js";
import { registerTenantCommands } from "./tenant_commands.js";
import { registerTimelineCommands } from "./timeline_commands.js";

export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

/** The package's version: package.json two levels up (src/cli) or three (dist/src/cli). */
function packageVersion(): string {
  for (const rel of ["../../package.json", "../../../package.json"]) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (!existsSync(path)) continue;
    const pkg = JSON.parse(readFileSync(path, "utf8")) as { name?: string; version?: string };
    if (pkg.name === "pageserver" && typeof pkg.version === "string") return pkg.version;
  }
  return "unknown";
}

export function buildProgram(): Command {
  const program = new Command("pagectl")
    .description("control a pageserver: tenants, timelines, base backups, pages, endpoints")
    .version(packageVersion(), "-V, --version")
    .addOption(new Option("--server <url>", "the pageserver's HTTP API").env("PAGESERVER_URL").default(DEFAULT_SERVER))
    .addOption(new Option("--pg-server <host:port>", "the page service, for getpage").env("PAGESERVER_PG").default(DEFAULT_PG_SERVER))
    .addOption(new Option("--token <jwt>", "a JWT when the server's auth is on").env("PAGESERVER_TOKEN"))
    .addOption(
      new Option("--ca-file <file>", "PEM CA to verify the server's certificate: https:// --server, and TLS to the page service").env(
        "PAGESERVER_CA_FILE",
      ),
    )
    .addOption(
      new Option("--pg-bin <dir>", "the PostgreSQL 15 binaries (default: pg_config --bindir, else /usr/lib/postgresql/15/bin)").env(
        "PG_BIN",
      ),
    )
    .option("--json", "print results as JSON (for scripts)")
    .showHelpAfterError("(pagectl --help for usage)")
    .configureOutput({ outputError: (str, write) => write(`pagectl: ${str.replace(/^error: /, "")}`) })
    // Commander's own usage errors become exceptions (exit 2 below), in every subcommand.
    .exitOverride();
  registerTenantCommands(program);
  registerTimelineCommands(program);
  registerDataCommands(program);
  registerEndpointCommands(program);
  registerNodeCommands(program);
  registerRemoteCommands(program);
  registerDoctorCommands(program);
  return program;
}

/** Run pagectl on `argv` (without node and the script); the exit code. */
export async function runPagectl(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here too, with exit code 0.
      return e.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    if (e instanceof UsageError) {
      process.stderr.write(`pagectl: ${e.message} (usage)\n`);
      return EXIT_USAGE;
    }
    if (e instanceof PageserverError) {
      process.stderr.write(`pagectl: ${e.message} (${e.code})\n`);
      return EXIT_FAILED;
    }
    const err = e as NodeJS.ErrnoException;
    process.stderr.write(
      `pagectl: ${err instanceof Error ? err.message : String(e)} (${typeof err.code === "string" ? err.code : "error"})\n`,
    );
    return EXIT_FAILED;
  }
}

function isMain(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) {
  // exitCode, not exit(): stdout is flushed before the process ends.
  process.exitCode = await runPagectl(process.argv.slice(2));
}
