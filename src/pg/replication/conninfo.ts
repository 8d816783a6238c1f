/**
 * libpq connection strings, both forms libpq accepts (PostgreSQL 15, fe-connect.c):
 *
 *   URI        postgresql://[user[:password]@][host][:port][/dbname][?keyword=value&…]
 *              (or postgres://); every part percent-decoded, an IPv6 host in [brackets],
 *              `?ssl=true` meaning sslmode=require, as conninfo_uri_parse does.
 *   key=value  keyword = value pairs separated by whitespace; a value is single-quoted to
 *              hold spaces, and a backslash escapes the next character (quoted or not), as
 *              conninfo_parse does.
 *
 * Only libpq's own keywords are accepted (its error texts, naming the keyword and never a
 * value, so no password is echoed). A later keyword overrides an earlier one, as in libpq.
 * Each value's position in the text is kept so that maskConninfo can hide every password
 * (URI userinfo, `?password=`, `password=`, quoted or not) in place, leaving the rest as
 * the user wrote it.
 *
 * pg-connection-string (installed with `pg`) has no key=value form: it reads
 * `host=… port=…` as a relative URL (host "base"), and it reads ssl key files named in
 * the string. Hence this parser; nothing here touches the environment or the filesystem.
 */
import { InvalidArgumentError } from "../../types/errors.js";

/** Longest connection string accepted (the API's limit too). */
export const MAX_CONNINFO_LENGTH = 4096;

/** PostgreSQL 15's connection keywords (PQconninfoOptions), plus those PG 16/17 added. */
const KEYWORDS = new Set([
  "service",
  "user",
  "password",
  "passfile",
  "channel_binding",
  "connect_timeout",
  "dbname",
  "host",
  "hostaddr",
  "port",
  "client_encoding",
  "options",
  "application_name",
  "fallback_application_name",
  "keepalives",
  "keepalives_idle",
  "keepalives_interval",
  "keepalives_count",
  "tcp_user_timeout",
  "sslmode",
  "sslnegotiation",
  "sslcompression",
  "sslcert",
  "sslkey",
  "sslcertmode",
  "sslpassword",
  "sslrootcert",
  "sslcrl",
  "sslcrldir",
  "sslsni",
  "requirepeer",
  "require_auth",
  "ssl_min_protocol_version",
  "ssl_max_protocol_version",
  "gssencmode",
  "krbsrvname",
  "gsslib",
  "replication",
  "target_session_attrs",
  "load_balance_hosts",
]);

export interface Conninfo {
  form: "uri" | "keyword";
  /** Keyword → decoded value (the last one given wins). */
  params: Map<string, string>;
  /** [start, end) of every password value in the original text, for masking. */
  passwordSpans: Array<[number, number]>;
}

const isSpace = (c: string | undefined): boolean => c === " " || c === "\t" || c === "\n" || c === "\r" || c === "\f" || c === "\v";

function bad(message: string): never {
  throw new InvalidArgumentError(`invalid connection string: ${message}`);
}

/** Parse a connection string in either form; InvalidArgumentError says what is wrong. */
export function parseConninfo(text: string): Conninfo {
  if (text.length > MAX_CONNINFO_LENGTH) bad(`longer than ${MAX_CONNINFO_LENGTH} characters`);
  const uriPrefix = /^postgres(ql)?:\/\//.exec(text);
  return uriPrefix !== null ? parseUri(text, uriPrefix[0].length) : parseKeywords(text);
}

function store(info: Conninfo, keyword: string, value: string, span: [number, number], fromUri: boolean): void {
  if (!KEYWORDS.has(keyword)) bad(fromUri ? `invalid URI query parameter: "${keyword}"` : `invalid connection option "${keyword}"`);
  info.params.set(keyword, value);
  if (keyword === "password") info.passwordSpans.push(span);
}

