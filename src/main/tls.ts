/**
 * The node's TLS certificate (config `tls_cert_file` / `tls_key_file`, flags `--tls-cert` /
 * `--tls-key`): read and checked once at startup, then handed to the page service (TLS after
 * PostgreSQL's SSLRequest) and to the HTTP server (HTTPS) as one NodeTls.
 *
 * Why at startup: a missing file, a file that isn't PEM, or a key that doesn't belong to the
 * certificate is a configuration error the operator must see before the node listens, as one
 * line naming the file (InvalidArgumentError; `pageserver` exits 2), not at the first client's
 * handshake. The files are not read again: a new certificate takes a restart.
 *
 * Invariants: a NodeTls has a certificate chain with at least one certificate, a private key
 * that matches its first certificate, and a server SecureContext built from both.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext, type SecureContext } from "node:tls";
import { InvalidArgumentError } from "../types/errors.js";
import type { NodeConfig } from "./config.js";

/** A certificate or key file larger than this is refused (a chain of a few certificates is a few kB). */
const MAX_PEM_FILE_BYTES = 1024 * 1024;

export interface NodeTls {
  cert_file: string;
  key_file: string;
  /** The PEM certificate chain (leaf first), as read. */
  cert: Buffer;
  /** The PEM private key, as read. */
  key: Buffer;
  /** The server context for node:tls (the page service's TLSSocket). */
  context: SecureContext;
}

function readPem(file: string, what: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new InvalidArgumentError(`${what} ${file}: cannot read it (${err.code ?? err.message})`);
  }
  if (bytes.length > MAX_PEM_FILE_BYTES) throw new InvalidArgumentError(`${what} ${file}: larger than ${MAX_PEM_FILE_BYTES} bytes`);
  if (!bytes.toString("latin1").includes("-----BEGIN ")) throw new InvalidArgumentError(`${what} ${file}: not a PEM file`);
  return bytes;
}

/**
 * The node's certificate and key, checked (see the header); null when the config names
 * neither file. Throws InvalidArgumentError naming the file at fault.
 */
export function loadNodeTls(config: Pick<NodeConfig, "tls_cert_file" | "tls_key_file">): NodeTls | null {
  const { tls_cert_file: cert_file, tls_key_file: key_file } = config;
  if (cert_file === null && key_file === null) return null;
  if (cert_file === null || key_file === null)
    throw new InvalidArgumentError("tls_cert_file and tls_key_file (--tls-cert, --tls-key) go together: give both or neither");
  const cert = readPem(cert_file, "tls_cert_file");
  const key = readPem(key_file, "tls_key_file");
  try {
    new X509Certificate(cert);
  } catch (e) {
    throw new InvalidArgumentError(`tls_cert_file ${cert_file}: not a PEM certificate (${(e as Error).message})`);
  }
  try {
    createPrivateKey(key);
  } catch (e) {
    throw new InvalidArgumentError(`tls_key_file ${key_file}: not a PEM private key, or an encrypted one (${(e as Error).message})`);
  }
  let context: SecureContext;
  try {
    context = createSecureContext({ cert, key });
  } catch (e) {
    throw new InvalidArgumentError(`tls_key_file ${key_file} does not go with tls_cert_file ${cert_file}: ${(e as Error).message}`);
  }
  return { cert_file, key_file, cert, key, context };
}
