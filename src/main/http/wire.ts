/**
 * The contract between the HTTP framework (http_server.ts: routes, auth, limits, validation,
 * replies) and a wire adapter (uws_adapter.ts over uWebSockets.js, node_adapter.ts over
 * node:http/node:https): an adapter only reads requests and writes replies; every decision
 * (which status, when to read the body, whether to keep the connection) is the framework's.
 *
 * Invariants an adapter keeps, so both behave the same on the wire:
 * - `serve` runs for every request, synchronously with its arrival; reading the body starts
 *   paused and the body's chunks go to `onChunk` only between `resume` and `pause`.
 * - `aborted` turns true (and `onAbort` runs once) when the client goes away before the reply
 *   ended; after that every write is dropped.
 * - `reply` with `close` closes the connection after the reply, its body unread; without it the
 *   connection stays usable (what is left of the body is read and dropped).
 * - `write` resolves once the adapter wants more (the client drained, or went away): a
 *   producer that awaits it never holds more than a bounded queue.
 * - `listen` is exclusive (a second listener on the port fails with the ConflictError naming
 *   it), `close` stops accepting and lets in-flight replies finish.
 */
import { ConflictError } from "../../types/errors.js";

/** Which wire adapter serves HTTP. */
export type HttpServerKind = "uws" | "node";
/** What node config `http_server` names: an adapter, or `auto` (adapter_choice.ts). */
export type HttpServerChoice = "auto" | HttpServerKind;
export const HTTP_SERVER_CHOICES: readonly HttpServerChoice[] = ["auto", "uws", "node"];

/** TLS for a listener: PEM files, read when the adapter is created. null: plain HTTP. */
export type HttpTls = { cert_file: string; key_file: string } | null;

/** A request's head as read from the wire: everything the framework decides on before the body. */
export interface WireHead {
  /** Upper case: GET, PUT, … */
  method: string;
  /** The path as sent (percent-escapes not decoded). */
  path: string;
  /** The query string without its `?` ("" when none). */
  query: string;
  /** Header names in lower case; repeated headers joined with ", ". */
  headers: Record<string, string>;
}

/** One request/response exchange on a connection. */
export interface Exchange {
  readonly head: WireHead;
  /** The client went away before the reply ended. */
  readonly aborted: boolean;
  /** Runs once when the client goes away (null: nothing). Replaces the previous callback. */
  onAbort: (() => void) | null;
  /** Where body chunks go; `last` marks the end of the body (possibly with an empty chunk). */
  onChunk: ((chunk: Uint8Array, last: boolean) => void) | null;
  /** Read the body (chunks flow to onChunk). */
  resume(): void;
  /** Stop reading the body: it stays in the socket. */
  pause(): void;
  /** A whole reply; `close`: close the connection after it (the body left unread). */
  reply(status: number, headers: Record<string, string>, body: string | Uint8Array, close: boolean): void;
  /** Status and headers of a streamed (chunked) body. */
  beginStream(status: number, headers: Record<string, string>): void;
  /** One chunk of the stream (never empty); resolves when the client drained or went away. */
  write(chunk: Uint8Array): Promise<void>;
  /** The stream is complete. */
  end(): void;
  /** Break the connection: a streamed body that failed midway has no other honest signal. */
  destroy(): void;
}

/** A listener: hands every request to the framework's `serve`. */
export interface WireServer {
  readonly kind: HttpServerKind;
  /** Listen exclusively; resolves the bound port; ConflictError when the port is taken. */
  listen(host: string, port: number): Promise<number>;
  close(): void;
}

export type Serve = (ex: Exchange) => void;

/** What both adapters reject `listen` with when the port is taken (or the address unusable). */
export function listenConflict(host: string, port: number): ConflictError {
  return new ConflictError(
    `cannot listen on ${host}:${port} (HTTP API): the port is in use (another pageserver?) or the address is not available`,
  );
}
