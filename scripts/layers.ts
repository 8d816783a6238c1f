/**
 * `npm run layers`: the layering check of src, bench and test/support.
 *
 * dependency-cruiser checks every static import against the rules of .dependency-cruiser.cjs
 * (the layer table, no cycles, no unnamed folders, bench/test-support only into src's layers).
 * This script runs it and adds what it cannot see or say:
 *   - modules loaded by URL: `new URL("<relative path>", import.meta.url)` naming a module
 *     (redo's `../pg/redo/pg_redo${ext}` in src/main/server.ts) and the Piscina job modules
 *     named in src/workers/pools.ts (`jobModule("flush_job")`). Each must exist and be allowed
 *     by the layer table as an import from the file that names it (and from the file that
 *     imports it, when another one does: URL_IMPORTERS). A URL whose module name is
 *     computed is an error unless a NAMED_MODULES row lists the calls that name it;
 *   - the table's permissions are all used: a permission no import and no URL edge uses is an
 *     error (remove it from the table), so the table stays a true picture of the tree.
 *
 * Invariants: reads files only; exits 1 on any violation, 0 otherwise.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, posix, relative } from "node:path";
import { fileURLToPath } from "node:url";

export type LayerTable = Record<string, readonly string[]>;

/** An edge between two repository-relative paths, e.g. src/main/server.ts → src/pg/redo/pg_redo.ts. */
export interface Edge {
  from: string;
  to: string;
}

/** A module loaded by URL: `line` of `from` names it (0: `from` imports a URL named elsewhere). */
export interface UrlEdge extends Edge {
  line: number;
}

/** Files whose URLs name modules through a helper: the calls that name them, and where they live. */
export const NAMED_MODULES: Record<string, { call: RegExp; dir: string; ext: string }> = {
  "src/workers/pools.ts": { call: /\bjobModule\(\s*"([A-Za-z0-9_]+)"/g, dir: "src/workers", ext: ".ts" },
};

/**
 * Modules named by URL in one file and imported (`await import(url)`) in another: the
 * importer's edge is checked too. The redo module's URL is made in src/main/server.ts and
 * handed to the workers, which import it in src/workers/redo_module.ts.
 */
export const URL_IMPORTERS: Record<string, string> = {
  "src/pg/redo/pg_redo.ts": "src/workers/redo_module.ts",
};

/** The roots the check reads (repository-relative). */
export const ROOTS = ["src", "bench", "test/support"];

const URL_RE = /new URL\(\s*(?:"([^"]*)"|'([^']*)'|`([^`]*)`)\s*,\s*import\.meta\.url\s*\)/g;
const MODULE_EXT_RE = /\.(ts|js|cjs|mjs)$/;
/** A template's tail that only picks the extension, e.g. `${isTs ? ".ts" : ".js"}`. */
const EXT_TAIL_RE = /^\$\{[^}]*"\.ts"[^}]*\}$/;

