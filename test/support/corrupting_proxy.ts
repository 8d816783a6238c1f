/**
 * A TCP proxy between a replication client and PostgreSQL that, once armed, flips one byte
 * of WAL in the next XLogData message: inside the first record's data when the chunk starts
 * at a record (a CRC error), in the page address when it starts at a page boundary (a page
 * header error). Everything else passes through unchanged. Loopback only.
 */
import { createServer, type Server, type Socket, connect } from "node:net";

export class CorruptingProxy {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  armed = false;
  /** LSN of the chunk that was corrupted, once it happened. */
  corruptedAt: number | null = null;
  /** LSN of the flipped byte itself. */
  corruptedByteLsn: number | null = null;
  port = 0;

  constructor(readonly targetPort: number) {}

  async start(): Promise<number> {
    this.server = createServer((client) => this.pipe(client));
    await new Promise<void>((r) => this.server!.listen(0, "127.0.0.1", r));
    const a = this.server.address();
    this.port = typeof a === "object" && a !== null ? a.port : 0;
    return this.port;
  }

  private pipe(client: Socket): void {
    const upstream = connect(this.targetPort, "127.0.0.1");
    this.sockets.add(client).add(upstream);
    client.on("data", (d) => upstream.write(d));
    let buf = Buffer.alloc(0);
    upstream.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      // Server → client: type byte + int32 length (including itself).
      let off = 0;
      while (buf.length - off >= 5) {
        const len = buf.readUInt32BE(off + 1);
        if (buf.length - off < 1 + len) break;
        const msg = buf.subarray(off, off + 1 + len);
        if (this.armed && msg[0] === 0x64 /* 'd' */ && msg[5] === 0x77 /* 'w' */ && len > 4 + 25 + 64) {
          const payload = 5 + 25; // message header, then XLogData header
          const startLsn = msg.readUInt32BE(6) * 2 ** 32 + msg.readUInt32BE(10);
          const k = startLsn % 8192 === 0 ? 9 : 26;
          msg[payload + k]! ^= 0x5a;
          this.armed = false;
          this.corruptedAt = startLsn;
          this.corruptedByteLsn = startLsn + k;
        }
        client.write(msg);
        off += 1 + len;
      }
      buf = buf.subarray(off);
    });
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
