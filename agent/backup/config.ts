/**
 * Backup settings of the agent: a pgBackRest repository (S3 or a posix path),
 * the backup schedule and retention, replica creation from backups, and a
 * restore (latest or point in time) when a new cluster is bootstrapped.
 *
 * The original image's names keep working: AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, WAL_S3_BUCKET, WALE_S3_ENDPOINT (scheme+style://host:port,
 * from which the endpoint, port, URI style and region are taken),
 * WALE_S3_PREFIX, WALE_BACKUP_THRESHOLD_MEGABYTES and
 * WALE_BACKUP_THRESHOLD_PERCENTAGE. The clear new names are BACKUP_* and RESTORE_*.
 *
 * `buildBackupConfig` is pure: parsed options in, a frozen BackupConfig (or
 * null when no repository is configured: archiving off) out, or a ConfigError.
 * The options come from options.ts; the BackupConfig goes to the agent's
 * AgentConfig, and from there to every other file of this package.
 */
import type { ConfigOf } from "../../shared/config.js";
import { ConfigError } from "../../shared/errors.js";
import { type HostPort, parseHostPort } from "../../shared/host-port.js";
import {
  type BackupOptions,
  type CompressType,
  DEFAULT_S3_REGION,
  DEFAULT_S3_REPO_PATH,
  DEFAULT_THRESHOLD_MB,
  DEFAULT_THRESHOLD_PERCENT,
} from "./options.js";
import type { Schedule } from "./schedule.js";

export type S3Repository = {
  readonly type: "s3";
  readonly bucket: string;
  readonly endpoint: string;
  readonly port: number | undefined;
  readonly region: string;
  readonly uriStyle: "host" | "path";
  readonly verifyTls: boolean;
  readonly caFile: string | undefined;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly path: string;
};
export type PosixRepository = { readonly type: "posix"; readonly path: string };

export type RestoreTarget =
  | { readonly type: "latest" }
  | { readonly type: "time"; readonly value: string; readonly ms: number }
  | { readonly type: "lsn"; readonly value: string }
  | { readonly type: "xid"; readonly value: string }
  | { readonly type: "name"; readonly value: string };

export interface RestoreConfig {
  /** `latest` or a backup label. */
  readonly set: string;
  readonly target: RestoreTarget;
  readonly inclusive: boolean;
  readonly timeline: string;
}

export interface BackupConfig {
  readonly stanza: string;
  readonly repo: S3Repository | PosixRepository;
  readonly cipherPass: string | undefined;
  readonly schedule: { readonly full: Schedule; readonly diff: Schedule; readonly initial: boolean };
  readonly retention: { readonly full: number; readonly diff: number | undefined };
  readonly checkIntervalMs: number;
  readonly retryIntervalMs: number;
  readonly processMax: number;
  readonly compressType: CompressType;
  readonly ioTimeoutSeconds: number;
  readonly archive: {
    readonly queueMax: string;
    readonly timeoutSeconds: number;
    readonly switchSeconds: number;
  };
  readonly replica: {
    readonly enabled: boolean;
    readonly thresholdMb: number;
    readonly thresholdPercent: number;
  };
  readonly restore: RestoreConfig | null;
}

type Opts = ConfigOf<BackupOptions>;

function fail(option: string, message: string): never {
  throw new ConfigError(option, `agent: ${message}`);
}

/** An endpoint as WAL-E wrote it (`https+path://host:port`) or as it is written today. */
export function parseEndpoint(
  raw: string,
  name: string,
): { host: string; port: number | undefined; style: "host" | "path" | undefined } {
  const m = /^(?:(https?)(?:\+(path|virtualhost|subdomain))?:\/\/)?([^/]+?)\/?$/.exec(raw.trim());
  if (!m)
    fail(name, `invalid ${name} ${JSON.stringify(raw)}: expected HOST[:PORT] or https[+path]://HOST[:PORT]`);
  if (m[1] === "http") {
    fail(name, `invalid ${name} ${JSON.stringify(raw)}: pgBackRest reaches S3 over https only`);
  }
  let hp: HostPort;
  try {
    hp = /:\d+$/.test(m[3]!) || m[3]!.startsWith("[") ? parseHostPort(m[3]!) : parseHostPort(m[3]!, 0);
  } catch {
    fail(name, `invalid ${name} ${JSON.stringify(raw)}: expected HOST[:PORT]`);
  }
  const style = m[2] === undefined ? undefined : m[2] === "path" ? "path" : "host";
  return { host: hp.host, port: hp.port === 0 ? undefined : hp.port, style };
}

