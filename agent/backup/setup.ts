/**
 * Wires the backup parts at start: pgbackrest.conf (mode 0600, owned by
 * postgres) and the job file for the commands (cli.ts), a posix repository's
 * directory, the agent's /metrics server, and the backup loop (manager.ts).
 * The agent (agent/main.ts) calls it with its BackupConfig and the few
 * values of the node it needs; nothing else of the agent comes in.
 */
import { chmodSync, chownSync, mkdirSync, rmSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type { Registry } from "prom-client";
import { AdminServer } from "../../shared/admin.js";
import type { HostPort } from "../../shared/host-port.js";
import type { Logger } from "../../shared/logger.js";
import type { PatroniStatus } from "../../shared/patroni-rest.js";
import { IMAGE_PATHS, PGBACKREST_PATHS, POSTGRES_PORT } from "../image.js";
import { readArchiveStatus, readPushError } from "./archive-status.js";
import type { BackupConfig } from "./config.js";
import { backupJob, type LocalPostgres } from "./job.js";
import { BackupManager } from "./manager.js";
import { BackupMetrics } from "./metrics.js";
import { PgBackRest } from "./pgbackrest.js";
import { renderPgbackrestConf } from "./pgbackrest-conf.js";

/** The account pgBackRest runs as (postgres); null outside the image. */
export interface FileOwner {
  readonly uid: number;
  readonly gid: number;
}

export interface BackupFilesIo {
  readonly owner: FileOwner | null;
  /** Writes a file atomically, owned by `owner`, with `mode` (0600 unless given), never through a symlink. */
  readonly writeSecret: (path: string, content: string, mode?: number) => void;
  /** Makes a directory only root may write (when root), so nothing can be planted where root writes. */
  readonly ensureRootDir: (dir: string) => void;
  readonly log: Logger;
}

/** Writes (or, without a repository, removes) the files pgBackRest and the commands read. */
export function writeBackupFiles(b: BackupConfig | null, pg: LocalPostgres, io: BackupFilesIo): void {
  const { owner, log } = io;
  if (!b) {
    rmSync(PGBACKREST_PATHS.jobFile, { force: true });
    return;
  }
  const target = {
    dataDir: pg.dataDir,
    port: POSTGRES_PORT,
    socketDir: IMAGE_PATHS.socketDir,
    superuser: pg.superuser,
  };
  io.ensureRootDir(dirname(PGBACKREST_PATHS.conf));
  io.writeSecret(PGBACKREST_PATHS.conf, renderPgbackrestConf(b, target));
  io.writeSecret(PGBACKREST_PATHS.jobFile, `${JSON.stringify(backupJob(b, pg), null, 2)}\n`, 0o644);
  if (b.repo.type === "posix") {
    mkdirSync(b.repo.path, { recursive: true });
    if (owner && statSync(b.repo.path).uid !== owner.uid) {
      chownSync(b.repo.path, owner.uid, owner.gid);
      chmodSync(b.repo.path, 0o750);
    }
  }
  for (const dir of [PGBACKREST_PATHS.spool, PGBACKREST_PATHS.log]) {
    mkdirSync(dir, { recursive: true });
    if (owner) chownSync(dir, owner.uid, owner.gid);
  }
  const where =
    b.repo.type === "s3" ? `s3://${b.repo.bucket}${b.repo.path} at ${b.repo.endpoint}` : b.repo.path;
  log.info(
    {
      stanza: b.stanza,
      repository: where,
      full: b.schedule.full.text,
      diff: b.schedule.diff.text,
      retentionFull: b.retention.full,
      restore: b.restore ? { set: b.restore.set, target: b.restore.target.type } : undefined,
    },
    "WAL archiving and backups with pgBackRest",
  );
}

export interface RunningBackups {
  stop(): Promise<void>;
}

export interface StartBackups {
  readonly backup: BackupConfig | null;
  /** The superuser the archive check connects as, over the socket. */
  readonly superuser: string;
  /** The agent's /metrics; null when off. */
  readonly metricsListen: HostPort | null;
  /** This node's role and state from its Patroni; null when it does not answer. */
  readonly patroniStatus: () => Promise<PatroniStatus | null>;
  /** pgBackRest runs as postgres (we are root in the image). */
  readonly asPostgres: boolean;
  readonly registry: Registry;
  readonly log: Logger;
}

/** Starts /metrics (always, unless off) and, with a repository, the backup loop. */
export async function startBackups(o: StartBackups): Promise<RunningBackups> {
  const { backup: b, registry, log, metricsListen } = o;
  const metrics = new BackupMetrics(registry, b?.stanza ?? "");
  let manager: BackupManager | null = null;
  if (b) {
    manager = new BackupManager({
      cfg: b,
      pgbackrest: new PgBackRest({ stanza: b.stanza, asPostgres: o.asPostgres }),
      patroniStatus: o.patroniStatus,
      archiveStatus: () => readArchiveStatus(IMAGE_PATHS.socketDir, POSTGRES_PORT, o.superuser),
      pushError: () => readPushError(PGBACKREST_PATHS.spool, b.stanza),
      metrics,
      log: log.child({ part: "backup" }),
    });
    manager.start();
  } else {
    metrics.configured.set(0);
  }
  let admin: AdminServer | null = null;
  if (metricsListen) {
    admin = new AdminServer({
      listen: metricsListen,
      registry,
      readiness: () => ({ ready: true }),
      routes: { "/backup": () => manager?.snapshot() ?? { configured: false } },
      log,
    });
    try {
      await admin.start();
    } catch (err) {
      log.error({ err, listen: metricsListen }, "cannot serve the agent's /metrics; going on without it");
      admin = null;
    }
  }
  return {
    async stop() {
      manager?.stop();
      await admin?.close();
    },
  };
}
