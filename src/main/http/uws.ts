/**
 * Loads uWebSockets.js and refuses to run on its pure-JS fallback: the package silently
 * falls back to a Node implementation when its native binary does not load, and we want
 * the native server or a clear startup error.
 */
import uws from "uWebSockets.js";

export function loadUws(): typeof uws {
  // The fallback only has App; the native module also has SSLApp, getParts and more.
  const native = typeof (uws as unknown as Record<string, unknown>)["SSLApp"] === "function";
  if (!native) {
    throw new Error(
      `uWebSockets.js native binary did not load for Node ${process.versions.node} (ABI ${process.versions.modules}, ${process.platform}-${process.arch}); refusing the JS fallback`,
    );
  }
  return uws;
}

export type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket } from "uWebSockets.js";
