import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CheckMode } from "../../router/options.js";
import {
  type Health,
  LAG_HYSTERESIS,
  type MemberHealth,
  pickReplica,
  type ReplicaOptions,
  selectReplicas,
} from "../../router/selection.js";
import type { Target } from "../../router/target.js";
import { type ClusterView, decodeCluster, type RawEntry } from "../../shared/patroni.js";
import { deepFreeze } from "../harness/deep-freeze.js";

const NOW = 1_800_000_000_000;
const MiB = 1024 * 1024;
const MAX_LAG = 16 * MiB;
const LEADER_LSN = 1000 * MiB;

function member(name: string, port: number, role: string, extra: Record<string, unknown> = {}): RawEntry {
  return {
    key: `members/${name}`,
    value: JSON.stringify({
      conn_url: `postgres://127.0.0.1:${port}/postgres`,
      api_url: `http://127.0.0.1:${port + 1000}/patroni`,
      state: "running",
      role,
      xlog_location: LEADER_LSN,
      timeline: 1,
      ...extra,
    }),
  };
}

const replicaAt = (name: string, port: number, lagBytes: number, extra: Record<string, unknown> = {}) =>
  member(name, port, "replica", { xlog_location: LEADER_LSN - lagBytes, ...extra });

function view(...entries: RawEntry[]): ClusterView {
  return decodeCluster(
    "demo",
    [
      { key: "leader", value: "pg1" },
      member("pg1", 5001, "master"),
      { key: "status", value: JSON.stringify({ optime: LEADER_LSN }) },
      ...entries,
    ],
    7,
  );
}

const ok = (port: number, status: number | null = 200, lsn: number | null = null) => ({
  replica: {
    status,
    failures: status === null ? 1 : 0,
    at: NOW,
    apiUrl: `http://127.0.0.1:${port + 1000}`,
    lsn,
    // What Patroni's /replica body says of a replica (from pg_is_in_recovery()).
    role: status === 200 ? ("replica" as const) : null,
  },
});
const leaderAt = (lsn: number) => ({
  primary: {
    status: 200,
    failures: 0,
    at: NOW,
    apiUrl: "http://127.0.0.1:6001",
    lsn,
    role: "primary" as const,
  },
});
const allOk: Health = new Map([
  ["pg2", ok(5002)],
  ["pg3", ok(5003)],
  ["pg4", ok(5004)],
]);

interface Case {
  name: string;
  view: ClusterView;
  health?: Health;
  mode?: CheckMode;
  previous?: string[];
  eligible: string[];
  excluded?: Record<string, RegExp>;
}

