/**
 * `pagectl timeline create|branch|list|show|delete|checkpoint|compact|gc|layers|draw`. A branch at a time
 * (`--at`) is the server's `ancestor_start_time`: at the end of the last commit at or before
 * it (what `lsn-by-time` calls `present`; any other answer is refused naming it).
 */
import { writeFileSync } from "node:fs";
import type { Command } from "commander";
import type { LayerInfo, TimelineInfo } from "../protocol/http_models.js";
import { argId, argInt, argLsn, argName, argRef, argTime, UsageError } from "./args.js";
import { cliOf } from "./context.js";
import { progressWanted, withElapsed } from "./progress.js";
import { formatBytes, formatRecord, formatTable } from "./table.js";

export function timelineTable(list: readonly TimelineInfo[]): string {
  return formatTable(list, [
    { header: "timeline_id", value: (t) => t.timeline_id },
    { header: "name", value: (t) => t.name ?? null },
    { header: "ancestor", value: (t) => t.ancestor_timeline_id },
    { header: "ancestor_lsn", value: (t) => t.ancestor_lsn },
    { header: "last_record_lsn", value: (t) => t.last_record_lsn },
    { header: "disk_consistent_lsn", value: (t) => t.disk_consistent_lsn },
    { header: "state", value: (t) => t.state },
    { header: "wal_source", value: (t) => (t.wal_source === null ? null : t.wal_source.state) },
  ]);
}

export function timelineRecord(t: TimelineInfo): string {
  const flat: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(t)) {
    if (v !== null && typeof v === "object") for (const [k2, v2] of Object.entries(v)) flat[`${k}.${k2}`] = v2;
    else flat[k] = v;
  }
  return formatRecord(flat);
}