function lineOf(text: string, index: number): number {
  let line = 1;
  for (let i = 0; i < index; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/**
 * The modules `file` (repository-relative) loads by URL, and the URLs whose module the check
 * cannot name (as problems). URLs of non-modules (a directory, package.json) are not edges.
 */
export function urlEdges(file: string, text: string): { edges: UrlEdge[]; problems: string[] } {
  const edges: UrlEdge[] = [];
  const problems: string[] = [];
  const dir = posix.dirname(file);
  for (const m of text.matchAll(URL_RE)) {
    const line = lineOf(text, m.index);
    const literal = m[1] ?? m[2];
    let rel: string;
    if (literal !== undefined) {
      if (!MODULE_EXT_RE.test(literal)) continue;
      rel = literal;
    } else {
      const tpl = m[3] ?? "";
      const cut = tpl.indexOf("${");
      if (cut < 0) {
        if (!MODULE_EXT_RE.test(tpl)) continue;
        rel = tpl;
      } else if (EXT_TAIL_RE.test(tpl.slice(cut)) && !tpl.slice(0, cut).endsWith("/")) {
        rel = `${tpl.slice(0, cut)}.ts`;
      } else {
        if (NAMED_MODULES[file] === undefined)
          problems.push(
            `${file}:${line}: a module URL with a computed name (\`${tpl}\`): name it literally or add a NAMED_MODULES row in scripts/layers.ts`,
          );
        continue;
      }
    }
    if (!rel.startsWith("./") && !rel.startsWith("../")) continue;
    const to = posix.normalize(posix.join(dir, rel));
    edges.push({ from: file, to, line });
    const importer = URL_IMPORTERS[to];
    if (importer !== undefined) edges.push({ from: importer, to, line: 0 });
  }
  const named = NAMED_MODULES[file];
  if (named !== undefined) {
    for (const m of text.matchAll(named.call))
      edges.push({ from: file, to: `${named.dir}/${m[1]}${named.ext}`, line: lineOf(text, m.index) });
  }
  return { edges, problems };
}

/** The layer of a repository-relative path: a src folder, "bench", "test/support", or null. */
export function layerOf(path: string): string | null {
  const m = /^src\/([^/]+)\//.exec(path);
  if (m !== null) return m[1] ?? null;
  if (path.startsWith("bench/")) return "bench";
  if (path.startsWith("test/support/")) return "test/support";
  return null;
}

/** Why `edge` breaks the table, or null when it is allowed. */
export function edgeProblem(table: LayerTable, edge: Edge): string | null {
  const from = layerOf(edge.from);
  const to = layerOf(edge.to);
  if (from === null) return `${edge.from} is outside src, bench and test/support`;
  if (to === null) return `${edge.from} loads ${edge.to}, outside src, bench and test/support`;
  if (from === "bench" || from === "test/support") {
    if (to === "bench" && from === "test/support") return `test/support may not load bench code (${edge.to})`;
    if (to !== "bench" && to !== "test/support" && table[to] === undefined)
      return `${edge.to} is in src/${to}, which the layer table does not name`;
    return null;
  }
  const row = table[from];
  if (row === undefined) return `${edge.from} is in src/${from}, which the layer table does not name`;
  if (to === "bench" || to === "test/support") return `src never loads bench or test code (${edge.from} → ${edge.to})`;
  if (to !== from && !row.includes(to)) return `src/${from} may not load src/${to} (${edge.from} → ${edge.to})`;
  return null;
}

/** Permissions "from → to" of the table that no edge between two src folders uses. */
export function unusedPermissions(table: LayerTable, edges: readonly Edge[]): string[] {
  const used = new Set<string>();
  for (const e of edges) used.add(`${layerOf(e.from)} → ${layerOf(e.to)}`);
  const unused: string[] = [];
  for (const [from, row] of Object.entries(table)) for (const to of row) if (!used.has(`${from} → ${to}`)) unused.push(`${from} → ${to}`);
  return unused;
}

/** Every .ts/.cjs/.mjs file under `dir` (repository-relative paths). */
function sourceFiles(root: string, dir: string): string[] {
  const out: string[] = [];
  const abs = join(root, dir);
  if (!existsSync(abs)) return out;
  for (const name of readdirSync(abs).sort()) {
    const rel = posix.join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) out.push(...sourceFiles(root, rel));
    else if (/\.(ts|cjs|mjs)$/.test(name)) out.push(rel);
  }
  return out;
}

function at(e: UrlEdge): string {
  return e.line > 0 ? `${e.from}:${e.line}` : e.from;
}

interface CruiseResult {
  modules: { source: string; dependencies: { resolved: string }[] }[];
  summary: { violations: { from: string; to: string; rule: { name: string; severity: string } }[] };
}

/** Runs the whole check in `root`; returns the lines to print (empty when all is well). */
export function checkLayers(root: string): string[] {
  const require = createRequire(join(root, "package.json"));
  const config = require(join(root, ".dependency-cruiser.cjs")) as {
    layerTable?: LayerTable;
    forbidden: { name: string; comment?: string }[];
  };
  const table = config.layerTable;
  if (table === undefined) return [".dependency-cruiser.cjs does not export its layer table (layerTable)"];
  const bin = join(root, "node_modules", ".bin", "depcruise");
  const roots = ROOTS.filter((r) => existsSync(join(root, r)));
  const run = spawnSync(bin, [...roots, "--config", ".dependency-cruiser.cjs", "--output-type", "json"], {
    cwd: root,
    encoding: "utf8",
    maxBuffer: 256 << 20,
  });
  if (run.status !== 0 && run.stdout === "") return [`depcruise failed: ${run.stderr}`];
  const result = JSON.parse(run.stdout) as CruiseResult;
  const comments = new Map(config.forbidden.map((r) => [r.name, r.comment ?? ""]));
  const out: string[] = [];
  for (const v of result.summary.violations) {
    out.push(
      `${v.rule.severity} ${v.rule.name}: ${v.from} → ${v.to}${comments.get(v.rule.name) ? `  (${comments.get(v.rule.name)})` : ""}`,
    );
  }
  const edges: Edge[] = [];
  for (const m of result.modules) for (const d of m.dependencies) edges.push({ from: m.source, to: d.resolved });
  for (const file of ROOTS.flatMap((r) => sourceFiles(root, r))) {
    const found = urlEdges(file, readFileSync(join(root, file), "utf8"));
    out.push(...found.problems.map((p) => `error url-edge: ${p}`));
    for (const e of found.edges) {
      if (!existsSync(join(root, e.to))) {
        out.push(`error url-edge: ${at(e)} loads ${e.to}, which does not exist`);
        continue;
      }
      const problem = edgeProblem(table, e);
      if (problem !== null) out.push(`error url-edge: ${at(e)}: ${problem}`);
      if (e.from !== file && !/\bimport\(/.test(readFileSync(join(root, e.from), "utf8"))) {
        out.push(`error url-edge: ${e.from} is listed as importing ${e.to} by URL but has no import(): fix URL_IMPORTERS`);
      }
      edges.push(e);
    }
  }
  for (const p of unusedPermissions(table, edges))
    out.push(`error layer-unused: nothing in src/${p.split(" → ")[0]} uses its permission ${p}: remove it from the table`);
  return out;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..");
  const problems = checkLayers(root);
  for (const p of problems) console.error(p);
  if (problems.length > 0) {
    console.error(`\n✘ ${problems.length} layering violation(s) (${relative(process.cwd(), join(root, ".dependency-cruiser.cjs"))})`);
    process.exit(1);
  }
  console.log("✔ layers: no violations (static imports, module URLs, table permissions)");
}
