import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BackupEntry, BackupInfo } from "../../agent/backup/info.js";
import { lsnToBytes, parseBackupInfo } from "../../agent/backup/info.js";
import {
  chooseReplicaSource,
  type PlanInput,
  planBackup,
  selectRestoreSet,
} from "../../agent/backup/plan.js";
import { nextOccurrence, parseSchedule } from "../../agent/backup/schedule.js";
import { deepFreeze } from "../harness/deep-freeze.js";

const T = (iso: string) => Date.parse(iso);
const MB = 1_048_576;

function backup(
  label: string,
  type: BackupEntry["type"],
  start: string,
  extra: Partial<BackupEntry> = {},
): BackupEntry {
  return {
    label,
    type,
    startMs: T(start),
    stopMs: T(start) + 60_000,
    lsnStart: undefined,
    lsnStop: undefined,
    size: 100 * MB,
    repoSize: 20 * MB,
    walStart: undefined,
    walStop: undefined,
    error: false,
    ...extra,
  };
}

function info(backups: BackupEntry[], code = backups.length === 0 ? 2 : 0): BackupInfo {
  return {
    code,
    message: code === 0 ? "ok" : "no valid backups",
    backups,
    archiveMin: undefined,
    archiveMax: undefined,
  };
}

const weeklyFull = parseSchedule("0 1 * * 0");
const dailyDiff = parseSchedule("0 1 * * 1-6");

function input(over: Partial<PlanInput>): PlanInput {
  return {
    now: T("2024-05-08T12:00:00Z"), // a Wednesday
    role: "primary",
    repositoryReady: true,
    info: info([]),
    full: weeklyFull,
    diff: dailyDiff,
    initial: true,
    since: T("2024-05-08T11:00:00Z"),
    running: false,
    lastFailureAt: undefined,
    retryIntervalMs: 300_000,
    ...over,
  };
}

describe("planBackup: what the node does on this tick", () => {
  const sunday = backup("20240505-010000F", "full", "2024-05-05T01:00:00Z");
  const tuesdayDiff = backup("20240505-010000F_20240507-010000D", "diff", "2024-05-07T01:00:00Z");
  const wednesdayDiff = backup("20240505-010000F_20240508-010000D", "diff", "2024-05-08T01:00:00Z");
  const table: [string, Partial<PlanInput>, string, RegExp][] = [
    ["a replica never backs up", { role: "replica" }, "none", /not the leader/],
    ["unknown role: nothing", { role: "unknown" }, "none", /not the leader/],
    ["while a backup runs: nothing", { running: true }, "none", /running/],
    ["repository not ready: nothing", { repositoryReady: false }, "none", /not ready/],
    ["a new cluster: a first full backup", {}, "full", /no full backup yet/],
    [
      "no initial backup: the first one waits for the schedule",
      { initial: false },
      "none",
      /first full backup at 2024-05-12T01:00:00Z/,
    ],
    [
      "no initial backup, schedule passed since leading",
      { initial: false, since: T("2024-05-04T00:00:00Z") },
      "full",
      /due at 2024-05-05T01:00:00Z/,
    ],
    [
      "the daily diff is due (last full on Sunday, no diff since)",
      { info: info([sunday]) },
      "diff",
      /differential backup due at 2024-05-06T01:00:00Z/,
    ],
    [
      "the diff after Tuesday's is due Wednesday",
      { info: info([sunday, tuesdayDiff]) },
      "diff",
      /due at 2024-05-08T01:00:00Z/,
    ],
    [
      "Wednesday's diff done: next is Thursday",
      { info: info([sunday, tuesdayDiff, wednesdayDiff]) },
      "none",
      /next at 2024-05-09T01:00:00Z/,
    ],
    [
      "a full backup older than the weekly schedule: full",
      { info: info([backup("20240428-010000F", "full", "2024-04-28T01:00:00Z")]) },
      "full",
      /full backup due at 2024-05-05T01:00:00Z/,
    ],
    [
      "a failed full backup does not count",
      { info: info([backup("20240505-010000F", "full", "2024-05-05T01:00:00Z", { error: true })]) },
      "full",
      /no full backup yet/,
    ],
    [
      "after a failure: wait for the retry interval",
      { lastFailureAt: T("2024-05-08T11:58:00Z") },
      "none",
      /failed; next try at 2024-05-08T12:03:00Z/,
    ],
    ["after the retry interval: try again", { lastFailureAt: T("2024-05-08T11:50:00Z") }, "full", /no full/],
    [
      "diff off: only fulls",
      { info: info([sunday]), diff: parseSchedule("off") },
      "none",
      /next at 2024-05-12T01:00:00Z/,
    ],
    [
      "a promoted replica picks up the schedule from the repository",
      { info: info([sunday]), since: T("2024-05-08T11:59:00Z") },
      "diff",
      /due at 2024-05-06T01:00:00Z/,
    ],
  ];
  for (const [name, over, action, reason] of table) {
    it(name, () => {
      const p = deepFreeze(input(over));
      const plan = planBackup(p);
      assert.equal(plan.action, action, plan.reason);
      assert.match(plan.reason, reason);
    });
  }
});

