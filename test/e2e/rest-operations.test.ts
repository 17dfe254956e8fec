/**
 * Patroni's REST operations on the compose stack, as an operator runs them
 * from inside a node (`docker exec pgN curl -u … -XPOST localhost:8008/…`):
 * restart, reinitialize of a replica, switchover — and the router follows.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { AGENTS, type Agent, ComposeStack, type ComposeStack as Stack } from "../harness/compose.js";
import { ensureImages } from "../harness/docker.js";
import { waitFor } from "../harness/proc.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface PatroniStatus {
  state: string;
  role: string;
  postmaster_start_time?: string;
  timeline?: number;
}

let stack: Stack;
let leader: Agent;

async function query<T = Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ ...stack.pg(), connectionTimeoutMillis: 10_000, query_timeout: 20_000 });
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as T[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function replicaOf(role: "replica" | "sync_standby"): Promise<Agent> {
  const m = (await stack.members()).find((x) => x.role === role);
  if (!m) throw new Error(`no ${role} in ${JSON.stringify(await stack.members())}`);
  return m.name as Agent;
}

describe("REST operations on the compose stack", { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    // A WAL segment size other than PostgreSQL's default, chosen at bootstrap (WAL_SEGMENT_SIZE).
    stack = await ComposeStack.up("restops", { cli: "v2", env: { WAL_SEGMENT_SIZE: "4" } });
    leader = await stack.waitReady();
    await query("create table ops (id int primary key, note text)");
    await query("insert into ops values (1, 'before the operations')");
  });

  after(async () => {
    await stack?.destroy();
  });

  it("the cluster was created with WAL_SEGMENT_SIZE, and every member has it", async () => {
    for (const agent of AGENTS) {
      assert.equal(await stack.exec(agent, ["psql", "-Atc", "show wal_segment_size"]), "4MB", agent);
    }
  });

  it("refuses unsafe endpoints without the REST credentials", async () => {
    const replica = await replicaOf("replica");
    for (const auth of [null, "patroni:wrong-password"]) {
      const r = await stack.restPost(replica, "/restart", {}, auth);
      assert.equal(r.status, 401, r.text);
    }
  });

  it("restart: PostgreSQL on a replica restarts and streams again", async () => {
    const replica = await replicaOf("replica");
    const before = await stack.rest<PatroniStatus>(replica, "/patroni");
    const r = await stack.restPost(replica, "/restart", {});
    assert.equal(r.status, 200, r.text);
    await waitFor(
      `${replica} running again after the restart`,
      async () => {
        const s = await stack.rest<PatroniStatus>(replica, "/patroni");
        return s.state === "running" && s.postmaster_start_time !== before.postmaster_start_time;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    await stack.waitReady();
  });

  it("reinitialize: a replica is cloned again from the leader and has its data", async () => {
    const replica = await replicaOf("replica");
    // A file only the old data directory has: gone once the replica is cloned afresh.
    await stack.exec(replica, [
      "setpriv",
      "--reuid=postgres",
      "--regid=postgres",
      "--init-groups",
      "touch",
      "/data/pgdata/old-copy",
    ]);
    await query("insert into ops values (2, 'before reinitialize')");
    const r = await stack.restPost(replica, "/reinitialize", {});
    assert.equal(r.status, 200, r.text);
    await waitFor(
      `${replica} cloned and running`,
      async () => {
        const s = await stack.rest<PatroniStatus>(replica, "/patroni");
        if (s.state !== "running" || s.role !== "replica") return false;
        const files = await stack.exec(replica, ["ls", "/data/pgdata"]);
        return !files.split("\n").includes("old-copy");
      },
      { timeoutMs: 180_000, intervalMs: 1000 },
    );
    await waitFor(
      "both rows on the reinitialized replica",
      async () => (await stack.exec(replica, ["psql", "-Atc", "select count(*) from ops"])) === "2",
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    await stack.waitReady();
  });

  it("switchover to the synchronous standby: the router follows to the new primary", async () => {
    leader = (await stack.leader())!;
    const candidate = await replicaOf("sync_standby");
    const r = await stack.restPost(leader, "/switchover", { leader, candidate });
    assert.equal(r.status, 200, r.text);
    assert.equal(await stack.leader(), candidate);
    const candidateIp = await stack.ipOf(candidate);
    // New connections through the router reach the new primary and can write.
    await waitFor(
      "the router to route to the new primary",
      async () => {
        const [row] = await query<{ addr: string; recovery: boolean }>(
          "select host(inet_server_addr()) as addr, pg_is_in_recovery() as recovery",
        );
        return row?.addr === candidateIp && row.recovery === false;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    await query("insert into ops values (3, 'after the switchover')");
    assert.equal(await stack.exec(candidate, ["psql", "-Atc", "select count(*) from ops"]), "3");
    // The old primary follows as a replica.
    await waitFor(
      `${leader} a replica of ${candidate}`,
      async () => (await stack.rest<PatroniStatus>(leader, "/patroni")).role === "replica",
      { timeoutMs: 120_000, intervalMs: 1000 },
    );
    const final = await stack.waitReady();
    assert.equal(final, candidate);
    assert.deepEqual((await stack.members()).map((m) => m.name).sort(), [...AGENTS]);
  });
  it("a switchover while a client authenticates through the router: the client connects (before_stop lets it finish)", async () => {
    const from = (await stack.waitReady())!;
    const to = await replicaOf("sync_standby");
    // The client's password is asked for once the server has begun SCRAM: the router can no longer
    // move this start-up. The switchover starts meanwhile; the password comes a second later, long
    // after Patroni would have stopped PostgreSQL without the hook.
    let asked!: () => void;
    const passwordAsked = new Promise<void>((r) => (asked = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const { password, ...target } = stack.pg();
    const client = new pg.Client({
      ...target,
      connectionTimeoutMillis: 30_000,
      password: async () => {
        asked();
        await released;
        return password;
      },
    });
    client.on("error", () => undefined);
    const connected = client.connect().then(
      () => null,
      (err: unknown) => err as Error,
    );
    await passwordAsked;
    const switched = stack.restPost(from, "/switchover", { leader: from, candidate: to });
    await sleep(1000);
    release();
    const err = await connected;
    await client.end().catch(() => undefined);
    const r = await switched;
    assert.equal(r.status, 200, r.text);
    assert.equal(err, null, `the client in its authentication connected: ${err?.message}`);
    const logs = await stack.compose(["logs", "--no-color", from]);
    assert.match(logs, /before PostgreSQL stops: no client is left in its start-up/);
    await stack.waitReady();
  });
});
