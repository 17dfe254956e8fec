/**
 * A data directory created by another PostgreSQL major than the image's (a volume kept from
 * the PostgreSQL 15 images, mounted into a PostgreSQL 17 one): the agent stops with exit code
 * 4 and the one line that names both versions and the way to move the data; it starts nothing
 * on the directory and changes nothing in it. Then the move that line points to, as
 * agent/README.md ("Moving to a new PostgreSQL major") describes it: pg_dumpall on the old
 * server, a new cluster of the image, the dump restored into its leader with psql; the rows,
 * roles and databases are there, on PostgreSQL 17.
 *
 * The old cluster's data directory is made by this host's PostgreSQL 15 (Debian 12's, the
 * package the PostgreSQL 15 images carried), which also serves it for pg_dumpall.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { pgConfig } from "../harness/ack-writers.js";
import {
  docker,
  ensureImages,
  imageOf,
  removeLabelled,
  TEST_LABEL,
  uniquePrefix,
} from "../harness/docker.js";
import { DockerRunCluster, DockerRunHost } from "../harness/docker-run-cluster.js";
import { PG_BIN_DIR } from "../harness/patroni.js";
import { run, waitFor } from "../harness/proc.js";

const prefix = uniquePrefix("pgmajor");
const label = prefix.slice(0, -1);
const OLD_PORT = 5499;

const OLD_NODE_ENV: Readonly<Record<string, string>> = {
  NAME: "john",
  PATRONI_SCOPE: "demo",
  ETCD_HOST_PORT: "127.0.0.1:2379",
  DOCKER_HOST_IP: "127.0.0.1",
  POSTGRES_USERNAME: "admin",
  POSTGRES_PASSWORD: "a-password",
  REPLICATION_PASSWORD: "r-password",
  SUPERUSER_PASSWORD: "s-password",
  RESTAPI_PASSWORD: "p-password",
};

let work = "";
/** The volume as the old cluster left it: /data of a node, with the data directory in pgdata/. */
let volume = "";
let host: DockerRunHost | undefined;

/** Every file under `dir`: path, mode, size, mtime and content, hashed (the directory untouched?). */
function treeDigest(dir: string): string {
  const h = createHash("sha256");
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const s = lstatSync(p);
      h.update(`${p} ${s.mode} ${s.size} ${s.mtimeMs}\n`);
      if (s.isDirectory()) walk(p);
      else if (s.isFile()) h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest("hex");
}

/** A command as this host's postgres user (PostgreSQL refuses to run as root). */
function asPostgres(cmd: string, args: readonly string[]) {
  return run(
    "setpriv",
    ["--reuid=postgres", "--regid=postgres", "--init-groups", join(PG_BIN_DIR, cmd), ...args],
    {
      env: { ...process.env, HOME: work },
      timeoutMs: 120_000,
    },
  );
}

const oldServer = {
  start: () =>
    asPostgres("pg_ctl", [
      "-D",
      join(volume, "pgdata"),
      "-l",
      join(work, "pg15.log"),
      "-o",
      `-c listen_addresses='' -c unix_socket_directories='${work}' -p ${OLD_PORT}`,
      "-w",
      "start",
    ]),
  stop: () => asPostgres("pg_ctl", ["-D", join(volume, "pgdata"), "-m", "fast", "-w", "stop"]),
  sql: (db: string, sql: string) =>
    asPostgres("psql", [
      "-X",
      "-q",
      "-v",
      "ON_ERROR_STOP=1",
      "-h",
      work,
      "-p",
      String(OLD_PORT),
      "-d",
      db,
      "-c",
      sql,
    ]),
};