/** conninfo_parse: `keyword = value` pairs, values optionally 'quoted', backslash escapes. */
function parseKeywords(s: string): Conninfo {
  const info: Conninfo = { form: "keyword", params: new Map(), passwordSpans: [] };
  let i = 0;
  while (i < s.length) {
    if (isSpace(s[i])) {
      i++;
      continue;
    }
    const kStart = i;
    while (i < s.length && s[i] !== "=" && !isSpace(s[i])) i++;
    const keyword = s.slice(kStart, i);
    while (i < s.length && isSpace(s[i])) i++;
    if (s[i] !== "=") bad(`missing "=" after "${keyword}"`);
    i++;
    while (i < s.length && isSpace(s[i])) i++;
    const vStart = i;
    let value = "";
    if (s[i] !== "'") {
      while (i < s.length && !isSpace(s[i])) {
        if (s[i] === "\\") {
          i++;
          if (i < s.length) value += s[i++];
        } else value += s[i++];
      }
    } else {
      i++;
      for (;;) {
        if (i >= s.length) bad("unterminated quoted string");
        if (s[i] === "\\") {
          i++;
          if (i < s.length) value += s[i++];
          continue;
        }
        if (s[i] === "'") {
          i++;
          break;
        }
        value += s[i++];
      }
    }
    store(info, keyword, value, [vStart, i], false);
  }
  return info;
}

/** conninfo_uri_decode: %XX escapes (no %00); '+' stays '+'. */
function uriDecode(raw: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; ) {
    if (raw[i] !== "%") {
      const cp = raw.codePointAt(i)!;
      const ch = String.fromCodePoint(cp);
      for (const b of Buffer.from(ch, "utf8")) bytes.push(b);
      i += ch.length;
      continue;
    }
    const hex = raw.slice(i + 1, i + 3);
    if (!/^[0-9a-fA-F]{2}$/.test(hex)) bad("invalid percent-encoded token");
    const b = Number.parseInt(hex, 16);
    if (b === 0) bad("forbidden value %00 in percent-encoded value");
    bytes.push(b);
    i += 3;
  }
  return Buffer.from(bytes).toString("utf8");
}

/** conninfo_uri_parse_options: userinfo, one host (IPv6 in brackets), port, dbname, query. */
function parseUri(s: string, start: number): Conninfo {
  const info: Conninfo = { form: "uri", params: new Map(), passwordSpans: [] };
  let p = start;
  // Credentials: up to an '@' that comes before any '/'.
  let q = p;
  while (q < s.length && s[q] !== "@" && s[q] !== "/") q++;
  if (s[q] === "@") {
    let u = p;
    while (u < q && s[u] !== ":") u++;
    const user = uriDecode(s.slice(p, u));
    if (user !== "") store(info, "user", user, [p, u], true);
    if (u < q) {
      const password = uriDecode(s.slice(u + 1, q));
      if (password !== "") store(info, "password", password, [u + 1, q], true);
    }
    p = q + 1;
  }
  // Host and port; a comma starts another host, which libpq allows and we keep as a list.
  const hosts: string[] = [];
  const ports: string[] = [];
  for (;;) {
    let host: string;
    if (s[p] === "[") {
      const close = s.indexOf("]", p + 1);
      if (close < 0) bad('end of string reached when looking for matching "]" in IPv6 host address');
      host = s.slice(p + 1, close);
      if (host === "") bad("IPv6 host address may not be empty");
      p = close + 1;
      if (p < s.length && !":/?,".includes(s[p]!)) bad(`unexpected character "${s[p]}" at position ${p + 1} (expected ":" or "/")`);
    } else {
      const h = p;
      while (p < s.length && !":/?,".includes(s[p]!)) p++;
      host = s.slice(h, p);
    }
    let port = "";
    if (s[p] === ":") {
      const pStart = ++p;
      while (p < s.length && !"/?,".includes(s[p]!)) p++;
      port = s.slice(pStart, p);
    }
    hosts.push(host);
    ports.push(port);
    if (s[p] !== ",") break;
    p++;
  }
  const hostList = hosts.map(uriDecode).join(",");
  if (hostList.replace(/,/g, "") !== "") store(info, "host", hostList, [0, 0], true);
  const portList = ports.map(uriDecode).join(",");
  if (portList.replace(/,/g, "") !== "") store(info, "port", portList, [0, 0], true);
  if (s[p] === "/") {
    const d = ++p;
    while (p < s.length && s[p] !== "?") p++;
    const dbname = uriDecode(s.slice(d, p));
    if (dbname !== "") store(info, "dbname", dbname, [d, p], true);
  }
  if (s[p] === "?") {
    p++;
    while (p < s.length) {
      let e = p;
      while (e < s.length && s[e] !== "&") e++;
      const pair = s.slice(p, e);
      const eq = pair.indexOf("=");
      if (eq < 0) bad(`missing key/value separator "=" in URI query parameter: "${pair.slice(0, 64)}"`);
      if (pair.indexOf("=", eq + 1) >= 0) bad(`extra key/value separator "=" in URI query parameter: "${uriDecode(pair.slice(0, eq))}"`);
      let keyword = uriDecode(pair.slice(0, eq));
      let value = uriDecode(pair.slice(eq + 1));
      // libpq: ssl=true is the JDBC-style spelling of sslmode=require.
      if (keyword === "ssl" && value === "true") {
        keyword = "sslmode";
        value = "require";
      }
      store(info, keyword, value, [p + eq + 1, e], true);
      p = e + 1;
    }
  }
  return info;
}

