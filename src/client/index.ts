/**
 * src/client: clients of the pageserver's own protocols (may import only src/types and src/pg).
 * - pg_wire: PostgreSQL v3 wire protocol framing (FrameReader) and message writers, both directions
 * - pagestream: Neon's pagestream v2/v3 requests and responses, encode + decode
 * - page_service_client: PageServiceClient (connect, auth by JWT password, commands, base
 *   backup over CopyOut) and PagestreamSession (pipelined requests, answers in order)
 * - http_client: PageserverHttpClient, the typed client of the HTTP API v1; http_models: its JSON shapes
 */
export * from "./pagestream.js";
export * from "./page_service_client.js";
export * from "./http_client.js";
export * from "./http_models.js";
export * as pgWire from "./pg_wire.js";
