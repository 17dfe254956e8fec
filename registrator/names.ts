/** Text rules shared by the options and the service model. */

/** A name that can sit inside a key segment: no slash, no whitespace or control characters. */
export const KEY_SAFE = /^[^/\s\p{Cc}]+$/u;

/** Splits a comma list where `\,` stands for a literal comma; items are trimmed, empty ones dropped. */
export function splitEscapedList(raw: string): string[] {
  const out: string[] = [];
  let cur = "";
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch === "\\" && raw[i + 1] === ",") {
      cur += ",";
      i++;
    } else if (ch === ",") {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  out.push(cur.trim());
  return out.filter((t) => t !== "");
}