/**
 * The connection string with every password replaced by `***`, the rest as written. A
 * string that does not parse is shown as `***` whole: it may hold anything.
 */
export function maskConninfo(text: string): string {
  let info: Conninfo;
  try {
    info = parseConninfo(text);
  } catch {
    return "***";
  }
  let out = text;
  // From the end, so earlier spans keep their offsets.
  const spans = [...info.passwordSpans].sort((a, b) => b[0] - a[0]);
  for (const [a, b] of spans) out = `${out.slice(0, a)}***${out.slice(b)}`;
  return out;
}

/** Keywords naming local files or services (read on this node), or that we set ourselves. */
const REFUSED = new Map([
  ["service", "reads the node's service file"],
  ["passfile", "reads a password file on the node"],
  ["sslcert", "reads a file on the node"],
  ["sslkey", "reads a file on the node"],
  ["sslpassword", "goes with sslkey"],
  ["sslrootcert", "reads a file on the node"],
  ["sslcrl", "reads a file on the node"],
  ["sslcrldir", "reads a directory on the node"],
  ["requirepeer", "applies to unix sockets only"],
  ["replication", "is set by the pageserver"],
]);

/** What a connection needs, every field explicit: nothing is left to environment defaults. */
export interface ResolvedConninfo {
  /** A host name, an IP address, or (a path starting with '/' or '@') a unix socket directory. */
  host: string;
  port: number;
  user: string;
  database: string;
  /** The connection string's password; null: none (never one from the environment or ~/.pgpass). */
  password: string | null;
  /** TLS: off, on without certificate checks (sslmode=require), or verified (verify-full). */
  ssl: "off" | "unverified" | "verified";
  /** Server options (`-c name=value …`), when the string gives them. */
  options: string | null;
}

/**
 * Parse and resolve a connection string: InvalidArgumentError when it doesn't parse, names
 * no host or no user (libpq would take the node's socket directory and OS user: ambient
 * defaults), names several hosts, or uses a keyword we refuse.
 */
export function resolveConninfo(text: string): ResolvedConninfo {
  const { params } = parseConninfo(text);
  for (const k of params.keys()) {
    const why = REFUSED.get(k);
    if (why !== undefined) bad(`"${k}" is not supported here: it ${why}`);
  }
  const host = params.get("hostaddr") || params.get("host") || "";
  if (host === "") bad("it must name a host");
  if (host.includes(",")) bad("several hosts are not supported");
  const portText = params.get("port") || "5432";
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : 0;
  if (!(port >= 1 && port <= 65535)) bad(`invalid port number: "${portText.slice(0, 16)}"`);
  const user = params.get("user") || "";
  if (user === "") bad("it must name a user");
  const sslmode = params.get("sslmode") ?? "disable";
  let ssl: ResolvedConninfo["ssl"];
  if (sslmode === "disable" || sslmode === "allow" || sslmode === "prefer") ssl = "off";
  else if (sslmode === "require") ssl = "unverified";
  else if (sslmode === "verify-full") ssl = "verified";
  else if (sslmode === "verify-ca") bad('sslmode "verify-ca" needs sslrootcert, which is not supported here: use verify-full');
  else bad(`invalid sslmode value: "${sslmode.slice(0, 32)}"`);
  return {
    host,
    port,
    user,
    database: params.get("dbname") || user,
    password: params.get("password") || null,
    ssl,
    options: params.get("options") || null,
  };
}

/** A host that names a unix-domain socket (a directory, or Linux's abstract namespace). */
export function isUnixSocketHost(host: string): boolean {
  return host.startsWith("/") || host.startsWith("@");
}
