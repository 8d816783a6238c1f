/**
 * Loads uWebSockets.js's native binary for this Node ABI, platform and architecture, or says
 * why not in one line. The package's own entry point, when its binary does not load (no build
 * for this ABI, or a glibc too old), prints a multi-line warning on stderr and falls back to a
 * slow pure-JS server; we want the native server or a clear reason, and no noise on a node
 * that then serves with node:http. So the binary the entry point would pick is required
 * directly. Loaded on first use: a node started with `--http-server node` never loads it.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type uws from "uWebSockets.js";

let loaded: typeof uws | null = null;

export function loadUws(): typeof uws {
  if (loaded !== null) return loaded;
  // The package's switch to its fallback: honoured as "uWS does not load here" (tests use it
  // to stand in for a Node without a build), never by serving on the fallback.
  if (/^(1|true)$/i.test(process.env["UWS_USE_FALLBACK"] ?? "")) {
    throw new Error("uWebSockets.js is not used: UWS_USE_FALLBACK is set and its pure-JS fallback is refused");
  }
  const require = createRequire(import.meta.url);
  // The package's entry is <package>/src/uws.js; its binaries are in <package>/binaries.
  const binary = join(
    dirname(require.resolve("uWebSockets.js")),
    "..",
    "binaries",
    `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`,
  );
  let m: typeof uws;
  try {
    m = require(binary) as typeof uws;
  } catch (e) {
    const why = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    throw new Error(
      `uWebSockets.js has no native binary that loads on Node ${process.versions.node} (ABI ${process.versions.modules}, ${process.platform}-${process.arch}): ${why}`,
    );
  }
  // The native module has SSLApp, getParts and more (a fallback would have App only).
  if (typeof (m as unknown as Record<string, unknown>)["SSLApp"] !== "function") {
    throw new Error(`uWebSockets.js binary ${binary} lacks SSLApp: not the native server`);
  }
  loaded = m;
  return m;
}

export type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from "uWebSockets.js";
