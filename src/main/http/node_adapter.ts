/**
 * The node:http (node:https with TLS) wire adapter (wire.ts): reads each request's head and
 * body and writes the framework's replies. Serves where no uWebSockets.js build loads (Node
 * 24 on glibc 2.36). Owns the node server and, per request, its reading state.
 *
 * Mapping of the wire contract onto node's streams: the body is read only once `resume` is
 * called (no 'data' listener before, so node does not pull it); a reply with `close` sends
 * `Connection: close`, so node ends the socket after it with the body unread; a streamed
 * chunk is copied (a producer may reuse its buffer once `write` resolved, node would still
 * hold it) and `write` waits for 'drain'. Timeouts match uWS's: a connection idle between
 * requests, or whose head is not complete, is closed after IDLE_TIMEOUT_MS; a handler that
 * runs long is not cut (no socket inactivity timeout).
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerOptions, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { readFileSync } from "node:fs";
import { statusLine } from "./exchange.js";
import { type Exchange, type HttpTls, listenConflict, type Serve, type WireHead, type WireServer } from "./wire.js";

/** uWS's idle timeout (10 s), kept by this adapter so both close slow clients alike. */
const IDLE_TIMEOUT_MS = 10_000;
/** A request whose body is not in after this long is closed (uWS: idle timeout between chunks). */
const REQUEST_TIMEOUT_MS = 60_000;
/** Request heads up to this size are read (uWS reads ~128 KiB): a long URL gets our 414, not node's 431. */
const MAX_HEADER_BYTES = 128 * 1024;

class NodeExchange implements Exchange {
  aborted = false;
  onAbort: (() => void) | null = null;
  onChunk: ((chunk: Uint8Array, last: boolean) => void) | null = null;
  private reading = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    readonly head: WireHead,
  ) {
    res.on("close", () => {
      if (res.writableFinished) return;
      this.aborted = true;
      const cb = this.onAbort;
      this.onAbort = null;
      cb?.();
    });
  }

  resume(): void {
    if (this.aborted) return;
    if (!this.reading) {
      this.reading = true;
      // A listener turns the stream to flowing mode: only now does node read the body.
      this.req.on("data", (d: Buffer) => this.onChunk?.(d, false));
      this.req.on("end", () => this.onChunk?.(new Uint8Array(0), true));
    }
    this.req.resume();
  }

  pause(): void {
    if (this.reading) this.req.pause();
  }

  reply(status: number, headers: Record<string, string>, body: string | Uint8Array, close: boolean): void {
    if (this.aborted) return;
    // Kept: the rest of the body must be read (and is dropped) for the next request to follow.
    if (!close && this.reading) this.req.resume();
    const bytes = typeof body === "string" ? Buffer.from(body) : body;
    // Content-Length, as uWS sends: writeHead alone would make node send the body chunked.
    const extra: Record<string, string> = { "content-length": String(bytes.byteLength), ...(close ? { connection: "close" } : {}) };
    this.res.writeHead(status, statusLine(status).slice(4), { ...headers, ...extra });
    this.res.end(bytes);
  }

  beginStream(status: number, headers: Record<string, string>): void {
    if (this.aborted) return;
    if (this.reading) this.req.resume();
    this.res.writeHead(status, statusLine(status).slice(4), headers);
  }

  write(chunk: Uint8Array): Promise<void> {
    if (this.aborted) return Promise.resolve();
    if (this.res.write(Buffer.from(chunk))) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        this.res.off("drain", done);
        this.res.off("close", done);
        resolve();
      };
      this.res.on("drain", done);
      this.res.on("close", done);
    });
  }

  end(): void {
    if (!this.aborted) this.res.end();
  }

  destroy(): void {
    if (!this.aborted) this.res.destroy();
  }
}

export class NodeWire implements WireServer {
  readonly kind = "node";
  private readonly server: Server;

  /** Throws when the TLS files can't be read. */
  constructor(serve: Serve, tls: HttpTls) {
    const options: ServerOptions = {
      keepAliveTimeout: IDLE_TIMEOUT_MS,
      headersTimeout: IDLE_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      maxHeaderSize: MAX_HEADER_BYTES,
      // How often node checks the two timeouts above (default 30 s).
      connectionsCheckingInterval: 1000,
    };
    const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
      const url = req.url ?? "/";
      const q = url.indexOf("?");
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(", ") : v;
      serve(
        new NodeExchange(req, res, {
          method: (req.method ?? "GET").toUpperCase(),
          path: q < 0 ? url : url.slice(0, q),
          query: q < 0 ? "" : url.slice(q + 1),
          headers,
        }),
      );
    };
    this.server =
      tls === null
        ? createHttpServer(options, onRequest)
        : createHttpsServer({ ...options, cert: readFileSync(tls.cert_file), key: readFileSync(tls.key_file) }, onRequest);
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException): void => {
        reject(e.code === "EADDRINUSE" || e.code === "EADDRNOTAVAIL" ? listenConflict(host, port) : e);
      };
      this.server.once("error", onError);
      // Exclusive: a second server on this port fails here instead of sharing it (cluster).
      this.server.listen({ host, port, exclusive: true }, () => {
        this.server.off("error", onError);
        const addr = this.server.address();
        if (addr === null || typeof addr === "string") throw new Error(`listening on ${host}:${port}: no TCP address`);
        resolve(addr.port);
      });
    });
  }

  close(): void {
    this.server.close();
    // Idle keep-alive connections would hold the process; replies in flight finish.
    this.server.closeIdleConnections();
  }
}
