/** End to end: the pgbench suite on default WAL settings (full-page writes only, no compression): every other block reference is redone natively. The suite is test/support/e2e_pgbench_suite.ts. */
import { fileURLToPath } from "node:url";
import { DEFAULT_WAL } from "./support/e2e_variant.js";
import { pgbenchSuite } from "./support/e2e_pgbench_suite.js";

pgbenchSuite(fileURLToPath(import.meta.url), DEFAULT_WAL);
