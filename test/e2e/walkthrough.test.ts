/**
 * The original tutorial, step by step, with our images and `docker run`, the
 * way it was written for several hosts: etcd, a registrator advertising
 * published ports on the host's IP, a first node `john` that bootstraps the
 * cluster, a second node `paul` that clones it, a stop of the leader, a
 * restart of john as a replica on the new timeline, and the cluster deleted.
 * The host's IP is this machine's address on Docker's bridge.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Etcd3 } from "etcd3";
import {
  bridgeGateway,
  docker,
  dockerExec,
  dockerSocketGid,
  ensureImages,
  imageOf,
  inspect,
  logsTail,
  publishedPort,
  randomSecret,
  removeLabelled,
  startEtcdContainer,
  TEST_LABEL,
  uniquePrefix,
} from "../harness/docker.js";
import { freePort } from "../harness/ports.js";
import { run, waitFor } from "../harness/proc.js";

const prefix = uniquePrefix("walk");
const label = prefix.slice(0, -1);
const scope = `${prefix}cluster`;
const john = `${prefix}john`;
const paul = `${prefix}paul`;
const etcdName = `${prefix}etcd`;
const registrator = `${prefix}registrator`;
const router = `${prefix}router`;
const admin = { user: "admin", password: randomSecret() };
const secrets = {
  POSTGRES_USERNAME: admin.user,
  POSTGRES_PASSWORD: admin.password,
  REPLICATION_PASSWORD: randomSecret(),
  SUPERUSER_PASSWORD: randomSecret(),
  RESTAPI_PASSWORD: randomSecret(),
};

let hostIp = "";
let etcdPort = 0;
let routerPort = 0;
let etcd: Etcd3;

interface MemberRecord {
  conn_url: string;
  api_url: string;
  role: string;
  state: string;
  timeline?: number;
}

async function member(name: string): Promise<MemberRecord | null> {
  const v = await etcd.get(`/service/${scope}/members/${name}`).string();
  return v === null ? null : (JSON.parse(v) as MemberRecord);
}

async function leader(): Promise<string | null> {
  return etcd.get(`/service/${scope}/leader`).string();
}

/** psql (the client the tutorial uses) as POSTGRES_USERNAME; returns its unaligned output. */
async function psql(url: string, sql: string): Promise<string> {
  const r = await run("psql", [url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], {
    env: { ...process.env, PGPASSWORD: admin.password, PGCONNECT_TIMEOUT: "5" },
    timeoutMs: 30_000,
  });
  return r.stdout.trim();
}

/** The tutorial's `docker run` of a node: both ports published on the host's IP. */
async function runNode(name: string): Promise<void> {
  const env = {
    NAME: name,
    PATRONI_SCOPE: scope,
    ETCD_HOST_PORT: `${hostIp}:${etcdPort}`,
    DOCKER_HOSTNAME: hostIp,
    ...secrets,
    PATRONI_TTL: "10",
    PATRONI_LOOP_WAIT: "2",
    PATRONI_RETRY_TIMEOUT: "4",
  };
  await docker([
    "run",
    "-d",
    "--name",
    name,
    "--label",
    `${TEST_LABEL}=${label}`,
    "-p",
    `${hostIp}::5432`,
    "-p",
    `${hostIp}::8008`,
    ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
    imageOf("agent"),
  ]);
}

async function diagnostics(): Promise<string> {
  const parts = await Promise.all([john, paul, registrator, router].map((c) => logsTail(c, 25)));
  return parts.join("\n");
}

/** Runs a step; on failure adds the containers' last log lines to the error. */
async function step<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    (err as Error).message += `\n${await diagnostics()}`;
    throw err;
  }
}

