/**
 * The backup decisions, pure functions of immutable snapshots:
 *
 * - `planBackup`: on each tick, whether this node takes a backup now (only the
 *   leader does; the schedule is measured from the repository's own backups,
 *   so a promoted replica picks it up where the old leader left it);
 * - `chooseReplicaSource`: a new replica restores the latest backup when the
 *   WAL written since is under both thresholds, as the original image did;
 * - `selectRestoreSet`: which backup a restore starts from.
 *
 * The loop (manager.ts) and the commands (cli.ts) carry out what they decide.
 */
import type { RestoreConfig } from "./config.js";
import { type BackupEntry, type BackupInfo, lsnToBytes, newestGood } from "./info.js";
import { nextOccurrence, type Schedule } from "./schedule.js";

export type NodeRole = "primary" | "replica" | "unknown";

export interface PlanInput {
  readonly now: number;
  readonly role: NodeRole;
  /** The repository answered and the stanza exists (info status 0 or 2: no backup yet). */
  readonly repositoryReady: boolean;
  readonly info: BackupInfo | null;
  readonly full: Schedule;
  readonly diff: Schedule;
  readonly initial: boolean;
  /** When this node became the leader (or the agent started): a schedule with no backup yet counts from here. */
  readonly since: number;
  readonly running: boolean;
  readonly lastFailureAt: number | undefined;
  readonly retryIntervalMs: number;
}

export type BackupPlan =
  | { readonly action: "none"; readonly reason: string; readonly nextAt?: number }
  | { readonly action: "full" | "diff"; readonly reason: string };

function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** What the schedule is measured from: the repository's backups, or `since` before the first full one. */
export type ScheduleInput = Pick<PlanInput, "info" | "full" | "diff" | "initial" | "since"> & {
  readonly info: BackupInfo;
};

interface DueTimes {
  readonly lastFull: BackupEntry | undefined;
  readonly lastAny: BackupEntry | undefined;
  /** With no full backup yet: `since` when a first one is taken at once, else the schedule's first time after it. */
  readonly fullAt: number | null;
  readonly diffAt: number | null;
}

function dueTimes(p: ScheduleInput): DueTimes {
  const lastFull = newestGood(p.info, ["full"]);
  if (!lastFull) {
    return {
      lastFull,
      lastAny: undefined,
      fullAt: p.initial ? p.since : nextOccurrence(p.full, p.since),
      diffAt: null,
    };
  }
  const lastAny = newestGood(p.info, ["full", "diff"]) as BackupEntry;
  return {
    lastFull,
    lastAny,
    fullAt: nextOccurrence(p.full, lastFull.startMs),
    diffAt: nextOccurrence(p.diff, Math.max(lastAny.startMs, lastFull.startMs)),
  };
}

/**
 * When the schedule wants the next backup (in the past once it is due), by the rules of
 * `planBackup`; null when nothing is scheduled. The agent exports it so that an alert can
 * say a backup is overdue without knowing the schedule.
 */
export function nextBackupDue(p: ScheduleInput): number | null {
  const d = dueTimes(p);
  const times = [d.fullAt, d.diffAt].filter((t): t is number => t !== null);
  return times.length === 0 ? null : Math.min(...times);
}

export function planBackup(p: PlanInput): BackupPlan {
  if (p.role !== "primary") return { action: "none", reason: "not the leader: the leader takes the backups" };
  if (p.running) return { action: "none", reason: "a backup is running" };
  if (!p.repositoryReady || p.info === null) return { action: "none", reason: "the repository is not ready" };
  if (p.lastFailureAt !== undefined && p.now - p.lastFailureAt < p.retryIntervalMs) {
    const at = p.lastFailureAt + p.retryIntervalMs;
    return { action: "none", reason: `the last backup failed; next try at ${iso(at)}`, nextAt: at };
  }
  const { lastFull, lastAny, fullAt, diffAt } = dueTimes({ ...p, info: p.info });
  if (!lastFull || !lastAny) {
    if (p.initial) return { action: "full", reason: "the repository has no full backup yet" };
    if (fullAt !== null && fullAt <= p.now)
      return { action: "full", reason: `full backup due at ${iso(fullAt)}` };
    return {
      action: "none",
      reason: fullAt === null ? "no full backup and none scheduled" : `first full backup at ${iso(fullAt)}`,
      ...(fullAt === null ? {} : { nextAt: fullAt }),
    };
  }
  if (fullAt !== null && fullAt <= p.now) {
    return { action: "full", reason: `full backup due at ${iso(fullAt)} (last ${lastFull.label})` };
  }
  if (diffAt !== null && diffAt <= p.now) {
    return { action: "diff", reason: `differential backup due at ${iso(diffAt)} (last ${lastAny.label})` };
  }
  const next = [fullAt, diffAt].filter((t): t is number => t !== null).sort((a, b) => a - b)[0];
  return next === undefined
    ? { action: "none", reason: `last backup ${lastAny.label}; nothing scheduled` }
    : { action: "none", reason: `last backup ${lastAny.label}; next at ${iso(next)}`, nextAt: next };
}

