/**
 * PendingValues: the data values of one DatadirWriter modification, in insertion order, until
 * they are put into the sink. Replaces a Map<Key, Value> on ingest's hot path, where a
 * modification holds one to a few values: a Map costs a new hash table at every clear() (twice
 * per WAL record), and each WAL record stored for a block reference had to be copied into a
 * new Value behind its tag byte first.
 *
 * An entry is a key and either a whole Value (tag WHOLE_VALUE) or a tag and a payload that
 * stand for the value `tag ‖ payload`, put with putTagged (no copy until the sink's).
 *
 * Semantics are a Map's: setting a present key replaces its value in place (same position),
 * deleting and setting again moves it to the end; iteration is in insertion order.
 *
 * Invariants: entries [0, count) are live or deleted holes (payload null); `bytes` is the sum
 * of live value lengths; keys are found by a scan while count <= SCAN_MAX_ENTRIES, through
 * `byKey` (built on demand, kept in step) above that.
 */
import type { Key } from "../types/key.js";
import type { Lsn } from "../types/lsn.js";
import type { Value, ValueTag } from "../types/value.js";

/** The entry's payload is a whole Value, tag byte included. */
export const WHOLE_VALUE = -1;

/** Up to this many entries a linear scan finds a key faster than hashing it. */
const SCAN_MAX_ENTRIES = 16;
/** clear() keeps its arrays for reuse up to this many entries. */
const KEEP_ARRAYS_MAX_ENTRIES = 1024;

/** Where pending values go (Timeline, BulkImport). */
export interface PendingValuesSink {
  put(key: Key, lsn: Lsn, value: Value): void;
  putTagged(key: Key, lsn: Lsn, tag: ValueTag, payload: Uint8Array): void;
}

export class PendingValues {
  private readonly keys: Key[] = [];
  private readonly tags: number[] = [];
  private readonly payloads: (Uint8Array | null)[] = [];
  private count = 0;
  private live = 0;
  private byKey: Map<Key, number> | null = null;
  /** Sum of the live values' lengths. */
  bytes = 0;

  /** Live entries. */
  get size(): number {
    return this.live;
  }

  private find(key: Key): number {
    if (this.byKey !== null) return this.byKey.get(key) ?? -1;
    const keys = this.keys;
    for (let i = 0; i < this.count; i++) if (keys[i] === key && this.payloads[i] !== null) return i;
    return -1;
  }

  /** Set `key` to the whole value `value`. */
  setValue(key: Key, value: Value): void {
    this.set(key, WHOLE_VALUE, value);
  }

  /** Set `key` to the value `tag ‖ payload`; `payload` must stay unchanged until put or cleared. */
  setTagged(key: Key, tag: ValueTag, payload: Uint8Array): void {
    this.set(key, tag, payload);
  }

  private set(key: Key, tag: number, payload: Uint8Array): void {
    const len = tag === WHOLE_VALUE ? payload.length : payload.length + 1;
    const i = this.find(key);
    if (i >= 0) {
      this.bytes -= this.lengthAt(i);
      this.tags[i] = tag;
      this.payloads[i] = payload;
      this.bytes += len;
      return;
    }
    const n = this.count;
    this.keys[n] = key;
    this.tags[n] = tag;
    this.payloads[n] = payload;
    this.count = n + 1;
    this.live++;
    this.bytes += len;
    if (this.byKey !== null) this.byKey.set(key, n);
    else if (this.count > SCAN_MAX_ENTRIES) {
      const m = new Map<Key, number>();
      for (let j = 0; j < this.count; j++) if (this.payloads[j] !== null) m.set(this.keys[j]!, j);
      this.byKey = m;
    }
  }

  private lengthAt(i: number): number {
    const p = this.payloads[i]!;
    return this.tags[i] === WHOLE_VALUE ? p.length : p.length + 1;
  }

  /** Delete `key` if present. */
  delete(key: Key): void {
    const i = this.find(key);
    if (i < 0) return;
    this.bytes -= this.lengthAt(i);
    this.payloads[i] = null;
    this.live--;
    this.byKey?.delete(key);
  }

  /** Delete every key in [start, end). */
  deleteRange(start: Key, end: Key): void {
    for (let i = 0; i < this.count; i++) {
      const k = this.keys[i]!;
      if (this.payloads[i] !== null && k >= start && k < end) {
        this.bytes -= this.lengthAt(i);
        this.payloads[i] = null;
        this.live--;
        this.byKey?.delete(k);
      }
    }
  }

  /** Put every live value into `sink` at `lsn`, in insertion order. */
  putAll(sink: PendingValuesSink, lsn: Lsn): void {
    for (let i = 0; i < this.count; i++) {
      const p = this.payloads[i];
      if (p === null || p === undefined) continue;
      const tag = this.tags[i]!;
      if (tag === WHOLE_VALUE) sink.put(this.keys[i]!, lsn, p);
      else sink.putTagged(this.keys[i]!, lsn, tag as ValueTag, p);
    }
  }

  /** Forget every entry (and the references to their bytes). */
  clear(): void {
    if (this.count > KEEP_ARRAYS_MAX_ENTRIES) {
      // After a big modification: give the arrays back rather than keep them at that size.
      this.keys.length = 0;
      this.tags.length = 0;
      this.payloads.length = 0;
    } else {
      for (let i = 0; i < this.count; i++) this.payloads[i] = null;
    }
    this.count = 0;
    this.live = 0;
    this.bytes = 0;
    this.byKey = null;
  }
}
