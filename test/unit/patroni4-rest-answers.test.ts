/**
 * Patroni 4.0.7's REST answers, recorded from a cluster of the agent image (PostgreSQL 17,
 * synchronous mode; test/fixtures/patroni4/), read by the code that reads Patroni 3.0.2's: the
 * router's /primary check (through shared/patroni-rest.ts), the agent's stop decision and
 * replication metrics. Patroni 4 says
 * `primary` where 3 said `master`, and a replica's state in GET /cluster is its replication
 * state (`streaming`) where 3 said `running`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { replicaStreaming, synchronousMode, synchronousModeOf } from "../../agent/replication-metrics.js";
import { planStop, streamingFrom } from "../../agent/stop-plan.js";
import { type Probe, primaryVerdict } from "../../router/selection.js";
import { parsePatroniStatus } from "../../shared/patroni-rest.js";
import { deepFreeze, readJsonFixture } from "../harness/fixtures.js";

const leader = deepFreeze(readJsonFixture("patroni4/leader-patroni.json"));
const syncStandby = deepFreeze(readJsonFixture("patroni4/sync-standby-patroni.json"));
const cluster = deepFreeze(readJsonFixture("patroni4/cluster-sync.json"));
const config = deepFreeze(readJsonFixture("patroni4/config.json"));

const API = "http://172.26.0.8:8008/patroni";

function probeOf(answer: unknown, status = 200): Probe {
  const body = parsePatroniStatus(JSON.stringify(answer));
  return {
    status,
    failures: 0,
    at: 1000,
    apiUrl: API,
    lsn: body.location,
    role: body.role,
    state: body.state,
  };
}

describe("Patroni 4.0.7's answers", () => {
  it("the router confirms a primary from the leader's /primary body (role primary, running)", () => {
    const body = parsePatroniStatus(JSON.stringify(leader));
    assert.deepEqual(
      { location: body.location, role: body.role, state: body.state, failsafe: body.failsafe },
      { location: 67109864, role: "primary", state: "running", failsafe: false },
    );
    assert.equal(primaryVerdict(probeOf(leader), API, 1000), "ok");
  });

  it("a replica's body is no primary, whatever the status", () => {
    assert.equal(primaryVerdict(probeOf(syncStandby), API, 1000), "unknown");
    assert.equal(primaryVerdict(probeOf(syncStandby, 503), API, 1000), "refused");
  });

  it("the leader lists both replicas as streaming", () => {
    assert.deepEqual([...(streamingFrom(leader) ?? [])].sort(), ["pg2", "pg3"]);
  });

  it("a stopping leader hands over to the synchronous standby", () => {
    const plan = planStop("pg1", cluster, leader, {
      enabled: true,
      synchronousMode: synchronousModeOf(config),
    });
    assert.deepEqual(plan, {
      action: "switchover",
      candidate: "pg2",
      reason: "leader stopping; pg2 is a healthy synchronous standby (lag 0 bytes)",
    });
  });

  it("the agent's metrics: synchronous mode on, both replicas streaming", () => {
    assert.equal(synchronousModeOf(config), "on");
    assert.equal(synchronousMode(config), true);
    assert.deepEqual([...(replicaStreaming(leader, cluster) ?? new Map())].sort(), [
      ["pg2", true],
      ["pg3", true],
    ]);
  });
});
