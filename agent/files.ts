/**
 * The files the agent prepares before Patroni starts: the rendered config
 * (it holds passwords: mode 0600, owned by postgres) and the data directory.
 */
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  fchmodSync,
  fchownSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type { Logger } from "../shared/logger.js";

export interface Account {
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

/** The postgres account from /etc/passwd; null when there is none (running outside the image). */
export function lookupAccount(name: string, passwd = "/etc/passwd"): Account | null {
  let text: string;
  try {
    text = readFileSync(passwd, "utf8");
  } catch {
    return null;
  }
  const line = text.split("\n").find((l) => l.startsWith(`${name}:`));
  if (!line) return null;
  const f = line.split(":");
  const uid = Number(f[2]);
  const gid = Number(f[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) return null;
  return { uid, gid, home: f[5] || "/" };
}

/**
 * Makes `dir` a directory that only root may write (0755, root:root) when we are root, so that
 * no other account can plant a file or a symlink where root writes. A symlink or a
 * non-directory in its place is an error, never followed.
 */
export function ensureRootDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const st = lstatSync(dir);
  if (!st.isDirectory())
    throw new Error(
      `${dir}: expected a directory, found ${st.isSymbolicLink() ? "a symlink" : "another kind of file"}`,
    );
  if (process.getuid?.() === 0 && (st.uid !== 0 || st.gid !== 0 || (st.mode & 0o022) !== 0)) {
    chownSync(dir, 0, 0);
    chmodSync(dir, 0o755);
  }
}

/**
 * Writes a file atomically with `mode` (0600 by default), owned by `owner` when given. The
 * temporary file has a random name and is created with O_EXCL|O_NOFOLLOW: a symlink or file
 * planted in its place makes the open fail instead of redirecting root's write. Owner and mode
 * are set on the open descriptor, never by path.
 */
export function writeSecretFile(path: string, content: string, owner: Account | null, mode = 0o600): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${randomBytes(8).toString("hex")}`;
  const fd = openSync(
    tmp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  try {
    if (owner) fchownSync(fd, owner.uid, owner.gid);
    fchmodSync(fd, mode);
    const buf = Buffer.from(content);
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/**
 * Makes the data directory's parent exist and belong to postgres; a data
 * directory left by another owner is handed over. A postmaster.pid left by a
 * killed container is removed: no PostgreSQL can run in a container that is
 * only starting, and a stale PID that matches a live process would stop it.
 */
export function prepareDataDir(dataDir: string, owner: Account | null, log: Logger): void {
  const parent = dirname(dataDir);
  mkdirSync(parent, { recursive: true });
  if (owner) {
    const st = statSync(parent);
    if (st.uid !== owner.uid) chownSync(parent, owner.uid, owner.gid);
    if (existsSync(dataDir) && statSync(dataDir).uid !== owner.uid) {
      log.warn({ dataDir }, "data directory belongs to another user; handing it to postgres");
      execFileSync("chown", ["-R", `${owner.uid}:${owner.gid}`, dataDir]);
    }
  }
  const pidFile = join(dataDir, "postmaster.pid");
  if (existsSync(pidFile)) {
    log.info({ pidFile }, "removing a postmaster.pid left by the previous run");
    rmSync(pidFile, { force: true });
  }
}
