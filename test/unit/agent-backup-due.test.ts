import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import type { BackupEntry, BackupInfo } from "../../agent/backup/info.js";
import { BackupMetrics } from "../../agent/backup/metrics.js";
import { nextBackupDue, type PlanInput, planBackup } from "../../agent/backup/plan.js";
import { parseSchedule } from "../../agent/backup/schedule.js";
import { deepFreeze } from "../harness/deep-freeze.js";

const T = (iso: string) => Date.parse(iso);

function backup(label: string, type: BackupEntry["type"], start: string, error = false): BackupEntry {
  return {
    label,
    type,
    startMs: T(start),
    stopMs: T(start) + 60_000,
    lsnStart: undefined,
    lsnStop: undefined,
    size: 100 * 1_048_576,
    repoSize: 20 * 1_048_576,
    walStart: undefined,
    walStop: undefined,
    error,
  };
}

function info(backups: BackupEntry[]): BackupInfo {
  return {
    code: backups.length === 0 ? 2 : 0,
    message: "ok",
    backups,
    archiveMin: undefined,
    archiveMax: undefined,
  };
}

const weeklyFull = parseSchedule("0 1 * * 0");
const dailyDiff = parseSchedule("0 1 * * 1-6");
const off = parseSchedule("off");
const sunday = backup("20240505-010000F", "full", "2024-05-05T01:00:00Z");
const tuesdayDiff = backup("20240505-010000F_20240507-010000D", "diff", "2024-05-07T01:00:00Z");
const since = T("2024-05-04T11:00:00Z"); // a Saturday

describe("nextBackupDue: when the leader's schedule wants the next backup", () => {
  const table: [string, Partial<PlanInput>, string | null][] = [
    ["no full backup, a first one at once: due since leading", {}, "2024-05-04T11:00:00Z"],
    ["no full backup, no initial one: the schedule's first time", { initial: false }, "2024-05-05T01:00:00Z"],
    [
      "a failed full backup does not count",
      { info: info([backup("F", "full", "2024-05-05T01:00:00Z", true)]) },
      "2024-05-04T11:00:00Z",
    ],
    ["Sunday's full: Monday's diff", { info: info([sunday]) }, "2024-05-06T01:00:00Z"],
    ["Tuesday's diff: Wednesday's", { info: info([sunday, tuesdayDiff]) }, "2024-05-08T01:00:00Z"],
    ["diff off: next Sunday's full", { info: info([sunday]), diff: off }, "2024-05-12T01:00:00Z"],
    ["both off: nothing is due", { info: info([sunday]), full: off, diff: off }, null],
    ["no backup, both off, no initial one: nothing is due", { full: off, diff: off, initial: false }, null],
  ];
  const base = {
    now: T("2024-05-08T12:00:00Z"),
    role: "primary",
    repositoryReady: true,
    info: info([]),
    full: weeklyFull,
    diff: dailyDiff,
    initial: true,
    since,
    running: false,
    lastFailureAt: undefined,
    retryIntervalMs: 300_000,
  } satisfies PlanInput;
  for (const [name, over, want] of table) {
    it(name, () => {
      const p = deepFreeze({ ...base, ...over });
      const due = nextBackupDue({ ...p, info: p.info ?? info([]) });
      assert.equal(due === null ? null : new Date(due).toISOString().replace(".000", ""), want);
    });
  }

  it("agrees with planBackup: the leader backs up exactly when the due time has come", () => {
    for (const [, over] of table) {
      for (const now of [
        "2024-05-04T12:00:00Z",
        "2024-05-06T00:59:00Z",
        "2024-05-06T01:00:00Z",
        "2024-05-08T12:00:00Z",
        "2024-05-12T02:00:00Z",
      ]) {
        const p = deepFreeze({ ...base, ...over, now: T(now) });
        const due = nextBackupDue({ ...p, info: p.info ?? info([]) });
        const plan = planBackup(p);
        assert.equal(plan.action !== "none", due !== null && due <= p.now, `${now}: ${plan.reason}`);
      }
    }
  });
});

describe("pgha_backup_next_due_timestamp_seconds", () => {
  it("is set in seconds with the stanza, and dropped when nothing is due here", async () => {
    const registry = new Registry();
    const m = new BackupMetrics(registry, "pgha");
    m.setNextDue(T("2024-05-06T01:00:00Z"));
    assert.match(
      await registry.metrics(),
      /^pgha_backup_next_due_timestamp_seconds\{stanza="pgha"\} 1714957200$/m,
    );
    m.setNextDue(null);
    assert.doesNotMatch(await registry.metrics(), /^pgha_backup_next_due_timestamp_seconds\{/m);
  });
});
