/**
 * Backups to a posix repository (a volume shared by the nodes) with the real
 * agent image: the leader takes the first full backup and the scheduled
 * differential ones while its replica takes none; when the leader stops, the
 * promoted replica takes over the schedule; a new full backup expires the
 * older one (retention of one full backup).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { BackupLab } from "../harness/backup-lab.js";
import { docker, ensureImages } from "../harness/docker.js";
import { waitFor } from "../harness/proc.js";

let lab: BackupLab;

const ENV = {
  BACKUP_FULL_SCHEDULE: "@every 1h",
  BACKUP_DIFF_SCHEDULE: "@every 20s",
  BACKUP_RETENTION_FULL: "1",
};

function backupsFinished(logs: string, type: string): number {
  return logs
    .split("\n")
    .filter((l) => l.includes('"msg":"backup finished"') && l.includes(`"type":"${type}"`)).length;
}

describe("backups to a posix repository: the leader's schedule, taken over on promotion, retention", {
  timeout: 15 * 60_000,
}, () => {
  before(async () => {
    await ensureImages(["agent", "etcd"]);
    lab = await BackupLab.start("bkpx", { repo: "posix" });
  });

  after(async () => {
    await lab?.destroy();
  });

  it("the leader takes the first full backup and scheduled differential ones; its replica takes none", async () => {
    await lab.runNode("pg1", ENV);
    await lab.waitLeader("pg1");
    await lab.runNode("pg2", ENV);
    await lab.step(() =>
      waitFor(
        "pg2 to stream and a full and a differential backup in the repository",
        async () =>
          (await lab.psql("pg1", "SELECT state FROM pg_stat_replication WHERE application_name = 'pg2'")) ===
            "streaming" &&
          (await lab.backups("pg1")).some((b) => b.type === "full") &&
          (await lab.backups("pg1")).some((b) => b.type === "diff"),
        { timeoutMs: 180_000, intervalMs: 1000 },
      ),
    );
    assert.equal((await lab.metrics("pg1")).get("pgha_backup_scheduler_active"), 1);
    assert.equal((await lab.metrics("pg2")).get("pgha_backup_scheduler_active"), 0);
    assert.doesNotMatch(await lab.logs("pg2"), /"msg":"backup started"/, "the replica took no backup");
    assert.match(
      await lab.exec("pg2", ["backup-list"]),
      /diff backup: /,
      "backup-list works on a replica too",
    );
    const refused = await lab
      .exec("pg2", ["backup-now"])
      .then(() => "ran")
      .catch((err: Error) => err.message);
    assert.match(refused, /backups run on the leader; this node is replica/);
  });

  it("when the leader stops, the promoted replica takes over the schedule", async () => {
    await docker(["stop", "-t", "60", lab.container("pg1")], { timeoutMs: 90_000 });
    await lab.waitLeader("pg2");
    const before = backupsFinished(await lab.logs("pg2"), "diff");
    assert.equal(before, 0);
    await lab.step(() =>
      waitFor(
        "pg2 to take a scheduled differential backup",
        async () => backupsFinished(await lab.logs("pg2"), "diff") >= 1,
        { timeoutMs: 120_000, intervalMs: 1000 },
      ),
    );
    assert.equal((await lab.metrics("pg2")).get("pgha_backup_scheduler_active"), 1);
  });

  it("a new full backup expires the older one and its differential backups (retention 1)", async () => {
    const old = (await lab.backups("pg2")).filter((b) => b.type === "full").map((b) => b.label);
    assert.equal(old.length, 1);
    await lab.exec("pg2", ["backup-now", "full"], 300_000);
    const now = await lab.backups("pg2");
    const fulls = now.filter((b) => b.type === "full").map((b) => b.label);
    assert.equal(fulls.length, 1, `one full backup kept: ${fulls.join(", ")}`);
    assert.notEqual(fulls[0], old[0], "the new one");
    assert.ok(
      now.every((b) => !b.label.startsWith(old[0]!)),
      "the expired full backup's differential backups are gone too",
    );
  });
});
