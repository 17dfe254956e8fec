import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import {
  patroniBool,
  ReplicationMetrics,
  replicaStreaming,
  synchronousMode,
  synchronousModeOf,
} from "../../agent/replication-metrics.js";
import { deepFreeze } from "../harness/deep-freeze.js";

// Shapes of Patroni 3.0.2's answers, as its REST API gives them.
const replication = (...rows: [string, string][]) =>
  rows.map(([name, state]) => ({
    usename: "replicator",
    application_name: name,
    client_addr: "172.18.0.5",
    state,
    sync_state: name === "pg2" ? "sync" : "async",
    sync_priority: name === "pg2" ? 1 : 0,
  }));
const leaderStatus = (rows: [string, string][]) => ({
  state: "running",
  postmaster_start_time: "2026-11-29 06:52:01.123456+00:00",
  role: "master",
  server_version: 150010,
  xlog: { location: 67109000 },
  timeline: 1,
  ...(rows.length > 0 ? { replication: replication(...rows) } : {}),
  dcs_last_seen: 1_795_000_000,
  database_system_identifier: "7713205041390204409",
  patroni: { version: "3.0.2", scope: "pgha" },
});
const replicaStatus = {
  state: "running",
  role: "replica",
  xlog: { received_location: 67109000, replayed_location: 67109000, replayed_timestamp: null, paused: false },
  timeline: 1,
  patroni: { version: "3.0.2", scope: "pgha" },
};
const member = (name: string, role: string, extra: Record<string, unknown> = {}) => ({
  name,
  role,
  state: "running",
  api_url: `http://${name}:8008/patroni`,
  host: name,
  port: 5432,
  timeline: 1,
  ...(role === "leader" ? {} : { lag: 0 }),
  ...extra,
});
const cluster = (...members: ReturnType<typeof member>[]) => ({ members });
const three = cluster(member("pg1", "leader"), member("pg2", "sync_standby"), member("pg3", "replica"));

describe("replicaStreaming: on the leader, which replica streams from it", () => {
  const table: [string, unknown, unknown, Record<string, boolean> | null][] = [
    [
      "both replicas stream",
      leaderStatus([
        ["pg2", "streaming"],
        ["pg3", "streaming"],
      ]),
      three,
      { pg2: true, pg3: true },
    ],
    [
      "pg3 is not in pg_stat_replication",
      leaderStatus([["pg2", "streaming"]]),
      three,
      { pg2: true, pg3: false },
    ],
    [
      "pg3's walsender is still catching up",
      leaderStatus([
        ["pg2", "streaming"],
        ["pg3", "catchup"],
      ]),
      three,
      { pg2: true, pg3: false },
    ],
    [
      "nobody streams (Patroni leaves `replication` out)",
      leaderStatus([]),
      three,
      { pg2: false, pg3: false },
    ],
    [
      "a member that is starting does not stream",
      leaderStatus([["pg2", "streaming"]]),
      cluster(
        member("pg1", "leader"),
        member("pg2", "sync_standby"),
        member("pg3", "replica", { state: "starting" }),
      ),
      { pg2: true, pg3: false },
    ],
    [
      "a cascading replica (replicatefrom) streams from another member: left out",
      leaderStatus([["pg2", "streaming"]]),
      cluster(
        member("pg1", "leader"),
        member("pg2", "replica"),
        member("pg3", "replica", { tags: { replicatefrom: "pg2" } }),
      ),
      { pg2: true },
    ],
    [
      "Patroni 4 says primary",
      { ...leaderStatus([["pg2", "streaming"]]), role: "primary" },
      three,
      { pg2: true, pg3: false },
    ],
    ["a replica reports nothing", replicaStatus, three, null],
    [
      "a primary that is not running reports nothing",
      { ...leaderStatus([]), state: "starting" },
      three,
      null,
    ],
    ["no answer from /patroni", null, three, null],
    ["no answer from /cluster", leaderStatus([]), null, null],
  ];
  for (const [name, status, members, want] of table) {
    it(name, () => {
      const got = replicaStreaming(deepFreeze(status), deepFreeze(members));
      assert.deepEqual(got === null ? null : Object.fromEntries(got), want);
    });
  }
});

