/**
 * The HTTP wire adapters a suite runs over (src/main/http/wire.ts): `describeEachAdapter`
 * declares the suite once per adapter, explicitly named ("… over uws", "… over node"). An
 * adapter that does not load in this process (uWS on Node 24 with glibc 2.36) is skipped with
 * its reason printed: the only conditional; test/main.http_conformance.test.ts covers uWS there
 * through a harness on the system's Node 20.
 */
import { describe, expect, it } from "vitest";
import { uwsUnavailable } from "../../src/main/http/adapter_choice.js";
import type { HttpServerKind } from "../../src/main/http/wire.js";

/** Each adapter and why it does not load here (null: it loads). */
export const HTTP_ADAPTERS: readonly { kind: HttpServerKind; unavailable: string | null }[] = [
  { kind: "uws", unavailable: uwsUnavailable() },
  { kind: "node", unavailable: null },
];

/**
 * Why uWS may not load, and nothing else: no native build for this Node (Node 24 on glibc 2.36)
 * or UWS_USE_FALLBACK standing in for that. Any other reason is a failure, not a pass.
 */
export const KNOWN_UWS_ABSENCE = /uWebSockets\.js has no native binary that loads on Node|UWS_USE_FALLBACK is set/;

/**
 * `fn(kind)` as a describe per adapter. An adapter that can't load runs one test instead: its
 * reason is the known one (uWS is then covered by main.http_conformance's Node 20 harness).
 */
export function describeEachAdapter(title: string, fn: (kind: HttpServerKind) => void): void {
  for (const a of HTTP_ADAPTERS) {
    const why = a.unavailable;
    if (why === null) {
      describe(`${title} over ${a.kind}`, () => fn(a.kind));
    } else {
      describe(`${title} over ${a.kind}`, () => {
        it(`does not load here, for the known reason: ${why}`, () => expect(why).toMatch(KNOWN_UWS_ABSENCE));
      });
    }
  }
}