export function registerTimelineCommands(program: Command): void {
  const tl = program.command("timeline").description("create, branch, list, show, delete timelines; their layers and the layer picture");

  tl.command("create")
    .description(
      "create a timeline: bootstrap from a running PostgreSQL 15 (--source) or import a stopped data directory (--import-pgdata); branches: `timeline branch`",
    )
    .argument("<tenant>", "tenant id or name")
    .option("--id <timeline_id>", "the new timeline's id (default: a random one)")
    .option("--name <name>", "a name, unique in the tenant, that pagectl accepts wherever a timeline id goes")
    .option("--source <connstr>", "bootstrap from this PostgreSQL 15 and keep streaming its WAL")
    .option("--import-pgdata <dir>", "import a cleanly shut down data directory (absolute path, on the server's machine)")
    .option("--start-lsn <lsn>", "an empty timeline starting at this LSN, for WAL fed by other means (without --source or --import-pgdata)")
    .option("--progress", "show elapsed time while the server works (default: when stderr is a terminal)")
    .action(
      async (
        tenant: string,
        o: { id?: string; name?: string; source?: string; importPgdata?: string; startLsn?: string; progress?: boolean },
        cmd: Command,
      ) => {
        const cli = cliOf(cmd);
        const tRef = argRef("tenant", tenant);
        if (o.startLsn !== undefined && (o.source !== undefined || o.importPgdata !== undefined))
          throw new UsageError("--start-lsn is for an empty timeline: not with --source or --import-pgdata");
        // Without either, the server makes an empty timeline at 0/0: no base backup, no endpoint.
        if (o.source === undefined && o.importPgdata === undefined && o.startLsn === undefined)
          throw new UsageError(
            "a timeline needs data: --source CONNSTR (a running PostgreSQL 15, streamed from then on) or --import-pgdata DIR (a stopped data directory); to branch one, `pagectl timeline branch`",
          );
        const body = {
          ...(o.id === undefined ? {} : { new_timeline_id: argId("timeline id", o.id) }),
          ...(o.name === undefined ? {} : { name: argName("--name", o.name) }),
          ...(o.source === undefined ? {} : { wal_source: { connstr: o.source } }),
          ...(o.importPgdata === undefined ? {} : { import_pgdata: o.importPgdata }),
          ...(o.startLsn === undefined ? {} : { start_lsn: argLsn("--start-lsn", o.startLsn) }),
        };
        const long = o.source !== undefined || o.importPgdata !== undefined;
        const t = await cli.tenantId(tRef);
        const r = await withElapsed(long && progressWanted(o.progress) && !cli.json, "importing", () => cli.api.createTimeline(t, body));
        cli.print(r, () => timelineRecord(r));
      },
    );

  tl.command("branch")
    .description("branch a timeline at an LSN, at a time, or at its latest LSN")
    .argument("<tenant>", "tenant id or name")
    .argument("<ancestor>", "the ancestor timeline's id or name")
    .option("--lsn <lsn>", "branch point")
    .option(
      "--at <time>",
      "branch where PostgreSQL's recovery_target_time would stop: after the last commit at or before this time (RFC 3339)",
    )
    .option("--id <timeline_id>", "the new timeline's id (default: a random one)")
    .option("--name <name>", "the branch's name, unique in the tenant")
    .action(async (tenant: string, ancestor: string, o: { lsn?: string; at?: string; id?: string; name?: string }, cmd: Command) => {
      const cli = cliOf(cmd);
      const tRef = argRef("tenant", tenant);
      const aRef = argRef("ancestor timeline", ancestor);
      if (o.lsn !== undefined && o.at !== undefined) throw new UsageError("--lsn and --at exclude each other");
      const lsn = o.lsn === undefined ? undefined : argLsn("--lsn", o.lsn);
      const at = o.at === undefined ? undefined : argTime("--at", o.at);
      const name = o.name === undefined ? undefined : argName("--name", o.name);
      const newId = o.id === undefined ? undefined : argId("timeline id", o.id);
      const [t, a] = await cli.ids(tRef, aRef);
      const r = await cli.api.createTimeline(t, {
        ancestor_timeline_id: a,
        ...(lsn === undefined ? {} : { ancestor_start_lsn: lsn }),
        ...(at === undefined ? {} : { ancestor_start_time: at }),
        ...(newId === undefined ? {} : { new_timeline_id: newId }),
        ...(name === undefined ? {} : { name }),
      });
      cli.print(
        r,
        () => `${r.timeline_id} (branch of ${a} at ${r.ancestor_lsn}${at === undefined ? "" : `, the last commit at or before ${at}`})`,
      );
    });

  tl.command("list")
    .description("a tenant's timelines")
    .argument("<tenant>", "tenant id or name")
    .action(async (tenant: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const list = await cli.api.listTimelines(await cli.tenantId(argRef("tenant", tenant)));
      cli.print(list, () => timelineTable(list));
    });

  tl.command("show")
    .description("a timeline's info")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .action(async (tenant: string, timeline: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const r = await cli.api.getTimeline(...(await cli.ids(argRef("tenant", tenant), argRef("timeline", timeline))));
      cli.print(r, () => timelineRecord(r));
    });

  tl.command("rename")
    .description("set a timeline's name (unique in its tenant); --clear removes it")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .argument("[new_name]")
    .option("--clear", "remove the timeline's name")
    .action(async (tenant: string, timeline: string, newName: string | undefined, o: { clear?: boolean }, cmd: Command) => {
      const cli = cliOf(cmd);
      const refs = [argRef("tenant", tenant), argRef("timeline", timeline)] as const;
      if ((newName === undefined) === (o.clear !== true)) throw new UsageError("give either a new name or --clear");
      const name = newName === undefined ? null : argName("new name", newName);
      const r = await cli.api.renameTimeline(...(await cli.ids(...refs)), name);
      cli.print(r, () => (r.name === null ? `timeline ${r.timeline_id} has no name` : `timeline ${r.timeline_id} is named ${r.name}`));
    });

  tl.command("delete")
    .description("delete a timeline without branches (its WAL source is stopped and the slot dropped)")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .action(async (tenant: string, timeline: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const [tid, tlid] = await cli.ids(argRef("tenant", tenant), argRef("timeline", timeline));
      const r = await cli.api.deleteTimeline(tid, tlid);
      cli.print(r, () => `deleted timeline ${tlid}${sourceNote(r["wal_source"])}`);
    });

  tl.command("checkpoint")
    .description("freeze and flush what the timeline holds in memory; returns once durable")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .action(async (tenant: string, timeline: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const r = await cli.api.checkpoint(...(await cli.ids(argRef("tenant", tenant), argRef("timeline", timeline))));
      cli.print(r, () => formatRecord(r));
    });

  tl.command("compact")
    .description("compact the timeline's L0 layers (and create image layers)")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .option("--force-images", "create image layers whatever the thresholds say")
    .action(async (tenant: string, timeline: string, o: { forceImages?: boolean }, cmd: Command) => {
      const cli = cliOf(cmd);
      const refs = [argRef("tenant", tenant), argRef("timeline", timeline)] as const;
      const r = await cli.api.compact(...(await cli.ids(...refs)), o.forceImages === true);
      cli.print(r, () => formatRecord(r));
    });

  tl.command("gc")
    .description("garbage-collect the timeline's layers below its GC cutoff")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .option("--horizon <bytes>", "keep this many bytes of WAL history (default: the tenant's gc_horizon / pitr_interval)")
    .action(async (tenant: string, timeline: string, o: { horizon?: string }, cmd: Command) => {
      const cli = cliOf(cmd);
      const refs = [argRef("tenant", tenant), argRef("timeline", timeline)] as const;
      const h = o.horizon === undefined ? undefined : argInt("--horizon", o.horizon, 0, Number.MAX_SAFE_INTEGER);
      const r = await cli.api.gc(...(await cli.ids(...refs)), h);
      cli.print(r, () => formatRecord(r));
    });

  tl.command("layers")
    .description("a timeline's layers: kind, key range, LSN range, size")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .action(async (tenant: string, timeline: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const list = await cli.api.layers(...(await cli.ids(argRef("tenant", tenant), argRef("timeline", timeline))));
      cli.print(list, () => `${layerTable(list)}\n${layerSummary(list)}`);
    });

  tl.command("draw")
    .description("write the picture of a timeline's layers (SVG) to a file")
    .argument("<tenant>", "tenant id or name")
    .argument("<timeline>", "timeline id or name")
    .requiredOption("-o, --output <file>", "where to write the SVG")
    .action(async (tenant: string, timeline: string, o: { output: string }, cmd: Command) => {
      const cli = cliOf(cmd);
      const svg = await cli.api.layerMapSvg(...(await cli.ids(argRef("tenant", tenant), argRef("timeline", timeline))));
      writeFileSync(o.output, svg);
      // docs/http-api.md: every layer is a <rect class="layer">.
      const layers = (svg.match(/<rect class="layer"/g) ?? []).length;
      cli.print(
        { file: o.output, size_bytes: Buffer.byteLength(svg), layers },
        () => `wrote ${o.output} (${formatBytes(Buffer.byteLength(svg))}, ${layers} layers drawn)`,
      );
    });
}

