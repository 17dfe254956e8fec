/**
 * The files the agent prepares before Patroni starts: the rendered config
 * (it holds passwords: mode 0600, owned by postgres) and the data directory.
 */
import { execFileSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
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

/** Writes a secret file atomically, mode 0600, owned by `owner` when given. */
export function writeSecretFile(path: string, content: string, owner: Account | null): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, content, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  if (owner) chownSync(tmp, owner.uid, owner.gid);
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
