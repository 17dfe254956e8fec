import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeCluster,
  decodeMember,
  failoverAnnounced,
  parseApiUrl,
  parseConnUrl,
  type RawEntry,
} from "../../shared/patroni.js";

// What Patroni 3.0.2 wrote on this machine (DESIGN.md).
const P3_LEADER: RawEntry[] = [
  { key: "leader", value: "pg1" },
  {
    key: "members/pg1",
    value:
      '{"conn_url":"postgres://127.0.0.1:5431/postgres","api_url":"http://127.0.0.1:8001/patroni","state":"running","role":"master","version":"3.0.2","xlog_location":67109000,"timeline":1}',
  },
  {
    key: "members/pg2",
    value:
      '{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8002/patroni","state":"running","role":"replica","version":"3.0.2","xlog_location":67108000,"timeline":1}',
  },
  { key: "config", value: '{"ttl":10,"loop_wait":2,"retry_timeout":5,"synchronous_mode":true}' },
  { key: "initialize", value: "7713205041390204409" },
  { key: "sync", value: '{"leader":"pg1","sync_standby":"pg2"}' },
  { key: "status", value: '{"optime":67109000}' },
  {
    key: "history",
    value: '[[1,219950184,"no recovery target specified","2026-01-01T00:00:00+00:00","pg2"]]',
  },
];

// Patroni 4.x (documented member fields: role "primary", replay_lsn/receive_lsn, replication_state, tags).
const P4: RawEntry[] = [
  { key: "leader", value: "node-a" },
  {
    key: "members/node-a",
    value:
      '{"conn_url":"postgres://10.0.0.11:5432/postgres","api_url":"http://10.0.0.11:8008/patroni","state":"running","role":"primary","version":"4.0.4","xlog_location":50331808,"timeline":3}',
  },
  {
    key: "members/node-b",
    value:
      '{"conn_url":"postgres://10.0.0.12:5432/postgres","api_url":"http://10.0.0.12:8008/patroni","state":"running","role":"replica","version":"4.0.4","xlog_location":50331000,"replay_lsn":50331000,"receive_lsn":50331800,"replication_state":"streaming","timeline":3,"tags":{"noloadbalance":true,"nofailover":true,"zone":"b"}}',
  },
  {
    key: "members/node-c",
    value:
      '{"conn_url":"postgresql://[fd00::13]:6432/postgres","api_url":"https://[fd00::13]:8008/patroni","state":"streaming","role":"replica","version":"4.0.4","xlog_location":50331808,"timeline":3,"pending_restart":true,"tags":{"nosync":"true"}}',
  },
  {
    key: "failover",
    value: '{"leader":"node-a","member":"node-b","scheduled_at":"2026-11-28T10:00:00+00:00"}',
  },
  { key: "status", value: '{"optime":50331900,"slots":{"node_b":50331000},"retain_slots":["node_b"]}' },
];

