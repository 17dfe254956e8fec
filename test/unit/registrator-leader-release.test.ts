/**
 * Releasing a dead leader's lock (-release-dead-leaders), the pure decisions, as tables:
 * the facts a container's events leave (nextFacts), the member its environment names
 * (memberOf), what Docker says about its death (deathNotice, on inspect documents captured
 * from this machine's engine: SIGKILLed, OOM-killed, restarting, stopped cleanly, paused),
 * and what etcd says about the lock (releaseDecision). Inputs are frozen: nothing is mutated.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { ContainerEvent } from "../../registrator/docker-events.js";
import {
  apiAddress,
  type ClusterRead,
  type DeathNotice,
  type DieEvent,
  deathNotice,
  type KeyRead,
  memberOf,
  releaseDecision,
  type Tie,
} from "../../registrator/leader-release.js";
import { type ContainerFacts, NO_FACTS, nextFacts } from "../../registrator/lifecycle.js";
import { deepFreeze, type Loose, mutableFixture } from "../harness/fixtures.js";

const HOST = "host1";
const OPTS = Object.freeze({ hostname: HOST, namespace: "/service/" });

function facts(...events: [ContainerEvent["action"], string?][]): ContainerFacts {
  let f: ContainerFacts = NO_FACTS;
  for (const [action, signal] of events) {
    f = nextFacts(f, deepFreeze({ id: "a".repeat(64), action, ...(signal ? { signal } : {}) }));
  }
  return f;
}

const KILLED = facts(["kill", "9"], ["die"]);
/** The `die` event of the captured deaths: emitted after each fixture's FinishedAt. */
const DIE: DieEvent = Object.freeze({ at: Date.parse("2026-12-03T07:15:17.4Z"), exitCode: 137 });

describe("nextFacts: what a container's events say about how it ended", () => {
  const rows: {
    title: string;
    events: [ContainerEvent["action"], string?][];
    want: Partial<ContainerFacts>;
  }[] = [
    {
      title: "docker kill: SIGKILL, then die",
      events: [["kill", "9"], ["die"]],
      want: { stopSignalled: false, sigkilled: true, deathEvent: true, stopRequested: true },
    },
    {
      title: "docker stop: SIGTERM, die, stop",
      events: [["kill", "15"], ["die"], ["stop"]],
      want: { stopSignalled: true, sigkilled: false, deathEvent: true },
    },
    {
      title: "docker stop running out of time: SIGTERM, then SIGKILL",
      events: [["kill", "SIGTERM"], ["kill", "SIGKILL"], ["die"]],
      want: { stopSignalled: true, sigkilled: true },
    },
    {
      title: "a SIGHUP leaves it running: no stop, but the next look checks",
      events: [["kill", "1"]],
      want: { stopSignalled: false, sigkilled: false, deathEvent: true, stopRequested: false },
    },
    {
      title: "a kill without a signal counts as a planned stop (never release on a guess)",
      events: [["kill"]],
      want: { stopSignalled: true, sigkilled: false },
    },
    {
      title: "the kernel's OOM kill",
      events: [["oom"], ["die"]],
      want: { oom: true, deathEvent: true, died: true },
    },
    {
      title: "a crash: die alone",
      events: [["die"]],
      want: { deathEvent: true, died: true, stopSignalled: false },
    },
    { title: "a kill event is not yet a death", events: [["kill", "9"]], want: { died: false } },
    {
      title: "start forgets everything before it (docker restart)",
      events: [["kill", "15"], ["die"], ["stop"], ["start"]],
      want: { stopSignalled: undefined, deathEvent: undefined, stopRequested: false },
    },
    {
      title: "pause and health events change nothing",
      events: [["pause"], ["health_status"], ["unpause"]],
      want: { deathEvent: false, stopSignalled: false },
    },
  ];
  for (const r of rows) {
    it(r.title, () => {
      const f = facts(...r.events);
      for (const [k, v] of Object.entries(r.want)) {
        assert.equal(
          f[k as keyof ContainerFacts],
          v,
          `${k} after ${r.events.map((e) => e.join(" ")).join(", ")}`,
        );
      }
    });
  }
});

