/**
 * Page service auth (server started with auth_public_key, an Ed25519 key made here; tokens
 * signed with jose): the JWT is the cleartext password. No password, a bad signature, an
 * expired token, a malformed one → FATAL 28000 and the connection closes. A tenant token
 * serves its own tenant and gets 42501 for another (the connection goes on); a
 * pageserverapi token serves every tenant.
 */
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PageServiceClient, PageServiceError } from "../src/client/page_service_client.js";
import { LATEST_LSN } from "../src/protocol/pagestream.js";
import { generateTenantId } from "../src/types/ids.js";
import { PageServiceFixture } from "./support/page_service_fixture.js";

const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const other = generateKeyPairSync("ed25519");

async function token(claims: Record<string, unknown>, opts: { key?: KeyObject; expiresAt?: number } = {}): Promise<string> {
  let j = new SignJWT(claims).setProtectedHeader({ alg: "EdDSA" }).setIssuedAt();
  if (opts.expiresAt !== undefined) j = j.setExpirationTime(opts.expiresAt);
  return await j.sign(opts.key ?? privateKey);
}

let fx: PageServiceFixture;
let apiToken: string;

beforeAll(async () => {
  apiToken = await token({ scope: "pageserverapi" });
  fx = await PageServiceFixture.start({
    rows: 200,
    authPublicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    httpToken: apiToken,
  });
}, 120_000);

afterAll(async () => {
  await fx?.destroy();
});

async function refused(password: string | undefined, why: RegExp): Promise<void> {
  const p = PageServiceClient.connect({ host: "127.0.0.1", port: fx.server.pgPort, ...(password === undefined ? {} : { password }) });
  await expect(p).rejects.toThrow(why);
  await p.catch((e: unknown) => {
    expect(e).toBeInstanceOf(PageServiceError);
    expect((e as PageServiceError).sqlstate).toBe("28000");
  });
}

async function nblocksWith(password: string, tenant = fx.tenant): Promise<number> {
  const c = await PageServiceClient.connect({ host: "127.0.0.1", port: fx.server.pgPort, password });
  try {
    const s = await c.pagestream(tenant, fx.timeline, 3);
    const n = await s.nblocks(fx.rel, LATEST_LSN, fx.lsn);
    await s.close();
    return n;
  } finally {
    c.close();
  }
}

describe("page service auth", () => {
  it("refuses a connection without a valid token with FATAL 28000", async () => {
    await refused(undefined, /asks for a password/); // our client refuses to go on
    await refused("", /missing token/);
    await refused("not.a.jwt", /invalid token/);
    await refused(await token({ scope: "pageserverapi" }, { key: other.privateKey }), /invalid token: signature verification failed/);
    await refused(await token({ scope: "pageserverapi" }, { expiresAt: Math.floor(Date.now() / 1000) - 60 }), /token expired/);
    await refused(await token({ scope: "admin" }), /unknown scope "admin"/);
    await refused(await token({ scope: "tenant" }), /scope tenant needs a tenant_id/);
  });

  it("a tenant token serves its tenant; on another tenant: 42501, and the connection goes on", async () => {
    const mine = await token({ scope: "tenant", tenant_id: fx.tenant });
    expect(await nblocksWith(mine)).toBeGreaterThan(0);
    const c = await PageServiceClient.connect({ host: "127.0.0.1", port: fx.server.pgPort, password: mine });
    try {
      const b = generateTenantId();
      await expect(c.pagestream(b, fx.timeline, 2)).rejects.toThrow(
        new RegExp(`the token is for tenant ${fx.tenant}, not ${b}.*SQLSTATE 42501`),
      );
      await expect(c.basebackup(b, fx.timeline, "latest")).rejects.toThrow(/SQLSTATE 42501/);
      const s = await c.pagestream(fx.tenant, fx.timeline, 2);
      expect(await s.exists(fx.rel, LATEST_LSN, fx.lsn)).toBe(true);
      await s.close();
    } finally {
      c.close();
    }
    // Another tenant's token on this tenant: refused before anything is looked up.
    const tokenB = await token({ scope: "tenant", tenant_id: generateTenantId() });
    await expect(nblocksWith(tokenB)).rejects.toThrow(/SQLSTATE 42501/);
  });

  it("a pageserverapi token serves every tenant (and an unknown one is just not found)", async () => {
    expect(await nblocksWith(apiToken)).toBeGreaterThan(0);
    await expect(nblocksWith(apiToken, generateTenantId())).rejects.toThrow(/not found.*SQLSTATE 42704/);
  });
});
