/**
 * Which wire adapter serves HTTP (node config `http_server`, flag `--http-server`): uWebSockets.js
 * where its native binary loads (today Node 20 here), node:http where none does (Node 24 on
 * glibc 2.36). `auto` takes uWS when it loads; `uws` when it does not is a startup error
 * naming why, never a silent switch.
 */
import { InvalidArgumentError } from "../../types/errors.js";
import { NodeWire } from "./node_adapter.js";
import { UwsWire } from "./uws_adapter.js";
import { loadUws } from "./uws.js";
import type { HttpServerChoice, HttpServerKind, HttpTls, Serve, WireServer } from "./wire.js";

/** Why uWS does not load here, or null when it does. */
export function uwsUnavailable(): string | null {
  try {
    loadUws();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** The adapter for `choice`, and why (for the startup log line). Throws for `uws` where it does not load. */
export function chooseHttpServer(choice: HttpServerChoice): { kind: HttpServerKind; why: string } {
  if (choice === "node") return { kind: "node", why: "http_server is node" };
  const missing = uwsUnavailable();
  if (choice === "uws") {
    if (missing !== null) throw new InvalidArgumentError(`http_server is uws but ${missing}; use http_server auto or node`);
    return { kind: "uws", why: "http_server is uws" };
  }
  return missing === null
    ? { kind: "uws", why: "http_server is auto and uWebSockets.js loads" }
    : { kind: "node", why: `http_server is auto and ${missing}` };
}

export function createWire(kind: HttpServerKind, serve: Serve, tls: HttpTls): WireServer {
  return kind === "uws" ? new UwsWire(serve, tls) : new NodeWire(serve, tls);
}
