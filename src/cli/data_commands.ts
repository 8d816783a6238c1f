/**
 * `pagectl basebackup`, `getpage`, `lsn-by-time`: reading data out of a timeline. A base
 * backup comes over HTTP (streamed to a file, with progress); a page over the page service
 * (pagestream v2, --pg-server) at an LSN, latest by default (the timeline's last_record_lsn).
 */
import { createWriteStream, renameSync, rmSync, writeFileSync } from "node:fs";
import { pipeline } from "node:stream/promises";
import type { Command } from "commander";
import { PageServiceClient } from "../client/page_service_client.js";
import { parseLsn } from "../types/lsn.js";
import { argInt, argLsn, argRef, argRel, argTime } from "./args.js";
import { cliOf } from "./context.js";
import { hexdump } from "./hexdump.js";
import { byteProgress, progressWanted } from "./progress.js";
import { formatBytes, formatRecord } from "./table.js";

export function registerDataCommands(program: Command): void {
  program
    .command("basebackup")
    .description("download a base backup (tar) of a timeline at an LSN (default: latest)")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .option("--lsn <lsn>", "the LSN (default: the timeline's last record LSN)")
    .requiredOption("-o, --output <file>", "where to write the tar ('-' for stdout)")
    .option("--progress", "show download progress on stderr (default: when stderr is a terminal)")
    .action(async (tenant: string, timeline: string, o: { lsn?: string; output: string; progress?: boolean }, cmd: Command) => {
      const cli = cliOf(cmd);
      const tRef = argRef("tenant", tenant);
      const tlRef = argRef("timeline", timeline);
      const lsn = o.lsn === undefined ? undefined : argLsn("--lsn", o.lsn);
      const [t, tl] = await cli.ids(tRef, tlRef);
      const reply = await cli.api.basebackup(t, tl, lsn);
      const bar = byteProgress(progressWanted(o.progress) && o.output !== "-", "base backup", reply.size_bytes);
      let size_bytes = 0;
      async function* counted(): AsyncGenerator<Uint8Array> {
        for await (const chunk of reply.body) {
          size_bytes += chunk.byteLength;
          bar.add(chunk.byteLength);
          yield chunk;
        }
      }
      try {
        if (o.output === "-") {
          // The tar is the output: nothing else goes to stdout, and stdout is not ended.
          await pipeline(counted(), process.stdout, { end: false });
          return;
        }
        // Written under a temp name: a failed download never leaves a file that looks whole.
        const tmp = `${o.output}.partial`;
        try {
          await pipeline(counted(), createWriteStream(tmp));
          renameSync(tmp, o.output);
        } catch (e) {
          rmSync(tmp, { force: true });
          throw e;
        }
      } finally {
        bar.stop();
      }
      cli.print({ file: o.output, size_bytes, lsn: lsn ?? null }, () => `wrote ${o.output} (${formatBytes(size_bytes)})`);
    });

  program
    .command("getpage")
    .description("read one page of a relation at an LSN through the page service (hexdump, or -o file)")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .requiredOption("--rel <spc/db/rel[.fork]>", "the relation, e.g. 1663/5/16384 or 1663/5/16384.fsm")
    .requiredOption("--blk <n>", "block number")
    .option("--lsn <lsn>", "the LSN (default: the timeline's last record LSN)")
    .option("-o, --output <file>", "write the 8192 bytes here instead of a hexdump")
    .action(async (tenant: string, timeline: string, o: { rel: string; blk: string; lsn?: string; output?: string }, cmd: Command) => {
      const cli = cliOf(cmd);
      const tRef = argRef("tenant", tenant);
      const tlRef = argRef("timeline", timeline);
      const rel = argRel(o.rel);
      const blk = argInt("--blk", o.blk, 0, 0xffff_fffe);
      const pg = cli.pgConnect;
      if (o.lsn !== undefined) argLsn("--lsn", o.lsn);
      const [t, tl] = await cli.ids(tRef, tlRef);
      const lsnText = o.lsn === undefined ? (await cli.api.getTimeline(t, tl)).last_record_lsn : argLsn("--lsn", o.lsn);
      const lsn = parseLsn(lsnText);
      const client = await PageServiceClient.connect(pg);
      let page: Uint8Array;
      try {
        const session = await client.pagestream(t, tl, 2);
        page = await session.getPage(rel, blk, lsn, lsn);
        await session.close();
      } finally {
        client.close();
      }
      if (o.output !== undefined) {
        writeFileSync(o.output, page);
        cli.print(
          { file: o.output, lsn: lsnText, size_bytes: page.length },
          () => `wrote ${o.output} (page ${blk} of ${o.rel} at ${lsnText})`,
        );
        return;
      }
      cli.print({ lsn: lsnText, rel, blkno: blk, page_hex: Buffer.from(page).toString("hex") }, () => hexdump(page));
    });

  program
    .command("lsn-by-time")
    .description(
      "the LSN where recovery_target_time = TIME stops: after the last commit at or before it (present), or past / future / nodata",
    )
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .argument("<time>", "RFC 3339, e.g. 2026-01-02T03:04:05Z, or 'now'")
    .action(async (tenant: string, timeline: string, time: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const refs = [argRef("tenant", tenant), argRef("timeline", timeline)] as const;
      const at = argTime("time", time);
      const r = await cli.api.lsnByTimestamp(...(await cli.ids(...refs)), at);
      cli.print(r, () => formatRecord({ timestamp: at, lsn: r.lsn, kind: r.kind }));
    });
}
