/**
 * The page service's idle timeout (page_service_idle_timeout_ms = 2 s here): a connection
 * that waits on its client that long gets FATAL 57P05 and is closed —
 * - after its login with no command, and inside a pagestream session with no request;
 * - while it doesn't read its answers (the server waits to drain);
 * but a request the server is working on (an LSN wait of 4 s, the tenant's wait_lsn_timeout)
 * is not idle: it is answered and the connection goes on. The closes are counted in /metrics.
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PagestreamRequestError, type PageServiceClient } from "../src/client/page_service_client.js";
import { encodeRequest, header, LATEST_LSN } from "../src/protocol/pagestream.js";
import { copyData, MSG, parseErrorFields, query, startupMessage } from "../src/protocol/pg_wire.js";
import { PageServiceFixture } from "./support/page_service_fixture.js";
import { within } from "./support/within.js";
import { asLsn } from "../src/types/lsn.js";

const IDLE_MS = 2000;
const WAIT_LSN_MS = 4000;

let fx: PageServiceFixture;

beforeAll(async () => {
  fx = await PageServiceFixture.start({
    rows: 200,
    nodeConfig: { page_service_idle_timeout_ms: IDLE_MS },
    tenantConfig: { wait_lsn_timeout: `${WAIT_LSN_MS}ms` },
  });
}, 120_000);

afterAll(async () => {
  await fx?.destroy();
});

async function idleCloses(): Promise<number> {
  const text = Buffer.from((await fx.http("GET", "/metrics")).bytes).toString("utf8");
  const m = /^pageserver_page_service_connections_closed_total\{reason="idle_timeout"\} (\d+)/m.exec(text);
  expect(m, "pageserver_page_service_connections_closed_total in /metrics").not.toBeNull();
  return Number(m![1]);
}

async function expectIdleFatal(c: PageServiceClient): Promise<void> {
  const f = await within(c.recv(), "FATAL 57P05 from the server");
  expect(f.type).toBe(MSG.ErrorResponse);
  const fields = parseErrorFields(f.body);
  expect(fields.get("S")).toBe("FATAL");
  expect(fields.get("C")).toBe("57P05");
  expect(fields.get("M")).toMatch(/idle-session timeout/);
  await expect(within(c.recv(), "the close after the FATAL")).rejects.toThrow(/connection closed/);
}

describe("page service idle timeout", () => {
  it("a connection with no command, and one in a pagestream session with no request, get FATAL 57P05 and are closed", async () => {
    const before = await idleCloses();
    const c = await fx.client();
    const c2 = await fx.client();
    try {
      const s = await c2.pagestream(fx.tenant, fx.timeline, 3);
      expect(await s.exists(fx.rel, LATEST_LSN, fx.lsn)).toBe(true);
      await expectIdleFatal(c);
      await expectIdleFatal(c2);
    } finally {
      c.close();
      c2.close();
    }
    expect(await idleCloses()).toBe(before + 2);
  });

  it("a request the server works on for longer than the timeout (an LSN wait) is not idle", async () => {
    const c = await fx.client();
    try {
      const s = await c.pagestream(fx.tenant, fx.timeline, 2);
      // not_modified_since beyond what is ingested (nothing streams): the server waits
      // wait_lsn_timeout (4 s), then answers with an Error; the connection goes on.
      await expect(s.nblocks(fx.rel, LATEST_LSN, asLsn(fx.lsn + 0x100000))).rejects.toThrow(PagestreamRequestError);
      expect(await s.exists(fx.rel, LATEST_LSN, fx.lsn)).toBe(true);
      await s.close();
      // And then, with nothing to do, it is idle.
      await expectIdleFatal(c);
    } finally {
      c.close();
    }
  });

  it("a client that doesn't read its answers is closed after the timeout", async () => {
    const before = await idleCloses();
    const sock = connect(fx.server.pgPort, "127.0.0.1");
    try {
      await within(new Promise((resolve, reject) => sock.once("connect", resolve).once("error", reject)), "connect");
      sock.pause(); // read nothing
      const one = copyData(encodeRequest({ kind: "get_page", hdr: header(0, LATEST_LSN, fx.lsn), rel: fx.rel, blkno: 0 }, 2));
      sock.write(
        Buffer.concat([
          startupMessage({ user: "unread" }),
          query(`pagestream_v2 ${fx.tenant} ${fx.timeline}`),
          ...Array.from({ length: 5000 }, () => one),
        ]),
      );
      await within(
        (async () => {
          while ((await idleCloses()) === before) await new Promise((r) => setTimeout(r, 100));
        })(),
        "the server closes the connection that reads nothing",
      );
    } finally {
      sock.destroy();
    }
  });
});