describe("Patroni DCS decoder", () => {
  it("decodes Patroni 3.0.2's records and maps master to primary", () => {
    const v = decodeCluster("demo", P3_LEADER, 42);
    assert.equal(v.leader, "pg1");
    assert.equal(v.revision, 42);
    assert.equal(v.members.length, 2);
    const [pg1, pg2] = v.members;
    assert.ok(pg1?.valid && pg2?.valid);
    assert.equal(pg1.role, "primary");
    assert.equal(pg1.host, "127.0.0.1");
    assert.equal(pg1.port, 5431);
    assert.equal(pg1.apiUrl, "http://127.0.0.1:8001");
    assert.equal(pg1.lsn, 67109000);
    assert.equal(pg1.timeline, 1);
    assert.equal(pg1.running, true);
    assert.equal(pg2.role, "replica");
    assert.deepEqual(v.sync, { leader: "pg1", syncStandbys: ["pg2"] });
    assert.equal(v.config?.["ttl"], 10);
    assert.equal(v.initialize, "7713205041390204409");
    assert.equal(v.leaderLsn, 67109000);
    assert.equal(v.invalidMembers, 0);
    assert.equal(v.failover, null);
    assert.equal(v.paused, false);
  });

  it("decodes Patroni 4.x's records: primary role, tags, IPv6, lsns, failover", () => {
    const v = decodeCluster("prod", P4);
    assert.equal(v.leader, "node-a");
    const [a, b, c] = v.members;
    assert.ok(a?.valid && b?.valid && c?.valid);
    assert.equal(a.role, "primary");
    assert.equal(b.noloadbalance, true);
    assert.equal(b.nofailover, true);
    assert.equal(b.tags["zone"], "b");
    assert.equal(b.replayLsn, 50331000);
    assert.equal(b.receiveLsn, 50331800);
    assert.equal(c.host, "fd00::13");
    assert.equal(c.port, 6432);
    assert.equal(c.apiUrl, "https://[fd00::13]:8008");
    assert.equal(c.running, true, "streaming counts as running");
    assert.equal(c.pendingRestart, true);
    assert.equal(c.nosync, true);
    assert.deepEqual(v.failover && { ...v.failover, modRevision: 0 }, {
      leader: "node-a",
      candidate: "node-b",
      scheduledAt: "2026-11-28T10:00:00+00:00",
      modRevision: 0,
    });
    assert.equal(v.leaderLsn, 50331900, "status optime wins when ahead of the member record");
  });

  it("maps every role spelling", () => {
    const roles: [string, string][] = [
      ["master", "primary"],
      ["primary", "primary"],
      ["promoted", "promoting"],
      ["replica", "replica"],
      ["standby_leader", "standby_leader"],
      ["standby-leader", "standby_leader"],
      ["demoted", "unknown"],
      ["", "unknown"],
    ];
    for (const [raw, want] of roles) {
      const m = decodeMember("x", JSON.stringify({ conn_url: "postgres://h:1/p", role: raw }));
      assert.ok(m.valid);
      assert.equal(m.role, want, raw);
    }
  });

  const malformed: [string, string, RegExp][] = [
    ["not JSON", "{oops", /not a JSON object/],
    ["a JSON array", "[1,2]", /not a JSON object/],
    ["JSON null", "null", /not a JSON object/],
    ["no conn_url", '{"role":"master"}', /conn_url/],
    ["conn_url without a port", '{"conn_url":"postgres://db/postgres"}', /conn_url/],
    ["conn_url of another scheme", '{"conn_url":"http://db:5432/"}', /conn_url/],
    ["conn_url not a string", '{"conn_url":5432}', /conn_url/],
    ["conn_url with a port out of range", '{"conn_url":"postgres://db:99999/x"}', /conn_url/],
    ["a garbage api_url", '{"conn_url":"postgres://db:5432/x","api_url":"::nonsense"}', /api_url/],
  ];
  for (const [name, value, reason] of malformed) {
    it(`marks a member invalid, never throws: ${name}`, () => {
      const v = decodeCluster("demo", [...P3_LEADER, { key: "members/bad", value }]);
      const bad = v.members.find((m) => m.name === "bad");
      assert.ok(bad && !bad.valid);
      assert.match(bad.reason, reason);
      assert.equal(v.invalidMembers, 1);
      assert.deepEqual(v.malformedKeys, ["members/bad"]);
      assert.equal(v.members.filter((m) => m.valid).length, 2, "the good members still decode");
    });
  }

  it("survives malformed cluster-level keys", () => {
    const v = decodeCluster("demo", [
      { key: "leader", value: "  " },
      { key: "config", value: "nope" },
      { key: "sync", value: "[]" },
      { key: "failover", value: "[]" },
      { key: "status", value: "7" },
      { key: "members/", value: "{}" },
      { key: "unknown/thing", value: "whatever" },
    ]);
    assert.equal(v.leader, null);
    assert.equal(v.config, null);
    assert.equal(v.sync, null);
    assert.equal(v.failover, null);
    assert.equal(v.leaderLsn, null);
    assert.deepEqual([...v.malformedKeys].sort(), ["config", "failover", "members/", "status", "sync"]);
  });

  it("a failover key Patroni cleared (`{}`) is no request, and not malformed", () => {
    const v = decodeCluster("demo", [{ key: "failover", value: "{}" }]);
    assert.equal(v.failover, null);
    assert.deepEqual(v.malformedKeys, []);
  });

  it("reads the agent's handover fence, and only its handover state", () => {
    const fence = (o: unknown) =>
      decodeCluster("demo", [...P3_LEADER, { key: "pgha-fence", value: JSON.stringify(o) }]);
    assert.deepEqual(fence({ state: "handover", member: "pg1", candidate: "pg2", since: "x" }).handover, {
      member: "pg1",
      candidate: "pg2",
    });
    assert.equal(fence({ state: "stopping", member: "pg1", since: "x" }).handover, null);
    assert.equal(fence({ state: "handover", member: "pg1" }).handover, null, "no candidate");
    assert.equal(
      fence({ state: "handover", member: 7, candidate: "pg2" }).handover,
      null,
      "member not a string",
    );
    assert.equal(
      decodeCluster("demo", [...P3_LEADER, { key: "pgha-fence", value: "not json" }]).handover,
      null,
    );
    assert.equal(decodeCluster("demo", P3_LEADER).handover, null);
  });

  it("treats an emptied failover key as none", () => {
    const v = decodeCluster("demo", [...P3_LEADER, { key: "failover", value: "" }]);
    assert.equal(v.failover, null);
    assert.deepEqual(v.malformedKeys, []);
  });

  it("ignores unknown fields and keeps the view frozen", () => {
    const m = decodeMember(
      "x",
      '{"conn_url":"postgres://h:5/p","api_url":"http://h:8008/patroni","future_field":{"a":1},"role":"replica","state":"running"}',
    );
    assert.ok(m.valid);
    assert.ok(Object.isFrozen(m));
    const v = decodeCluster("demo", P3_LEADER);
    assert.ok(Object.isFrozen(v) && Object.isFrozen(v.members));
    assert.throws(() => {
      (v as { leader: string | null }).leader = "pg2";
    });
  });

  it("reads pause from the config", () => {
    const v = decodeCluster("demo", [{ key: "config", value: '{"pause":true}' }]);
    assert.equal(v.paused, true);
  });

  it("parses URLs", () => {
    assert.deepEqual(parseConnUrl("postgres://user:pw@h:5433/db?sslmode=require"), { host: "h", port: 5433 });
    assert.equal(parseConnUrl("postgres://h/db"), null);
    assert.equal(parseApiUrl("http://h:8008/patroni"), "http://h:8008");
    assert.equal(parseApiUrl("http://h:8008"), "http://h:8008");
    assert.equal(parseApiUrl("ftp://h:21/"), null);
  });
});

describe("failoverAnnounced: what a failover key's value says", () => {
  const table: [string | null, boolean][] = [
    [null, false],
    ["", false],
    ["{}", false], // Patroni's cleanup (manual_failover('', '')) writes this
    ['{"leader":"pg1","member":"pg2"}', true],
    ['{"member":"pg2"}', true],
    ['{"leader":"pg1"}', true],
    ['{"leader":"pg1","scheduled_at":"2026-12-04T10:00:00+00:00"}', true],
    ["not json", false],
  ];
  for (const [value, want] of table) {
    it(`${JSON.stringify(value)} → ${want}`, () => assert.equal(failoverAnnounced(value), want));
  }
});
