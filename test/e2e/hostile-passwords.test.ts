/**
 * Passwords with characters that YAML, a shell, a URL or PostgreSQL's password file would take
 * for something else, end to end on the real agent image: a two-node cluster started as the
 * agent README's `docker run` tutorial does, with each password hostile. Replication streams
 * (REPLICATION_PASSWORD, through Patroni's .pgpass), the admin logs in through the router with
 * node-postgres and psql (POSTGRES_PASSWORD), a switchover is accepted with the REST password and
 * refused without it (RESTAPI_PASSWORD), and the old leader rejoins (SUPERUSER_PASSWORD). A
 * line break where .pgpass cannot hold one stops the agent with one clear line.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { pgConfig } from "../harness/ack-writers.js";
import { docker, ensureImages, removeLabelled, uniquePrefix } from "../harness/docker.js";
import { DockerRunCluster, DockerRunHost } from "../harness/docker-run-cluster.js";
import { waitFor } from "../harness/proc.js";

const prefix = uniquePrefix("hostile");
const label = prefix.slice(0, -1);
let host: DockerRunHost;
let cluster: DockerRunCluster;

const PASSWORDS = {
  POSTGRES_PASSWORD: `a'b"c =<<&*!#ü\\ ;--\nsecond line`,
  REPLICATION_PASSWORD: "<<",
  SUPERUSER_PASSWORD: "*anchor !tag #comment: x",
  RESTAPI_PASSWORD: "= &ref 'q' \"qq\" % @ ü",
};

function psqlVia(port: number, password: string, sql: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      "psql",
      ["-X", "-At", "-h", "127.0.0.1", "-p", String(port), "-U", "admin", "-d", "postgres", "-c", sql],
      { env: { PATH: process.env["PATH"], PGPASSWORD: password, PGSSLMODE: "prefer" }, timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}`.trim() }),
    );
  });
}

async function switchover(from: string, to: string, password: string): Promise<string> {
  const body = JSON.stringify({ leader: from, candidate: to });
  return docker([
    "exec",
    cluster.container(from),
    "curl",
    "-sS",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    "--max-time",
    "30",
    "-u",
    `patroni:${password}`,
    "-H",
    "Content-Type: application/json",
    "-d",
    body,
    "http://127.0.0.1:8008/switchover",
  ]);
}

describe("hostile passwords, end to end", { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    host = await DockerRunHost.start(prefix, label);
    cluster = new DockerRunCluster(host, `${prefix}c`, {
      PATRONI_TTL: "20",
      PATRONI_LOOP_WAIT: "2",
      PATRONI_RETRY_TIMEOUT: "4",
      ...PASSWORDS,
    });
    await cluster.runNode("john");
    await waitFor("john to lead", () => cluster.runningLeader(), { timeoutMs: 180_000, intervalMs: 1000 });
    await cluster.runNode("paul");
    await cluster.runRouter();
  });

  after(async () => {
    host?.close();
    await removeLabelled(label);
  });

  it("the replica streams: the replication password works through Patroni's password file", async () => {
    await cluster.waitStreaming("paul");
  });

  it("the admin logs in through the router: node-postgres and psql", async () => {
    const user = await waitFor(
      "a query through the router",
      async () => {
        const c = new pg.Client(pgConfig({ ...cluster.viaRouter(), password: PASSWORDS.POSTGRES_PASSWORD }));
        try {
          await c.connect();
          return (await c.query("SELECT current_user AS u")).rows[0].u as string;
        } finally {
          await c.end().catch(() => undefined);
        }
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    assert.equal(user, "admin");
    const r = await psqlVia(cluster.routerPort, PASSWORDS.POSTGRES_PASSWORD, "select current_user");
    assert.deepEqual(r, { code: 0, out: "admin" });
    const wrong = await psqlVia(cluster.routerPort, "not-it", "select 1");
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.out, /password authentication failed/);
  });

  it("the REST API refuses a switchover without its password and accepts it with it; the old leader rejoins", async () => {
    // In synchronous mode (the default) only the synchronous standby may take over.
    await waitFor(
      "paul to be the synchronous standby",
      async () => {
        const sync = await host.etcd.get(`/service/${cluster.scope}/sync`).string();
        return sync !== null && (JSON.parse(sync) as { sync_standby?: string }).sync_standby === "paul";
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    assert.equal(await switchover("john", "paul", "wrong"), "401");
    assert.equal(await switchover("john", "paul", PASSWORDS.RESTAPI_PASSWORD), "200");
    await waitFor("paul to lead", async () => (await cluster.runningLeader()) === "paul", {
      timeoutMs: 60_000,
      intervalMs: 500,
    });
    await cluster.waitStreaming("john");
  });

  it("a line break in REPLICATION_PASSWORD stops the agent with one line that says why", async () => {
    const bad = new DockerRunCluster(host, `${prefix}bad`, { REPLICATION_PASSWORD: "first\nsecond" });
    await bad.runNode("ringo");
    const state = await waitFor(
      "ringo to exit",
      async () => {
        const s = await docker([
          "inspect",
          "-f",
          "{{.State.Status}} {{.State.ExitCode}}",
          bad.container("ringo"),
        ]);
        return s.startsWith("exited") ? s : null;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    assert.equal(state, "exited 2");
    const logs = await new Promise<string>((resolve) =>
      execFile("docker", ["logs", bad.container("ringo")], (_err, stdout, stderr) =>
        resolve(`${stdout}${stderr}`),
      ),
    );
    assert.match(logs, /REPLICATION_PASSWORD holds a line break/);
    assert.ok(!logs.includes("second"), "the password itself is not printed");
  });
});
