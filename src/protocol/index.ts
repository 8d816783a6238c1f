/**
 * src/protocol: the wire formats the pageserver's server side (src/main) and its clients
 * (src/client) share, so both ends encode and decode with one codec (may import only
 * src/types and src/pg, and npm packages such as TypeBox).
 * - pg_wire: PostgreSQL v3 wire protocol framing (FrameReader) and message writers, both directions
 * - pagestream: Neon's pagestream v2/v3 requests and responses, encode + decode
 * - http_models: the HTTP API's JSON shapes (TypeBox schemas and their Static<> types)
 */
export * from "./pagestream.js";
export * from "./http_models.js";
export * as pgWire from "./pg_wire.js";