describe("chooseReplicaSource: the original's thresholds (MB and % of the backup's size)", () => {
  const b = backup("20240505-010000F", "full", "2024-05-05T01:00:00Z", {
    lsnStart: lsnToBytes("0/10000000"),
    size: 1000 * MB,
  });
  const at = (mbAfter: number) => lsnToBytes("0/10000000")! + BigInt(mbAfter * MB);
  const table: [string, Parameters<typeof chooseReplicaSource>[0], string, RegExp][] = [
    [
      "no backup: basebackup",
      { backup: undefined, leaderLsn: at(0), thresholdMb: 100, thresholdPercent: 30 },
      "basebackup",
      /no backup/,
    ],
    [
      "little WAL: restore",
      { backup: b, leaderLsn: at(50), thresholdMb: 100, thresholdPercent: 30 },
      "restore",
      /50\.0 MB/,
    ],
    [
      "over the MB threshold",
      { backup: b, leaderLsn: at(150), thresholdMb: 100, thresholdPercent: 30 },
      "basebackup",
      /MB threshold/,
    ],
    [
      "under MB but over 30% of 1000 MB",
      { backup: b, leaderLsn: at(350), thresholdMb: 10_000, thresholdPercent: 30 },
      "basebackup",
      /percentage threshold/,
    ],
    [
      "exactly at the MB threshold is over it",
      { backup: b, leaderLsn: at(100), thresholdMb: 100, thresholdPercent: 30 },
      "basebackup",
      /MB threshold/,
    ],
    [
      "no leader: restore",
      { backup: b, leaderLsn: undefined, thresholdMb: 1, thresholdPercent: 1 },
      "restore",
      /no leader/,
    ],
    [
      "a backup without LSN: basebackup",
      { backup: { ...b, lsnStart: undefined }, leaderLsn: at(1), thresholdMb: 100, thresholdPercent: 30 },
      "basebackup",
      /no start LSN/,
    ],
    [
      "threshold 0 turns it off",
      { backup: b, leaderLsn: at(0), thresholdMb: 0, thresholdPercent: 30 },
      "basebackup",
      /MB threshold/,
    ],
  ];
  for (const [name, i, action, reason] of table) {
    it(name, () => {
      const r = chooseReplicaSource(i);
      assert.equal(r.action, action, r.reason);
      assert.match(r.reason, reason);
    });
  }
});

describe("selectRestoreSet: where a restore starts", () => {
  const f1 = backup("20240501-010000F", "full", "2024-05-01T01:00:00Z", { lsnStop: lsnToBytes("0/5000000") });
  const d1 = backup("20240501-010000F_20240502-010000D", "diff", "2024-05-02T01:00:00Z", {
    lsnStop: lsnToBytes("0/9000000"),
  });
  const f2 = backup("20240503-010000F", "full", "2024-05-03T01:00:00Z", { lsnStop: lsnToBytes("0/F000000") });
  const all = info([f1, d1, f2]);
  const time = (iso: string) => ({ type: "time" as const, value: iso, ms: T(iso) });
  const table: [string, Parameters<typeof selectRestoreSet>[1], string][] = [
    ["latest", { set: "latest", target: { type: "latest" } }, f2.label],
    [
      "a time between backups: the one before",
      { set: "latest", target: time("2024-05-02T12:00:00Z") },
      d1.label,
    ],
    [
      "a time during a backup: the one before it",
      { set: "latest", target: time("2024-05-03T01:00:30Z") },
      d1.label,
    ],
    ["an LSN", { set: "latest", target: { type: "lsn", value: "0/A000000" } }, d1.label],
    ["an xid: the newest", { set: "latest", target: { type: "xid", value: "99" } }, f2.label],
    ["a label", { set: f1.label, target: { type: "latest" } }, f1.label],
  ];
  for (const [name, r, want] of table) {
    it(name, () =>
      assert.deepEqual(
        "label" in selectRestoreSet(all, r) ? (selectRestoreSet(all, r) as { label: string }).label : "error",
        want,
      ),
    );
  }
  it("a time before every backup: an error naming it", () => {
    assert.deepEqual(selectRestoreSet(all, { set: "latest", target: time("2024-04-01T00:00:00Z") }), {
      error: "no backup ended before the time target",
    });
  });
  it("an unknown label: an error", () => {
    assert.match(
      (selectRestoreSet(all, { set: "20200101-000000F", target: { type: "latest" } }) as { error: string })
        .error,
      /no backup 20200101-000000F/,
    );
  });
});

