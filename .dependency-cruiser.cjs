/**
 * The layering of src (DESIGN.md): main → pgdata → tenant → workers → layers → cache → types;
 * pg (PostgreSQL itself) → types, used by pgdata, main and workers (redo). A folder may import
 * itself and the folders this table lists for it; anything else fails `npm test`.
 */
const allowed = {
  types: [],
  cache: ["types"],
  layers: ["cache", "types"],
  workers: ["layers", "cache", "types", "pg"],
  tenant: ["workers", "layers", "cache", "types"],
  pg: ["types"],
  pgdata: ["tenant", "workers", "layers", "cache", "types", "pg"],
  protocol: ["types", "pg"],
  client: ["protocol", "types", "pg"],
  remote: ["tenant", "layers", "cache", "types"],
  main: ["pgdata", "tenant", "workers", "layers", "cache", "types", "pg", "protocol", "remote"],
  cli: ["client", "protocol", "types", "pg"],
};
module.exports = {
  forbidden: [
    ...Object.entries(allowed).map(([from, to]) => ({
      name: `layer-${from}`,
      severity: "error",
      comment: `src/${from} may import only ${to.length ? to.map((t) => `src/${t}`).join(", ") : "itself"}`,
      from: { path: `^src/${from}/` },
      to: { path: "^src/", pathNot: [`^src/(${[from, ...to].join("|")})/`] },
    })),
    {
      name: "no-tests-in-src",
      severity: "error",
      comment: "src never imports test or bench code (no test doubles in src)",
      from: { path: "^src/" },
      to: { path: "^(test|bench)/" },
    },
    { name: "no-circular-folders", severity: "warn", from: {}, to: { circular: true } },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsConfig: { fileName: "tsconfig.json" },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: [".ts", ".js", ".cjs"] },
  },
};
