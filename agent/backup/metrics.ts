/**
 * The agent's metrics (served on AGENT_METRICS_LISTEN, default :8009, beside
 * Patroni's own /metrics on 8008): the last good backup and its age, backup
 * runs, and the WAL archive's health. The backup loop (manager.ts) updates
 * them; setup.ts serves them.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { ArchiveStatus } from "./archive-status.js";
import { type BackupInfo, newestGood } from "./info.js";

export class BackupMetrics {
  private lastGoodStopMs: number | undefined;
  readonly configured: Gauge;
  readonly repositoryOk: Gauge;
  readonly scheduler: Gauge;
  readonly lastGood: Gauge<"type">;
  readonly count: Gauge<"type">;
  private readonly nextDue: Gauge<"stanza">;
  readonly runs: Counter<"type" | "result">;
  readonly duration: Gauge<"type">;
  readonly running: Gauge;
  readonly archived: Gauge;
  readonly failed: Gauge;
  readonly lastArchived: Gauge;
  readonly lastFailed: Gauge;
  readonly failing: Gauge;
  readonly ready: Gauge;
  readonly oldestReady: Gauge;

  constructor(
    registry: Registry,
    private readonly stanza: string,
    now: () => number = Date.now,
  ) {
    const registers = [registry];
    this.configured = new Gauge({
      name: "pgha_backup_configured",
      help: "1 when a pgBackRest repository is configured (WAL archiving on)",
      registers,
    });
    this.repositoryOk = new Gauge({
      name: "pgha_backup_repository_ok",
      help: "1 when the repository answered the last check and the stanza exists",
      registers,
    });
    this.scheduler = new Gauge({
      name: "pgha_backup_scheduler_active",
      help: "1 on the node that runs the backup schedule (the leader)",
      registers,
    });
    this.lastGood = new Gauge({
      name: "pgha_backup_last_good_timestamp_seconds",
      help: "end time of the newest good backup in the repository, by type",
      labelNames: ["type"],
      registers,
    });
    const self = this;
    new Gauge({
      name: "pgha_backup_last_good_age_seconds",
      help: "age of the newest good backup in the repository (absent until one is known)",
      labelNames: ["stanza"],
      registers,
      collect() {
        if (self.lastGoodStopMs !== undefined) this.set({ stanza }, (now() - self.lastGoodStopMs) / 1000);
      },
    });
    this.nextDue = new Gauge({
      name: "pgha_backup_next_due_timestamp_seconds",
      help: "on the leader, which runs the schedule: when the next scheduled backup is (or was) due, measured from the repository's backups",
      labelNames: ["stanza"],
      registers,
    });
    this.count = new Gauge({
      name: "pgha_backup_count",
      help: "good backups in the repository, by type",
      labelNames: ["type"],
      registers,
    });
    this.runs = new Counter({
      name: "pgha_backup_runs_total",
      help: "backups this agent ran, by type and result (ok, failed)",
      labelNames: ["type", "result"],
      registers,
    });
    this.duration = new Gauge({
      name: "pgha_backup_last_duration_seconds",
      help: "duration of the last backup this agent ran, by type",
      labelNames: ["type"],
      registers,
    });
    this.running = new Gauge({ name: "pgha_backup_running", help: "1 while a backup runs", registers });
    this.archived = new Gauge({
      name: "pgha_archive_archived_count",
      help: "WAL segments archived since PostgreSQL started (pg_stat_archiver)",
      registers,
    });
    this.failed = new Gauge({
      name: "pgha_archive_failed_count",
      help: "failed attempts to archive WAL since PostgreSQL started (pg_stat_archiver)",
      registers,
    });
    this.lastArchived = new Gauge({
      name: "pgha_archive_last_archived_timestamp_seconds",
      help: "when a WAL segment was last archived",
      registers,
    });
    this.lastFailed = new Gauge({
      name: "pgha_archive_last_failed_timestamp_seconds",
      help: "when archiving last failed",
      registers,
    });
    this.failing = new Gauge({
      name: "pgha_archive_failing",
      help: "1 while the last archive attempt failed (WAL is kept in pg_wal until it succeeds)",
      registers,
    });
    this.ready = new Gauge({
      name: "pgha_archive_ready_segments",
      help: "WAL segments waiting to be archived",
      registers,
    });
    this.oldestReady = new Gauge({
      name: "pgha_archive_oldest_waiting_seconds",
      help: "how long the oldest WAL segment waiting to be archived has waited (0: none waits)",
      registers,
    });
  }

  setInfo(info: BackupInfo): void {
    const ok = info.code === 0 || info.code === 2;
    this.repositoryOk.set(ok ? 1 : 0);
    if (!ok) return;
    for (const type of ["full", "diff", "incr"] as const) {
      const good = info.backups.filter((b) => b.type === type && !b.error);
      this.count.set({ type }, good.length);
      const newest = newestGood(info, [type]);
      if (newest) this.lastGood.set({ type }, newest.stopMs / 1000);
    }
    this.lastGoodStopMs = newestGood(info)?.stopMs;
  }

  /** The leader's next scheduled backup; null (nothing scheduled, or not the leader) drops the series. */
  setNextDue(at: number | null): void {
    if (at === null) this.nextDue.reset();
    else this.nextDue.set({ stanza: this.stanza }, at / 1000);
  }

  setArchive(s: ArchiveStatus, failing: boolean, now: number): void {
    this.oldestReady.set(s.oldestReadyAt > 0 ? Math.max(0, (now - s.oldestReadyAt) / 1000) : 0);
    this.archived.set(s.archivedCount);
    this.failed.set(s.failedCount);
    if (s.lastArchivedAt > 0) this.lastArchived.set(s.lastArchivedAt / 1000);
    if (s.lastFailedAt > 0) this.lastFailed.set(s.lastFailedAt / 1000);
    this.failing.set(failing ? 1 : 0);
    this.ready.set(s.readySegments);
  }
}
