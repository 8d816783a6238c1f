/**
 * The layering check (`npm run layers`, scripts/layers.ts over .dependency-cruiser.cjs): the
 * live tree passes; a bad static import, a file in an unnamed folder, a cycle, a module URL
 * naming a missing module or a forbidden layer, and an unused permission each fail it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { checkLayers, edgeProblem, type LayerTable, unusedPermissions, urlEdges } from "../scripts/layers.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const TABLE = (createRequire(import.meta.url)("../.dependency-cruiser.cjs") as { layerTable: LayerTable }).layerTable;

function read(rel: string): string {
  return readFileSync(join(ROOT, rel), "utf8");
}

describe("module URLs", () => {
  it("sees the redo module URL of src/main/server.ts and the workers that import it", () => {
    const { edges, problems } = urlEdges("src/main/server.ts", read("src/main/server.ts"));
    expect(problems).toEqual([]);
    expect(edges.map((e) => [e.from, e.to])).toEqual([
      ["src/main/server.ts", "src/pg/redo/pg_redo.ts"],
      ["src/workers/redo_module.ts", "src/pg/redo/pg_redo.ts"],
    ]);
    for (const e of edges) expect(edgeProblem(TABLE, e)).toBeNull();
  });

  it("sees every Piscina job module src/workers/pools.ts names", () => {
    const { edges, problems } = urlEdges("src/workers/pools.ts", read("src/workers/pools.ts"));
    expect(problems).toEqual([]);
    expect(edges.map((e) => e.to).sort()).toEqual(
      [
        "src/workers/compaction_pool.ts",
        "src/workers/dev_bootstrap.cjs",
        "src/workers/flush_job.ts",
        "src/workers/gc_job.ts",
        "src/workers/redo_job.ts",
      ].sort(),
    );
  });

  it("refuses a URL whose module name is computed, outside a NAMED_MODULES file", () => {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: the source text of a template literal, on purpose
    const text = 'const u = new URL(`./${name}${isTs ? ".ts" : ".js"}`, import.meta.url);';
    expect(urlEdges("src/tenant/x.ts", text).problems).toHaveLength(1);
  });

  it("ignores URLs that name no module (a directory, a variable)", () => {
    const text = 'new URL("..", import.meta.url); new URL(rel, import.meta.url);';
    expect(urlEdges("bench/x.ts", text)).toEqual({ edges: [], problems: [] });
  });

  it("a URL edge obeys the layer table like an import", () => {
    const text = 'new URL("../main/server.ts", import.meta.url);';
    const [edge] = urlEdges("src/cache/x.ts", text).edges;
    expect(edge).toBeDefined();
    expect(edgeProblem(TABLE, edge!)).toMatch(/src\/cache may not load src\/main/);
  });
});

describe("the layer table", () => {
  it("refuses src → bench/test, and bench → a folder the table does not name", () => {
    expect(edgeProblem(TABLE, { from: "src/workers/a.ts", to: "test/support/test_redo.ts" })).toMatch(/never loads/);
    expect(edgeProblem(TABLE, { from: "bench/a.bench.ts", to: "src/nowhere/b.ts" })).toMatch(/does not name/);
    expect(edgeProblem(TABLE, { from: "bench/a.bench.ts", to: "src/main/server.ts" })).toBeNull();
    expect(edgeProblem(TABLE, { from: "test/support/a.ts", to: "bench/harness.ts" })).toMatch(/may not load bench/);
  });

  it("reports a permission no edge uses", () => {
    const table: LayerTable = { types: [], cache: ["types"], layers: ["cache", "types"] };
    const edges = [
      { from: "src/cache/a.ts", to: "src/types/b.ts" },
      { from: "src/layers/a.ts", to: "src/types/b.ts" },
    ];
    expect(unusedPermissions(table, edges)).toEqual(["layers → cache"]);
  });
});

describe("npm run layers", () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  /** A tiny repository with the real config, a mini src and `files`. */
  function fixture(files: Record<string, string>): string {
    const dir = mkdtempSync(join(tmpdir(), "layers-"));
    dirs.push(dir);
    symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
    writeFileSync(join(dir, ".dependency-cruiser.cjs"), read(".dependency-cruiser.cjs"));
    writeFileSync(join(dir, "package.json"), '{ "type": "module" }');
    writeFileSync(
      join(dir, "tsconfig.json"),
      '{ "compilerOptions": { "module": "NodeNext", "moduleResolution": "NodeNext", "strict": true }, "include": ["src"] }',
    );
    for (const [rel, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, rel)), { recursive: true });
      writeFileSync(join(dir, rel), text);
    }
    return dir;
  }

  it("passes on the live tree", () => {
    expect(checkLayers(ROOT)).toEqual([]);
  }, 60_000);

  it("fails on an upward import, a file in an unnamed folder and a cycle", () => {
    const dir = fixture({
      "src/types/a.ts": 'import { b } from "./b.js";\nexport const a = b + 1;\n',
      "src/types/b.ts": 'import { a } from "./a.js";\nexport const b = 1;\nexport const c = () => a;\n',
      "src/cache/c.ts": 'import { s } from "../main/s.js";\nexport const c = s;\n',
      "src/main/s.ts": "export const s = 1;\n",
      "src/nowhere/n.ts": "export const n = 1;\n",
    });
    const out = checkLayers(dir).join("\n");
    expect(out).toContain("error layer-cache: src/cache/c.ts → src/main/s.ts");
    expect(out).toContain("error layer-unnamed-orphan: src/nowhere/n.ts");
    expect(out).toContain("error no-circular: src/types/a.ts → src/types/b.ts");
  }, 60_000);
});
