/**
 * Loads uWebSockets.js and refuses to run on its pure-JS fallback: the package silently
 * falls back to a Node implementation when its native binary does not load (no build for this
 * Node ABI or libc), and we want the native server or a clear reason why not. Loaded on
 * first use, so a node that serves HTTP with node:http never loads the package at all.
 */
import { createRequire } from "node:module";
import type uws from "uWebSockets.js";

let loaded: typeof uws | null = null;

export function loadUws(): typeof uws {
  if (loaded !== null) return loaded;
  const m = createRequire(import.meta.url)("uWebSockets.js") as typeof uws;
  // The fallback only has App; the native module also has SSLApp, getParts and more.
  const native = typeof (m as unknown as Record<string, unknown>)["SSLApp"] === "function";
  if (!native) {
    throw new Error(
      `uWebSockets.js native binary did not load for Node ${process.versions.node} (ABI ${process.versions.modules}, ${process.platform}-${process.arch}); refusing the JS fallback`,
    );
  }
  loaded = m;
  return m;
}

export type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from "uWebSockets.js";
