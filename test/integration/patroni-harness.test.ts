import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { clusterFromSnapshot } from "../../shared/patroni.js";
import type { KV, PrefixSnapshot } from "../../shared/watch.js";
import { PatroniCluster } from "../harness/patroni.js";
import { waitFor } from "../harness/proc.js";

interface CtlMember {
  Member: string;
  Host: string;
  Role: string;
  State: string;
  TL?: number;
}

async function snapshotOf(c: PatroniCluster): Promise<PrefixSnapshot> {
  const res = await c.etcd.client().getAll().prefix(c.namespace).exec();
  const kvs = new Map<string, KV>();
  for (const kv of res.kvs) {
    const key = kv.key.toString();
    kvs.set(key, {
      key,
      value: kv.value.toString(),
      modRevision: Number(kv.mod_revision),
      createRevision: Number(kv.create_revision),
      lease: String(kv.lease),
    });
  }
  return { revision: Number(res.header.revision), kvs };
}

async function ctlList(c: PatroniCluster): Promise<CtlMember[]> {
  return JSON.parse(await c.patronictl("list", "-f", "json")) as CtlMember[];
}

/** Leader and roles as decoded from etcd must match what patronictl prints. */
async function assertDecoderAgreesWithPatronictl(c: PatroniCluster): Promise<string> {
  const ctl = await ctlList(c);
  const view = clusterFromSnapshot(await snapshotOf(c), c.namespace, c.scope);
  const ctlLeader = ctl.find((m) => m.Role === "Leader");
  assert.ok(ctlLeader, `patronictl shows a leader: ${JSON.stringify(ctl)}`);
  assert.equal(view.leader, ctlLeader.Member);
  assert.equal(view.invalidMembers, 0);
  assert.deepEqual(
    view.members.map((m) => m.name),
    ctl.map((m) => m.Member).sort(),
  );
  for (const m of view.members) {
    assert.ok(m.valid);
    const row = ctl.find((r) => r.Member === m.name)!;
    assert.equal(`${m.host}:${m.port}`, row.Host, `${m.name} address`);
    const ctlRole =
      row.Role === "Leader" ? "primary" : /Replica|Sync Standby/.test(row.Role) ? "replica" : row.Role;
    assert.equal(m.role, ctlRole, `${m.name} role`);
    if (row.TL !== undefined) assert.equal(m.timeline, row.TL, `${m.name} timeline`);
  }
  return ctlLeader.Member;
}

describe("Patroni harness: a real 3-node cluster on loopback", () => {
  let c: PatroniCluster;
  let startSeconds = 0;
  before(async () => {
    const t0 = Date.now();
    c = await PatroniCluster.start({ nodes: 3 });
    startSeconds = (Date.now() - t0) / 1000;
  });
  after(async () => {
    await c?.destroy();
  });

  it("comes up with a leader and two streaming replicas", async () => {
    const members = await c.restCluster();
    assert.equal(members.filter((m) => m.role === "leader").length, 1);
    assert.equal(members.filter((m) => m.role === "replica" || m.role === "sync_standby").length, 2);
    console.log(`# cluster ready after ${startSeconds.toFixed(1)} s`);
  });

  it("decodes the live cluster's keys with the same leader and roles as patronictl list", async () => {
    await assertDecoderAgreesWithPatronictl(c);
  });

  it("replicates a write from the leader to both replicas", async () => {
    const leader = c.node((await c.leader())!);
    const w = new pg.Client(leader.pg());
    await w.connect();
    await w.query("CREATE TABLE IF NOT EXISTS harness_probe (id int primary key)");
    await w.query("INSERT INTO harness_probe VALUES (1) ON CONFLICT DO NOTHING");
    await w.end();
    for (const n of c.nodes.filter((x) => x !== leader)) {
      await waitFor(`row on ${n.name}`, async () => {
        const r = new pg.Client(n.pg());
        await r.connect();
        try {
          const res = await r.query(
            "SELECT count(*)::int AS n, pg_is_in_recovery() AS standby FROM harness_probe",
          );
          return res.rows[0].n === 1 && res.rows[0].standby === true;
        } finally {
          await r.end();
        }
      });
    }
  });

  it("switches over to a chosen member and the decoder follows", async () => {
    const before = (await c.leader())!;
    const target = c.nodes.find((n) => n.name !== before)!.name;
    await c.switchover(target);
    const now = await c.waitReady({ replicas: 2, leaderNot: before });
    assert.equal(now, target);
    assert.equal(await assertDecoderAgreesWithPatronictl(c), target);
  });

  it("fails over after kill -9 of the leader, and the killed member rejoins as a replica", async () => {
    const victim = (await c.leader())!;
    await c.kill9(victim);
    const next = await c.waitReady({ replicas: 1, leaderNot: victim, timeoutMs: 60_000 });
    assert.notEqual(next, victim);
    c.node(victim).start();
    await c.waitReady({ replicas: 2, timeoutMs: 90_000 });
    const view = clusterFromSnapshot(await snapshotOf(c), c.namespace, c.scope);
    const rejoined = view.members.find((m) => m.name === victim);
    assert.ok(rejoined?.valid && rejoined.role === "replica");
  });

  it("survives etcd being stopped and started", async () => {
    await c.etcd.stop();
    await new Promise((r) => setTimeout(r, 3000));
    await c.etcd.start();
    const leader = await c.waitReady({ replicas: 2, timeoutMs: 60_000 });
    assert.equal(await assertDecoderAgreesWithPatronictl(c), leader);
  });
});
