import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  checkHostFault,
  describeHostTarget,
  hostFaultFigures,
  hostsTable,
  hostTarget,
  longestGap,
} from "../../bench/host-figures.js";

const base = {
  fault: "leader-kill" as const,
  label: "the leader's host killed",
  target: "host1",
  leader: "pg1 -> pg2",
  from: 1000,
  healedAt: 61_000,
};

describe("benchmark part hosts: what the writers of a whole-host fault add up to", () => {
  it("writes stopped: the longest gap from the fault on, counting the wait for the first write after it", () => {
    assert.equal(longestGap([500, 900, 1200, 1300, 24_000, 24_100], 1000), 22_700);
    assert.equal(longestGap([5000, 1200], 1000), 3800, "unordered times");
    assert.equal(longestGap([], 1000), 0);
    assert.equal(longestGap([100, 200], 1000), 0, "nothing after the fault");
  });

  it("adds up the writers: the slowest kind's stop, failures after the fault by phase", () => {
    const x = hostFaultFigures(
      base,
      [
        {
          kind: "psql per-write",
          ackTimes: [900, 1100, 12_000],
          failures: [
            { at: 800, phase: "connect" },
            { at: 5000, phase: "connect" },
          ],
        },
        { kind: "pg kept", ackTimes: [900, 1050, 23_050], failures: [{ at: 2000, phase: "session" }] },
      ],
      0,
      0,
    );
    assert.equal(x.writesStoppedMs, 22_000);
    assert.deepEqual(x.stoppedByKind, { "psql per-write": 10_900, "pg kept": 22_000 });
    assert.equal(x.failedConnections, 1);
    assert.equal(x.failedSessions, 1);
    assert.equal(x.healedMs, 60_000);
  });

  it("targets: the leader's host killed or cut off, writes stop at most ttl + 2 s; every fault: 0 lost, 0 acked by a demoted leader", () => {
    assert.deepEqual(hostTarget("leader-kill", 20), { maxStoppedMs: 22_000, maxLost: 0, maxDemotedAcks: 0 });
    assert.deepEqual(hostTarget("leader-partition", 20).maxStoppedMs, 22_000);
    assert.equal(hostTarget("replica-kill", 20).maxStoppedMs, null);
    assert.equal(hostTarget("first-router-kill", 20).maxStoppedMs, null);
    assert.equal(
      describeHostTarget(hostTarget("leader-kill", 20)),
      "stopped <= 22 s, 0 lost, 0 by a demoted leader",
    );
    assert.equal(describeHostTarget(hostTarget("replica-kill", 20)), "0 lost, 0 by a demoted leader");
  });

  it("misses a target on a longer stop, a lost write, or a write a demoted leader acknowledged", () => {
    const fig = (stop: number, lost: number, late: number) =>
      hostFaultFigures(base, [{ kind: "pg kept", ackTimes: [base.from + stop], failures: [] }], lost, late);
    const t = hostTarget("leader-kill", 20);
    assert.deepEqual(checkHostFault(t, fig(22_000, 0, 0)), { ok: true, misses: [] });
    assert.deepEqual(checkHostFault(t, fig(22_100, 0, 0)).misses, ["stopped 22.1 s > 22 s"]);
    assert.deepEqual(checkHostFault(t, fig(1000, 2, 0)).misses, ["2 lost"]);
    assert.deepEqual(checkHostFault(t, fig(1000, 0, 3)).misses, ["3 acked by a demoted leader"]);
  });

  it("prints one row per fault with its verdict", () => {
    const x = hostFaultFigures(base, [{ kind: "pg kept", ackTimes: [23_000], failures: [] }], 0, 0);
    const text = hostsTable({
      ttl: 20,
      writers: ["pg kept"],
      paceMs: 100,
      connectTimeoutS: 10,
      startupMs: 1,
      runs: [x],
    });
    const [head, row] = text.split("\n");
    assert.match(head!, /^fault\s+host\s+writes stopped s\s+slowest writer\s+failed conns/);
    assert.match(
      row!,
      /^the leader's host killed\s+host1\s+22\.0\s+pg kept\s+0\s+0\s+0\s+0\s+60\s+stopped <= 22 s, 0 lost, 0 by a demoted leader\s+met$/,
    );
  });
});
