/**
 * The layering of src (DESIGN.md): main → pgdata → tenant → workers → layers → cache → types;
 * pg (PostgreSQL itself) → types, used by pgdata, main and workers (redo). A folder may import
 * itself and the folders this table lists for it; anything else fails `npm test`. Every folder
 * of src has a row (a file in a folder without one is an error), and every permission is used
 * by some import or by a module loaded by URL (scripts/layers.ts checks both, and the modules
 * loaded by URL, which dependency-cruiser cannot see).
 *
 * bench/ and test/support/ are checked too: they may import any layer of src (and bench may
 * use test/support), src never imports them, and nothing anywhere forms a cycle.
 */
const allowed = {
  types: [],
  cache: ["types"],
  layers: ["cache", "types"],
  // pg: the redo module, which redo_job and image_job load by the URL main hands them.
  workers: ["layers", "cache", "types", "pg"],
  tenant: ["workers", "layers", "cache", "types"],
  pg: ["types"],
  pgdata: ["tenant", "types", "pg"],
  protocol: ["types"],
  client: ["protocol", "types"],
  remote: ["tenant", "layers", "types"],
  main: ["pgdata", "tenant", "workers", "layers", "cache", "types", "pg", "protocol", "remote"],
  cli: ["client", "protocol", "types"],
  // The storage controller (issue 19): a separate process; its state lives in PostgreSQL.
  controller: ["types"],
};
const folders = Object.keys(allowed).join("|");
const named = `^src/(${folders})/`;
const config = {
  forbidden: [
    ...Object.entries(allowed).map(([from, to]) => ({
      name: `layer-${from}`,
      severity: "error",
      comment: `src/${from} may import only ${to.length ? to.map((t) => `src/${t}`).join(", ") : "itself"}`,
      from: { path: `^src/${from}/` },
      to: { path: "^src/", pathNot: [`^src/(${[from, ...to].join("|")})/`] },
    })),
    {
      name: "layer-unnamed",
      severity: "error",
      comment: "a file of src outside the folders of the layer table: give its folder a row in .dependency-cruiser.cjs",
      from: { path: "^src/", pathNot: named },
      to: {},
    },
    {
      name: "layer-unnamed-orphan",
      severity: "error",
      comment: "a file of src outside the folders of the layer table: give its folder a row in .dependency-cruiser.cjs",
      from: { orphan: true, path: "^src/", pathNot: named },
      to: {},
    },
    {
      name: "no-tests-in-src",
      severity: "error",
      comment: "src never imports test or bench code (no test doubles in src)",
      from: { path: "^src/" },
      to: { path: "^(test|bench)/" },
    },
    {
      name: "support-to-src-layers",
      severity: "error",
      comment: "bench and test/support import src only through the folders of the layer table",
      from: { path: "^(bench|test/support)/" },
      to: { path: "^src/", pathNot: named },
    },
    {
      name: "support-not-tests",
      severity: "error",
      comment: "test/support never imports a test file or bench code",
      from: { path: "^test/support/" },
      to: { path: ["^bench/", "\\.test\\.ts$"] },
    },
    {
      name: "not-to-unresolvable",
      severity: "error",
      comment: "an import of a module that does not exist",
      from: {},
      to: { couldNotResolve: true },
    },
    { name: "no-circular", severity: "error", comment: "a cycle of imports", from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: {
      extensions: [".ts", ".js", ".cjs"],
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default"],
    },
  },
};
// Not a dependency-cruiser key (its schema rejects unknown ones): scripts/layers.ts reads it.
Object.defineProperty(config, "layerTable", { value: allowed, enumerable: false });
module.exports = config;
