/**
 * The backup loop of a running agent. Each tick it reads the node's role from
 * Patroni's REST API, the repository's backups from pgBackRest and, on the
 * leader, the WAL archive's state; `planBackup` decides; the effects (stanza
 * creation, a backup) happen here. Only the leader acts, so when a replica is
 * promoted its agent takes over the schedule on its next tick. Decisions and
 * state changes are logged once, when they change, and shown by metrics.ts.
 * setup.ts starts it.
 */
import type { Logger } from "../../shared/logger.js";
import { type PatroniStatus, runsAsPrimary } from "../../shared/patroni-rest.js";
import { type ArchiveStatus, archiveFailing } from "./archive-status.js";
import type { BackupConfig } from "./config.js";
import { type BackupInfo, newestGood } from "./info.js";
import type { BackupMetrics } from "./metrics.js";
import { BackupError, LOCK_ACQUIRE_EXIT, type PgBackRest, summarizeError } from "./pgbackrest.js";
import { type NodeRole, nextBackupDue, planBackup } from "./plan.js";

export interface ManagerDeps {
  readonly cfg: BackupConfig;
  readonly pgbackrest: PgBackRest;
  /** Patroni's GET /patroni, null when it does not answer. */
  readonly patroniStatus: () => Promise<PatroniStatus | null>;
  readonly archiveStatus: () => Promise<ArchiveStatus | null>;
  readonly pushError: () => string | undefined;
  readonly metrics: BackupMetrics;
  readonly log: Logger;
  readonly now?: () => number;
}

/** Only a running primary takes backups; a node whose Patroni did not say its role is unknown. */
export function roleOf(status: PatroniStatus | null): NodeRole {
  if (runsAsPrimary(status)) return "primary";
  return status === null || status.role === null ? "unknown" : "replica";
}

const BACKUP_TIMEOUT_MS = 24 * 3600_000;
const STATUS_LOG_INTERVAL_MS = 3600_000;

export class BackupManager {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private running = false;
  private stanzaReady = false;
  private role: NodeRole = "unknown";
  private since: number;
  private info: BackupInfo | null = null;
  private lastFailureAt: number | undefined;
  private lastDecision = "";
  private lastRepoState = "";
  private lastStanzaError = "";
  private archiveFailingSince: number | undefined;
  private archiveError = "";
  private lastStatusLog = 0;
  private readonly now: () => number;

  constructor(private readonly d: ManagerDeps) {
    this.now = d.now ?? Date.now;
    this.since = this.now();
    d.metrics.configured.set(1);
  }

  start(firstDelayMs = 2000): void {
    this.timer = setTimeout(() => void this.tick(), firstDelayMs);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** The last known state, for the admin server's /backup route. */
  snapshot(): Record<string, unknown> {
    const last = this.info ? newestGood(this.info) : undefined;
    return {
      stanza: this.d.cfg.stanza,
      role: this.role,
      running: this.running,
      repository: this.info ? { code: this.info.code, message: this.info.message } : null,
      lastGood: last
        ? { label: last.label, type: last.type, stoppedAt: new Date(last.stopMs).toISOString() }
        : null,
      archiveFailing: this.archiveFailingSince !== undefined,
      archiveError: this.archiveError || undefined,
      decision: this.lastDecision,
    };
  }

  private async tick(): Promise<void> {
    try {
      await this.step();
    } catch (err) {
      this.d.log.error({ err }, "backup check failed");
    } finally {
      if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.d.cfg.checkIntervalMs);
    }
  }

  private async step(): Promise<void> {
    const { log, metrics } = this.d;
    const role = roleOf(await this.d.patroniStatus());
    if (role !== this.role) {
      if (role === "primary") {
        this.since = this.now();
        this.stanzaReady = false;
        log.info({ stanza: this.d.cfg.stanza }, "this node leads: it runs the backup schedule");
      } else if (this.role === "primary") {
        log.info({ role }, "this node no longer leads: the new leader runs the backup schedule");
      }
      this.role = role;
    }
    metrics.scheduler.set(role === "primary" ? 1 : 0);
    if (role === "primary" && !this.stanzaReady) await this.ensureStanza();

    const info = await this.d.pgbackrest.info();
    this.info = info;
    metrics.setInfo(info);
    const repoState = `${info.code}:${info.message}`;
    if (repoState !== this.lastRepoState) {
      const ok = info.code === 0 || info.code === 2;
      if (ok) log.info({ status: info.message, backups: info.backups.length }, "backup repository answers");
      else log.error({ status: info.message, code: info.code }, "backup repository unusable");
      this.lastRepoState = repoState;
    }

    if (role !== "primary") metrics.setNextDue(null);
    else if (info.code === 0 || info.code === 2) {
      const { full, diff, initial } = this.d.cfg.schedule;
      metrics.setNextDue(nextBackupDue({ info, full, diff, initial, since: this.since }));
    }

    if (role === "primary") await this.checkArchive();

    const plan = planBackup({
      now: this.now(),
      role,
      repositoryReady: this.stanzaReady && (info.code === 0 || info.code === 2),
      info,
      full: this.d.cfg.schedule.full,
      diff: this.d.cfg.schedule.diff,
      initial: this.d.cfg.schedule.initial,
      since: this.since,
      running: this.running,
      lastFailureAt: this.lastFailureAt,
      retryIntervalMs: this.d.cfg.retryIntervalMs,
    });
    const key = `${plan.action}:${plan.reason}`;
    const last = newestGood(info);
    const ageSeconds = last ? Math.round((this.now() - last.stopMs) / 1000) : undefined;
    if (key !== this.lastDecision) {
      log.info({ action: plan.action, lastBackup: last?.label, ageSeconds }, `backup: ${plan.reason}`);
      this.lastDecision = key;
      this.lastStatusLog = this.now();
    } else if (role === "primary" && this.now() - this.lastStatusLog > STATUS_LOG_INTERVAL_MS) {
      log.info({ lastBackup: last?.label, ageSeconds }, "backup status");
      this.lastStatusLog = this.now();
    }
    if (plan.action !== "none") void this.runBackup(plan.action, plan.reason);
  }

