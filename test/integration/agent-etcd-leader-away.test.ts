/**
 * The agent's etcd-leader-away part against a real three-member etcd, one member per loopback
 * address (127.0.0.1, .2, .3: three "hosts"). Playing the Patroni leader on the host whose
 * member leads etcd, it hands etcd's leadership to another member, once; playing it on another
 * host, or not leading, it leaves etcd alone. Then the point of it: that host's member killed,
 * a key on a lease written through it goes with the lease's TTL, with no extra raft election.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Registry } from "prom-client";
import { EtcdLeaderAway, etcdMemberCalls, type MemberStatus } from "../../agent/etcd-leader-away.js";
import type { HostPort } from "../../shared/host-port.js";
import { createLogger } from "../../shared/logger.js";
import { ETCD_BIN, etcdMemberArgs } from "../harness/etcd.js";
import { freePort } from "../harness/ports.js";
import { type Spawned, startProcess, stopProcess, waitFor } from "../harness/proc.js";

const silent = createLogger({ name: "test", level: "silent" });
const HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
let dir: string;
let endpoints: HostPort[];
const procs: (Spawned | null)[] = [];
const calls = () => etcdMemberCalls({ hosts: endpoints, callTimeoutMs: 1500 });
let shared: ReturnType<typeof calls>;

async function statuses(): Promise<(MemberStatus | null)[]> {
  return Promise.all(endpoints.map((e) => shared.status(e).catch(() => null)));
}

/** The loopback "host" whose member leads, once all that answer agree. */
async function leaderHost(): Promise<string> {
  return waitFor(
    "the members to agree on a leader",
    async () => {
      const s = (await statuses()).filter((x): x is MemberStatus => x !== null);
      const ids = new Set(s.map((x) => x.leaderId));
      if (ids.size !== 1 || ids.has("0")) return null;
      const leader = s.find((x) => x.memberId === s[0]!.leaderId);
      return leader?.endpoint.host ?? null;
    },
    { timeoutMs: 20_000, intervalMs: 200 },
  );
}

function away(localHost: string, leads: () => Promise<boolean>) {
  const registry = new Registry();
  const part = new EtcdLeaderAway({
    localHost,
    endpoints,
    leads,
    status: shared.status,
    moveLeader: shared.moveLeader,
    registry,
    log: silent,
  });
  const moved = async () =>
    (await registry.getSingleMetric("pgha_etcd_leader_moves_total")!.get()).values.find(
      (v) => v.labels["outcome"] === "moved",
    )?.value ?? -1;
  return { part, moved };
}

describe("agent: etcd's leader kept off the Patroni leader's host", { timeout: 180_000 }, () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "etcd-away-"));
    const ports = await Promise.all(
      HOSTS.map(async (h) => ({ client: await freePort(h), peer: await freePort(h) })),
    );
    endpoints = HOSTS.map((host, i) => ({ host, port: ports[i]!.client }));
    const cluster = HOSTS.map((h, i) => `m${i + 1}=http://${h}:${ports[i]!.peer}`).join(",");
    HOSTS.forEach((h, i) => {
      procs.push(
        startProcess(
          ETCD_BIN,
          etcdMemberArgs({
            name: `m${i + 1}`,
            dataDir: join(dir, `m${i + 1}`),
            clientUrl: `http://${h}:${ports[i]!.client}`,
            peerUrl: `http://${h}:${ports[i]!.peer}`,
            cluster,
          }),
          { logFile: join(dir, `m${i + 1}.log`) },
        ),
      );
    });
    shared = calls();
    await leaderHost();
  });

  after(async () => {
    shared?.close();
    for (const p of procs) if (p) await stopProcess(p, "SIGKILL").catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it("on another host than etcd's leader, or not leading Patroni, it leaves etcd alone", async () => {
    const lead = await leaderHost();
    const other = HOSTS.find((h) => h !== lead)!;
    const a = away(other, async () => true);
    assert.equal((await a.part.check()).action, "none");
    const b = away(lead, async () => false);
    assert.deepEqual(await b.part.check(), { action: "none", reason: "this node does not lead" });
    const c = away("10.9.9.9", async () => true);
    assert.equal(c.part.applies, false, "no endpoint on this host: nothing to do");
    assert.equal(await leaderHost(), lead, "etcd's leader stayed");
    assert.equal(await a.moved(), 0);
  });

  it("leading Patroni on the host of etcd's leader, it hands etcd's leadership to another member, once", async () => {
    const lead = await leaderHost();
    const a = away(lead, async () => true);
    const plan = await a.part.check();
    assert.equal(plan.action, "move");
    const now = await leaderHost();
    assert.notEqual(now, lead, "etcd's leader moved off this host");
    assert.equal(plan.action === "move" ? plan.to.endpoint.host : null, now);
    assert.equal(await a.moved(), 1);
    assert.equal((await a.part.check()).action, "none", "nothing more to do");
    assert.equal(await a.moved(), 1);
  });

  it("started, it acts on its own; then that host's member killed, the others keep serving without an election", async () => {
    const lead = await leaderHost();
    // Play the Patroni leader on etcd's leader's host again, checking every 200 ms.
    const part = new EtcdLeaderAway({
      localHost: lead,
      endpoints,
      leads: async () => true,
      status: shared.status,
      moveLeader: shared.moveLeader,
      registry: new Registry(),
      log: silent,
      intervalMs: 200,
    });
    part.start();
    try {
      await waitFor("etcd's leader to move off this host", async () => (await leaderHost()) !== lead, {
        timeoutMs: 20_000,
        intervalMs: 200,
      });
    } finally {
      await part.stop();
    }
    const before = (await statuses()).find((s) => s?.endpoint.host !== lead)!;
    const i = HOSTS.indexOf(lead);
    await stopProcess(procs[i]!, "SIGKILL");
    procs[i] = null;
    const after = await leaderHost();
    assert.notEqual(after, lead);
    const s = (await statuses()).find((x) => x !== null)!;
    assert.equal(s.leaderId, before.leaderId, "the same leader: no election when this host's member died");
  });
});
