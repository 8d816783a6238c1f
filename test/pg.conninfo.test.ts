/**
 * libpq connection strings (src/pg/replication/conninfo.ts): both forms libpq accepts parse
 * to what libpq makes of them (URI with percent-decoding, IPv6 brackets and query
 * parameters; key=value with quoting and backslash escapes), libpq's syntax errors are
 * errors that never echo a value, every password form is masked in place, and resolving
 * refuses what would read the node's files or fall back to its defaults.
 */
import { describe, expect, it } from "vitest";
import { isUnixSocketHost, maskConninfo, parseConninfo, resolveConninfo } from "../src/pg/replication/conninfo.js";

const params = (s: string): Record<string, string> => Object.fromEntries(parseConninfo(s).params);

describe("conninfo", () => {
  it("key=value: the form libpq documents, with quoting, escapes and spaces around '='", () => {
    expect(params("host=127.0.0.1 port=5432 user=postgres dbname=postgres")).toEqual({
      host: "127.0.0.1",
      port: "5432",
      user: "postgres",
      dbname: "postgres",
    });
    expect(params("  host = h\tport=1  ")).toEqual({ host: "h", port: "1" });
    expect(params(String.raw`password='a b\'c\\d' user=u`)).toEqual({ password: String.raw`a b'c\d`, user: "u" });
    expect(params(String.raw`password=a\ b user=u`)).toEqual({ password: "a b", user: "u" });
    expect(params("password='' user=u")).toEqual({ password: "", user: "u" });
    // The last one given wins, as in libpq.
    expect(params("port=1 port=2")).toEqual({ port: "2" });
  });

  it("URI: userinfo, percent-decoding, IPv6, port, dbname and query parameters", () => {
    expect(params("postgresql://u:p%40ss@db.example:6543/my%20db?sslmode=require&application_name=x")).toEqual({
      user: "u",
      password: "p@ss",
      host: "db.example",
      port: "6543",
      dbname: "my db",
      sslmode: "require",
      application_name: "x",
    });
    expect(params("postgres://[::1]:5433/d")).toEqual({ host: "::1", port: "5433", dbname: "d" });
    expect(params("postgresql://u@h?ssl=true")).toEqual({ user: "u", host: "h", sslmode: "require" });
    expect(params("postgresql://h?password=s3cret&user=u")).toEqual({ host: "h", password: "s3cret", user: "u" });
    expect(params("postgresql:///d?host=%2Ftmp%2Fsock")).toEqual({ dbname: "d", host: "/tmp/sock" });
    expect(params("postgresql://")).toEqual({});
  });

  it("syntax errors name the keyword, never a value", () => {
    const err = (s: string): string => {
      try {
        parseConninfo(s);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error(`'${s}' parsed`);
    };
    expect(err("host")).toMatch(/missing "=" after "host"/);
    expect(err("password='s3cret")).toMatch(/unterminated quoted string/);
    expect(err("password='s3cret")).not.toContain("s3cret");
    expect(err("bogus=1")).toMatch(/invalid connection option "bogus"/);
    expect(err("postgresql://h?bogus=s3cret")).toMatch(/invalid URI query parameter: "bogus"/);
    expect(err("postgresql://h?bogus=s3cret")).not.toContain("s3cret");
    expect(err("postgresql://h?password=a=b")).toMatch(/extra key\/value separator/);
    expect(err("postgresql://h?password=a=b")).not.toContain("a=b");
    expect(err("postgresql://u:%zz@h")).toMatch(/invalid percent-encoded token/);
    expect(err("postgresql://u@h/%00")).toMatch(/%00/);
    expect(err("postgresql://[::1/d")).toMatch(/matching "\]"/);
  });

  it("masks every password form in place and leaves the rest as written", () => {
    expect(maskConninfo("postgresql://u:s3cret@h:5432/d")).toBe("postgresql://u:***@h:5432/d");
    expect(maskConninfo("postgresql://u@h/d?sslmode=disable&password=s3cret&application_name=")).toBe(
      "postgresql://u@h/d?sslmode=disable&password=***&application_name=",
    );
    expect(maskConninfo("host=h password=s3cret user=u")).toBe("host=h password=*** user=u");
    expect(maskConninfo(String.raw`host=h password = 'se cr\'et' user=u`)).toBe("host=h password = *** user=u");
    expect(maskConninfo("password=a password=b")).toBe("password=*** password=***");
    expect(maskConninfo("postgresql://u@h/d")).toBe("postgresql://u@h/d");
    // Unparsable: nothing of it is shown.
    expect(maskConninfo("password='s3cret")).toBe("***");
  });

  it("resolve: explicit host and user, no files read, one host, sslmode mapped", () => {
    expect(resolveConninfo("host=127.0.0.1 port=5432 user=postgres dbname=postgres")).toEqual({
      host: "127.0.0.1",
      port: 5432,
      user: "postgres",
      database: "postgres",
      password: null,
      ssl: "off",
      options: null,
    });
    expect(resolveConninfo("postgresql://u:pw@h/d?sslmode=verify-full&options=-c%20x%3D1")).toMatchObject({
      password: "pw",
      ssl: "verified",
      options: "-c x=1",
      port: 5432,
    });
    expect(resolveConninfo("hostaddr=10.0.0.1 host=name user=u").host).toBe("10.0.0.1");
    expect(resolveConninfo("host=h user=u").database).toBe("u");
    const refused = (s: string, re: RegExp) => expect(() => resolveConninfo(s)).toThrow(re);
    refused("user=u", /must name a host/);
    refused("host=h", /must name a user/);
    refused("postgresql://u@h1,h2/d", /several hosts/);
    refused("host=h user=u port=99999", /invalid port/);
    refused("host=h user=u passfile=/etc/shadow", /"passfile" is not supported/);
    refused("host=h user=u sslrootcert=/etc/shadow", /"sslrootcert" is not supported/);
    refused("host=h user=u service=x", /"service" is not supported/);
    refused("host=h user=u sslmode=verify-ca", /verify-ca/);
    expect(isUnixSocketHost("/tmp")).toBe(true);
    expect(isUnixSocketHost("@abstract")).toBe(true);
    expect(isUnixSocketHost("127.0.0.1")).toBe(false);
  });
});
