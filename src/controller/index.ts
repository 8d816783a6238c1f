/**
 * src/controller: the storage controller (issue 19), which keeps nodes, tenant placements,
 * generations and operation history in PostgreSQL. So far: its store (ControllerStore, the
 * only code that speaks SQL to the controller's database) and its versioned schema
 * migrations. It imports src/types only; nothing of the pageserver's own layers.
 */
export * from "./migrations.js";
export * from "./store.js";