function withEnv(env: string[]): Loose {
  const c = mutableFixture("registrator/killed.json");
  c["Config"]["Env"] = env;
  return deepFreeze(c);
}

describe("memberOf: the member a container's environment names", () => {
  const rows: { title: string; env: string[]; want: string | null }[] = [
    {
      title: "the agent's names",
      env: ["NAME=pg1", "PATRONI_SCOPE=demo", "DOCKER_HOSTNAME=h"],
      want: "/service/|demo|pg1|h",
    },
    {
      title: "Patroni's own names, with its namespace",
      env: ["PATRONI_NAME=pg2", "PATRONI_SCOPE=demo", "PATRONI_NAMESPACE=/db"],
      want: "/db/|demo|pg2|null",
    },
    {
      title: "NAME and PATRONI_NAME agree",
      env: ["NAME=pg1", "PATRONI_NAME=pg1", "PATRONI_SCOPE=d"],
      want: "/service/|d|pg1|null",
    },
    {
      title: "NAME and PATRONI_NAME differ: not certain",
      env: ["NAME=pg1", "PATRONI_NAME=pg2", "PATRONI_SCOPE=d"],
      want: null,
    },
    { title: "no scope", env: ["NAME=pg1"], want: null },
    { title: "no name", env: ["PATRONI_SCOPE=demo"], want: null },
    { title: "empty values count as unset", env: ["NAME=", "PATRONI_SCOPE=demo"], want: null },
    { title: "a scope that would break a key", env: ["NAME=pg1", "PATRONI_SCOPE=a/b"], want: null },
    {
      title: "the last of duplicates wins",
      env: ["NAME=x", "NAME=pg1", "PATRONI_SCOPE=s"],
      want: "/service/|s|pg1|null",
    },
  ];
  for (const r of rows) {
    it(r.title, () => {
      const m = memberOf(withEnv(r.env), "/service/").member;
      assert.equal(m && `${m.namespace}|${m.scope}|${m.name}|${m.dockerHostname}`, r.want);
    });
  }
  it("a malformed document names nobody and does not throw", () => {
    for (const junk of [null, 42, "x", [], { Config: null }, { Config: { Env: "NAME=x" } }]) {
      assert.equal(memberOf(junk, "/service/").member, null);
    }
  });
});

function inspectOf(fixture: string, patch?: (c: Loose) => void): Loose {
  const c = mutableFixture(`registrator/${fixture}.json`);
  patch?.(c);
  return deepFreeze(c);
}

function notice(n: DeathNotice): string {
  return n.action === "check"
    ? `check ${n.death.cause}${n.death.restart === "none" ? "" : ` ${n.death.restart}`}: ${n.reason}`
    : `keep ${n.code}`;
}

