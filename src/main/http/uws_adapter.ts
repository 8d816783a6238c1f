/**
 * The uWebSockets.js wire adapter (wire.ts): reads each request's head and body and writes
 * the framework's replies. Owns nothing but the uWS app, its listen socket and, per request,
 * the reading state and the queue of a streamed body.
 *
 * uWS rules followed here: everything from `req` is read before the handler returns (req is
 * stack-allocated); onData is registered in the handler (uWS drops data otherwise) and reading
 * is paused at once; onAborted is registered on every response and writes after an abort are
 * dropped. uWS arms its 10 s idle timeout on resume and would close a connection whose handler
 * runs longer, so the socket is resumed only to read the body and right before a reply that
 * keeps the connection.
 */
import { statusLine } from "./exchange.js";
import { type HttpResponse, loadUws, type TemplatedApp, type us_listen_socket } from "./uws.js";
import { type Exchange, type HttpTls, listenConflict, type Serve, type WireHead, type WireServer } from "./wire.js";

/** uWebSockets.js's ListenOptions.LIBUS_LISTEN_EXCLUSIVE_PORT. */
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;
/** A streamed body's producer waits while more than this is queued, and resumes below LOW. */
const STREAM_QUEUE_HIGH_BYTES = 4 * 1024 * 1024;
const STREAM_QUEUE_LOW_BYTES = 1024 * 1024;

class UwsExchange implements Exchange {
  aborted = false;
  onAbort: (() => void) | null = null;
  onChunk: ((chunk: Uint8Array, last: boolean) => void) | null = null;
  private paused = true;
  // A streamed body: uWS corrupts the chunk framing when each write is corked on its own and
  // backpressure builds up (uWebSockets.js issues 1005, 1249; we saw it under load). So writes
  // are queued, and one pump writes as many as the socket takes inside a single cork, then
  // waits for onWritable to pump again. Bounded: `write` waits above STREAM_QUEUE_HIGH_BYTES.
  private readonly queue: Uint8Array[] = [];
  private queuedBytes = 0;
  private backpressured = false;
  private producerDone = false;
  private ended = false;
  private spaceWaiter: (() => void) | null = null;

  constructor(
    private readonly res: HttpResponse,
    readonly head: WireHead,
  ) {
    res.onAborted(() => {
      this.aborted = true;
      const cb = this.onAbort;
      this.onAbort = null;
      cb?.();
      this.wakeProducer();
    });
    res.onData((ab, last) => {
      // A view: uWS reuses the ArrayBuffer after this callback (the framework copies what it keeps).
      if (!this.aborted) this.onChunk?.(new Uint8Array(ab), last);
    });
    res.pause();
  }

  resume(): void {
    if (this.aborted || !this.paused) return;
    this.res.resume();
    this.paused = false;
  }

  pause(): void {
    if (this.aborted || this.paused) return;
    this.res.pause();
    this.paused = true;
  }

  reply(status: number, headers: Record<string, string>, body: string | Uint8Array, close: boolean): void {
    if (this.aborted) return;
    if (!close) this.resume();
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status));
      for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
      this.res.end(body, close);
    });
  }

  beginStream(status: number, headers: Record<string, string>): void {
    if (this.aborted) return;
    this.resume();
    this.res.cork(() => {
      this.res.writeStatus(statusLine(status));
      for (const [k, v] of Object.entries(headers)) this.res.writeHeader(k, v);
    });
    this.res.onWritable(() => this.pump());
  }

  async write(chunk: Uint8Array): Promise<void> {
    if (this.aborted) return;
    this.queue.push(chunk);
    this.queuedBytes += chunk.length;
    if (!this.backpressured) this.pump();
    if (this.queuedBytes >= STREAM_QUEUE_HIGH_BYTES && !this.aborted) {
      await new Promise<void>((resolve) => {
        this.spaceWaiter = resolve;
      });
    }
  }

  end(): void {
    this.producerDone = true;
    if (!this.backpressured) this.pump();
  }

  destroy(): void {
    if (!this.aborted && !this.ended) this.res.close();
  }

  private wakeProducer(): void {
    if (this.spaceWaiter !== null && (this.queuedBytes < STREAM_QUEUE_LOW_BYTES || this.aborted)) {
      const w = this.spaceWaiter;
      this.spaceWaiter = null;
      w();
    }
  }

  private pump(): boolean {
    if (this.aborted || this.ended) return true;
    let ok = true;
    this.res.cork(() => {
      while (ok && this.queue.length > 0) {
        const c = this.queue.shift()!;
        this.queuedBytes -= c.length;
        ok = this.res.write(c);
      }
      if (ok && this.producerDone && this.queue.length === 0) {
        this.res.end();
        this.ended = true;
      }
    });
    this.backpressured = !ok;
    this.wakeProducer();
    return ok;
  }
}

export class UwsWire implements WireServer {
  readonly kind = "uws";
  private readonly app: TemplatedApp;
  private listenSocket: us_listen_socket | null = null;

  /** Throws when the native uWS binary does not load (uws.ts) or TLS files are unusable. */
  constructor(serve: Serve, tls: HttpTls) {
    const uws = loadUws();
    this.app = tls === null ? uws.App() : uws.SSLApp({ cert_file_name: tls.cert_file, key_file_name: tls.key_file });
    this.app.any("/*", (res, req) => {
      const headers: Record<string, string> = {};
      req.forEach((k, v) => {
        headers[k] = v;
      });
      serve(new UwsExchange(res, { method: req.getMethod().toUpperCase(), path: req.getUrl(), query: req.getQuery() ?? "", headers }));
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      // Exclusive (no SO_REUSEPORT): a second server on this port fails here instead of
      // sharing the port's connections with this one.
      const listenExclusive = this.app.listen as unknown as (
        h: string,
        p: number,
        options: number,
        cb: (s: us_listen_socket | false) => void,
      ) => void;
      listenExclusive.call(this.app, host, port, LIBUS_LISTEN_EXCLUSIVE_PORT, (sock) => {
        if (!sock) {
          reject(listenConflict(host, port));
          return;
        }
        this.listenSocket = sock;
        resolve(loadUws().us_socket_local_port(sock));
      });
    });
  }

  close(): void {
    if (this.listenSocket !== null) {
      loadUws().us_listen_socket_close(this.listenSocket);
      this.listenSocket = null;
    }
  }
}