const cases: Case[] = [
  {
    name: "running replicas within the lag limit answering /replica 200 are eligible; the leader is not",
    view: view(replicaAt("pg2", 5002, 0), replicaAt("pg3", 5003, MiB)),
    eligible: ["pg2", "pg3"],
    excluded: { pg1: /leader/ },
  },
  {
    name: "a replica lagging past --max-lag is excluded",
    view: view(replicaAt("pg2", 5002, 0), replicaAt("pg3", 5003, 17 * MiB)),
    previous: ["pg2", "pg3"],
    eligible: ["pg2"],
    excluded: { pg3: /max-lag/ },
  },
  {
    name: "lag is measured from replay_lsn when the member reports it",
    view: view(replicaAt("pg2", 5002, 0, { replay_lsn: LEADER_LSN - 20 * MiB })),
    previous: ["pg2"],
    eligible: [],
    excluded: { pg2: /max-lag/ },
  },
  {
    name: "hysteresis: an eligible replica at 15 MiB stays eligible",
    view: view(replicaAt("pg2", 5002, 15 * MiB)),
    previous: ["pg2"],
    eligible: ["pg2"],
  },
  {
    name: "hysteresis: an excluded replica at 15 MiB stays excluded until it is back under 12 MiB",
    view: view(replicaAt("pg2", 5002, 15 * MiB)),
    previous: [],
    eligible: [],
    excluded: { pg2: /return threshold/ },
  },
  {
    name: "hysteresis: an excluded replica back under the band is eligible again",
    view: view(replicaAt("pg2", 5002, 11 * MiB)),
    previous: [],
    eligible: ["pg2"],
  },
  {
    name: "noloadbalance tag excludes",
    view: view(replicaAt("pg2", 5002, 0, { tags: { noloadbalance: true } }), replicaAt("pg3", 5003, 0)),
    eligible: ["pg3"],
    excluded: { pg2: /noloadbalance/ },
  },
  {
    name: "a replica not running is excluded",
    view: view(replicaAt("pg2", 5002, 0, { state: "starting" })),
    eligible: [],
    excluded: { pg2: /starting/ },
  },
  {
    name: "a replica refusing /replica is excluded; one not yet checked too",
    view: view(replicaAt("pg2", 5002, 0), replicaAt("pg3", 5003, 0), replicaAt("pg4", 5004, 0)),
    health: new Map([
      ["pg2", ok(5002, 503)],
      ["pg4", ok(5004)],
    ]),
    eligible: ["pg4"],
    excluded: { pg2: /refuses/, pg3: /not confirmed/ },
  },
  {
    name: "a malformed member record is excluded, not fatal",
    view: view({ key: "members/pg2", value: "garbage" }, replicaAt("pg3", 5003, 0)),
    eligible: ["pg3"],
    excluded: { pg2: /unusable/ },
  },
  {
    name: "unknown lag (no leader position) excludes",
    view: decodeCluster("demo", [replicaAt("pg2", 5002, 0)], 1),
    eligible: [],
    excluded: { pg2: /lag unknown/ },
  },
  {
    name: "lag is taken from the replica's REST replayed position (replay paused, WAL still received)",
    view: view(replicaAt("pg2", 5002, 0), replicaAt("pg3", 5003, 0)),
    health: new Map([
      ["pg2", ok(5002, 200, LEADER_LSN)],
      ["pg3", ok(5003, 200, LEADER_LSN - 20 * MiB)],
    ]),
    previous: ["pg2", "pg3"],
    eligible: ["pg2"],
    excluded: { pg3: /max-lag/ },
  },
  {
    name: "the leader's REST position still counts once its answer has aged: a lagging replica does not come back",
    view: view(replicaAt("pg2", 5002, 0)),
    health: new Map<string, MemberHealth>([
      [
        "pg1",
        {
          primary: {
            status: null,
            failures: 1,
            at: NOW - 60_000,
            apiUrl: "http://127.0.0.1:6001",
            lsn: LEADER_LSN + 20 * MiB,
            role: "primary",
          },
        },
      ],
      ["pg2", ok(5002, 200, LEADER_LSN)],
    ]),
    previous: [],
    eligible: [],
    excluded: { pg2: /max-lag/ },
  },
  {
    name: "the leader's position from REST /primary counts when newer than etcd's",
    view: view(replicaAt("pg2", 5002, 0)),
    health: new Map<string, MemberHealth>([
      ["pg1", leaderAt(LEADER_LSN + 20 * MiB)],
      ["pg2", ok(5002)],
    ]),
    previous: ["pg2"],
    eligible: [],
    excluded: { pg2: /max-lag/ },
  },
  {
    name: "--check etcd ignores REST",
    view: view(replicaAt("pg2", 5002, 0)),
    health: new Map(),
    mode: "etcd",
    eligible: ["pg2"],
  },
  {
    name: "--check rest trusts /replica (Patroni applies the lag limit)",
    view: view(member("pg2", 5002, "master"), replicaAt("pg3", 5003, 100 * MiB)),
    health: new Map([
      ["pg2", ok(5002)],
      ["pg3", ok(5003)],
    ]),
    mode: "rest",
    eligible: ["pg2", "pg3"],
  },
];

describe("selectReplicas: the replica port's candidates", () => {
  for (const c of cases) {
    it(c.name, () => {
      const v = deepFreeze(c.view);
      const h = deepFreeze(c.health ?? allOk);
      const prev = deepFreeze(new Set(c.previous ?? []));
      const opts: ReplicaOptions = deepFreeze({
        mode: c.mode ?? "both",
        maxLag: MAX_LAG,
        hysteresis: LAG_HYSTERESIS,
      });
      const d = selectReplicas(v, h, opts, prev, NOW);
      assert.deepEqual(
        d.eligible.map((r) => r.name),
        c.eligible,
        JSON.stringify(d.excluded),
      );
      for (const [name, re] of Object.entries(c.excluded ?? {})) {
        const ex = d.excluded.find((e) => e.name === name);
        assert.ok(ex, `${name} excluded`);
        assert.match(ex.reason, re);
      }
      assert.deepEqual(selectReplicas(v, h, opts, prev, NOW), d);
    });
  }

  it("reports each eligible replica's lag", () => {
    const d = selectReplicas(
      view(replicaAt("pg2", 5002, 3 * MiB)),
      allOk,
      { mode: "both", maxLag: MAX_LAG, hysteresis: LAG_HYSTERESIS },
      new Set(),
      NOW,
    );
    assert.equal(d.eligible[0]?.lag, 3 * MiB);
  });
});

describe("pickReplica: fewest connections first, round-robin between equals", () => {
  const r = (name: string): Target => ({ name, host: "h", port: 1, apiUrl: null });
  const three = deepFreeze([r("a"), r("b"), r("c")]);
  const counts = (m: Record<string, number>) => (name: string) => m[name] ?? 0;

  it("prefers the replica with fewest active connections", () => {
    assert.equal(pickReplica(three, counts({ a: 3, b: 1, c: 2 }), 0)?.name, "b");
  });
  it("rotates between equals by turn", () => {
    const picks = [0, 1, 2, 3].map((turn) => pickReplica(three, counts({}), turn)?.name);
    assert.deepEqual(picks, ["a", "b", "c", "a"]);
  });
  it("rotates among the least loaded only", () => {
    const picks = [0, 1, 2].map((turn) => pickReplica(three, counts({ a: 1 }), turn)?.name);
    assert.deepEqual(picks, ["b", "c", "b"]);
  });
  it("gives null with no candidates", () => {
    assert.equal(
      pickReplica([], () => 0, 0),
      null,
    );
  });
});
