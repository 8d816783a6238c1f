/**
 * Value: what a key holds at one LSN, serialized as one tag byte and a payload. Values travel
 * as these bytes everywhere (ephemeral file, layer files, worker messages) so nothing
 * re-encodes them on the way.
 *
 *   tag 0  IMAGE           payload = the whole value (an 8 kB page, a size, a directory…)
 *   tag 1  PG_RECORD       payload = a PostgreSQL WAL record that needs a prior page version
 *   tag 2  PG_RECORD_INIT  payload = a PostgreSQL WAL record that initializes the page
 *   tag 3  NATIVE          payload = a pageserver record (CLOG bits, multixact, test ops…)
 *   tag 4  NATIVE_INIT     payload = a pageserver record that initializes the page (e.g. a
 *                          PostgreSQL full-page image kept as it came in the WAL, compressed)
 *
 * `will_init` (an image or an initializing record) ends a reconstruction walk.
 */
import { assert } from "./assert.js";

export enum ValueTag {
  Image = 0,
  PgRecord = 1,
  PgRecordInit = 2,
  Native = 3,
  NativeInit = 4,
}

export type Value = Uint8Array;

export function valueTag(v: Value): ValueTag {
  return v[0] as ValueTag;
}

export function valueWillInit(v: Value): boolean {
  const t = v[0];
  return t === ValueTag.Image || t === ValueTag.PgRecordInit || t === ValueTag.NativeInit;
}

export function isValueTag(t: number): boolean {
  return t >= 0 && t <= 4;
}

export function valuePayload(v: Value): Uint8Array {
  return v.subarray(1);
}

function withTag(tag: ValueTag, payload: Uint8Array): Value {
  const v = new Uint8Array(payload.length + 1);
  v[0] = tag;
  v.set(payload, 1);
  return v;
}

export function imageValue(payload: Uint8Array): Value {
  return withTag(ValueTag.Image, payload);
}

export function pgRecordValue(willInit: boolean, record: Uint8Array): Value {
  return withTag(willInit ? ValueTag.PgRecordInit : ValueTag.PgRecord, record);
}

export function nativeValue(payload: Uint8Array): Value {
  assert(payload.length > 0, "empty native record");
  return withTag(ValueTag.Native, payload);
}

export function nativeInitValue(payload: Uint8Array): Value {
  assert(payload.length > 0, "empty native record");
  return withTag(ValueTag.NativeInit, payload);
}
