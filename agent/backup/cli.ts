#!/usr/bin/env node
/**
 * `pgha-backup`: the backup commands of the agent image.
 *
 *   backup-list [--json]              (pgha-backup list) the repository's backups
 *   backup-now [full|diff|incr]       (pgha-backup now)  a backup now, on the leader
 *   pgha-backup replica --datadir=…   Patroni's create_replica_method: restore the
 *                                     latest backup when cheaper than a copy, else exit 1
 *   pgha-backup restore --datadir=…   Patroni's bootstrap method: restore a backup
 *
 * Patroni appends --scope, --datadir, --role and --connstring to its hooks.
 * Each command reads the job file the agent wrote (job.ts), asks plan.ts what
 * to do, and runs pgBackRest (pgbackrest.ts). agent/bin/pgha-backup runs it.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { caFetch } from "../../shared/ca-fetch.js";
import { createLogger } from "../../shared/logger.js";
import { decodePatroniStatus } from "../../shared/patroni-rest.js";
import { PGBACKREST_PATHS } from "../image.js";
import { lsnToBytes, newestGood } from "./info.js";
import { type BackupJob, parseHookArgs, readBackupJob } from "./job.js";
import { LOCK_ACQUIRE_EXIT, PgBackRest, summarizeError } from "./pgbackrest.js";
import { chooseReplicaSource, selectRestoreSet } from "./plan.js";

const log = createLogger({ name: "pgha-backup", level: process.env["LOG_LEVEL"] ?? "info" });

function pgbackrest(job: BackupJob): PgBackRest {
  return new PgBackRest({
    stanza: job.stanza,
    asPostgres: process.getuid?.() === 0,
    env: { ...process.env, HOME: "/var/lib/postgresql" },
  });
}

function leaderLsn(connstring: string): Promise<bigint | undefined> {
  return new Promise((resolve) => {
    execFile(
      "psql",
      [connstring, "-X", "-A", "-t", "-q", "-c", "SELECT pg_current_wal_lsn()"],
      { timeout: 15_000, env: { ...process.env, PGCONNECT_TIMEOUT: "5" } },
      (err, stdout) => resolve(err ? undefined : lsnToBytes(stdout.toString().trim())),
    );
  });
}

async function replica(job: BackupJob, flags: Map<string, string>): Promise<number> {
  const dataDir = flags.get("datadir") ?? job.dataDir;
  if (!job.replica.enabled) return 1;
  const br = pgbackrest(job);
  const info = await br.info();
  if (info.code !== 0) {
    log.warn(
      { status: info.message },
      "replica from backup: the repository has no usable backup; cloning the leader",
    );
    return 1;
  }
  const connstring = flags.get("connstring");
  let lsn: bigint | undefined;
  if (connstring) {
    lsn = await leaderLsn(connstring);
    if (lsn === undefined) {
      log.warn("replica from backup: the leader did not tell its WAL position; cloning the leader");
      return 1;
    }
  }
  const choice = chooseReplicaSource({
    backup: newestGood(info),
    leaderLsn: lsn,
    thresholdMb: job.replica.thresholdMb,
    thresholdPercent: job.replica.thresholdPercent,
  });
  if (choice.action === "basebackup") {
    log.info({ reason: choice.reason }, "replica from backup: no; cloning the leader with pg_basebackup");
    return 1;
  }
  log.info({ label: choice.label, reason: choice.reason, dataDir }, "replica from backup: restoring");
  const args = [`--pg1-path=${dataDir}`, `--set=${choice.label}`, "--type=standby"];
  if (existsSync(join(dataDir, "PG_VERSION"))) args.push("--delta");
  const r = await br.run([...args, "restore"]);
  if (r.code !== 0) {
    log.error({ error: summarizeError(r.stdout + "\n" + r.stderr) }, "replica from backup: restore failed");
    return r.code;
  }
  log.info({ label: choice.label, seconds: r.ms / 1000 }, "replica created from backup");
  return 0;
}

async function restore(job: BackupJob, flags: Map<string, string>): Promise<number> {
  const dataDir = flags.get("datadir") ?? job.dataDir;
  if (!job.restore) {
    log.error("restore: no RESTORE_FROM_BACKUP or RESTORE_TARGET_* in this container");
    return 1;
  }
  const br = pgbackrest(job);
  const info = await br.info();
  if (info.code !== 0) {
    log.error({ status: info.message }, "restore: the repository has no usable backup");
    return 1;
  }
  const sel = selectRestoreSet(info, job.restore);
  if ("error" in sel) {
    log.error({ target: job.restore.target }, `restore: ${sel.error}`);
    return 1;
  }
  log.info({ label: sel.label, why: sel.reason, target: job.restore.target, dataDir }, "restore: restoring");
  // PostgreSQL's recovery settings (restore_command, the target) come from Patroni's recovery_conf.
  const r = await br.run([`--pg1-path=${dataDir}`, `--set=${sel.label}`, "--type=none", "restore"]);
  if (r.code !== 0) {
    log.error({ error: summarizeError(r.stdout + "\n" + r.stderr) }, "restore failed");
    return r.code;
  }
  log.info(
    { label: sel.label, seconds: r.ms / 1000 },
    "restored from backup; PostgreSQL now replays the archived WAL",
  );
  return 0;
}

/** How long backup-now waits for a running backup of the stanza to end. */
const LOCK_WAIT_MS = 30 * 60_000;

