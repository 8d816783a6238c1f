/**
 * `pagectl tenant create|list|show|size|rename|delete|detach|attach|config [get|set k=v…]`: one
 * HTTP call each (config set: two), plus the list call that resolves a tenant given by name.
 */
import type { Command } from "commander";
import { argId, argInt, argName, argRef, argSettings, UsageError } from "./args.js";
import { cliOf } from "./context.js";
import { cellText, formatBytes, formatRecord, formatTable } from "./table.js";
import { sourceNote } from "./timeline_commands.js";

export function registerTenantCommands(program: Command): void {
  const tenant = program.command("tenant").description("create, list, show, delete tenants and their settings");

  tenant
    .command("create")
    .description("create a tenant (prints its id)")
    .option("--id <tenant_id>", "the new tenant's id (default: a random one)")
    .option("--name <name>", "a name, unique on the node, that pagectl accepts wherever a tenant id goes")
    .argument("[settings...]", "tenant settings as key=value (e.g. checkpoint_distance=1048576)")
    .action(async (settings: string[], o: { id?: string; name?: string }, cmd: Command) => {
      const cli = cliOf(cmd);
      const config = argSettings(settings);
      const body = {
        ...(o.id === undefined ? {} : { new_tenant_id: argId("tenant id", o.id) }),
        ...(o.name === undefined ? {} : { name: argName("--name", o.name) }),
        ...(settings.length > 0 ? { config } : {}),
      };
      const r = await cli.api.createTenant(body);
      cli.print(r, () => r.id);
    });

  tenant
    .command("list")
    .description("list tenants")
    .action(async (_o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const list = await cli.api.listTenants();
      cli.print(list, () =>
        formatTable(list, [
          { header: "tenant_id", value: (t) => t.id },
          { header: "name", value: (t) => t.name ?? null },
          { header: "state", value: (t) => t.state },
        ]),
      );
    });

  tenant
    .command("show")
    .description("a tenant's state and timeline count")
    .argument("<tenant>", "tenant id or name")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const t = await cli.api.getTenant(await cli.tenantId(argRef("tenant", id)));
      cli.print(t, () => {
        const { timeline_ids, config, ...rest } = t;
        const settings = Object.entries(config ?? {}).map(([k, v]) => `${k}=${cellText(v)}`);
        const lines = [formatRecord({ ...rest, config: settings.length === 0 ? "(defaults)" : settings.join(" ") })];
        for (const tl of timeline_ids ?? []) lines.push(`  ${tl}`);
        return lines.join("\n");
      });
    });

  tenant
    .command("size")
    .description("the tenant size model: per timeline the logical size at its retention start and the WAL after it")
    .argument("<tenant>", "tenant id or name")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const r = await cli.api.tenantSize(await cli.tenantId(argRef("tenant", id)));
      cli.print(r, () =>
        [
          `tenant ${r.id}: ${formatBytes(r.size)} (${r.size} bytes)`,
          formatTable(r.segments, [
            { header: "timeline", value: (g) => g.timeline_id },
            { header: "parent", value: (g) => g.parent },
            { header: "lsn_start", value: (g) => g.lsn_start },
            { header: "lsn_end", value: (g) => g.lsn_end },
            { header: "logical", value: (g) => g.logical_size_bytes, right: true },
            { header: "wal", value: (g) => g.wal_bytes, right: true },
            { header: "size", value: (g) => g.size_bytes, right: true },
          ]),
        ].join("\n"),
      );
    });

  tenant
    .command("rename")
    .description("set a tenant's name (unique on the node); --clear removes it")
    .argument("<tenant>", "tenant id or name")
    .argument("[new_name]")
    .option("--clear", "remove the tenant's name")
    .action(async (id: string, newName: string | undefined, o: { clear?: boolean }, cmd: Command) => {
      const cli = cliOf(cmd);
      const ref = argRef("tenant", id);
      if ((newName === undefined) === (o.clear !== true)) throw new UsageError("give either a new name or --clear");
      const name = newName === undefined ? null : argName("new name", newName);
      const t = await cli.api.renameTenant(await cli.tenantId(ref), name);
      cli.print(t, () => (t.name === null ? `tenant ${t.id} has no name` : `tenant ${t.id} is named ${t.name}`));
    });

  tenant
    .command("delete")
    .description("stop a tenant (its WAL sources too) and remove it from disk")
    .argument("<tenant>", "tenant id or name")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const tid = await cli.tenantId(argRef("tenant", id));
      const r = await cli.api.deleteTenant(tid);
      const timelines = Array.isArray(r["timelines"]) ? (r["timelines"] as Record<string, unknown>[]) : [];
      cli.print(r, () =>
        [`deleted tenant ${tid}`, ...timelines.map((t) => `  timeline ${String(t["timeline_id"])}${sourceNote(t["wal_source"])}`)].join(
          "\n",
        ),
      );
    });

  tenant
    .command("detach")
    .description("detach a tenant (remote storage): flush, wait until the bucket has everything, leave this node")
    .argument("<tenant>", "tenant id or name")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const r = await cli.api.detachTenant(await cli.tenantId(argRef("tenant", id)));
      cli.print(r, () => `detached tenant ${r.tenant_id}`);
    });

  tenant
    .command("attach")
    .description("attach a tenant from remote storage in a generation (higher than any before)")
    .argument("<tenant_id>")
    .requiredOption("--generation <n>", "the attachment's generation (1 … 4294967295)")
    .action(async (id: string, o: { generation: string }, cmd: Command) => {
      const cli = cliOf(cmd);
      const t = await cli.api.attachTenant(argId("tenant id", id), argInt("generation", o.generation, 1, 0xffff_ffff));
      cli.print(t, () => `attached tenant ${t.id} (${t.state}), timelines: ${(t.timeline_ids ?? []).join(" ") || "none"}`);
    });

  const config = tenant.command("config").description("a tenant's settings: get (default) or set");
  config
    .command("get", { isDefault: true })
    .description("the tenant's overrides and effective settings")
    .argument("<tenant>", "tenant id or name")
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const c = await cli.api.getTenantConfig(await cli.tenantId(argRef("tenant", id)));
      // The effective settings use the server's internal names (units in the name): two lists.
      cli.print(
        c,
        () =>
          `overrides:\n${indent(Object.keys(c.overrides).length === 0 ? "(none)" : formatRecord(c.overrides))}\neffective:\n${indent(formatRecord(c.effective ?? {}))}`,
      );
    });
  config
    .command("set")
    .description("change settings (merged into the current overrides; key= removes one)")
    .argument("<tenant>", "tenant id or name")
    .argument("<settings...>", "key=value")
    .action(async (id: string, pairs: string[], _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const ref = argRef("tenant", id);
      const changes = argSettings(pairs);
      const tid = await cli.tenantId(ref);
      // The API replaces the overrides whole: read, merge, write.
      const current = await cli.api.getTenantConfig(tid);
      const next: Record<string, unknown> = { ...current.overrides };
      for (const [k, v] of Object.entries(changes)) {
        if (v === "") delete next[k];
        else next[k] = v;
      }
      const r = await cli.api.putTenantConfig(tid, next);
      cli.print(r, () => formatRecord(r.overrides));
    });
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n");
}
