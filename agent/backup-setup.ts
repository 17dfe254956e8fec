/**
 * Wires the backup parts at start: pgbackrest.conf (mode 0600, owned by
 * postgres) and the job file for the commands, a posix repository's directory,
 * the agent's /metrics server, and the backup loop.
 */
import { chmodSync, chownSync, mkdirSync, rmSync, statSync } from "node:fs";
import { dirname } from "node:path";
import type { Registry } from "prom-client";
import { AdminServer } from "../shared/admin.js";
import type { Logger } from "../shared/logger.js";
import { readArchiveStatus, readPushError } from "./archive-status.js";
import { backupJob } from "./backup-job.js";
import { BackupManager } from "./backup-manager.js";
import { BackupMetrics } from "./backup-metrics.js";
import type { AgentConfig } from "./config.js";
import { type Account, writeSecretFile } from "./files.js";
import { IMAGE_PATHS, POSTGRES_PORT } from "./patroni-config.js";
import { PgBackRest } from "./pgbackrest.js";
import { PGBACKREST_PATHS, renderPgbackrestConf } from "./pgbackrest-conf.js";
import type { PatroniRest } from "./rest.js";

/** Writes (or, without a repository, removes) the files pgBackRest and the commands read. */
export function writeBackupFiles(cfg: AgentConfig, owner: Account | null, log: Logger): void {
  const b = cfg.backup;
  if (!b) {
    rmSync(PGBACKREST_PATHS.jobFile, { force: true });
    return;
  }
  const pg = {
    dataDir: cfg.dataDir,
    port: POSTGRES_PORT,
    socketDir: IMAGE_PATHS.socketDir,
    superuser: cfg.superuser.username,
  };
  writeSecretFile(PGBACKREST_PATHS.conf, renderPgbackrestConf(b, pg), owner);
  writeSecretFile(PGBACKREST_PATHS.jobFile, `${JSON.stringify(backupJob(cfg), null, 2)}\n`, owner);
  chmodSync(PGBACKREST_PATHS.jobFile, 0o644);
  if (b.repo.type === "posix") {
    mkdirSync(b.repo.path, { recursive: true });
    if (owner && statSync(b.repo.path).uid !== owner.uid) {
      chownSync(b.repo.path, owner.uid, owner.gid);
      chmodSync(b.repo.path, 0o750);
    }
  }
  for (const dir of [PGBACKREST_PATHS.spool, PGBACKREST_PATHS.log, dirname(PGBACKREST_PATHS.conf)]) {
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

/** Starts /metrics (always, unless off) and, with a repository, the backup loop. */
export async function startBackups(
  cfg: AgentConfig,
  rest: PatroniRest,
  asPostgres: boolean,
  registry: Registry,
  log: Logger,
): Promise<RunningBackups> {
  const b = cfg.backup;
  const metrics = new BackupMetrics(registry, b?.stanza ?? "");
  let manager: BackupManager | null = null;
  if (b) {
    manager = new BackupManager({
      cfg: b,
      pgbackrest: new PgBackRest({ stanza: b.stanza, asPostgres }),
      patroniStatus: () => rest.status(),
      archiveStatus: () => readArchiveStatus(IMAGE_PATHS.socketDir, POSTGRES_PORT, cfg.superuser.username),
      pushError: () => readPushError(PGBACKREST_PATHS.spool, b.stanza),
      metrics,
      log: log.child({ part: "backup" }),
    });
    manager.start();
  } else {
    metrics.configured.set(0);
  }
  let admin: AdminServer | null = null;
  if (cfg.metricsListen) {
    admin = new AdminServer({
      listen: cfg.metricsListen,
      registry,
      readiness: () => ({ ready: true }),
      routes: { "/backup": () => manager?.snapshot() ?? { configured: false } },
      log,
    });
    try {
      await admin.start();
    } catch (err) {
      log.error({ err, listen: cfg.metricsListen }, "cannot serve the agent's /metrics; going on without it");
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
