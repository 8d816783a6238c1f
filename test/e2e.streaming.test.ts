/** End to end: the streaming suite with images on every block reference (wal_consistency_checking = all, lz4). The suite is test/support/e2e_streaming_suite.ts. */
import { fileURLToPath } from "node:url";
import { IMAGES_LZ4 } from "./support/e2e_variant.js";
import { streamingSuite } from "./support/e2e_streaming_suite.js";

streamingSuite(fileURLToPath(import.meta.url), IMAGES_LZ4);