  private async ensureStanza(): Promise<void> {
    try {
      await this.d.pgbackrest.must(["stanza-create"], 300_000);
      this.stanzaReady = true;
      this.lastStanzaError = "";
      this.d.log.info({ stanza: this.d.cfg.stanza }, "stanza ready in the repository");
    } catch (err) {
      const message = err instanceof BackupError ? err.message : summarizeError(String(err));
      if (message !== this.lastStanzaError) {
        this.d.log.error({ stanza: this.d.cfg.stanza, error: message }, "cannot create the stanza; retrying");
        this.lastStanzaError = message;
      }
    }
  }

  private async checkArchive(): Promise<void> {
    const { log, metrics } = this.d;
    const s = await this.d.archiveStatus();
    if (!s) return;
    const stallMs = (this.d.cfg.archive.timeoutSeconds + this.d.cfg.checkIntervalMs / 1000) * 1000;
    const failing = archiveFailing(s, this.now(), stallMs);
    metrics.setArchive(s, failing, this.now());
    if (failing) {
      const waited = s.oldestReadyAt > 0 ? Math.round((this.now() - s.oldestReadyAt) / 1000) : 0;
      const error =
        this.d.pushError() ??
        (waited > 0 ? `a WAL segment has waited ${waited} s for the repository` : "see /var/log/pgbackrest");
      const sameKind = error.replace(/\d+ s/, "") === this.archiveError.replace(/\d+ s/, "");
      if (this.archiveFailingSince === undefined || !sameKind) {
        log.error(
          { wal: s.lastFailedWal, waiting: s.readySegments, failures: s.failedCount, error },
          "WAL archiving is failing; PostgreSQL keeps the WAL until it succeeds",
        );
      }
      this.archiveFailingSince ??= Math.min(s.oldestReadyAt || this.now(), this.now());
      this.archiveError = error;
    } else if (this.archiveFailingSince !== undefined) {
      log.info(
        {
          failedForSeconds: Math.round((this.now() - this.archiveFailingSince) / 1000),
          wal: s.lastArchivedWal,
        },
        "WAL archiving works again",
      );
      this.archiveFailingSince = undefined;
      this.archiveError = "";
    }
  }

  private async runBackup(type: "full" | "diff", reason: string): Promise<void> {
    const { log, metrics } = this.d;
    this.running = true;
    metrics.running.set(1);
    log.info({ type, reason }, "backup started");
    try {
      const r = await this.d.pgbackrest.run([`--type=${type}`, "backup"], { timeoutMs: BACKUP_TIMEOUT_MS });
      const seconds = r.ms / 1000;
      metrics.duration.set({ type }, seconds);
      if (r.code === 0) {
        this.lastFailureAt = undefined;
        metrics.runs.inc({ type, result: "ok" });
        this.info = await this.d.pgbackrest.info();
        metrics.setInfo(this.info);
        const last = newestGood(this.info);
        log.info({ type, label: last?.label, seconds, bytes: last?.size }, "backup finished");
      } else if (r.code === LOCK_ACQUIRE_EXIT) {
        // An operator's backup-now holds the lock: the plan looks again on the next tick.
        log.info({ type, seconds }, "backup not started: another backup of this stanza is running");
      } else {
        this.lastFailureAt = this.now();
        metrics.runs.inc({ type, result: "failed" });
        log.error({ type, seconds, error: summarizeError(r.stdout + "\n" + r.stderr) }, "backup failed");
      }
    } finally {
      this.running = false;
      metrics.running.set(0);
    }
  }
}
