/**
 * `npm run bench -- [name ...]`: runs the named benches (all when none is named), prints a
 * table for each and writes bench/results/<name>.json.
 */
import { existsSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type BenchFn, printTable, writeResults } from "./harness.js";

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here)
  .filter((f) => f.endsWith(".bench.ts"))
  .map((f) => f.slice(0, -".bench.ts".length))
  .sort();

const wanted = process.argv.slice(2).filter((a) => a !== "--");
const names = wanted.length > 0 ? wanted : available;
for (const name of names) {
  const file = join(here, `${name}.bench.ts`);
  if (!existsSync(file)) {
    console.error(`unknown bench '${name}'; available: ${available.join(", ")}`);
    process.exit(2);
  }
  const mod = (await import(pathToFileURL(file).href)) as { default: BenchFn };
  const rows = await mod.default();
  printTable(name, rows);
  console.log(`wrote ${writeResults(name, rows)}`);
}
