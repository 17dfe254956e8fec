/**
 * `pgbackrest info --output=json` decoded leniently into a frozen snapshot: a
 * malformed backup entry is dropped, never an exception. Also the few
 * pure helpers on it: LSN arithmetic and the newest good backups. pgbackrest.ts
 * makes it; plan.ts decides on it.
 */
import { asNumber, asString, fields } from "../../shared/json.js";

export type BackupType = "full" | "diff" | "incr";

export interface BackupEntry {
  readonly label: string;
  readonly type: BackupType;
  readonly startMs: number;
  readonly stopMs: number;
  /** WAL position where the backup started and stopped, as bytes. */
  readonly lsnStart: bigint | undefined;
  readonly lsnStop: bigint | undefined;
  /** Size of the database the backup holds (bytes). */
  readonly size: number;
  readonly repoSize: number;
  readonly walStart: string | undefined;
  readonly walStop: string | undefined;
  readonly error: boolean;
}

export interface BackupInfo {
  /** pgBackRest's status code for the stanza: 0 ok, 1 missing stanza path, 2 no valid backups, 3 missing stanza data, 99 other. */
  readonly code: number;
  readonly message: string;
  /** Oldest first, as pgBackRest lists them. */
  readonly backups: readonly BackupEntry[];
  readonly archiveMin: string | undefined;
  readonly archiveMax: string | undefined;
}

const TYPES = new Set<string>(["full", "diff", "incr"]);

/** `0/E00028` → 14680104n; undefined for anything else. */
export function lsnToBytes(lsn: unknown): bigint | undefined {
  if (typeof lsn !== "string") return undefined;
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) return undefined;
  return (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`);
}

function decodeBackup(raw: unknown): BackupEntry | null {
  const b = fields(raw);
  const label = asString(b["label"]);
  const type = asString(b["type"]);
  const ts = fields(b["timestamp"]);
  const start = asNumber(ts["start"]);
  const stop = asNumber(ts["stop"]);
  if (!label || !type || !TYPES.has(type) || start === undefined || stop === undefined) return null;
  const info = fields(b["info"]);
  const lsn = fields(b["lsn"]);
  const archive = fields(b["archive"]);
  return Object.freeze({
    label,
    type: type as BackupType,
    startMs: start * 1000,
    stopMs: stop * 1000,
    lsnStart: lsnToBytes(lsn["start"]),
    lsnStop: lsnToBytes(lsn["stop"]),
    size: asNumber(info["size"]) ?? 0,
    repoSize: asNumber(fields(info["repository"])["size"]) ?? 0,
    walStart: asString(archive["start"]),
    walStop: asString(archive["stop"]),
    error: b["error"] === true,
  });
}

/** The stanza's entry of `pgbackrest info --output=json`, or a status saying what is wrong. */
export function parseBackupInfo(text: string, stanza: string): BackupInfo {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return Object.freeze({
      code: 99,
      message: "unreadable info output",
      backups: Object.freeze([]),
      archiveMin: undefined,
      archiveMax: undefined,
    });
  }
  const list = Array.isArray(parsed) ? parsed : [];
  const entry = fields(list.find((s) => fields(s)["name"] === stanza));
  const status = fields(entry["status"]);
  const backups = (Array.isArray(entry["backup"]) ? entry["backup"] : [])
    .map(decodeBackup)
    .filter((b): b is BackupEntry => b !== null);
  const archives = Array.isArray(entry["archive"]) ? entry["archive"].map(fields) : [];
  const mins = archives.map((a) => asString(a["min"])).filter((s): s is string => !!s);
  const maxes = archives.map((a) => asString(a["max"])).filter((s): s is string => !!s);
  const code = asNumber(status["code"]) ?? (entry["name"] === undefined ? 1 : 99);
  // "other" says little: the repositories' own statuses say why.
  const repoMessages = (Array.isArray(entry["repo"]) ? entry["repo"] : [])
    .map((r) => fields(fields(r)["status"]))
    .filter((st) => asNumber(st["code"]) !== 0)
    .map((st) => asString(st["message"]))
    .filter((m): m is string => !!m);
  let message = asString(status["message"]) ?? (entry["name"] === undefined ? "missing stanza" : "no status");
  if (code === 99 && repoMessages.length > 0) message = repoMessages.join("\n");
  return Object.freeze({
    code,
    message,
    backups: Object.freeze(backups),
    archiveMin: mins.sort()[0],
    archiveMax: maxes.sort().at(-1),
  });
}

/** The newest backup without error, of one of `types`. */
export function newestGood(
  info: BackupInfo,
  types: readonly BackupType[] = ["full", "diff", "incr"],
): BackupEntry | undefined {
  let best: BackupEntry | undefined;
  for (const b of info.backups) {
    if (b.error || !types.includes(b.type)) continue;
    if (!best || b.stopMs >= best.stopMs) best = b;
  }
  return best;
}