export interface ReplicaSourceInput {
  /** The newest good backup, if any. */
  readonly backup: BackupEntry | undefined;
  /** The leader's current WAL position in bytes; undefined when there is no leader to ask. */
  readonly leaderLsn: bigint | undefined;
  readonly thresholdMb: number;
  readonly thresholdPercent: number;
}

export type ReplicaSource =
  | { readonly action: "restore"; readonly label: string; readonly reason: string }
  | { readonly action: "basebackup"; readonly reason: string };

export function chooseReplicaSource(i: ReplicaSourceInput): ReplicaSource {
  const b = i.backup;
  if (!b) return { action: "basebackup", reason: "the repository has no backup" };
  if (i.leaderLsn === undefined) {
    return { action: "restore", label: b.label, reason: `no leader to copy; restoring ${b.label}` };
  }
  if (b.lsnStart === undefined) return { action: "basebackup", reason: `backup ${b.label} has no start LSN` };
  const diff = i.leaderLsn > b.lsnStart ? i.leaderLsn - b.lsnStart : 0n;
  const mb = Number(diff) / 1_048_576;
  const sizeLimit = BigInt(i.thresholdMb) * 1_048_576n;
  // As the original: WAL since the backup < threshold_megabytes and < threshold_percentage of its size.
  const pctLimit = (BigInt(Math.trunc(b.size)) * BigInt(i.thresholdPercent)) / 100n;
  const facts = `${mb.toFixed(1)} MB of WAL since ${b.label} (limits ${i.thresholdMb} MB and ${i.thresholdPercent}% of ${(b.size / 1_048_576).toFixed(1)} MB)`;
  if (diff >= sizeLimit) return { action: "basebackup", reason: `${facts}: over the MB threshold` };
  if (diff >= pctLimit) return { action: "basebackup", reason: `${facts}: over the percentage threshold` };
  return { action: "restore", label: b.label, reason: facts };
}

export type RestoreSet = { readonly label: string; readonly reason: string } | { readonly error: string };

/**
 * The backup a restore starts from: the one named, else the newest good one
 * that ended before a time or LSN target (recovery can only move forward from
 * a backup's end), else the newest good one.
 */
export function selectRestoreSet(info: BackupInfo, r: Pick<RestoreConfig, "set" | "target">): RestoreSet {
  const good = info.backups.filter((b) => !b.error);
  if (r.set !== "latest") {
    const named = good.find((b) => b.label === r.set);
    return named
      ? { label: named.label, reason: "named" }
      : { error: `no backup ${r.set} in the repository` };
  }
  if (good.length === 0) return { error: "the repository has no backup to restore" };
  const t = r.target;
  let candidates = good;
  if (t.type === "time") candidates = good.filter((b) => b.stopMs < t.ms);
  if (t.type === "lsn") {
    const target = lsnToBytes(t.value);
    candidates = good.filter((b) => b.lsnStop !== undefined && target !== undefined && b.lsnStop <= target);
  }
  const chosen = candidates.reduce<BackupEntry | undefined>(
    (a, b) => (!a || b.stopMs >= a.stopMs ? b : a),
    undefined,
  );
  if (!chosen) return { error: `no backup ended before the ${t.type} target` };
  return {
    label: chosen.label,
    reason: t.type === "latest" ? "newest" : `newest before the ${t.type} target`,
  };
}
