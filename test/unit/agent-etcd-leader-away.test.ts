import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type MemberStatus, planLeaderAway } from "../../agent/etcd-leader-away.js";

const m = (host: string, id: string, leader: string, index = 100n): MemberStatus => ({
  endpoint: { host, port: 2379 },
  memberId: id,
  leaderId: leader,
  raftIndex: index,
});

describe("etcd's leader away from the Patroni leader's host: the plan", () => {
  const table: [string, (MemberStatus | null)[], string, string | null][] = [
    [
      "the member on this host leads: moved to the most advanced follower",
      [m("10.0.0.1", "a", "a"), m("10.0.0.2", "b", "a", 99n), m("10.0.0.3", "c", "a", 100n)],
      "10.0.0.1",
      "c",
    ],
    [
      "equal indexes: the first that answered",
      [m("10.0.0.1", "a", "a"), m("10.0.0.2", "b", "a"), m("10.0.0.3", "c", "a")],
      "10.0.0.1",
      "b",
    ],
    [
      "another host's member leads: nothing",
      [m("10.0.0.1", "a", "b"), m("10.0.0.2", "b", "b"), m("10.0.0.3", "c", "b")],
      "10.0.0.1",
      null,
    ],
    [
      "no member on this host (a compose network's names): nothing",
      [m("etcd1", "a", "a"), m("etcd2", "b", "a"), m("etcd3", "c", "a")],
      "10.0.0.1",
      null,
    ],
    ["this host's member did not answer: nothing", [null, m("10.0.0.2", "b", "b")], "10.0.0.1", null],
    [
      "the others did not answer: nothing (no target that follows)",
      [m("10.0.0.1", "a", "a"), null, null],
      "10.0.0.1",
      null,
    ],
    [
      "a member that follows someone else is no target",
      [m("10.0.0.1", "a", "a"), m("10.0.0.2", "b", "0", 500n), m("10.0.0.3", "c", "a", 10n)],
      "10.0.0.1",
      "c",
    ],
    [
      "this host's member knows of no leader: nothing",
      [m("10.0.0.1", "a", "0"), m("10.0.0.2", "b", "0")],
      "10.0.0.1",
      null,
    ],
  ];
  for (const [name, statuses, host, target] of table) {
    it(name, () => {
      const plan = planLeaderAway(statuses, host);
      if (target === null)
        assert.equal(
          plan.action,
          "none",
          JSON.stringify(plan, (_k, v) => (typeof v === "bigint" ? String(v) : v)),
        );
      else {
        assert.equal(plan.action, "move");
        assert.equal(plan.action === "move" ? plan.to.memberId : null, target);
        assert.equal(plan.action === "move" ? plan.from.endpoint.host : null, host);
      }
    });
  }
});
