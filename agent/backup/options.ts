/**
 * The backup options of the agent (flags and environment names), in the
 * declarative form of shared/config.ts; the agent's option table
 * (agent/options.ts) includes them, and backup/config.ts turns their values
 * into a BackupConfig.
 */
import { opt, valueOption } from "../../shared/config.js";
import { ParseFailure } from "../../shared/errors.js";
import { parseSchedule, SCHEDULE_ACCEPTED, type Schedule } from "./schedule.js";

export const DEFAULT_S3_REPO_PATH = "/pgbackrest";
export const DEFAULT_S3_REGION = "us-east-1";
/** The original image's defaults for creating replicas from a backup. */
export const DEFAULT_THRESHOLD_MB = 102_400;
export const DEFAULT_THRESHOLD_PERCENT = 30;
export const DEFAULT_FULL_SCHEDULE = "0 1 * * 0";
export const DEFAULT_DIFF_SCHEDULE = "0 1 * * 1-6";
export const DEFAULT_METRICS_LISTEN = "0.0.0.0:8009";
export const COMPRESS_TYPES = ["lz4", "zst", "gz", "bz2", "none"] as const;
export type CompressType = (typeof COMPRESS_TYPES)[number];

const SIZE_RE = /^(\d+)(KB|MB|GB|TB|KiB|MiB|GiB|TiB)?$/i;

function size(raw: string): string {
  const m = SIZE_RE.exec(raw.trim());
  if (!m || Number(m[1]) <= 0) throw new ParseFailure();
  // pgBackRest reads KB/MB/GB as powers of 1024; KiB… are spelled the same way here.
  return `${m[1]}${(m[2] ?? "").replace(/i/i, "").toUpperCase()}`;
}

function schedule(flag: string, env: string, description: string, def: string) {
  return valueOption<Schedule>(
    { flag, env, description, default: parseSchedule(def), defaultLabel: def, accepted: SCHEDULE_ACCEPTED },
    parseSchedule,
  );
}

function optionalInt(flag: string, env: string, description: string, defaultLabel: string | undefined) {
  return valueOption<number | undefined>(
    { flag, env, description, default: undefined, defaultLabel, accepted: "an integer >= 0", metavar: "N" },
    (raw) => {
      if (!/^\d{1,9}$/.test(raw.trim())) throw new ParseFailure();
      return Number(raw.trim());
    },
  );
}

function optionalText(flag: string, env: string, description: string, accepted: string) {
  return opt.optionalString({ flag, env, description, accepted });
}

