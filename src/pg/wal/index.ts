/**
 * PostgreSQL 15 WAL reading: the streaming decoder (raw bytes → validated, decoded records),
 * the record and page formats, full-page image restoration, rmgr names, CRC-32C.
 * Errors are WalDecodeError (code "corrupt"), naming the LSN and the reason.
 */
export { crc32c, crc32cRange } from "./crc32c.js";
export { type WalStreamDecoderOptions, WalStreamDecoder } from "./decoder.js";
export { imageCompression, restorePageImage } from "./image.js";
export * from "./page.js";
export * from "./record.js";
export * from "./rmgr_ids.js";