describe("deathNotice: is it a Patroni member of this host that died, not stopped on purpose?", () => {
  const member = (c: Loose) => {
    c["Config"]["Env"] = ["NAME=pg1", "PATRONI_SCOPE=demo", `DOCKER_HOSTNAME=${HOST}`];
  };
  const rows: {
    title: string;
    inspect: () => Loose;
    facts: ContainerFacts;
    died?: DieEvent | null;
    want: RegExp;
  }[] = [
    {
      title: "SIGKILLed (docker kill): check",
      inspect: () => inspectOf("killed"),
      facts: KILLED,
      want: /^check killed: SIGKILLed/,
    },
    {
      title: "killed for memory: check, reason oom",
      inspect: () => inspectOf("oom"),
      facts: facts(["oom"], ["die"]),
      want: /^check oom: killed for memory/,
    },
    {
      title: "OOM-killed before Docker's oom event arrived: State.OOMKilled says it",
      inspect: () => inspectOf("oom"),
      facts: facts(["die"]),
      want: /^check oom/,
    },
    {
      title: "restarting after a crash (Running, Restarting, Pid 0): its processes are gone, check",
      inspect: () => inspectOf("restarting"),
      facts: facts(["die"]),
      want: /^check exited restarting: exited with code 1; Docker restarts it/,
    },
    {
      title:
        "started again by its restart policy since the die this registrator saw: the processes that died are gone, check",
      inspect: () =>
        inspectOf("single", (c) => {
          member(c);
          // The new run's: Docker resets both when it starts the container again.
          c["State"]["StartedAt"] = "2026-12-03T07:15:17.6Z";
          c["State"]["FinishedAt"] = "2026-12-03T07:15:17.397806307Z";
          c["State"]["ExitCode"] = 0;
          c["State"]["OOMKilled"] = false;
        }),
      facts: facts(["oom"], ["die"]),
      want: /^check oom restarted: killed for memory \(OOM\); Docker has started it again/,
    },
    {
      title: "started again after a die whose event said exit code 0: a clean stop, keep",
      inspect: () =>
        inspectOf("single", (c) => {
          member(c);
          c["State"]["StartedAt"] = "2026-12-03T07:15:17.6Z";
        }),
      facts: facts(["die"]),
      died: { ...DIE, exitCode: 0 },
      want: /^keep planned-stop/,
    },
    {
      title: "running since before the die (a look taken before it died): alive",
      inspect: () =>
        inspectOf("single", (c) => {
          member(c);
          c["State"]["StartedAt"] = "2026-12-03T07:15:17.2Z";
        }),
      facts: facts(["die"]),
      want: /^keep alive/,
    },
    {
      title: "running, an earlier run finished, but no die since the last start: alive",
      inspect: () =>
        inspectOf("single", (c) => {
          member(c);
          c["State"]["StartedAt"] = "2026-12-03T07:15:17.6Z";
          c["State"]["FinishedAt"] = "2026-12-03T07:15:17.397806307Z";
        }),
      facts: facts(["kill", "9"]),
      died: null,
      want: /^keep alive/,
    },
    {
      title: "restarting but with a process: alive",
      inspect: () =>
        inspectOf("restarting", (c) => {
          c["State"]["Pid"] = 4242;
        }),
      facts: facts(["die"]),
      want: /^keep alive/,
    },
    {
      title: "died by a signal nobody sent through Docker (exit 137 without a kill event)",
      inspect: () => inspectOf("killed"),
      facts: facts(["die"]),
      want: /^check signal: killed by signal 9/,
    },
    {
      title: "a stop signal came first (docker stop, docker restart): planned, keep",
      inspect: () => inspectOf("killed"),
      facts: facts(["kill", "15"], ["kill", "9"], ["die"]),
      want: /^keep planned-stop/,
    },
    {
      title: "exit code 0: a clean stop, keep",
      inspect: () => inspectOf("cleanstop"),
      facts: facts(["die"]),
      want: /^keep planned-stop/,
    },
    {
      title: "paused: alive",
      inspect: () => inspectOf("pausedmember"),
      facts: facts(["kill", "9"]),
      want: /^keep alive/,
    },
    {
      title: "still running after the kill event: alive (the die comes next)",
      inspect: () => inspectOf("single", member),
      facts: facts(["kill", "9"]),
      want: /^keep alive/,
    },
    {
      title: "another host's container (DOCKER_HOSTNAME): never ours",
      inspect: () =>
        inspectOf("killed", (c) => {
          c["Config"]["Env"] = ["NAME=pg1", "PATRONI_SCOPE=demo", "DOCKER_HOSTNAME=host2"];
        }),
      facts: KILLED,
      want: /^keep other-host/,
    },
    {
      title: "no DOCKER_HOSTNAME: not known to be ours",
      inspect: () =>
        inspectOf("killed", (c) => {
          c["Config"]["Env"] = ["PATRONI_NAME=pg1", "PATRONI_SCOPE=demo"];
        }),
      facts: KILLED,
      want: /^keep other-host/,
    },
    {
      title: "not a Patroni member",
      inspect: () => inspectOf("exited"),
      facts: facts(["die"]),
      want: /^keep not-patroni/,
    },
    {
      title: "an inspect without State",
      inspect: () =>
        inspectOf("killed", (c) => {
          delete c["State"];
        }),
      facts: KILLED,
      want: /^keep unknown-state/,
    },
  ];
  for (const r of rows) {
    it(r.title, () => {
      const died = r.died === undefined ? DIE : r.died;
      assert.match(notice(deathNotice(r.inspect(), deepFreeze(r.facts), died, OPTS)), r.want);
    });
  }
  it("carries the member and Docker's FinishedAt (one death, however many looks)", () => {
    const n = deathNotice(inspectOf("killed"), KILLED, DIE, OPTS);
    assert.equal(n.action, "check");
    if (n.action !== "check") return;
    assert.deepEqual(n.member, { namespace: "/service/", scope: "demo", name: "pg1", dockerHostname: HOST });
    assert.equal(n.death.finishedAt, inspectOf("killed")["State"]["FinishedAt"]);
    assert.equal(n.death.exitCode, 137);
  });
});