export const backupOptions = {
  awsAccessKeyId: opt.optionalString({
    flag: "aws-access-key-id",
    env: "AWS_ACCESS_KEY_ID",
    description: "S3 access key id (the original's name)",
    secret: true,
  }),
  awsSecretAccessKey: opt.optionalString({
    flag: "aws-secret-access-key",
    env: "AWS_SECRET_ACCESS_KEY",
    description: "S3 secret access key (the original's name)",
    secret: true,
  }),
  s3Bucket: optionalText(
    "backup-s3-bucket",
    "BACKUP_S3_BUCKET",
    "S3 bucket of the repository",
    "a bucket name",
  ),
  walS3Bucket: optionalText(
    "wal-s3-bucket",
    "WAL_S3_BUCKET",
    "the original's name of BACKUP_S3_BUCKET",
    "a bucket name",
  ),
  s3Endpoint: optionalText(
    "backup-s3-endpoint",
    "BACKUP_S3_ENDPOINT",
    "S3 endpoint, HOST[:PORT] or https://HOST[:PORT] (default s3.<region>.amazonaws.com)",
    "HOST[:PORT] or https://HOST[:PORT]",
  ),
  waleS3Endpoint: optionalText(
    "wale-s3-endpoint",
    "WALE_S3_ENDPOINT",
    "the original's endpoint, e.g. https+path://s3.example.com:443",
    "https+path://HOST[:PORT] or https+virtualhost://HOST[:PORT]",
  ),
  waleS3Prefix: optionalText(
    "wale-s3-prefix",
    "WALE_S3_PREFIX",
    "the original's s3://BUCKET/PATH; gives the bucket and the repository path",
    "s3://BUCKET[/PATH]",
  ),
  s3Region: optionalText("backup-s3-region", "BACKUP_S3_REGION", "S3 region", "a region such as eu-west-1"),
  awsRegion: optionalText("aws-region", "AWS_REGION", "S3 region (the AWS name)", "a region"),
  s3UriStyle: valueOption<"host" | "path" | undefined>(
    {
      flag: "backup-s3-uri-style",
      env: "BACKUP_S3_URI_STYLE",
      description: "bucket in the host name (host) or in the path (path)",
      default: undefined,
      defaultLabel: "host",
      accepted: "host or path",
    },
    (raw) => {
      if (raw === "host" || raw === "path") return raw;
      throw new ParseFailure();
    },
  ),
  s3VerifyTls: opt.bool({
    flag: "backup-s3-verify-tls",
    env: "BACKUP_S3_VERIFY_TLS",
    description: "verify the S3 endpoint's TLS certificate",
    default: true,
  }),
  s3CaFile: optionalText(
    "backup-s3-ca-file",
    "BACKUP_S3_CA_FILE",
    "CA certificates (PEM) that sign the endpoint's certificate",
    "a file path",
  ),
  posixPath: optionalText(
    "backup-posix-path",
    "BACKUP_POSIX_PATH",
    "a repository on a mounted file system instead of S3",
    "an absolute path",
  ),
  repoPath: optionalText(
    "backup-repo-path",
    "BACKUP_REPO_PATH",
    `path of the repository inside the bucket (default ${DEFAULT_S3_REPO_PATH})`,
    "an absolute path",
  ),
  stanza: optionalText(
    "backup-stanza",
    "BACKUP_STANZA",
    "pgBackRest stanza (default: PATRONI_SCOPE)",
    "a name",
  ),
  cipherPass: opt.optionalString({
    flag: "backup-cipher-pass",
    env: "BACKUP_CIPHER_PASS",
    description: "encrypt the repository (aes-256-cbc) with this passphrase",
    secret: true,
  }),
  fullSchedule: schedule(
    "backup-full-schedule",
    "BACKUP_FULL_SCHEDULE",
    "when full backups run",
    DEFAULT_FULL_SCHEDULE,
  ),
  diffSchedule: schedule(
    "backup-diff-schedule",
    "BACKUP_DIFF_SCHEDULE",
    "when differential backups run",
    DEFAULT_DIFF_SCHEDULE,
  ),
  initialBackup: opt.bool({
    flag: "backup-initial",
    env: "BACKUP_INITIAL",
    description: "a full backup as soon as the leader runs and the repository has none",
    default: true,
  }),
  retentionFull: opt.int({
    flag: "backup-retention-full",
    env: "BACKUP_RETENTION_FULL",
    description: "full backups kept (older ones and their WAL expire)",
    default: 2,
    min: 1,
    max: 9999,
  }),
  retentionDiff: valueOption<number | undefined>(
    {
      flag: "backup-retention-diff",
      env: "BACKUP_RETENTION_DIFF",
      description: "differential backups kept (default: all of the kept full backups)",
      default: undefined,
      accepted: "an integer from 1 to 9999",
      metavar: "N",
    },
    (raw) => {
      const n = Number(raw);
      if (!/^\d+$/.test(raw) || n < 1 || n > 9999) throw new ParseFailure();
      return n;
    },
  ),
  checkInterval: opt.seconds({
    flag: "backup-check-interval",
    env: "BACKUP_CHECK_INTERVAL",
    description: "how often the agent checks its role, the schedule and the archive",
    default: 30,
    min: 1,
    max: 3600,
  }),
  retryInterval: opt.seconds({
    flag: "backup-retry-interval",
    env: "BACKUP_RETRY_INTERVAL",
    description: "wait after a failed backup before trying again",
    default: 300,
    min: 1,
    max: 86_400,
  }),
  processMax: opt.int({
    flag: "backup-process-max",
    env: "BACKUP_PROCESS_MAX",
    description: "pgBackRest processes for backup, restore and asynchronous archiving",
    default: 2,
    min: 1,
    max: 64,
  }),
  compressType: opt.oneOf({
    flag: "backup-compress-type",
    env: "BACKUP_COMPRESS_TYPE",
    description: "compression of backups and WAL",
    values: COMPRESS_TYPES,
    default: "lz4",
  }),
  archiveQueueMax: valueOption<string>(
    {
      flag: "backup-archive-queue-max",
      env: "BACKUP_ARCHIVE_QUEUE_MAX",
      description: "WAL kept while the repository is unreachable; past it WAL is dropped from the archive",
      default: "4GB",
      accepted: "a size such as 512MB, 4GB, 4GiB",
      metavar: "SIZE",
    },
    size,
  ),
  archiveTimeout: opt.seconds({
    flag: "backup-archive-timeout",
    env: "BACKUP_ARCHIVE_TIMEOUT",
    description: "pgBackRest's wait for a WAL segment to reach the repository",
    default: 60,
    min: 1,
    max: 86_400,
  }),
  ioTimeout: opt.seconds({
    flag: "backup-io-timeout",
    env: "BACKUP_IO_TIMEOUT",
    description: "pgBackRest's wait for the repository to answer one request",
    default: 60,
    min: 1,
    max: 3600,
  }),
  walSwitchInterval: opt.seconds({
    flag: "backup-wal-switch-interval",
    env: "BACKUP_WAL_SWITCH_INTERVAL",
    description:
      "PostgreSQL's archive_timeout: the longest a change waits for its WAL to be archived (0: off)",
    default: 300,
    min: 0,
    max: 86_400,
  }),
  replicaFromBackup: opt.bool({
    flag: "backup-replica-from-backup",
    env: "BACKUP_REPLICA_FROM_BACKUP",
    description: "create new replicas from the latest backup when under both thresholds",
    default: true,
  }),
  thresholdMb: optionalInt(
    "backup-replica-threshold-mb",
    "BACKUP_REPLICA_THRESHOLD_MB",
    "WAL since the backup must be under this many MB",
    String(DEFAULT_THRESHOLD_MB),
  ),
  waleThresholdMb: optionalInt(
    "wale-backup-threshold-megabytes",
    "WALE_BACKUP_THRESHOLD_MEGABYTES",
    "the original name of BACKUP_REPLICA_THRESHOLD_MB",
    undefined,
  ),
  thresholdPercent: optionalInt(
    "backup-replica-threshold-percent",
    "BACKUP_REPLICA_THRESHOLD_PERCENT",
    "WAL since the backup must be under this % of the backup's size",
    String(DEFAULT_THRESHOLD_PERCENT),
  ),
  waleThresholdPercent: optionalInt(
    "wale-backup-threshold-percentage",
    "WALE_BACKUP_THRESHOLD_PERCENTAGE",
    "the original name of BACKUP_REPLICA_THRESHOLD_PERCENT",
    undefined,
  ),
  restoreFromBackup: optionalText(
    "restore-from-backup",
    "RESTORE_FROM_BACKUP",
    "a new cluster restores this backup instead of running initdb: latest, or a backup label",
    "latest, true, off, or a label such as 20240101-010000F",
  ),
  restoreTargetTime: optionalText(
    "restore-target-time",
    "RESTORE_TARGET_TIME",
    "point-in-time recovery: replay WAL up to this time",
    "a time with its zone, such as 2024-01-01T10:00:00Z or '2024-01-01 12:00:00+02'",
  ),
  restoreTargetLsn: optionalText(
    "restore-target-lsn",
    "RESTORE_TARGET_LSN",
    "replay WAL up to this LSN",
    "an LSN such as 0/3000060",
  ),
  restoreTargetXid: optionalText(
    "restore-target-xid",
    "RESTORE_TARGET_XID",
    "replay WAL up to this transaction",
    "a transaction id",
  ),
  restoreTargetName: optionalText(
    "restore-target-name",
    "RESTORE_TARGET_NAME",
    "replay WAL up to this restore point (pg_create_restore_point)",
    "a restore point name",
  ),
  restoreTargetInclusive: opt.bool({
    flag: "restore-target-inclusive",
    env: "RESTORE_TARGET_INCLUSIVE",
    description: "stop just after the target (true) or just before it (false)",
    default: true,
  }),
  restoreTargetTimeline: valueOption<string>(
    {
      flag: "restore-target-timeline",
      env: "RESTORE_TARGET_TIMELINE",
      description: "timeline to recover along",
      default: "latest",
      accepted: "latest, current, or a timeline number",
    },
    (raw) => {
      if (raw === "latest" || raw === "current" || /^\d+$/.test(raw)) return raw;
      throw new ParseFailure();
    },
  ),
  metricsListen: opt.hostPort({
    flag: "metrics-listen",
    env: "AGENT_METRICS_LISTEN",
    description: "the agent's /metrics (backups, WAL archive), or off",
    default: DEFAULT_METRICS_LISTEN,
    allowOff: true,
  }),
};

export type BackupOptions = typeof backupOptions;
