/**
 * The HTTP wire adapters a suite runs over (src/main/http/wire.ts): `describeEachAdapter`
 * declares the suite once per adapter, explicitly named ("… over uws", "… over node"). An
 * adapter that does not load in this process (uWS on Node 24 with glibc 2.36) is skipped with
 * its reason printed: the only conditional; test/main.http_conformance.test.ts covers uWS there
 * through a harness on the system's Node 20.
 */
import { describe } from "vitest";
import { uwsUnavailable } from "../../src/main/http/adapter_choice.js";
import type { HttpServerKind } from "../../src/main/http/wire.js";

/** Each adapter and why it does not load here (null: it loads). */
export const HTTP_ADAPTERS: readonly { kind: HttpServerKind; unavailable: string | null }[] = [
  { kind: "uws", unavailable: uwsUnavailable() },
  { kind: "node", unavailable: null },
];

/** `fn(kind)` as a describe per adapter; one that can't load is a skipped describe naming why. */
export function describeEachAdapter(title: string, fn: (kind: HttpServerKind) => void): void {
  for (const a of HTTP_ADAPTERS) {
    if (a.unavailable === null) {
      describe(`${title} over ${a.kind}`, () => fn(a.kind));
    } else {
      console.warn(`skipped: ${title} over ${a.kind}: ${a.unavailable}`);
      describe.skip(`${title} over ${a.kind} (skipped: ${a.unavailable})`, () => fn(a.kind));
    }
  }
}
