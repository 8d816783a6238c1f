/**
 * CRC-32C (Castagnoli), as PostgreSQL computes it for WAL records, pg_control and data files:
 * reflected polynomial 0x82F63B78, initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF; the check
 * value of "123456789" is 0xE3069283.
 *
 * A thin wrapper over the native `crc32c` of @node-rs/crc32 (SSE4.2 / ARMv8 CRC instructions).
 * Its second argument is a *finished* CRC to continue from, so a CRC over A then B is
 * `crc32c(B, crc32c(A))`, the same value as one pass over A‖B. PostgreSQL's record CRC is
 * exactly that: bytes [24, tot_len) of the record, then header bytes [0, 20).
 *
 * The native call costs a fixed ~100 ns, so callers hand it whole ranges, never single bytes.
 */
import { crc32c as nativeCrc32c } from "@node-rs/crc32";

/** CRC-32C of `bytes`, continuing from the finished CRC `previous` (0 = start a new CRC). */
export function crc32c(bytes: Uint8Array, previous = 0): number {
  return nativeCrc32c(bytes, previous) >>> 0;
}