const LEASE = "7587884569921134723";
const key = (value: string, modRevision = "41", lease = LEASE): KeyRead => ({ value, modRevision, lease });
const record = (conn: string, api: string | null, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    conn_url: `postgres://${conn}/postgres`,
    ...(api === null ? {} : { api_url: `http://${api}/patroni` }),
    state: "running",
    role: "master",
    version: "3.0.2",
    ...extra,
  });

const READ: ClusterRead = deepFreeze({
  revision: "57",
  leader: key("pg1", "41"),
  member: key(record("172.18.0.5:5432", "172.18.0.5:8008"), "55"),
  fence: null,
  config: key(JSON.stringify({ ttl: 20, loop_wait: 5, synchronous_mode: true }), "3", "0"),
});
const TIE: Tie = deepFreeze({
  published: ["172.18.0.5:5432", "172.18.0.5:8008"],
  twins: [],
  readAtDeath: true,
});

function checkNotice(): Extract<DeathNotice, { action: "check" }> {
  const n = deathNotice(inspectOf("killed"), KILLED, DIE, OPTS);
  assert.equal(n.action, "check");
  return deepFreeze(n as Extract<DeathNotice, { action: "check" }>);
}

describe("releaseDecision: does the dead container's member hold the lock, for certain?", () => {
  const rows: { title: string; read?: Partial<ClusterRead>; tie?: Partial<Tie>; want: RegExp }[] = [
    { title: "it holds the lock and the record is its own: release", want: /^release killed/ },
    {
      title: "no leader key: nothing to release",
      read: { leader: null },
      want: /^keep not-leader \(follower\)/,
    },
    {
      title: "another member holds the lock (a handover finished, a leader elected just before)",
      read: { leader: key("pg2", "60", "999") },
      want: /^keep not-leader \(follower\): the lock is "pg2"'s/,
    },
    {
      title: "the agent's stop fence is in place: its rules decide",
      read: { fence: key(JSON.stringify({ state: "stopping", member: "pg1", since: "x" }), "50", "0") },
      want: /^keep fenced \(leader\)/,
    },
    {
      title: "the cluster is paused (maintenance mode)",
      read: { config: key(JSON.stringify({ ttl: 20, pause: true }), "3", "0") },
      want: /^keep cluster-paused/,
    },
    { title: "no member record", read: { member: null }, want: /^keep not-tied/ },
    {
      title: "a member record that is not JSON",
      read: { member: key("{", "55") },
      want: /^keep not-tied.*unusable/,
    },
    {
      title: "the lock's lease is not the member record's: another Patroni session",
      read: { member: key(record("172.18.0.5:5432", "172.18.0.5:8008"), "55", "123") },
      want: /^keep not-tied.*lease/,
    },
    {
      title: "conn_url names an address not published for this container",
      read: { member: key(record("172.18.0.9:5432", "172.18.0.5:8008"), "55") },
      want: /^keep not-tied.*conn_url names 172\.18\.0\.9:5432/,
    },
    {
      title: "api_url names an address not published for this container",
      read: { member: key(record("172.18.0.5:5432", "172.18.0.9:8008"), "55") },
      want: /^keep not-tied.*api_url names 172\.18\.0\.9:8008/,
    },
    {
      title: "no api_url",
      read: { member: key(record("172.18.0.5:5432", null), "55") },
      want: /^keep not-tied.*no usable api_url/,
    },
    {
      title: "this registrator published nothing for the container",
      tie: { published: [] },
      want: /^keep not-tied.*published no address/,
    },
    {
      title: "another live container claims the same member",
      tie: { twins: ["pgha-pg1-new"] },
      want: /^keep not-tied.*another live container.*pgha-pg1-new/,
    },
    {
      title: "-ip mode: the host's IP and published ports",
      read: { member: key(record("192.0.2.10:40001", "192.0.2.10:40002"), "55") },
      tie: { published: ["192.0.2.10:40001", "192.0.2.10:40002"] },
      want: /^release/,
    },
    {
      title: "IPv6 addresses, bracketed on both sides",
      read: { member: key(record("[fd00::5]:5432", "[fd00::5]:8008"), "55") },
      tie: { published: ["[fd00::5]:5432", "[fd00::5]:8008"] },
      want: /^release/,
    },
  ];
  for (const r of rows) {
    it(r.title, () => {
      const d = releaseDecision(
        checkNotice(),
        deepFreeze({ ...TIE, ...r.tie }),
        deepFreeze({ ...READ, ...r.read }),
      );
      const text =
        d.action === "release"
          ? `release ${d.code}: ${d.reason}`
          : `keep ${d.code} (${d.leader ? "leader" : "follower"}): ${d.reason}`;
      assert.match(text, r.want);
    });
  }

  it("a release names the lock and the member's record and compares value, revision and lease as read", () => {
    const d = releaseDecision(checkNotice(), TIE, READ);
    assert.equal(d.action, "release");
    if (d.action !== "release") return;
    assert.equal(d.key, "/service/demo/leader");
    assert.deepEqual(d.compare, { value: "pg1", modRevision: "41", lease: LEASE });
    assert.equal(d.record.key, "/service/demo/members/pg1");
    assert.deepEqual(d.record.compare, READ.member, "the member's record as read, on the lock's lease");
    assert.match(d.reason, /SIGKILLed.*revision 41, lease 7587884569921134723/);
  });

  it("restarted by its policy: released only on the keys read when the die arrived", () => {
    const n = deathNotice(
      inspectOf("single", (c) => {
        c["Config"]["Env"] = ["NAME=pg1", "PATRONI_SCOPE=demo", `DOCKER_HOSTNAME=${HOST}`];
        c["State"]["StartedAt"] = "2026-12-03T07:15:17.6Z";
        c["State"]["FinishedAt"] = "2026-12-03T07:15:17.397806307Z";
      }),
      facts(["die"]),
      { ...DIE, exitCode: 1 },
      OPTS,
    );
    assert.equal(n.action, "check");
    const check = n as Extract<DeathNotice, { action: "check" }>;
    assert.equal(releaseDecision(check, TIE, READ).action, "release");
    const late = releaseDecision(check, { ...TIE, readAtDeath: false }, READ);
    assert.equal(late.action === "keep" && late.code, "restarted");
    // Not restarted: a read after the inspect is as good (nothing new can hold the lock).
    assert.equal(releaseDecision(checkNotice(), { ...TIE, readAtDeath: false }, READ).action, "release");
  });

  it("the namespace and scope of the container's environment name the key", () => {
    const n = deathNotice(
      inspectOf("killed", (c) => {
        c["Config"]["Env"] = [
          "NAME=pg1",
          "PATRONI_SCOPE=other",
          "PATRONI_NAMESPACE=/db",
          `DOCKER_HOSTNAME=${HOST}`,
        ];
      }),
      KILLED,
      DIE,
      OPTS,
    );
    assert.equal(n.action, "check");
    const d = releaseDecision(n as Extract<DeathNotice, { action: "check" }>, TIE, READ);
    assert.equal(d.action === "release" && d.key, "/db/other/leader");
  });
});

describe("apiAddress", () => {
  const rows: [unknown, string | null][] = [
    ["http://172.18.0.5:8008/patroni", "172.18.0.5:8008"],
    ["https://db.example:8443/patroni", "db.example:8443"],
    ["http://10.0.0.1/patroni", "10.0.0.1:80"],
    ["http://[fd00::1]:8008/patroni", "[fd00::1]:8008"],
    ["postgres://10.0.0.1:5432/x", null],
    ["not a url", null],
    [null, null],
    [8008, null],
  ];
  for (const [raw, want] of rows) {
    it(`${JSON.stringify(raw)} → ${want}`, () => assert.equal(apiAddress(raw), want));
  }
});