async function now(job: BackupJob, rest: string[]): Promise<number> {
  const type = rest[0] ?? "full";
  if (!["full", "diff", "incr"].includes(type)) {
    process.stderr.write(`backup-now: invalid type ${JSON.stringify(type)}: expected full, diff or incr\n`);
    return 2;
  }
  let role: string = "unknown";
  try {
    const res = await caFetch(job.restCaFile ?? null)(`${job.restApi}/patroni`, {
      signal: AbortSignal.timeout(3000),
    });
    role = decodePatroniStatus(await res.json()).role ?? "unknown";
  } catch {}
  if (role !== "primary") {
    process.stderr.write(
      `backup-now: backups run on the leader; this node is ${role} (see patronictl list)\n`,
    );
    return 1;
  }
  const br = pgbackrest(job);
  const giveUpAt = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    const r = await br.run([`--type=${type}`, "--log-level-console=info", "backup"], { inherit: true });
    if (r.code !== LOCK_ACQUIRE_EXIT || Date.now() > giveUpAt) return r.code;
    // A scheduled backup holds the stanza's lock: this one starts when it is done.
    process.stderr.write("backup-now: another backup of this stanza is running; starting when it ends\n");
    await new Promise((resolve) => setTimeout(resolve, 5000));
  }
}

async function list(job: BackupJob, flags: Map<string, string>): Promise<number> {
  const args = flags.has("json") ? ["--output=json", "info"] : ["info"];
  const r = await pgbackrest(job).run(args, { inherit: true });
  return r.code;
}

const USAGE =
  "usage: pgha-backup list [--json] | now [full|diff|incr] | replica --datadir=DIR | restore --datadir=DIR\n";

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...more] = argv;
  const { flags, rest } = parseHookArgs(more);
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    process.stdout.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  const job = readBackupJob(PGBACKREST_PATHS.jobFile);
  if (!job) {
    process.stderr.write(
      "pgha-backup: backups are not configured in this container (set BACKUP_S3_BUCKET or WAL_S3_BUCKET, or BACKUP_POSIX_PATH)\n",
    );
    return 1;
  }
  switch (command) {
    case "list":
      return list(job, flags);
    case "now":
      return now(job, rest);
    case "replica":
      return replica(job, flags);
    case "restore":
      return restore(job, flags);
    default:
      process.stderr.write(`pgha-backup: unknown command ${JSON.stringify(command)}\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    log.fatal({ err }, "pgha-backup failed");
    process.exit(1);
  },
);
