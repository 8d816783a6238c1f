/**
 * A page as `hexdump -C` prints it: offset, 16 bytes in hex (two groups of 8), the bytes as
 * ASCII. Runs of identical lines collapse into one "*" line, as hexdump does, so an 8 kB page
 * with a hole in the middle stays short.
 */

export function hexdump(buf: Uint8Array): string {
  const lines: string[] = [];
  let prev: string | null = null;
  let starred = false;
  for (let off = 0; off < buf.length; off += 16) {
    const row = buf.subarray(off, Math.min(off + 16, buf.length));
    const hex: string[] = [];
    for (let i = 0; i < 16; i++) hex.push(i < row.length ? row[i]!.toString(16).padStart(2, "0") : "  ");
    const body = `${hex.slice(0, 8).join(" ")}  ${hex.slice(8).join(" ")}`;
    if (body === prev && row.length === 16) {
      if (!starred) lines.push("*");
      starred = true;
      continue;
    }
    prev = body;
    starred = false;
    let ascii = "";
    for (const b of row) ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".";
    lines.push(`${off.toString(16).padStart(8, "0")}  ${body}  |${ascii}|`);
  }
  lines.push(buf.length.toString(16).padStart(8, "0"));
  return lines.join("\n");
}
