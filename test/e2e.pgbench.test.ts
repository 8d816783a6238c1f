/** End to end: the pgbench suite with images on every block reference (wal_consistency_checking = all, lz4): ingest stores PostgreSQL's own pages. The suite is test/support/e2e_pgbench_suite.ts. */
import { fileURLToPath } from "node:url";
import { IMAGES_LZ4 } from "./support/e2e_variant.js";
import { pgbenchSuite } from "./support/e2e_pgbench_suite.js";

pgbenchSuite(fileURLToPath(import.meta.url), IMAGES_LZ4);