/** AWS endpoints name their region: s3.eu-west-1.amazonaws.com, s3-eu-west-1.amazonaws.com. */
export function regionOfEndpoint(host: string): string | undefined {
  const m = /^(?:[^.]+\.)*s3[.-]([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$/.exec(host);
  return m?.[1];
}

const TIME_RE =
  /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)\s*(Z|[+-]\d{2}(?::?\d{2})?)$/i;

/** A time with its zone → pgBackRest's and PostgreSQL's form in UTC (`2024-01-01 10:00:00.123+00`). */
export function parseTargetTime(raw: string): { value: string; ms: number } {
  const m = TIME_RE.exec(raw.trim());
  if (!m)
    fail(
      "restore-target-time",
      `invalid RESTORE_TARGET_TIME ${JSON.stringify(raw)}: expected a time with its zone, such as 2024-01-01T10:00:00Z`,
    );
  let zone = m[3]!.toUpperCase();
  if (zone !== "Z" && zone.length === 3) zone += ":00";
  else if (zone !== "Z" && !zone.includes(":")) zone = `${zone.slice(0, 3)}:${zone.slice(3)}`;
  const time = m[2]!.length === 5 ? `${m[2]}:00` : m[2]!;
  const fraction = /\.(\d+)$/.exec(time)?.[1] ?? "";
  const ms = Date.parse(`${m[1]}T${time.replace(/\.\d+$/, "")}${zone}`);
  if (Number.isNaN(ms))
    fail("restore-target-time", `invalid RESTORE_TARGET_TIME ${JSON.stringify(raw)}: not a real time`);
  const iso = new Date(ms).toISOString().slice(0, 19).replace("T", " ");
  const exactMs = ms + (fraction === "" ? 0 : Number(`0.${fraction}`) * 1000);
  return { value: `${iso}${fraction === "" ? "" : `.${fraction}`}+00`, ms: exactMs };
}

function restoreConfig(c: Opts): RestoreConfig | null {
  const targets: RestoreTarget[] = [];
  if (c.restoreTargetTime !== undefined)
    targets.push({ type: "time", ...parseTargetTime(c.restoreTargetTime) });
  if (c.restoreTargetLsn !== undefined) {
    if (!/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i.test(c.restoreTargetLsn)) {
      fail(
        "restore-target-lsn",
        `invalid RESTORE_TARGET_LSN ${JSON.stringify(c.restoreTargetLsn)}: expected an LSN such as 0/3000060`,
      );
    }
    targets.push({ type: "lsn", value: c.restoreTargetLsn.toUpperCase() });
  }
  if (c.restoreTargetXid !== undefined) {
    if (!/^\d+$/.test(c.restoreTargetXid)) {
      fail(
        "restore-target-xid",
        `invalid RESTORE_TARGET_XID ${JSON.stringify(c.restoreTargetXid)}: expected a transaction id (digits)`,
      );
    }
    targets.push({ type: "xid", value: c.restoreTargetXid });
  }
  if (c.restoreTargetName !== undefined) {
    if (c.restoreTargetName.length > 63 || /['"\\\n]/.test(c.restoreTargetName)) {
      fail(
        "restore-target-name",
        "invalid RESTORE_TARGET_NAME: expected at most 63 characters without quotes or backslashes",
      );
    }
    targets.push({ type: "name", value: c.restoreTargetName });
  }
  if (targets.length > 1) {
    fail(
      "restore-target",
      "more than one of RESTORE_TARGET_TIME, _LSN, _XID, _NAME: expected at most one target",
    );
  }
  const from = c.restoreFromBackup?.trim();
  const off = from === undefined || /^(off|false|no|0)$/i.test(from);
  if (off && targets.length === 0) return null;
  if (from !== undefined && /^(off|false|no|0)$/i.test(from)) {
    fail(
      "restore-from-backup",
      "RESTORE_FROM_BACKUP is off but a RESTORE_TARGET_* is set: expected latest or a label",
    );
  }
  let set = "latest";
  if (from !== undefined && !/^(latest|true|yes|on|1)$/i.test(from)) {
    if (!/^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$/.test(from)) {
      fail(
        "restore-from-backup",
        `invalid RESTORE_FROM_BACKUP ${JSON.stringify(from)}: expected latest, off, or a backup label such as 20240101-010000F`,
      );
    }
    set = from;
  }
  return Object.freeze({
    set,
    target: Object.freeze(targets[0] ?? { type: "latest" }),
    inclusive: c.restoreTargetInclusive,
    timeline: c.restoreTargetTimeline,
  });
}

function s3Repository(c: Opts, bucketIn: string | undefined): S3Repository {
  let bucket = bucketIn;
  let path = c.repoPath;
  if (c.waleS3Prefix !== undefined) {
    const m = /^s3:\/\/([^/]+)(\/.*)?$/.exec(c.waleS3Prefix.trim());
    if (!m)
      fail(
        "wale-s3-prefix",
        `invalid WALE_S3_PREFIX ${JSON.stringify(c.waleS3Prefix)}: expected s3://BUCKET[/PATH]`,
      );
    bucket ??= m[1]!;
    if (path === undefined && m[2] !== undefined && m[2] !== "/") path = m[2].replace(/\/+$/, "");
  }
  if (bucket === undefined) fail("backup-s3-bucket", "missing BACKUP_S3_BUCKET (or WAL_S3_BUCKET)");
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    fail(
      "backup-s3-bucket",
      `invalid bucket ${JSON.stringify(bucket)}: expected 3-63 lowercase letters, digits, '.' and '-'`,
    );
  }
  if (c.awsAccessKeyId === undefined || c.awsSecretAccessKey === undefined) {
    fail(
      "aws-access-key-id",
      "an S3 repository needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or their _FILE variants)",
    );
  }
  const endpointRaw = c.s3Endpoint ?? c.waleS3Endpoint;
  const endpointName = c.s3Endpoint !== undefined ? "BACKUP_S3_ENDPOINT" : "WALE_S3_ENDPOINT";
  const ep = endpointRaw === undefined ? undefined : parseEndpoint(endpointRaw, endpointName);
  const region =
    c.s3Region ?? c.awsRegion ?? (ep ? regionOfEndpoint(ep.host) : undefined) ?? DEFAULT_S3_REGION;
  if (!/^[a-z0-9-]+$/.test(region))
    fail(
      "backup-s3-region",
      `invalid S3 region ${JSON.stringify(region)}: expected a region such as eu-west-1`,
    );
  if (path !== undefined && !path.startsWith("/")) {
    fail("backup-repo-path", `invalid BACKUP_REPO_PATH ${JSON.stringify(path)}: expected an absolute path`);
  }
  return Object.freeze({
    type: "s3",
    bucket,
    endpoint: ep?.host ?? `s3.${region}.amazonaws.com`,
    port: ep?.port,
    region,
    uriStyle: c.s3UriStyle ?? ep?.style ?? "host",
    verifyTls: c.s3VerifyTls,
    caFile: c.s3CaFile,
    accessKeyId: c.awsAccessKeyId,
    secretAccessKey: c.awsSecretAccessKey,
    path: path ?? DEFAULT_S3_REPO_PATH,
  });
}

/** Pure: the parsed options → BackupConfig, null when no repository is set. */
export function buildBackupConfig(c: Opts, scope: string): BackupConfig | null {
  const bucket = c.s3Bucket ?? c.walS3Bucket;
  const wantsS3 = bucket !== undefined || c.waleS3Prefix !== undefined;
  const restore = restoreConfig(c);
  if (!wantsS3 && c.posixPath === undefined) {
    if (restore)
      fail(
        "restore-from-backup",
        "RESTORE_* needs a repository: expected BACKUP_S3_BUCKET (WAL_S3_BUCKET) or BACKUP_POSIX_PATH",
      );
    return null;
  }
  if (wantsS3 && c.posixPath !== undefined) {
    fail("backup-posix-path", "both an S3 bucket and BACKUP_POSIX_PATH are set: expected one repository");
  }
  let repo: S3Repository | PosixRepository;
  if (c.posixPath !== undefined) {
    if (!c.posixPath.startsWith("/") || c.posixPath === "/") {
      fail(
        "backup-posix-path",
        `invalid BACKUP_POSIX_PATH ${JSON.stringify(c.posixPath)}: expected an absolute path below /`,
      );
    }
    repo = Object.freeze({ type: "posix", path: c.posixPath.replace(/\/+$/, "") });
  } else {
    repo = s3Repository(c, bucket);
  }
  const stanza = c.stanza ?? scope;
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(stanza)) {
    fail("backup-stanza", `invalid stanza ${JSON.stringify(stanza)}: expected letters, digits, _ . -`);
  }
  return Object.freeze({
    stanza,
    repo,
    cipherPass: c.cipherPass,
    schedule: Object.freeze({ full: c.fullSchedule, diff: c.diffSchedule, initial: c.initialBackup }),
    retention: Object.freeze({ full: c.retentionFull, diff: c.retentionDiff }),
    checkIntervalMs: c.checkInterval * 1000,
    retryIntervalMs: c.retryInterval * 1000,
    processMax: c.processMax,
    compressType: c.compressType,
    ioTimeoutSeconds: c.ioTimeout,
    archive: Object.freeze({
      queueMax: c.archiveQueueMax,
      timeoutSeconds: c.archiveTimeout,
      switchSeconds: c.walSwitchInterval,
    }),
    replica: Object.freeze({
      enabled: c.replicaFromBackup,
      // The new names win over the original ones when both are set.
      thresholdMb: c.thresholdMb ?? c.waleThresholdMb ?? DEFAULT_THRESHOLD_MB,
      thresholdPercent: c.thresholdPercent ?? c.waleThresholdPercent ?? DEFAULT_THRESHOLD_PERCENT,
    }),
    restore,
  });
}

/** Env names of backup secrets that may come from `<NAME>_FILE`. */
export const BACKUP_FILE_BACKED = [
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "BACKUP_CIPHER_PASS",
] as const;
