/**
 * src/client: clients of the pageserver's own protocols (may import only src/protocol,
 * src/types and src/pg). The codecs live in src/protocol (the server shares them); they are
 * re-exported here so a client needs one import.
 * - page_service_client: PageServiceClient (connect, auth by JWT password, commands, base
 *   backup over CopyOut) and PagestreamSession (pipelined requests, answers in order)
 * - http_client: PageserverHttpClient, the typed client of the HTTP API v1 (its JSON shapes are
 *   src/protocol/http_models.ts); reply_checks: the run-time checks of its replies
 */
export * from "../protocol/pagestream.js";
export * from "./page_service_client.js";
export * from "./http_client.js";
export * from "../protocol/http_models.js";
export * from "./reply_checks.js";
export * as pgWire from "../protocol/pg_wire.js";
