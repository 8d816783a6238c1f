/**
 * `pagectl status` (the node: version, commit, start time) and `pagectl failpoints [set
 * name=action…]` (docs/failpoints.md; action "off" clears one).
 */
import type { Command } from "commander";
import { UsageError } from "./args.js";
import { cliOf } from "./context.js";
import { formatRecord, formatTable } from "./table.js";

export function registerNodeCommands(program: Command): void {
  program
    .command("status")
    .description("the pageserver's version, git commit and start time")
    .action(async (_o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const s = await cli.api.status();
      cli.print(s, () => formatRecord({ server: cli.api.url, ...s }));
    });

  const fp = program.command("failpoints").description("the active failpoints; `set name=action…` changes them");
  const show = (active: Record<string, string>): string =>
    Object.keys(active).length === 0
      ? "no active failpoints"
      : formatTable(Object.entries(active), [
          { header: "name", value: (e) => e[0] },
          { header: "action", value: (e) => e[1] },
        ]);
  fp.command("list", { isDefault: true })
    .description("the active failpoints")
    .action(async (_o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const active = await cli.api.failpoints();
      cli.print(active, () => show(active));
    });
  fp.command("set")
    .description("set failpoints (name=action, e.g. flush-before-layer-map=return; action off clears)")
    .argument("<settings...>", "name=action")
    .action(async (pairs: string[], _o: unknown, cmd: Command) => {
      const cli = cliOf(cmd);
      const settings = pairs.map((p) => {
        const eq = p.indexOf("=");
        if (eq <= 0 || eq === p.length - 1) throw new UsageError(`invalid failpoint '${p}': expected name=action`);
        return { name: p.slice(0, eq), actions: p.slice(eq + 1) };
      });
      const active = await cli.api.setFailpoints(settings);
      cli.print(active, () => show(active));
    });
}
