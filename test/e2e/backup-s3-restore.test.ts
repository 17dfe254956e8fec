/**
 * Backups to S3 with the real agent image, pgBackRest 2.45 and an S3 endpoint
 * (s3rver over HTTPS, its certificate verified against a CA made for the run):
 * wrong credentials are reported and PostgreSQL keeps serving; a new cluster
 * creates its stanza and takes a first full backup; a replica is restored from
 * the backup and streams; the repository disappears for 60 s under writes and
 * the archive catches up without a gap; with every node and the cluster's etcd
 * keys gone, a new cluster restores the latest backup with every row; and a
 * point-in-time recovery keeps the rows before its target and none after.
 * Backup, restore and catch-up times are printed.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { BackupLab } from "../harness/backup-lab.js";
import { ensureImages } from "../harness/docker.js";
import { waitFor } from "../harness/proc.js";
import { S3_SECRET_KEY } from "../harness/s3.js";

let lab: BackupLab;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const measured: Record<string, string> = {};

/** The segment a WAL switch just closed, and a wait until the archive has it. */
async function switchAndWaitArchived(node: string, timeoutMs = 120_000): Promise<string> {
  const segment = await lab.psql(node, "SELECT pg_walfile_name(pg_switch_wal())");
  await lab.step(() =>
    waitFor(
      `${node} to archive ${segment}`,
      async () =>
        (await lab.psql(node, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")) >= segment,
      { timeoutMs, intervalMs: 500 },
    ),
  );
  return segment;
}

/** Whether one line of the log matches every pattern. */
function logHas(logs: string, ...patterns: RegExp[]): boolean {
  return logs.split("\n").some((line) => patterns.every((p) => p.test(line)));
}

async function count(node: string, where: string): Promise<number> {
  return Number(await lab.psql(node, `SELECT count(*) FROM rows WHERE ${where}`));
}

/**
 * Segment names of timeline 1 (first 4 GB of WAL) in the repository's archive,
 * sorted. The directory is listed itself: s3rver leaves out a common prefix
 * whose objects all lie two levels below it, so a recursive listing from the
 * stanza's archive directory would find nothing.
 */
async function archivedSegments(node: string): Promise<string[]> {
  // pgBackRest's archive id: <PostgreSQL major>-<history id>.
  const major = Math.floor(Number(await lab.psql(node, "SHOW server_version_num")) / 10_000);
  const out = await lab.exec(node, [
    "setpriv",
    "--reuid=postgres",
    "--regid=postgres",
    "--init-groups",
    "pgbackrest",
    `--stanza=${lab.scope}`,
    "repo-ls",
    `archive/${lab.scope}/${major}-1/0000000100000000`,
  ]);
  const names = out.match(/\b00000001[0-9A-F]{16}(?=-)/g) ?? [];
  return [...new Set(names)].sort();
}

function segmentNumber(name: string): number {
  return Number.parseInt(name.slice(8, 16), 16) * 256 + Number.parseInt(name.slice(16, 24), 16);
}

describe("backups to S3, disaster recovery and point-in-time recovery", { timeout: 25 * 60_000 }, () => {
  let batchB = 0;
  let target = "";

  before(async () => {
    await ensureImages(["agent", "etcd"]);
    lab = await BackupLab.start("bks3", { repo: "s3" });
  });

  after(async () => {
    if (Object.keys(measured).length > 0) console.log("backup measurements:", measured);
    await lab?.destroy();
  });

  it("wrong credentials: a clear log line and a metric, and PostgreSQL keeps serving", async () => {
    const scope = `${lab.scope}-wrong`;
    await lab.runNode("wrong", { AWS_ACCESS_KEY_ID: "NOSUCHKEY" }, scope);
    await lab.waitLeader("wrong", 120_000, scope);
    await lab.psql("wrong", "CREATE TABLE t (i int); INSERT INTO t VALUES (1)");
    await lab.psql("wrong", "SELECT pg_switch_wal()");
    await lab.step(() =>
      waitFor(
        "the stanza error and the archive failure in the log and the metrics",
        async () => {
          const logs = await lab.logs("wrong");
          const m = await lab.metrics("wrong");
          return (
            logHas(logs, /cannot create the stanza/, /403 \(Forbidden\)/, /check AWS_ACCESS_KEY_ID/) &&
            logHas(logs, /WAL archiving is failing/, /InvalidAccessKeyId/) &&
            m.get("pgha_backup_repository_ok") === 0 &&
            m.get("pgha_archive_failing") === 1
          );
        },
        { timeoutMs: 90_000, intervalMs: 1000 },
      ),
    );
    assert.equal(await lab.psql("wrong", "INSERT INTO t VALUES (2); SELECT count(*) FROM t"), "2");
    await lab.wipeCluster(scope);
  });

  it("a new cluster creates its stanza and takes a first full backup once the leader is up", async () => {
    await lab.runNode("pg1", { BACKUP_REPLICA_THRESHOLD_PERCENT: "100000" });
    await lab.waitLeader("pg1");
    await lab.step(() =>
      waitFor("a first full backup", async () => (await lab.backups("pg1")).some((b) => b.type === "full"), {
        timeoutMs: 120_000,
        intervalMs: 1000,
      }),
    );
    const m = await lab.metrics("pg1");
    assert.equal(m.get('pgha_backup_count{type="full"}'), 1);
    assert.ok(
      (m.get(`pgha_backup_last_good_age_seconds{stanza="${lab.scope}"}`) ?? -1) >= 0,
      "age of the last good backup",
    );
    assert.equal(m.get("pgha_backup_scheduler_active"), 1);
    assert.equal(await lab.psql("pg1", "SHOW archive_mode"), "on");
    assert.equal(
      await lab.exec("pg1", ["stat", "-c", "%a %U", "/etc/pgbackrest/pgbackrest.conf"]),
      "600 postgres",
    );
    assert.ok(!(await lab.logs("pg1")).includes(S3_SECRET_KEY), "the S3 key never reaches the log");
  });

  it("rows, then backup-now: the operator's full backup is listed", async () => {
    await lab.psql("pg1", "CREATE TABLE rows (id int PRIMARY KEY, batch text NOT NULL)");
    await lab.psql("pg1", `GRANT ALL ON rows TO ${lab.admin.user}`);
    await lab.psql("pg1", "INSERT INTO rows SELECT g, 'A' FROM generate_series(1, 1000) g");
    const t0 = Date.now();
    await lab.exec("pg1", ["backup-now", "full"], 300_000);
    measured["backup-now full (docker exec, wall clock)"] = `${(Date.now() - t0) / 1000} s`;
    const fulls = (await lab.backups("pg1")).filter((b) => b.type === "full" && !b.error);
    assert.equal(fulls.length, 2);
    const b = fulls[1]!;
    measured["that backup as pgBackRest timed it (start to stop)"] =
      `${b.timestamp.stop - b.timestamp.start} s for ${(b.info.size / 1_048_576).toFixed(1)} MB (${(b.info.repository.size / 1_048_576).toFixed(1)} MB in the repository)`;
    const listed = await lab.exec("pg1", ["backup-list"]);
    assert.ok(listed.includes(fulls[1]!.label), listed);
  });

  it("a replica created from the backup joins and streams", async () => {
    await lab.runNode("pg2", { BACKUP_REPLICA_THRESHOLD_PERCENT: "100000" });
    await lab.step(() =>
      waitFor(
        "pg2 to stream from pg1",
        async () =>
          (await lab.psql("pg1", "SELECT state FROM pg_stat_replication WHERE application_name = 'pg2'")) ===
          "streaming",
        { timeoutMs: 180_000, intervalMs: 1000 },
      ),
    );
    const logs = await lab.logs("pg2");
    assert.match(logs, /"msg":"replica created from backup"/);
    assert.match(logs, /replica has been created using pgbackrest/);
    assert.doesNotMatch(logs, /replica has been created using basebackup/);
    await waitFor("the rows on pg2", async () => (await count("pg2", "batch = 'A'")) === 1000, {
      timeoutMs: 30_000,
    });
  });

  it("a replica whose backup is too far behind (the original MB or % threshold) is cloned from the leader", async () => {
    // Two WAL switches with writes between them: at least 16 MB of WAL since the backup.
    await lab.psql("pg1", "CREATE TABLE churn (i int); INSERT INTO churn VALUES (1)");
    await lab.psql("pg1", "SELECT pg_switch_wal()");
    await lab.psql("pg1", "INSERT INTO churn VALUES (2)");
    await lab.psql("pg1", "SELECT pg_switch_wal()");
    const cases: { name: string; env: Record<string, string>; why: RegExp }[] = [
      // The original image's names: 1 MB (the percentage out of the way), then 30 % of a 22 MB backup.
      {
        name: "mb",
        env: { WALE_BACKUP_THRESHOLD_MEGABYTES: "1", WALE_BACKUP_THRESHOLD_PERCENTAGE: "100000" },
        why: /over the MB threshold/,
      },
      { name: "pct", env: { WALE_BACKUP_THRESHOLD_PERCENTAGE: "30" }, why: /over the percentage threshold/ },
    ];
    await Promise.all(cases.map((c) => lab.runNode(c.name, c.env)));
    for (const c of cases) {
      await lab.step(() =>
        waitFor(
          `${c.name} to stream from pg1`,
          async () =>
            (await lab.psql(
              "pg1",
              `SELECT state FROM pg_stat_replication WHERE application_name = '${c.name}'`,
            )) === "streaming",
          { timeoutMs: 180_000, intervalMs: 1000 },
        ),
      );
      const logs = await lab.logs(c.name);
      assert.ok(logHas(logs, /replica from backup: no; cloning the leader/, c.why), `${c.name}: ${c.why}`);
      assert.match(logs, /replica has been created using basebackup/);
      assert.doesNotMatch(logs, /"msg":"replica created from backup"/);
      assert.equal(await count(c.name, "batch = 'A'"), 1000);
    }
    for (const c of cases) await lab.removeNode(c.name);
  });

  it("the repository unreachable for 60 s under writes: PostgreSQL serves, the archive catches up, no gap", async () => {
    const node = lab.nodes.get("pg1")!;
    const client = new pg.Client({
      host: lab.hostIp,
      port: node.pgPort,
      user: lab.admin.user,
      password: lab.admin.password,
      database: "postgres",
    });
    client.on("error", () => undefined);
    await client.connect();
    let writing = true;
    let failures = 0;
    let firstError = "";
    const writer = (async () => {
      let id = 100_001;
      while (writing) {
        try {
          await client.query("INSERT INTO rows VALUES ($1, 'B')", [id]);
          id++;
          batchB++;
        } catch (err) {
          failures++;
          firstError ||= (err as Error).message;
        }
        await sleep(50);
      }
    })();
    try {
      lab.s3Proxy!.cut("refuse");
      const cutAt = Date.now();
      let lastSegment = "";
      let reported = false;
      while (Date.now() - cutAt < 60_000) {
        lastSegment = await lab.psql("pg1", "SELECT pg_walfile_name(pg_switch_wal())");
        const m = await lab.metrics("pg1");
        reported ||=
          m.get("pgha_archive_failing") === 1 &&
          (m.get("pgha_archive_ready_segments") ?? 0) >= 1 &&
          logHas(await lab.logs("pg1"), /WAL archiving is failing/);
        await sleep(10_000 - ((Date.now() - cutAt) % 10_000));
      }
      assert.ok(reported, "the log and the metrics showed the failure while the repository was away");
      lab.s3Proxy!.heal();
      const healedAt = Date.now();
      await lab.step(() =>
        waitFor(
          `the archive to catch up to ${lastSegment}`,
          async () =>
            (await lab.psql("pg1", "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")) >=
            lastSegment,
          { timeoutMs: 180_000, intervalMs: 250 },
        ),
      );
      measured["archive catch-up after 60 s without the repository"] = `${(Date.now() - healedAt) / 1000} s`;
    } finally {
      lab.s3Proxy!.heal();
      writing = false;
      await writer;
      await client.end();
    }
    assert.equal(failures, 0, `every write succeeded while the repository was away (${firstError})`);
    assert.ok(batchB > 100, `the writer wrote (${batchB} rows)`);
    const last = await switchAndWaitArchived("pg1");
    const segments = await archivedSegments("pg1");
    assert.ok(segments.length > 0, "the archive lists segments");
    const first = segmentNumber(segments[0]!);
    const missing: number[] = [];
    const have = new Set(segments.map(segmentNumber));
    for (let n = first; n <= segmentNumber(last); n++) if (!have.has(n)) missing.push(n);
    assert.deepEqual(missing, [], `no gap in the archive from ${segments[0]} to ${last}`);
    await lab.step(() =>
      waitFor(
        "the log and metric to say archiving works again",
        async () =>
          /WAL archiving works again/.test(await lab.logs("pg1")) &&
          (await lab.metrics("pg1")).get("pgha_archive_failing") === 0,
        { timeoutMs: 30_000, intervalMs: 1000 },
      ),
    );
  });

  it("every node and the cluster's etcd keys gone: a new cluster restores the latest backup with every row", async () => {
    await lab.psql("pg1", "INSERT INTO rows SELECT g, 'C' FROM generate_series(200001, 200100) g");
    await sleep(1500);
    target = await lab.psql("pg1", "SELECT now()");
    await sleep(1500);
    await lab.psql("pg1", "INSERT INTO rows SELECT g, 'D' FROM generate_series(300001, 300100) g");
    await switchAndWaitArchived("pg1");
    await lab.wipeCluster();
    assert.equal(await lab.leader(), null);

    const t0 = Date.now();
    await lab.runNode("pg3", { RESTORE_FROM_BACKUP: "latest" });
    await lab.waitLeader("pg3", 240_000);
    measured["disaster recovery: docker run to a writable leader"] = `${(Date.now() - t0) / 1000} s`;
    assert.match(await lab.logs("pg3"), /restored from backup/);
    assert.equal(await count("pg3", "batch = 'A'"), 1000);
    assert.equal(await count("pg3", "batch = 'B'"), batchB);
    assert.equal(await count("pg3", "batch = 'C'"), 100);
    assert.equal(await count("pg3", "batch = 'D'"), 100);
    // The restored cluster takes writes and the admin logs in with this run's password.
    await lab.psql("pg3", "INSERT INTO rows VALUES (400001, 'E')");
  });

  it("point-in-time recovery to a timestamp keeps the rows before it and none after", async () => {
    await lab.wipeCluster();
    const t0 = Date.now();
    await lab.runNode("pg4", { RESTORE_TARGET_TIME: target });
    await lab.waitLeader("pg4", 240_000);
    measured[`point-in-time recovery to ${target}`] = `${(Date.now() - t0) / 1000} s`;
    assert.equal(await count("pg4", "batch = 'A'"), 1000);
    assert.equal(await count("pg4", "batch = 'B'"), batchB);
    assert.equal(await count("pg4", "batch = 'C'"), 100, "rows before the target are there");
    assert.equal(await count("pg4", "batch IN ('D', 'E')"), 0, "no row after the target");
  });
});