export function layerTable(list: readonly LayerInfo[]): string {
  return formatTable(list, [
    { header: "level", value: (l) => layerLevel(l) },
    { header: "key_start", value: (l) => l.key_start },
    { header: "key_end", value: (l) => l.key_end },
    { header: "lsn_start", value: (l) => l.lsn_start },
    { header: "lsn_end", value: (l) => l.lsn_end },
    { header: "size", value: (l) => (typeof l.size_bytes === "number" ? formatBytes(l.size_bytes) : null), right: true },
  ]);
}

/** l0, l1, image; in-memory layers as "open" / "frozen". */
export function layerLevel(l: LayerInfo): string {
  return typeof l["in_memory"] === "string" ? l["in_memory"] : (l.level ?? l.kind);
}

/** "12 layers: 3 l0, 5 l1, 4 image; 40.1 MiB" */
export function layerSummary(list: readonly LayerInfo[]): string {
  const by = new Map<string, number>();
  let bytes = 0;
  for (const l of list) {
    const k = layerLevel(l);
    by.set(k, (by.get(k) ?? 0) + 1);
    if (typeof l.size_bytes === "number") bytes += l.size_bytes;
  }
  const parts = [...by.entries()].map(([k, n]) => `${n} ${k}`).join(", ");
  return `${list.length} layers${list.length > 0 ? `: ${parts}` : ""}; ${formatBytes(bytes)}`;
}

/** What became of a deleted timeline's WAL source and its slot, for a human. */
export function sourceNote(ws: unknown): string {
  if (ws === null || ws === undefined || typeof ws !== "object") return "";
  const w = ws as Record<string, unknown>;
  return w["slot_dropped"] === true
    ? " (its WAL source stopped, slot dropped)"
    : ` (its WAL source stopped; the slot was NOT dropped: ${String(w["slot_error"] ?? "unknown reason")})`;
}