describe("schedules", () => {
  const table: [string, string, string, string | null][] = [
    ["weekly on Sunday 01:00", "0 1 * * 0", "2024-05-08T12:00:00Z", "2024-05-12T01:00:00Z"],
    ["weekday 7 is Sunday", "0 1 * * 7", "2024-05-08T12:00:00Z", "2024-05-12T01:00:00Z"],
    ["Monday to Saturday", "0 1 * * 1-6", "2024-05-11T01:00:00Z", "2024-05-13T01:00:00Z"],
    ["every 15 minutes", "*/15 * * * *", "2024-05-08T12:07:10Z", "2024-05-08T12:15:00Z"],
    ["strictly after", "30 12 * * *", "2024-05-08T12:30:00Z", "2024-05-09T12:30:00Z"],
    ["@daily", "@daily", "2024-12-31T23:59:00Z", "2025-01-01T00:00:00Z"],
    ["@monthly", "@monthly", "2024-02-10T00:00:00Z", "2024-03-01T00:00:00Z"],
    ["day of month or weekday (cron's rule)", "0 0 13 * 5", "2024-09-01T00:00:00Z", "2024-09-06T00:00:00Z"],
    ["29 February", "0 0 29 2 *", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"],
    ["never (31 February)", "0 0 31 2 *", "2024-01-01T00:00:00Z", null],
    ["@every 6h", "@every 6h", "2024-05-08T12:00:00Z", "2024-05-08T18:00:00Z"],
    ["off", "off", "2024-05-08T12:00:00Z", null],
  ];
  for (const [name, text, after, want] of table) {
    it(name, () => {
      const next = nextOccurrence(parseSchedule(text), T(after));
      assert.equal(next === null ? null : new Date(next).toISOString().replace(".000", ""), want);
    });
  }
  for (const bad of [
    "* * * *",
    "60 * * * *",
    "0 0 0 * *",
    "0 0 * 13 *",
    "0 0 * * 8",
    "@every",
    "@yearly x",
    "5-1 * * * *",
  ]) {
    it(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => parseSchedule(bad)));
  }
});

describe("pgbackrest info decoded leniently", () => {
  const text = JSON.stringify([
    {
      name: "demo",
      status: { code: 0, message: "ok" },
      archive: [{ id: "15-1", min: "000000010000000000000002", max: "00000001000000000000000E" }],
      backup: [
        {
          label: "20261128-160134F",
          type: "full",
          timestamp: { start: 1795881694, stop: 1795881702 },
          lsn: { start: "0/E00028", stop: "0/E00100" },
          info: { size: 26867464, repository: { size: 5404991 } },
          archive: { start: "00000001000000000000000E", stop: "00000001000000000000000E" },
          error: false,
        },
        { label: "broken", type: "full" },
        { label: "x", type: "weird", timestamp: { start: 1, stop: 2 } },
      ],
    },
  ]);
  it("keeps the good entry and drops the malformed ones", () => {
    const i = parseBackupInfo(text, "demo");
    assert.equal(i.code, 0);
    assert.deepEqual(
      i.backups.map((b) => b.label),
      ["20261128-160134F"],
    );
    assert.equal(i.backups[0]!.lsnStart, 0xe00028n);
    assert.equal(i.backups[0]!.size, 26867464);
    assert.equal(i.backups[0]!.stopMs, 1795881702000);
    assert.equal(i.archiveMax, "00000001000000000000000E");
  });
  it("another stanza only: missing", () => assert.equal(parseBackupInfo(text, "other").code, 1));
  it("not JSON: an error status, no exception", () =>
    assert.equal(parseBackupInfo("ERROR: x", "demo").code, 99));
  it("status 'other': the repository's own message", () => {
    const t = JSON.stringify([
      {
        name: "demo",
        status: { code: 99, message: "other" },
        repo: [{ key: 1, status: { code: 99, message: "[HostConnectError] refused" } }],
      },
    ]);
    assert.equal(parseBackupInfo(t, "demo").message, "[HostConnectError] refused");
  });
  const lsns: [string, bigint | undefined][] = [
    ["0/0", 0n],
    ["1/0", 4294967296n],
    ["16/B374D848", 0x16b374d848n],
    ["nope", undefined],
  ];
  for (const [lsn, want] of lsns) it(`LSN ${lsn}`, () => assert.equal(lsnToBytes(lsn), want));
});
