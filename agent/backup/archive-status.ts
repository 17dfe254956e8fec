/**
 * The WAL archive as PostgreSQL and pgBackRest see it: pg_stat_archiver, the
 * segments waiting to be archived, and the last error pgBackRest's asynchronous
 * push left in its spool. Read by the agent (root) over the local socket; the
 * backup loop (manager.ts) judges it (`archiveFailing`) and metrics.ts shows it.
 */
import { execFile } from "node:child_process";
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readSync } from "node:fs";
import { join } from "node:path";
import { summarizeError } from "./pgbackrest.js";

export interface ArchiveStatus {
  readonly archivedCount: number;
  readonly failedCount: number;
  readonly lastArchivedWal: string;
  readonly lastArchivedAt: number;
  readonly lastFailedWal: string;
  readonly lastFailedAt: number;
  /** Segments PostgreSQL has finished and not yet archived (`.ready`). */
  readonly readySegments: number;
  /** When the oldest of them was finished (epoch ms; 0 when none waits). */
  readonly oldestReadyAt: number;
}

const QUERY = `SELECT archived_count, failed_count, coalesce(last_archived_wal, ''),
  coalesce(extract(epoch FROM last_archived_time) * 1000, 0)::bigint, coalesce(last_failed_wal, ''),
  coalesce(extract(epoch FROM last_failed_time) * 1000, 0)::bigint,
  r.n, coalesce(extract(epoch FROM r.oldest) * 1000, 0)::bigint
FROM pg_stat_archiver,
  (SELECT count(*) AS n, min(modification) AS oldest FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready') r`;

/** Parses psql's unaligned row; null when it is not one. */
export function parseArchiverRow(text: string): ArchiveStatus | null {
  const f = text.trim().split("|");
  if (f.length !== 8) return null;
  const n = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : Number.NaN);
  const s = {
    archivedCount: n(f[0]),
    failedCount: n(f[1]),
    lastArchivedWal: f[2]!,
    lastArchivedAt: n(f[3]),
    lastFailedWal: f[4]!,
    lastFailedAt: n(f[5]),
    readySegments: n(f[6]),
    oldestReadyAt: n(f[7]),
  };
  return Object.values(s).some((v) => typeof v === "number" && Number.isNaN(v)) ? null : Object.freeze(s);
}

/**
 * Failing when the last failure is newer than the last success, or when a
 * segment has waited longer than pgBackRest gives a push (an endpoint that
 * accepts connections and never answers fails only after its own timeouts).
 */
export function archiveFailing(s: ArchiveStatus, now: number, stallMs: number): boolean {
  if (s.lastFailedAt > s.lastArchivedAt) return true;
  return s.readySegments > 0 && s.oldestReadyAt > 0 && now - s.oldestReadyAt > stallMs;
}

export function readArchiveStatus(
  socketDir: string,
  port: number,
  superuser: string,
): Promise<ArchiveStatus | null> {
  return new Promise((resolve) => {
    execFile(
      "psql",
      [
        "-X",
        "-A",
        "-t",
        "-q",
        "-h",
        socketDir,
        "-p",
        String(port),
        "-U",
        superuser,
        "-d",
        "postgres",
        "-c",
        QUERY,
      ],
      { timeout: 10_000, env: { PATH: process.env["PATH"], PGCONNECT_TIMEOUT: "5" } },
      (err, stdout) => resolve(err ? null : parseArchiverRow(stdout.toString())),
    );
  });
}

/** The most of an error file that is read: pgBackRest's own are a few hundred bytes. */
const ERROR_FILE_MAX = 64 * 1024;

/**
 * The newest error pgBackRest's asynchronous push left in the spool, summarised; undefined when
 * none. The spool belongs to postgres and the agent reads it as root: a file is read only when
 * it is a regular file owned by the spool's owner, opened without following a symlink, so a
 * link or hard link planted there to a file of root's is never read.
 */
export function readPushError(spool: string, stanza: string): string | undefined {
  const dir = join(spool, "archive", stanza, "out");
  let names: string[];
  let owner: number;
  try {
    owner = lstatSync(spool).uid;
    names = readdirSync(dir).filter((n) => n.endsWith(".error"));
  } catch {
    return undefined;
  }
  for (const name of names.sort().reverse()) {
    const text = readOwnedFile(join(dir, name), owner);
    if (text !== null) return summarizeError(text);
  }
  return undefined;
}

function readOwnedFile(path: string, owner: number): string | null {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return null;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile() || st.uid !== owner || st.nlink !== 1) return null;
    const buf = Buffer.alloc(Math.min(st.size, ERROR_FILE_MAX));
    const n = readSync(fd, buf, 0, buf.length, 0);
    return buf.subarray(0, n).toString("utf8");
  } catch {
    return null;
  } finally {
    closeSync(fd);
  }
}
