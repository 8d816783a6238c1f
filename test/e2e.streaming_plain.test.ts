/** End to end: the streaming suite on default WAL settings with lz4 full-page images: native redo of heap, btree, GiST and the rest. The suite is test/support/e2e_streaming_suite.ts. */
import { fileURLToPath } from "node:url";
import { DEFAULT_WAL_LZ4 } from "./support/e2e_variant.js";
import { streamingSuite } from "./support/e2e_streaming_suite.js";

streamingSuite(fileURLToPath(import.meta.url), DEFAULT_WAL_LZ4);
