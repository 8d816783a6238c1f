/**
 * `pagectl remote check <tenant_id> <timeline_id> [--verify-checksums]`: the timeline's index
 * in remote storage against the bucket's objects (the server's GET …/remote_check). Exit 1
 * when something is missing, mismatched, orphaned or unknown, so scripts can rely on it.
 */
import type { Command } from "commander";
import { PageserverError } from "../types/errors.js";
import { argRef } from "./args.js";
import { cliOf } from "./context.js";
import { formatRecord } from "./table.js";

export function registerRemoteCommands(program: Command): void {
  const remote = program.command("remote").description("remote storage of a timeline");
  remote
    .command("check")
    .description("the timeline's index against its objects in remote storage")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .option("--verify-checksums", "read every object named by the index and check its CRC32C")
    .action(async (tenant: string, timeline: string, o: { verifyChecksums?: boolean }, cmd: Command) => {
      const cli = cliOf(cmd);
      const refs = [argRef("tenant", tenant), argRef("timeline", timeline)] as const;
      const r = await cli.api.remoteCheck(...(await cli.ids(...refs)), o.verifyChecksums === true);
      cli.print(r, () =>
        formatRecord({
          ok: r.ok,
          index: r.index_key ?? "(none)",
          layers_named: r.layers_named,
          missing: r.missing.length,
          size_mismatch: r.size_mismatch.length,
          checksum_mismatch: r.checksum_mismatch.length,
          orphans: r.orphans.length,
          unknown: r.unknown.length,
          stale_indexes: r.stale_indexes.length,
          newer_generation_keys: r.newer_generation_keys.length,
        }),
      );
      if (!r.ok) {
        const n = r.missing.length + r.size_mismatch.length + r.checksum_mismatch.length + r.orphans.length + r.unknown.length;
        throw new PageserverError("corrupt", `remote state of timeline ${timeline} is inconsistent: ${n} problem(s)`);
      }
    });
}
