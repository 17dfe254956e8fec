/**
 * The replica port never uses a replica lagging past --max-lag. Lag is made real:
 * WAL replay is paused on a replica (pg_wal_replay_pause()) while the primary
 * writes; the replica still receives WAL, but its readers fall behind.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { PatroniCluster } from "../harness/patroni.js";
import { waitFor } from "../harness/proc.js";
import { clientVia, RouterProcess, whoServes } from "../harness/router.js";

describe("router: replica lag", () => {
  let c: PatroniCluster;
  let r: RouterProcess;
  let leader: string;
  let replicas: string[];

  async function sql(member: string, text: string): Promise<void> {
    const client = clientVia(c, c.node(member).pgPort);
    await client.connect();
    try {
      await client.query(text);
    } finally {
      await client.end();
    }
  }

  const excludedFor = async (name: string): Promise<string | null> =>
    (await r.route(c.scope)).replicas.excluded.find((e) => e.name === name)?.reason ?? null;

  before(async () => {
    c = await PatroniCluster.start({ nodes: 3 });
    leader = (await c.leader())!;
    replicas = c.nodes.map((n) => n.name).filter((n) => n !== leader);
    r = await RouterProcess.start({ etcd: c.etcd.endpoint, scope: c.scope, args: ["--max-lag", "1MiB"] });
    await r.waitReady();
    await waitFor(
      "both replicas eligible",
      async () => (await r.route(c.scope)).replicas.eligible.length === 2,
      {
        timeoutMs: 30_000,
      },
    );
  });
  after(async () => {
    await r?.stop();
    await c?.destroy();
  });

  it("a replica whose replay is paused while the primary writes is left out; reads go to the other", async () => {
    const [lagging, fresh] = replicas as [string, string];
    await sql(lagging, "SELECT pg_wal_replay_pause()");
    await sql(
      leader,
      "CREATE TABLE bulk AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 40000) g",
    );
    await waitFor(
      "the lagging replica to be excluded",
      async () => /max-lag/.test((await excludedFor(lagging)) ?? ""),
      {
        timeoutMs: 30_000,
      },
    );
    const lag = (await r.route(c.scope)).members.find((m) => m.name === lagging)?.lagBytes ?? 0;
    assert.ok(lag > 1024 * 1024, `lag ${lag} past 1 MiB`);
    for (let i = 0; i < 12; i++) {
      const w = await whoServes(c, r.replicaPort!);
      assert.equal(w.member, fresh, "never the lagging replica");
      assert.equal(w.standby, true);
    }
  });

  it("with no replica eligible, --replica-fallback primary sends reads to the primary", async () => {
    const [, fresh] = replicas as [string, string];
    await sql(fresh, "SELECT pg_wal_replay_pause()");
    await sql(leader, "INSERT INTO bulk SELECT g, repeat('y', 200) FROM generate_series(1, 40000) g");
    await waitFor(
      "no replica eligible",
      async () => (await r.route(c.scope)).replicas.eligible.length === 0,
      {
        timeoutMs: 30_000,
      },
    );
    const w = await whoServes(c, r.replicaPort!);
    assert.equal(w.member, leader);
    assert.equal(w.standby, false);
  });

  it("replicas that catch up are used again", async () => {
    for (const name of replicas) await sql(name, "SELECT pg_wal_replay_resume()");
    await waitFor(
      "both replicas eligible again",
      async () => (await r.route(c.scope)).replicas.eligible.length === 2,
      {
        timeoutMs: 30_000,
      },
    );
    const seen = new Set<string>();
    await waitFor(
      "reads on both replicas",
      async () => {
        seen.add((await whoServes(c, r.replicaPort!)).member);
        return seen.size === 2;
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    assert.ok(!seen.has(leader));
  });
});