describe("synchronousMode: Patroni's parse_bool of synchronous_mode in GET /config", () => {
  const table: [unknown, boolean | null][] = [
    [{ ttl: 20, loop_wait: 5, synchronous_mode: true }, true],
    [{ synchronous_mode: "on" }, true],
    [{ synchronous_mode: false }, false],
    [{ synchronous_mode: "off" }, false],
    [{ ttl: 20 }, false],
    [{ synchronous_mode: "quorum" }, true],
    [{ synchronous_mode: "QUORUM" }, true],
    [null, null],
  ];
  for (const [config, want] of table) {
    it(JSON.stringify(config), () => assert.equal(synchronousMode(config), want));
  }
  it("tells Patroni 4's quorum commit from on and off", () => {
    assert.equal(synchronousModeOf({ synchronous_mode: "quorum" }), "quorum");
    assert.equal(synchronousModeOf({ synchronous_mode: true }), "on");
    assert.equal(synchronousModeOf({ synchronous_mode: "maybe" }), "off");
    assert.equal(synchronousModeOf(null), null);
  });
  it("parse_bool leaves anything else unknown", () => assert.equal(patroniBool("maybe"), null));
});

describe("the agent's replication gauges, read from Patroni when scraped", () => {
  function agent(answers: { status: unknown; cluster: unknown; config: unknown }) {
    const calls = { patroni: 0, cluster: 0, config: 0 };
    const rest = {
      patroni: async () => {
        calls.patroni++;
        return answers.status;
      },
      cluster: async () => {
        calls.cluster++;
        return answers.cluster;
      },
      dynamicConfig: async () => {
        calls.config++;
        return answers.config;
      },
    };
    let now = 1_000_000;
    const registry = new Registry();
    new ReplicationMetrics(registry, "pgha", rest, () => now);
    return { registry, calls, later: () => (now += 5000) };
  }

  it("the leader's agent: synchronous mode and each replica, one read of Patroni per scrape", async () => {
    const a = agent({
      status: leaderStatus([["pg2", "streaming"]]),
      cluster: three,
      config: { synchronous_mode: true },
    });
    const text = await a.registry.metrics();
    assert.match(text, /^pgha_synchronous_mode\{scope="pgha"\} 1$/m);
    assert.match(text, /^pgha_replica_streaming\{scope="pgha",member="pg2"\} 1$/m);
    assert.match(text, /^pgha_replica_streaming\{scope="pgha",member="pg3"\} 0$/m);
    assert.deepEqual(a.calls, { patroni: 1, cluster: 1, config: 1 });
    a.later();
    await a.registry.metrics();
    assert.deepEqual(a.calls, { patroni: 2, cluster: 2, config: 2 });
  });

  it("a replica's agent: synchronous mode only, and it never asks for /cluster", async () => {
    const a = agent({ status: replicaStatus, cluster: three, config: { synchronous_mode: false } });
    const text = await a.registry.metrics();
    assert.match(text, /^pgha_synchronous_mode\{scope="pgha"\} 0$/m);
    assert.doesNotMatch(text, /^pgha_replica_streaming\{/m);
    assert.equal(a.calls.cluster, 0);
  });

  it("a member removed from the cluster, or Patroni not answering, drops its series", async () => {
    const answers = {
      status: leaderStatus([["pg2", "streaming"]]) as unknown,
      cluster: three as unknown,
      config: { synchronous_mode: true } as unknown,
    };
    const a = agent(answers);
    assert.match(await a.registry.metrics(), /member="pg3"/);
    answers.cluster = cluster(member("pg1", "leader"), member("pg2", "sync_standby"));
    a.later();
    assert.doesNotMatch(await a.registry.metrics(), /member="pg3"/);
    answers.status = null;
    answers.config = null;
    a.later();
    const text = await a.registry.metrics();
    assert.doesNotMatch(text, /^pgha_replica_streaming\{/m);
    assert.doesNotMatch(text, /^pgha_synchronous_mode\{/m);
  });
});
