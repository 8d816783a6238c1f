/**
 * Auth: JWTs signed by the control plane, verified with its public key (Ed25519 or RS256
 * PEM, `--auth-public-key FILE`). One policy for HTTP (`Authorization: Bearer …`) and the
 * page service (the token as the cleartext password).
 *
 * Claims, as Neon's: `scope` = `tenant` (with `tenant_id`: that tenant only) or
 * `pageserverapi` (every tenant and the management routes). Anything else is refused.
 *
 * Invariants: verification never throws anything but UnauthorizedError (401: no token, bad
 * signature, expired, malformed claims); `check` never throws anything but ForbiddenError
 * (403: valid token, wrong scope or tenant). Both are decided before a handler runs, so a
 * refused request changes nothing.
 */
import { readFileSync } from "node:fs";
import { type CryptoKey, decodeProtectedHeader, importSPKI, type JWTPayload, jwtVerify, type KeyObject } from "jose";
import { InvalidArgumentError, PageserverError } from "../types/errors.js";
import { isId, type TenantId } from "../types/ids.js";

export class UnauthorizedError extends PageserverError {
  constructor(message: string) {
    super("unauthorized", message);
  }
}

export class ForbiddenError extends PageserverError {
  constructor(message: string) {
    super("forbidden", message);
  }
}

export type Claims = { scope: "pageserverapi" } | { scope: "tenant"; tenant_id: TenantId };

/** What a request touches: one tenant, or the node (management, every tenant). */
export type AuthTarget = { tenant: TenantId } | "management";

/**
 * Who may call an HTTP route: `open` (no token), `tenant` (that tenant's token or
 * pageserverapi: reads, branches, base backups, its own safe settings) or `management`
 * (pageserverapi: attach/detach, WAL sources, imports, failpoints, node-protecting settings).
 */
export type AuthScope = "open" | "tenant" | "management";

/** A bearer token longer than this is refused unread (no JWT of ours comes close). */
const MAX_TOKEN_CHARS = 8192;
const ALGORITHMS = ["EdDSA", "RS256"] as const;

export class Auth {
  private readonly key: CryptoKey | KeyObject;
  private readonly alg: (typeof ALGORITHMS)[number];

  private constructor(key: CryptoKey | KeyObject, alg: (typeof ALGORITHMS)[number]) {
    this.key = key;
    this.alg = alg;
  }

  /** Load the public key (PEM, SPKI): Ed25519 → EdDSA, RSA → RS256. */
  static async fromPublicKeyFile(path: string): Promise<Auth> {
    let pem: string;
    try {
      pem = readFileSync(path, "utf8");
    } catch (e) {
      throw new InvalidArgumentError(`auth_public_key: cannot read ${path}: ${(e as Error).message}`);
    }
    return Auth.fromPem(pem, path);
  }

  static async fromPem(pem: string, what = "public key"): Promise<Auth> {
    for (const alg of ALGORITHMS) {
      try {
        return new Auth(await importSPKI(pem, alg), alg);
      } catch {
        // not this kind of key: try the next algorithm
      }
    }
    throw new InvalidArgumentError(`auth_public_key: ${what} is not an Ed25519 or RSA public key in PEM (SPKI)`);
  }

  /** Verify a token and return its claims; every failure is a 401 with the reason. */
  async verify(token: string | undefined): Promise<Claims> {
    if (token === undefined || token.length === 0) throw new UnauthorizedError("missing token: send Authorization: Bearer <JWT>");
    if (token.length > MAX_TOKEN_CHARS) throw new UnauthorizedError(`token longer than ${MAX_TOKEN_CHARS} characters`);
    let payload: JWTPayload;
    try {
      const header = decodeProtectedHeader(token);
      if (header.alg !== this.alg) throw new Error(`algorithm ${String(header.alg)} does not match the server key (${this.alg})`);
      payload = (await jwtVerify(token, this.key, { algorithms: [this.alg] })).payload;
    } catch (e) {
      const why = (e as { code?: string }).code === "ERR_JWT_EXPIRED" ? "token expired" : `invalid token: ${(e as Error).message}`;
      throw new UnauthorizedError(why);
    }
    return claimsOf(payload);
  }

  /** Refuse (403) a valid token that does not cover `target`. */
  static check(claims: Claims, target: AuthTarget): void {
    if (claims.scope === "pageserverapi") return;
    if (target === "management") throw new ForbiddenError("a tenant-scoped token can't use management routes: needs scope pageserverapi");
    if (claims.tenant_id !== target.tenant) throw new ForbiddenError(`the token is for tenant ${claims.tenant_id}, not ${target.tenant}`);
  }
}

/**
 * Refuse (403) a request that needs the management scope for `what` (a body field or a
 * setting of a tenant route) unless the caller has it. `null` claims: auth is off.
 */
export function requireManagement(claims: Claims | null, what: string): void {
  if (claims === null || claims.scope === "pageserverapi") return;
  throw new ForbiddenError(`${what} needs scope pageserverapi: a tenant-scoped token can't`);
}

function claimsOf(p: JWTPayload): Claims {
  const scope = p["scope"];
  if (scope === "pageserverapi") return { scope };
  if (scope === "tenant") {
    const tid = p["tenant_id"];
    if (!isId(tid)) throw new UnauthorizedError("invalid token: scope tenant needs a tenant_id of 32 hex characters");
    return { scope, tenant_id: tid as TenantId };
  }
  throw new UnauthorizedError(`invalid token: unknown scope ${JSON.stringify(scope) ?? "undefined"}`);
}
