/**
 * The documented multi-host mode on three real Docker hosts of this machine (each a network
 * namespace with its own dockerd, test/harness/docker-hosts.ts), set up exactly as README's
 * "Multi-host mode" says, and whole hosts failing under writers that keep their own record of
 * acknowledged commits. One cluster serves every play, in sequence; each play waits for the
 * whole cluster to be healthy again (three members streaming) before the next.
 *
 * Clients: psql (per write, and one session kept) through the one URL naming the three
 * routers (`target_session_attrs=read-write`); node-postgres (per write, and one client kept),
 * which takes no such URL, through the router of a host the play leaves up.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { type AckWriter, makeWriters, missing, type PgTarget, summary } from "../harness/ack-writers.js";
import { ensureImages } from "../harness/docker.js";
import type { DockerHost } from "../harness/docker-hosts.js";
import { ManyHostsCluster, ROUTER_PORT } from "../harness/many-hosts-cluster.js";
import { run, waitFor } from "../harness/proc.js";

let cluster: ManyHostsCluster;

/** libpq's per-host connect timeout in the clients' URL: a dead or cut-off host costs at most this. */
const CONNECT_TIMEOUT_S = 10;

function lsnValue(lsn: string): bigint {
  const [hi = "0", lo = "0"] = lsn.split("/");
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

async function psqlUrl(sql: string): Promise<string> {
  const r = await run("psql", ["-X", "-Atc", sql, cluster.url(`connect_timeout=${CONNECT_TIMEOUT_S}`)], {
    env: { ...process.env, PGPASSWORD: cluster.password, PGSSLMODE: "prefer" },
    timeoutMs: 90_000,
  });
  return r.stdout.trim();
}

interface PlayResult {
  readonly writers: AckWriter[];
  readonly from: number;
  readonly oldLeader: string;
  readonly oldLeaderServer: string;
  readonly oldTimeline: number;
  readonly newLeader: string;
}

/**
 * Writers of the four kinds, a fault on host `target` (`inject`), then `recover`; resolves
 * once the cluster is healthy again and the writers have stopped.
 */
async function play(
  name: string,
  pick: (leaderHost: DockerHost) => DockerHost,
  inject: (h: DockerHost) => Promise<void>,
  recover: (h: DockerHost) => Promise<void>,
): Promise<PlayResult & { target: DockerHost }> {
  const before = await cluster.waitHealthy();
  const leaderHost = cluster.hostOfAgent(before.leader);
  const oldTimeline = before.members.find((m) => m.name === before.leader)?.timeline ?? 0;
  const oldLeaderServer = await cluster.execAgent(leaderHost, [
    "psql",
    "-Atc",
    "select pg_postmaster_start_time()::text",
  ]);
  const target = pick(leaderHost);
  const safe = cluster.hosts.find((h) => h !== target)!;
  const url = cluster.url(`connect_timeout=${CONNECT_TIMEOUT_S}`);
  const pgTarget = (): PgTarget => ({
    host: safe.ip,
    port: ROUTER_PORT,
    user: "admin",
    password: cluster.password,
    url,
  });
  const writers = makeWriters(pgTarget, name.replace(/\W+/g, "-").slice(0, 20));
  for (const w of writers) w.start();
  try {
    await waitFor(
      "every writer to have its first acknowledged writes",
      () => writers.every((w) => w.acks.length >= 3),
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    const from = Date.now();
    await inject(target);
    await recover(target);
    const healthy = await cluster.waitHealthy(420_000);
    const resumed = Date.now();
    await waitFor(
      "every writer to write again after the cluster healed",
      () => writers.every((w) => w.acks.some((a) => a.at > resumed)),
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    await Promise.all(writers.map((w) => w.stop()));
    console.log(
      `[many-hosts] ${name} (${target.name}, leader ${before.leader} → ${healthy.leader}): ${summary(writers, from)}`,
    );
    return {
      writers,
      from,
      oldLeader: before.leader,
      oldLeaderServer,
      oldTimeline,
      newLeader: healthy.leader,
      target,
    };
  } finally {
    await Promise.all(writers.map((w) => w.stop()));
  }
}

/** No acknowledged write is missing on whoever leads now (read through a router). */
async function assertNothingLost(r: PlayResult): Promise<void> {
  const leaderHost = cluster.hostOfAgent(r.newLeader);
  const lost = await missing(
    { host: leaderHost.ip, port: ROUTER_PORT, user: "admin", password: cluster.password },
    r.writers,
  );
  assert.deepEqual(lost, [], `acknowledged writes missing on ${r.newLeader}`);
  const acked = r.writers.reduce((n, w) => n + w.acks.length, 0);
  assert.ok(acked > 0);
}

/**
 * No write acknowledged by the old leader lies past the point where the next timeline forked
 * off its own: nothing it acknowledged after the new leader was elected.
 */
async function assertNoAckAfterElection(r: PlayResult): Promise<number> {
  if (r.newLeader === r.oldLeader) return 0;
  const history = await cluster.history();
  const fork = history.find((e) => e[0] === r.oldTimeline);
  assert.ok(fork, `a switch off timeline ${r.oldTimeline} in ${JSON.stringify(history)}`);
  const forkLsn = BigInt(fork[1]);
  const late = r.writers.flatMap((w) =>
    w.acks
      .filter((a) => a.server === r.oldLeaderServer && lsnValue(a.lsn) >= forkLsn)
      .map((a) => `${w.kind} ${a.id} at ${a.lsn}`),
  );
  assert.deepEqual(
    late,
    [],
    `writes the demoted leader ${r.oldLeader} acknowledged after the fork at ${forkLsn}`,
  );
  const byOld = r.writers.reduce(
    (n, w) => n + w.acks.filter((a) => a.server === r.oldLeaderServer).length,
    0,
  );
  assert.ok(
    byOld > 0,
    "the old leader acknowledged writes before the fault (the record tells servers apart)",
  );
  return late.length;
}

describe("three Docker hosts in multi-host mode: one endpoint, whole hosts failing", {
  timeout: 40 * 60_000,
}, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    const t0 = Date.now();
    cluster = await ManyHostsCluster.create();
    console.log(
      `[many-hosts] three hosts up and the cluster healthy in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
    );
    await psqlUrl(
      "CREATE TABLE IF NOT EXISTS acked (id bigint PRIMARY KEY, writer text NOT NULL, lsn pg_lsn, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
  });

  after(async () => {
    await cluster?.destroy();
  });

  it("each host runs its own engine with its own part of the stack, and etcd has a member on each", async () => {
    for (const h of cluster.hosts) {
      const n = h.index + 1;
      const names = (await cluster.dh.docker(h, ["ps", "--format", "{{.Names}}"])).split("\n").sort();
      assert.ok(names.includes(`${cluster.project}-pg${n}`), `${h.name}: ${names.join(", ")}`);
      assert.ok(
        names.some((x) => x.includes(`etcd${n}`)),
        `${h.name}: ${names.join(", ")}`,
      );
      for (const o of [1, 2, 3].filter((x) => x !== n)) {
        assert.ok(
          !names.some((x) => x.endsWith(`pg${o}`) || x.includes(`etcd${o}`)),
          `${h.name}: ${names.join(", ")}`,
        );
      }
    }
    const members = await cluster.members();
    for (const m of members) assert.equal(m.host, cluster.hostOfAgent(m.name).ip, JSON.stringify(m));
  });

  it("psql reaches the primary through one URL naming the three routers", async () => {
    assert.equal(await psqlUrl("select pg_is_in_recovery()"), "f");
  });

  it("the leader's host killed (engine, containers, network at once), then restarted: nothing acknowledged is lost, the old leader rejoins as a replica", async () => {
    const r = await play(
      "leader's host killed",
      (l) => l,
      (h) => cluster.dh.kill(h),
      async (h) => {
        await waitFor(
          "a new leader on the other hosts",
          async () => {
            const l = await cluster.leader(cluster.hosts.filter((x) => x !== h)).catch(() => null);
            return l !== null && cluster.hostOfAgent(l) !== h;
          },
          { timeoutMs: 120_000, intervalMs: 500 },
        );
        await cluster.dh.restart(h);
      },
    );
    assert.notEqual(r.newLeader, r.oldLeader);
    await assertNothingLost(r);
    await assertNoAckAfterElection(r);
  });

  it("the leader's host cut off from the other two for 60 s, then healed: it acknowledges nothing after the election and rejoins", async () => {
    const r = await play(
      "leader's host partitioned",
      (l) => l,
      async (h) => {
        await cluster.dh.isolate(h);
      },
      async (h) => {
        await new Promise((res) => setTimeout(res, 60_000));
        await cluster.dh.heal(h);
      },
    );
    assert.notEqual(r.newLeader, r.oldLeader, "the majority side elected a new leader");
    await assertNothingLost(r);
    await assertNoAckAfterElection(r);
  });

  it("a replica's host killed, then restarted: the leader keeps leading, nothing is lost", async () => {
    const r = await play(
      "replica's host killed",
      (l) => cluster.hosts.find((h) => h !== l)!,
      (h) => cluster.dh.kill(h),
      async (h) => {
        await new Promise((res) => setTimeout(res, 10_000));
        await cluster.dh.restart(h);
      },
    );
    assert.equal(r.newLeader, r.oldLeader);
    await assertNothingLost(r);
  });

  it("the host of the clients' first-listed router killed, then restarted: psql with the URL still connects, nothing is lost", async () => {
    const first = cluster.hosts[0]!;
    const r = await play(
      "first-listed host killed",
      () => first,
      (h) => cluster.dh.kill(h),
      async (h) => {
        // A new connection through the URL while the first host is dead.
        const got = await waitFor(
          "psql through the URL with the first host dead",
          () => psqlUrl("select pg_is_in_recovery()").catch(() => null),
          { timeoutMs: 120_000, intervalMs: 1000 },
        );
        assert.equal(got, "f");
        await cluster.dh.restart(h);
      },
    );
    await assertNothingLost(r);
    await assertNoAckAfterElection(r);
  });
});