describe("the original walkthrough with our images", { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    hostIp = await bridgeGateway();
    routerPort = await freePort();
    ({ client: etcd, port: etcdPort } = await startEtcdContainer(etcdName, label, hostIp));
  });

  after(async () => {
    etcd?.close();
    await removeLabelled(label);
  });

  it("runs a registrator that advertises published ports on the host's IP", async () => {
    await docker([
      "run",
      "-d",
      "--name",
      registrator,
      "--label",
      `${TEST_LABEL}=${label}`,
      "--group-add",
      await dockerSocketGid(),
      "-v",
      "/var/run/docker.sock:/var/run/docker.sock:ro",
      imageOf("registrator"),
      "-ip",
      hostIp,
      "-hostname",
      hostIp,
      "-ttl",
      "15",
      `etcd://${hostIp}:${etcdPort}`,
    ]);
    // The registrator advertises etcd's own published port: proof that it is at work.
    await step(() =>
      waitFor(
        "the registrator to advertise etcd",
        async () => {
          const kvs = await etcd.getAll().prefix("/").strings();
          return Object.entries(kvs).some(
            ([k, v]) => k.includes(`:${etcdName}:2379`) && v === `${hostIp}:${etcdPort}`,
          );
        },
        { timeoutMs: 60_000 },
      ),
    );
  });

  it("runs john: it initialises the cluster and takes the lock", async () => {
    await runNode(john);
    await step(() =>
      waitFor(
        "john to lead",
        async () => (await leader()) === john && (await member(john))?.state === "running",
        {
          timeoutMs: 120_000,
          intervalMs: 500,
        },
      ),
    );
  });

  it("the registrator advertised john's published ports under the tutorial's key", async () => {
    const pg = await publishedPort(john, 5432);
    const api = await publishedPort(john, 8008);
    assert.equal(
      await etcd.get(`/postgresql-patroni/${hostIp}:${john}:5432`).string(),
      `${hostIp}:${pg.port}`,
    );
    assert.equal(
      await etcd.get(`/postgresql-patroni-api/${hostIp}:${john}:8008`).string(),
      `${hostIp}:${api.port}`,
    );
  });

  it("john's member record carries its public address, role and state", async () => {
    const pg = await publishedPort(john, 5432);
    const api = await publishedPort(john, 8008);
    const m = await member(john);
    assert.ok(m);
    assert.equal(m.conn_url, `postgres://${hostIp}:${pg.port}/postgres`);
    assert.equal(m.api_url, `http://${hostIp}:${api.port}/patroni`);
    assert.equal(m.role, "master");
    assert.equal(m.state, "running");
  });

  it("psql connects as POSTGRES_USERNAME through john's conn_url", async () => {
    const m = await member(john);
    const url = m!.conn_url.replace("postgres://", `postgresql://${admin.user}@`);
    assert.equal(await psql(url, "select current_user || ' ' || pg_is_in_recovery()"), `${admin.user} false`);
    await psql(
      url,
      "create table walkthrough (id int primary key, note text); insert into walkthrough values (1, 'from john')",
    );
  });

  it("the operator habits work inside the container", async () => {
    assert.match(await dockerExec(john, ["psql", "--version"]), /PostgreSQL\) 15\./);
    assert.match(await dockerExec(john, ["patronictl", "list"]), new RegExp(`${john}.*Leader.*running`));
    // patronictl is the agent's launcher under that name: Nagle off on its etcd connections too.
    assert.equal(
      await dockerExec(john, ["sh", "-c", 'readlink -f "$(command -v patronictl)"']),
      "/usr/local/bin/pgha-patroni",
    );
    const status = JSON.parse(await dockerExec(john, ["curl", "-fsS", "localhost:8008/patroni"])) as {
      role: string;
    };
    assert.equal(status.role, "master");
    assert.match(await dockerExec(john, ["cat", "/etc/patroni/patroni.yml"]), new RegExp(`scope: ${scope}`));
    assert.equal(await dockerExec(john, ["stat", "-c", "%a %U", "/etc/patroni/patroni.yml"]), "600 postgres");
    // Unsafe REST endpoints want the REST credentials.
    const anonymous = await dockerExec(john, [
      "curl",
      "-s",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "-XPOST",
      "localhost:8008/reload",
    ]);
    assert.equal(anonymous, "401");
    // PostgreSQL as the superuser over the socket, as root in the container.
    assert.equal(await dockerExec(john, ["psql", "-Atc", "select count(*) from walkthrough"]), "1");
    // No backup settings: archiving off, the agent says so, and nothing else changes.
    assert.equal(await dockerExec(john, ["psql", "-Atc", "show archive_mode"]), "off");
    const listed = await dockerExec(john, ["backup-list"]).then(
      () => "ran",
      (err: Error) => err.message,
    );
    assert.match(listed, /backups are not configured in this container/);
    const metrics = await dockerExec(john, ["curl", "-fsS", "localhost:8009/metrics"]);
    assert.match(metrics, /^pgha_backup_configured 0$/m);
    assert.match(metrics, /^pgha_backup_scheduler_active 0$/m);
  });

  it("runs paul: it clones john and streams from it", async () => {
    await runNode(paul);
    const johnUrl = (await member(john))!.conn_url.replace("postgres://", `postgresql://${admin.user}@`);
    await step(() =>
      waitFor(
        "paul streaming from john",
        async () => {
          const m = await member(paul);
          if (m?.role !== "replica" || m.state !== "running") return false;
          // pg_stat_replication on the leader lists the replica.
          const rows = await dockerExec(john, [
            "psql",
            "-Atc",
            "select application_name || ' ' || state from pg_stat_replication",
          ]);
          return rows.split("\n").includes(`${paul} streaming`);
        },
        { timeoutMs: 180_000, intervalMs: 1000 },
      ),
    );
    const pg = await publishedPort(paul, 5432);
    assert.equal((await member(paul))!.conn_url, `postgres://${hostIp}:${pg.port}/postgres`);
    assert.equal(await psql(johnUrl, "select count(*) from walkthrough"), "1");
    const paulUrl = `postgresql://${admin.user}@${hostIp}:${pg.port}/postgres`;
    await waitFor(
      "john's row on paul",
      async () => (await psql(paulUrl, "select note from walkthrough")) === "from john",
    );
    assert.equal(await psql(paulUrl, "select pg_is_in_recovery()"), "t");
    // A replica's REST status carries its timeline, which Patroni reads over its own replication
    // connection through the socket (peer, as the replication role): it works without a password.
    const status = JSON.parse(await dockerExec(paul, ["curl", "-fsS", "localhost:8008/patroni"])) as {
      role: string;
      timeline?: number;
    };
    assert.equal(status.role, "replica");
    assert.equal(status.timeline, 1);
    assert.equal(
      await dockerExec(paul, [
        "setpriv",
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "psql",
        "-Atc",
        "IDENTIFY_SYSTEM",
        "dbname=replication replication=true user=replicator host=/var/run/postgresql",
      ]).then((out) => out.split("|")[1]),
      "1",
    );
  });

  it("psql connects as POSTGRES_USERNAME through the router, to the primary", async () => {
    await docker([
      "run",
      "-d",
      "--name",
      router,
      "--label",
      `${TEST_LABEL}=${label}`,
      "-p",
      `127.0.0.1:${routerPort}:5432`,
      imageOf("router"),
      "--etcd",
      `${hostIp}:${etcdPort}`,
      "--scope",
      scope,
    ]);
    const url = `postgresql://${admin.user}@127.0.0.1:${routerPort}/postgres`;
    await step(() =>
      waitFor(
        "a write through the router",
        async () => {
          await psql(url, "insert into walkthrough values (2, 'through the router')");
          return true;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      ),
    );
    assert.equal(await psql(url, "select pg_is_in_recovery()"), "f");
  });

  it("docker stop of the leader: paul is promoted and the router follows", async () => {
    const before = await member(paul);
    await docker(["stop", "-t", "60", john], { timeoutMs: 90_000 });
    // A clean stop: the agent exits with Patroni's code, 0.
    const state = await inspect<{ State: { ExitCode: number } }>(john);
    assert.equal(state.State.ExitCode, 0);
    // A planned stop: john handed over to paul before stopping, no failover.
    const logs = await run("docker", ["logs", john], { timeoutMs: 30_000 });
    assert.match(logs.stdout, new RegExp(`"candidate":"${paul}".*"msg":"switchover done"`));
    await step(() =>
      waitFor(
        "paul to lead",
        async () => (await leader()) === paul && (await member(paul))?.role === "master",
        {
          timeoutMs: 60_000,
          intervalMs: 250,
        },
      ),
    );
    const after = await member(paul);
    assert.ok((after!.timeline ?? 0) > (before!.timeline ?? 1), "a new timeline");
    const url = `postgresql://${admin.user}@127.0.0.1:${routerPort}/postgres`;
    await waitFor(
      "a write through the router on paul",
      async () => {
        await psql(url, "insert into walkthrough values (3, 'on paul')");
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    assert.equal(await psql(url, "select count(*) from walkthrough"), "3");
  });

  it("docker start of john: it rejoins as a replica on the new timeline", async () => {
    await docker(["start", john]);
    await step(() =>
      waitFor(
        "john streaming from paul",
        async () => {
          const [m, p] = [await member(john), await member(paul)];
          if (m?.role !== "replica" || m.state !== "running" || m.timeline !== p?.timeline) return false;
          const rows = await dockerExec(paul, [
            "psql",
            "-Atc",
            "select application_name || ' ' || state from pg_stat_replication",
          ]);
          return rows.split("\n").includes(`${john} streaming`);
        },
        { timeoutMs: 180_000, intervalMs: 1000 },
      ),
    );
    // Rediscovered: the member record follows the port Docker published this time.
    const pg = await publishedPort(john, 5432);
    assert.equal((await member(john))!.conn_url, `postgres://${hostIp}:${pg.port}/postgres`);
    const johnUrl = `postgresql://${admin.user}@${hostIp}:${pg.port}/postgres`;
    await waitFor(
      "paul's row on john",
      async () => (await psql(johnUrl, "select count(*) from walkthrough")) === "3",
    );
  });

  it("deletes the cluster: no key of it is left in etcd", async () => {
    await docker(["rm", "-f", "-v", john, paul]);
    // patronictl remove, from the image, with a configuration naming only the DCS.
    const script = [
      `printf 'scope: %s\\netcd3:\\n  hosts: ["%s"]\\n' "$0" "$1" > /tmp/patronictl.yml`,
      // Its questions: the cluster name, "Yes I am aware", and the leader's name while the lock is held.
      `printf '%s\\nYes I am aware\\n%s\\n' "$0" "$2" | patronictl -c /tmp/patronictl.yml remove "$0"`,
    ].join(" && ");
    await docker([
      "run",
      "--rm",
      "--label",
      `${TEST_LABEL}=${label}`,
      "--entrypoint",
      "bash",
      imageOf("agent"),
      "-c",
      script,
      scope,
      `${hostIp}:${etcdPort}`,
      paul,
    ]);
    await step(() =>
      waitFor(
        "no key of the cluster in etcd",
        async () => {
          const keys = Object.keys(await etcd.getAll().prefix("/").strings());
          const left = keys.filter(
            (k) => k.startsWith(`/service/${scope}/`) || k.includes(`:${john}:`) || k.includes(`:${paul}:`),
          );
          return left.length === 0;
        },
        { timeoutMs: 60_000, intervalMs: 500 },
      ),
    );
  });
});
