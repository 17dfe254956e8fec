/**
 * Secret scrubbing for anything that may reach a log line: credentials in URLs,
 * password-like keys, authorization headers, PGPASSWORD and `password=` pairs in
 * connection strings.
 */
export const REDACTED = "[REDACTED]";

/** Keys whose values are secrets wherever they appear. */
const SECRET_KEY =
  /pass(word|wd|phrase)?$|^pgpassword$|secret|token|authorization|^auth$|api[-_]?key|private[-_]?key|credential|^cookie$|access[-_]?key|^sslkey$/i;

// scheme://user:password@host  → scheme://user:[REDACTED]@host; the password may hold a '/'
// (unencoded, as people type it), so it runs to the '@'.
const URL_CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):([^\s@]*)@/gi;
/**
 * key=value or key: value pairs whose key names a secret, in a conninfo, an environment entry
 * (`PATRONI_SUPERUSER_PASSWORD=…`, `AWS_SECRET_ACCESS_KEY=…`), a config line
 * (`repo1-cipher-pass=…`) or JSON text (`"password":"…"`): the key may carry any prefix, and
 * it and its value may be quoted.
 */
const KV_SECRET =
  /(["']?)\b([\w.-]*?(?:pass(?:word|wd|phrase)?|secret[\w.-]*|token|api[-_]?key|private[-_]?key|credentials?))\1(\s*[=:]\s*)("(?:[^"\\]|\\.)*"|'[^']*'|[^\s,;&"'}\]]+)/gi;
// Authorization: Basic xyz / Bearer xyz
const AUTH_HEADER = /\b(authorization\s*[:=]\s*)(basic|bearer|digest)?\s*[^\s,;]+/gi;

export function redactString(s: string): string {
  if (s.length === 0) return s;
  return s
    .replace(URL_CREDENTIALS, `$1:${REDACTED}@`)
    .replace(KV_SECRET, (_m, q: string, key: string, sep: string, value: string) => {
      const quote = value.startsWith('"') ? '"' : value.startsWith("'") ? "'" : "";
      return `${q}${key}${q}${sep}${quote}${REDACTED}${quote}`;
    })
    .replace(
      AUTH_HEADER,
      (_m, head: string, scheme: string | undefined) => `${head}${scheme ? scheme + " " : ""}${REDACTED}`,
    );
}

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

/**
 * Deep copy with secrets replaced. Errors keep their type, message, code and
 * stack (all scrubbed). Cycles and depth are bounded.
 */
export function redactValue(value: unknown, depth = 0, seen: WeakSet<object> = new WeakSet()): unknown {
  if (typeof value === "string") return redactString(value);
  if (value === null || typeof value !== "object") return value;
  if (seen.has(value)) return "[Circular]";
  if (depth > 8) return "[Object]";
  seen.add(value);
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1, seen));
  if (Buffer.isBuffer(value)) return `[Buffer ${value.length}]`;
  if (value instanceof Error) {
    const out: Record<string, unknown> = {
      type: value.name,
      message: redactString(value.message),
      stack: value.stack === undefined ? undefined : redactString(value.stack),
    };
    for (const [k, v] of Object.entries(value)) {
      out[k] = isSecretKey(k) ? REDACTED : redactValue(v, depth + 1, seen);
    }
    if (value.cause !== undefined) out["cause"] = redactValue(value.cause, depth + 1, seen);
    return out;
  }
  if (value instanceof Map) {
    return redactValue(Object.fromEntries(value), depth + 1, seen);
  }
  if (value instanceof URL) return redactString(value.href);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] =
      isSecretKey(k) && v !== undefined && v !== null && v !== ""
        ? REDACTED
        : redactValue(v, depth + 1, seen);
  }
  return out;
}
