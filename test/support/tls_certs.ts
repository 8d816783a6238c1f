/**
 * Certificates for TLS tests, made by the real `openssl` in a temp directory: a CA, a server
 * certificate it signs for 127.0.0.1 (subjectAltName IP:127.0.0.1, as verify-full checks),
 * a certificate the same CA signed for another name (DNS:db.example), and a second CA that
 * signed nothing (a client trusting it must fail verification).
 */
import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface TestCerts {
  dir: string;
  /** The CA that signed the server certificate (PEM file and bytes). */
  ca_file: string;
  ca: Buffer;
  /** A CA that signed nothing here. */
  other_ca_file: string;
  other_ca: Buffer;
  /** A certificate (and its key) the CA signed for DNS:db.example, not 127.0.0.1. */
  other_host_cert_file: string;
  other_host_key_file: string;
  cert_file: string;
  key_file: string;
  cert: Buffer;
  key: Buffer;
  remove(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

function makeCa(dir: string, name: string): void {
  openssl(dir, [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    `${name}.key`,
    "-out",
    `${name}.pem`,
    "-days",
    "2",
    "-subj",
    `/CN=${name}`,
  ]);
}

export function makeTestCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), "ps-tls-"));
  makeCa(dir, "ca");
  makeCa(dir, "other_ca");
  openssl(dir, [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "server.key",
    "-out",
    "server.csr",
    "-subj",
    "/CN=127.0.0.1",
  ]);
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\n");
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    "server.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "server.pem",
    "-days",
    "2",
    "-extfile",
    "ext.cnf",
  ]);
  // Signed by the same CA for another name: a client dialing 127.0.0.1 must refuse it.
  openssl(dir, [
    "req",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    "other_host.key",
    "-out",
    "other_host.csr",
    "-subj",
    "/CN=db.example",
  ]);
  writeFileSync(join(dir, "other_host.cnf"), "subjectAltName=DNS:db.example\n");
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    "other_host.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-out",
    "other_host.pem",
    "-days",
    "2",
    "-extfile",
    "other_host.cnf",
  ]);
  const f = (n: string): string => join(dir, n);
  // psql runs as the postgres user when the tests run as root: it must read the CA files.
  chmodSync(dir, 0o755);
  for (const n of ["ca.pem", "other_ca.pem", "server.pem"]) chmodSync(f(n), 0o644);
  return {
    dir,
    ca_file: f("ca.pem"),
    ca: readFileSync(f("ca.pem")),
    other_ca_file: f("other_ca.pem"),
    other_ca: readFileSync(f("other_ca.pem")),
    other_host_cert_file: f("other_host.pem"),
    other_host_key_file: f("other_host.key"),
    cert_file: f("server.pem"),
    key_file: f("server.key"),
    cert: readFileSync(f("server.pem")),
    key: readFileSync(f("server.key")),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