describe("a data directory of another PostgreSQL major", { timeout: 20 * 60_000, concurrency: 1 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    work = mkdtempSync(join(tmpdir(), "pgmajor-"));
    await run("chown", ["postgres:postgres", work]);
    volume = join(work, "volume");
    mkdirSync(volume);
    await run("chown", ["postgres:postgres", volume]);
    // The old cluster: PostgreSQL 15, an application's role, database and rows.
    await asPostgres("initdb", [
      "-D",
      join(volume, "pgdata"),
      "-U",
      "postgres",
      "--auth-local=peer",
      "-E",
      "UTF8",
      "--locale=C.UTF-8",
    ]);
    await oldServer.start();
    await oldServer.sql("postgres", "create role shop login password 'shop-pw'");
    await oldServer.sql("postgres", "create database shop owner shop");
    await oldServer.sql(
      "shop",
      "set role shop; create table orders (id int primary key, item text); insert into orders select g, 'item ' || g from generate_series(1, 1000) g",
    );
    await oldServer.stop();
  });

  after(async () => {
    await oldServer.stop().catch(() => undefined);
    host?.close();
    await removeLabelled(label);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("the agent stops with one line naming both versions, and leaves the directory as it was", async () => {
    assert.equal(readFileSync(join(volume, "pgdata", "PG_VERSION"), "utf8"), "15\n");
    const before = treeDigest(volume);
    const name = `${prefix}old-volume`;
    await docker([
      "run",
      "--name",
      name,
      "--label",
      `${TEST_LABEL}=${label}`,
      "-v",
      `${volume}:/data`,
      // A node's settings as the README's walkthrough gives them; PG_MAJOR is the image's own.
      ...Object.entries(OLD_NODE_ENV).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
      "-d",
      imageOf("agent"),
    ]);
    const code = await waitFor(
      "the agent to exit",
      async () => {
        const s = (await docker(["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name])).split(" ");
        return s[0] === "exited" ? Number(s[1]) : null;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const logs = await run("docker", ["logs", name]);
    assert.equal(code, 4, `exit code; logs:\n${logs.stdout}${logs.stderr}`);
    assert.equal(logs.stdout, "");
    assert.equal(
      logs.stderr,
      'agent: the data directory /data/pgdata was created by PostgreSQL 15, this image runs PostgreSQL 17: it is left as it is and not started. Move the data with pg_dumpall from a PostgreSQL 15 image and restore it into a new PostgreSQL 17 cluster (agent/README.md, "Moving to a new PostgreSQL major")\n',
    );
    assert.equal(treeDigest(volume), before, "not a file of the volume changed");
    // A second start (restart policy, an operator's retry) does the same.
    await docker(["start", name]);
    await waitFor("the agent to exit again", async () =>
      (await docker(["inspect", "-f", "{{.State.Status}}", name])) === "exited" ? true : null,
    );
    assert.equal(await docker(["inspect", "-f", "{{.State.ExitCode}}", name]), "4");
    assert.equal(treeDigest(volume), before, "not a file of the volume changed");
  });

  it("the documented move: pg_dumpall of the old server, restored into a new PostgreSQL 17 cluster", async () => {
    // 1. The old server runs alone on its data directory; pg_dumpall writes every role and database.
    await oldServer.start();
    const dump = join(work, "all.sql");
    await run("bash", [
      "-c",
      `setpriv --reuid=postgres --regid=postgres --init-groups ${PG_BIN_DIR}/pg_dumpall -h '${work}' -p ${OLD_PORT} > '${dump}'`,
    ]);
    await oldServer.stop();
    // 2. A new cluster of the image, with the same passwords; 3. the dump into its leader.
    host = await DockerRunHost.start(prefix, label);
    const c = new DockerRunCluster(host, `${prefix}new`, {});
    await c.runNode("john");
    await waitFor("john to lead", () => c.runningLeader().then((l) => l === "john"), {
      timeoutMs: 180_000,
      intervalMs: 500,
    });
    const restore = await run("bash", [
      "-c",
      `docker exec -i ${c.container("john")} psql -X -q -U postgres -d postgres < '${dump}' 2>&1`,
    ]);
    // The new cluster's own roles exist already: psql says so and goes on; nothing else fails.
    for (const line of restore.stdout.split("\n").filter((l) => /ERROR/.test(l))) {
      assert.match(line, /role "(postgres|replicator|admin)" already exists/, restore.stdout);
    }
    // 4. The data, the application's role and its password, on PostgreSQL 17.
    const direct = await c.direct("john");
    const client = new pg.Client(
      pgConfig({ ...direct, user: "shop", password: "shop-pw", database: "shop" }),
    );
    await client.connect();
    try {
      const v = await client.query<{ v: string }>("select current_setting('server_version_num') as v");
      assert.match(v.rows[0]!.v, /^17\d{4}$/);
      const r = await client.query<{ n: string; last: string }>(
        "select count(*) as n, max(item) filter (where id = 1000) as last from orders",
      );
      assert.deepEqual(r.rows[0], { n: "1000", last: "item 1000" });
    } finally {
      await client.end();
    }
    // The volume of the old cluster is still as PostgreSQL 15 left it.
    assert.equal(readFileSync(join(volume, "pgdata", "PG_VERSION"), "utf8"), "15\n");
  });
});
