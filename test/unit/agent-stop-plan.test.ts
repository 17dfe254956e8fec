import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { planStop, type StopPlan, streamingFrom } from "../../agent/stop-plan.js";

const leader = { name: "pg1", role: "leader", state: "running", timeline: 2 };
const replica = (name: string, o: Record<string, unknown> = {}) => ({
  name,
  role: "replica",
  state: "running",
  timeline: 2,
  lag: 0,
  ...o,
});

/** The leader's GET /patroni with these members' walreceivers in pg_stat_replication. */
const leaderStatus = (streams: Record<string, string>) => ({
  state: "running",
  role: "master",
  timeline: 2,
  replication: Object.entries(streams).map(([name, state]) => ({
    usename: "replicator",
    application_name: name,
    client_addr: "10.0.0.9",
    state,
    sync_state: "async",
    sync_priority: 0,
  })),
});

/** Every replica of `cluster` streaming. */
function allStreaming(cluster: unknown): unknown {
  const members = (cluster as { members?: { name?: unknown; role?: unknown }[] } | null)?.members ?? [];
  const streams: Record<string, string> = {};
  for (const m of members)
    if (typeof m.name === "string" && m.role !== "leader") streams[m.name] = "streaming";
  return leaderStatus(streams);
}

describe("what a stopping node does first", () => {
  const table: [string, unknown, StopPlan["action"], string | RegExp, unknown?][] = [
    ["REST did not answer: wait for it", null, "wait", /cluster state unknown/],
    ["a body without members", { foo: 1 }, "wait", /cluster state unknown/],
    ["a replica stops", { members: [{ ...leader, name: "pg2" }, replica("pg1")] }, "stop", /not the leader/],
    ["a leader alone", { members: [leader] }, "stop", /no replica to hand over to/],
    ["a paused cluster", { pause: true, members: [leader, replica("pg2")] }, "stop", /paused/],
    ["a leader with one streaming replica", { members: [leader, replica("pg2")] }, "switchover", "pg2"],
    [
      "Patroni 3.0.x 'streaming' state counts as healthy",
      { members: [leader, replica("pg2", { state: "streaming" })] },
      "switchover",
      "pg2",
    ],
    [
      "the synchronous standby wins over a less lagging async replica",
      { members: [leader, replica("pg2", { lag: 0 }), replica("pg3", { role: "sync_standby", lag: 100 })] },
      "switchover",
      "pg3",
    ],
    [
      "the least lagging replica, then the name",
      {
        members: [
          leader,
          replica("pg3", { lag: 10 }),
          replica("pg2", { lag: 10 }),
          replica("pg4", { lag: 500 }),
        ],
      },
      "switchover",
      "pg2",
    ],
    [
      "a replica lagging past 1 MiB is no candidate",
      { members: [leader, replica("pg2", { lag: 2_000_000 })] },
      "wait",
      /no healthy/,
    ],
    ["lag unknown", { members: [leader, replica("pg2", { lag: "unknown" })] }, "wait", /no healthy/],
    ["a stopped replica", { members: [leader, replica("pg2", { state: "stopped" })] }, "wait", /no healthy/],
    [
      "a replica still starting",
      {
        members: [
          leader,
          replica("pg2", { state: "starting" }),
          replica("pg3", { state: "creating replica" }),
        ],
      },
      "wait",
      /no healthy/,
    ],
    [
      "a replica on an older timeline",
      { members: [leader, replica("pg2", { timeline: 1 })] },
      "wait",
      /no healthy/,
    ],
    [
      "a nofailover replica",
      { members: [leader, replica("pg2", { tags: { nofailover: true } }), replica("pg3", { lag: 5 })] },
      "switchover",
      "pg3",
    ],
    [
      "a member record without a name is no replica to wait for",
      { members: [leader, { role: "replica", state: "running", lag: 0 }] },
      "stop",
      /no replica to hand over to/,
    ],
    [
      "a replica not streaming from the leader is no candidate, whatever its lag in etcd says",
      { members: [leader, replica("pg2", { lag: 0 }), replica("pg3", { lag: 4096 })] },
      "switchover",
      "pg3",
      leaderStatus({ pg3: "streaming" }),
    ],
    [
      "a walsender still catching up is not streaming yet",
      { members: [leader, replica("pg2")] },
      "wait",
      /no healthy replica streaming/,
      leaderStatus({ pg2: "catchup" }),
    ],
    [
      "nobody streams (Patroni leaves `replication` out)",
      { members: [leader, replica("pg2")] },
      "wait",
      /no healthy replica streaming/,
      { state: "running", role: "master" },
    ],
    [
      "the leader's /patroni did not answer",
      { members: [leader, replica("pg2")] },
      "wait",
      /replication state unknown/,
      null,
    ],
  ];
  for (const [name, cluster, action, detail, status] of table) {
    it(name, () => {
      const st = status === undefined ? allStreaming(cluster) : status;
      const frozen = structuredClone([cluster, st]);
      const plan = planStop("pg1", cluster, st, { enabled: true });
      assert.equal(plan.action, action, plan.reason);
      if (plan.action === "switchover") assert.equal(plan.candidate, detail);
      else assert.match(plan.reason, detail as RegExp);
      assert.deepEqual([cluster, st], frozen, "the input is not mutated");
    });
  }

  it("reads the walreceivers streaming from the leader's /patroni", () => {
    assert.deepEqual(
      [...(streamingFrom(leaderStatus({ pg2: "streaming", pg3: "catchup", pg4: "streaming" })) ?? [])],
      ["pg2", "pg4"],
    );
    assert.deepEqual(
      streamingFrom({ replication: [null, { application_name: 5, state: "streaming" }] }),
      new Set(),
    );
    assert.equal(streamingFrom("502 Bad Gateway"), null);
  });

  it("a leader stops at once (behind its fence) when the option is off", () => {
    const cluster = { members: [leader, replica("pg2")] };
    const plan = planStop("pg1", cluster, allStreaming(cluster), { enabled: false });
    assert.deepEqual(plan, { action: "stop", leader: true, reason: "switchover on stop is disabled" });
  });

  it("in synchronous mode only the synchronous standby is a candidate; until there is one, wait", () => {
    const cluster = { members: [leader, replica("pg2"), replica("pg3", { lag: 5 })] };
    const waiting = planStop("pg1", cluster, allStreaming(cluster), { enabled: true, synchronousMode: "on" });
    assert.equal(waiting.action, "wait");
    assert.match(waiting.reason, /no synchronous standby streaming/);
    const withSync = { members: [leader, replica("pg2"), replica("pg3", { role: "sync_standby", lag: 5 })] };
    const plan = planStop("pg1", withSync, allStreaming(withSync), { enabled: true, synchronousMode: "on" });
    assert.deepEqual(plan.action === "switchover" && plan.candidate, "pg3");
    // Asynchronous: any streaming replica will do.
    const async = planStop("pg1", cluster, allStreaming(cluster), { enabled: true, synchronousMode: "off" });
    assert.deepEqual(async.action === "switchover" && async.candidate, "pg2");
  });

  it("in quorum mode (Patroni 4) a quorum standby is preferred, and any streaming replica will do", () => {
    const quorum = {
      members: [leader, replica("pg2", { lag: 0 }), replica("pg3", { role: "quorum_standby", lag: 5 })],
    };
    const plan = planStop("pg1", quorum, allStreaming(quorum), { enabled: true, synchronousMode: "quorum" });
    assert.deepEqual(plan.action === "switchover" && [plan.candidate, plan.reason], [
      "pg3",
      "leader stopping; pg3 is a healthy quorum standby (lag 5 bytes)",
    ]);
    // Before Patroni lists a replica in /sync, it is a plain replica: Patroni accepts it as the
    // candidate of a switchover in quorum mode, and the stop fence lets it promote only once it
    // has every write.
    const joining = { members: [leader, replica("pg2")] };
    const early = planStop("pg1", joining, allStreaming(joining), {
      enabled: true,
      synchronousMode: "quorum",
    });
    assert.deepEqual(early.action === "switchover" && early.candidate, "pg2");
    // A quorum standby that does not stream from the leader is no candidate.
    const notStreaming = planStop("pg1", quorum, leaderStatus({ pg2: "streaming" }), {
      enabled: true,
      synchronousMode: "quorum",
    });
    assert.deepEqual(notStreaming.action === "switchover" && notStreaming.candidate, "pg2");
  });

  it("etcd's leader key decides who leads, over Patroni's REST view", () => {
    const cluster = { members: [leader, replica("pg2")] };
    const notLeader = planStop("pg1", cluster, allStreaming(cluster), { enabled: true }, false);
    assert.deepEqual(notLeader.action === "stop" && notLeader.leader, false);
    // etcd says pg1 leads while its REST API does not answer: wait for it, as a leader.
    const unknown = planStop("pg1", null, null, { enabled: true }, true);
    assert.equal(unknown.action, "wait");
  });

  it("a leader whose only replicas are tagged nofailover stops at once", () => {
    const cluster = { members: [leader, replica("pg2", { tags: { nofailover: true } })] };
    const plan = planStop("pg1", cluster, allStreaming(cluster), { enabled: true });
    assert.equal(plan.action, "stop");
    assert.match(plan.reason, /nofailover/);
  });

  it("a paused cluster stops without a fence: Patroni keeps the lock and nobody promotes", () => {
    const plan = planStop("pg1", { pause: true, members: [leader, replica("pg2")] }, null, { enabled: true });
    assert.deepEqual(plan, { action: "stop", leader: false, reason: "cluster is paused (maintenance mode)" });
  });
});
