import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { CheckMode } from "../../router/options.js";
import {
  type DcsStatus,
  type Health,
  type MemberHealth,
  type PrimaryAction,
  type PrimaryContext,
  type Probe,
  selectPrimary,
} from "../../router/selection.js";
import type { Target } from "../../router/target.js";
import { type ClusterView, decodeCluster, normaliseRole, type RawEntry } from "../../shared/patroni.js";
import { deepFreeze } from "../harness/deep-freeze.js";

const NOW = Date.parse("2026-11-28T12:00:00Z");

function member(name: string, port: number, role: string, extra: Record<string, unknown> = {}): RawEntry {
  return {
    key: `members/${name}`,
    value: JSON.stringify({
      conn_url: `postgres://127.0.0.1:${port}/postgres`,
      api_url: `http://127.0.0.1:${port + 1000}/patroni`,
      state: "running",
      role,
      xlog_location: 1000,
      timeline: 1,
      ...extra,
    }),
  };
}

const PG1 = member("pg1", 5001, "master");
const PG2 = member("pg2", 5002, "replica");
const PG3 = member("pg3", 5003, "replica");

function view(...entries: RawEntry[]): ClusterView {
  return decodeCluster("demo", entries, 42);
}

const api = (port: number) => `http://127.0.0.1:${port + 1000}`;
const probe = (port: number, status: number | null, failures = status === null ? 1 : 0, age = 0): Probe => ({
  status,
  failures,
  at: NOW - age,
  apiUrl: api(port),
});
const health = (entries: Record<string, MemberHealth>): Health => new Map(Object.entries(entries));
const t = (name: string, port: number): Target => ({
  name,
  host: "127.0.0.1",
  port,
  apiUrl: api(port),
});

const LIVE: DcsStatus = { connected: true, disconnectedSince: null };
const DOWN_SHORT: DcsStatus = { connected: false, disconnectedSince: NOW - 5_000 };
const DOWN_LONG: DcsStatus = { connected: false, disconnectedSince: NOW - 60_000 };

interface Case {
  name: string;
  view: ClusterView;
  health?: Health;
  mode?: CheckMode;
  dcs?: DcsStatus;
  previous?: Target | null;
  failoverSeenAt?: number | null;
  want: PrimaryAction;
  target?: string | null;
  reason?: RegExp;
}

const PG1_OK = { pg1: { primary: probe(5001, 200) } };

const FAILSAFE_ON = { key: "config", value: JSON.stringify({ ttl: 10, failsafe_mode: true }) };
const FAILSAFE_OFF = { key: "config", value: JSON.stringify({ ttl: 10, failsafe_mode: false }) };
const inFailsafe = (port: number): Probe => ({
  ...probe(port, 200),
  role: "primary",
  state: "running",
  failsafe: true,
});

const cases: Case[] = [
  {
    name: "failsafe mode: no leader key and no member record, the routed primary says failsafe is active: keep routing it",
    view: view(FAILSAFE_ON, PG2, PG3),
    health: health({ pg1: { primary: inFailsafe(5001) } }),
    previous: t("pg1", 5001),
    want: "route",
    target: "pg1",
    reason: /failsafe mode/,
  },
  {
    name: "failsafe mode: the leader key gone but its record still there, failsafe active: route it",
    view: view(FAILSAFE_ON, PG1, PG2),
    health: health({ pg1: { primary: inFailsafe(5001) } }),
    want: "route",
    target: "pg1",
  },
  {
    name: "failsafe mode healing: no leader key yet, the routed primary answers 503 once while still primary: pause",
    view: view(FAILSAFE_ON, PG1, PG2),
    health: health({
      pg1: { primary: { ...probe(5001, 503), refusals: 1, role: "primary", state: "running" } },
    }),
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
    reason: /no leader key; pg1 answers \/primary with 503 while still primary/,
  },
  {
    name: "failsafe mode healing: 503 twice with no leader key: none",
    view: view(FAILSAFE_ON, PG1, PG2),
    health: health({
      pg1: { primary: { ...probe(5001, 503), refusals: 2, role: "primary", state: "running" } },
    }),
    previous: t("pg1", 5001),
    want: "none",
  },
  {
    name: "failsafe mode healing: 503 a third time with no leader key, the body says failsafe is still active: pause",
    view: view(FAILSAFE_ON, PG1, PG2),
    health: health({
      pg1: {
        primary: { ...probe(5001, 503), refusals: 3, role: "primary", state: "running", failsafe: true },
      },
    }),
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
    reason: /pg1 answers \/primary with 503 while still primary in Patroni's failsafe mode; asking again/,
  },
  {
    name: "failsafe mode healing: 503 with failsafe active but a switchover announced: none",
    view: view(FAILSAFE_ON, PG1, PG2, {
      key: "failover",
      value: JSON.stringify({ leader: "pg1", member: "pg2" }),
    }),
    health: health({
      pg1: {
        primary: { ...probe(5001, 503), refusals: 1, role: "primary", state: "running", failsafe: true },
      },
    }),
    previous: t("pg1", 5001),
    want: "none",
  },
  {
    name: "failsafe mode healing: 503 with failsafe active from a primary that is stopping: none",
    view: view(FAILSAFE_ON, PG1, PG2),
    health: health({
      pg1: {
        primary: { ...probe(5001, 503), refusals: 1, role: "primary", state: "stopping", failsafe: true },
      },
    }),
    previous: t("pg1", 5001),
    want: "none",
  },
  {
    name: "failsafe mode healing: the key written again, a 503 whose body still says failsafe mode: pause",
    view: view(FAILSAFE_ON, { key: "leader", value: "pg1" }, PG1, PG2),
    health: health({
      pg1: {
        primary: { ...probe(5001, 503), refusals: 2, role: "primary", state: "running", failsafe: true },
      },
    }),
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
    reason: /pg1 holds its leader key again after Patroni's failsafe mode but answers \/primary with 503/,
  },
  {
    name: "leader key, routed, 503 from a running primary with failsafe not active: none (a demotion)",
    view: view(FAILSAFE_ON, { key: "leader", value: "pg1" }, PG1, PG2),
    health: health({
      pg1: {
        primary: { ...probe(5001, 503), refusals: 1, role: "primary", state: "running", failsafe: false },
      },
    }),
    previous: t("pg1", 5001),
    want: "none",
    reason: /leader pg1 answers \/primary with 503/,
  },
  {
    name: "leader key, not routed until now, 503 with failsafe active: none",
    view: view(FAILSAFE_ON, { key: "leader", value: "pg1" }, PG1, PG2),
    health: health({
      pg1: {
        primary: { ...probe(5001, 503), refusals: 1, role: "primary", state: "running", failsafe: true },
      },
    }),
    previous: t("pg2", 5002),
    want: "none",
  },
  {
    name: "failsafe mode off in the cluster's config: no leader key is none",
    view: view(FAILSAFE_OFF, PG2, PG3),
    health: health({ pg1: { primary: inFailsafe(5001) } }),
    previous: t("pg1", 5001),
    want: "none",
    reason: /no leader key/,
  },
  {
    name: "failsafe mode: the routed primary's key expired and its last answer predates failsafe: hold, ask again",
    view: view(FAILSAFE_ON, PG2, PG3),
    health: health({ pg1: { primary: { ...inFailsafe(5001), failsafe: false } } }),
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
    reason: /asking pg1 whether Patroni's failsafe mode keeps it primary/,
  },
  {
    name: "failsafe mode: the old primary no longer answers: none",
    view: view(FAILSAFE_ON, PG2, PG3),
    health: health({ pg1: { primary: probe(5001, null, 2) } }),
    previous: t("pg1", 5001),
    want: "none",
  },
  {
    name: "failsafe mode: the old primary's REST silent 3 s after saying failsafe (ttl 10 s): pause, sessions kept",
    view: view(FAILSAFE_ON, PG2, PG3),
    health: health({
      pg1: { primary: { ...probe(5001, null, 3), failsafe: true, silentSince: NOW - 3_000 } },
    }),
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
    reason: /failsafe mode and its REST API has not answered for 3\.0 s/,
  },
  {
    name: "failsafe mode: the old primary's REST silent 5 s (half the ttl): none",
    view: view(FAILSAFE_ON, PG2, PG3),
    health: health({
      pg1: { primary: { ...probe(5001, null, 5), failsafe: true, silentSince: NOW - 5_000 } },
    }),
    previous: t("pg1", 5001),
    want: "none",
  },
  {
    name: "failsafe mode: the old primary refuses /primary: none",
    view: view(FAILSAFE_ON, PG2, PG3),
    health: health({ pg1: { primary: probe(5001, 503) } }),
    previous: t("pg1", 5001),
    want: "none",
  },
  {
    name: "failsafe mode: the old primary's answer is stale: none",
    view: view(FAILSAFE_ON, PG2, PG3),
    health: health({ pg1: { primary: { ...inFailsafe(5001), at: NOW - 10_000 } } }),
    previous: t("pg1", 5001),
    want: "none",
  },
  {
    name: "failsafe mode: two members say they are failsafe primaries: none",
    view: view(FAILSAFE_ON, PG1, PG2),
    health: health({ pg1: { primary: inFailsafe(5001) }, pg2: { primary: inFailsafe(5002) } }),
    want: "none",
  },
  {
    name: "failsafe mode with a leader key: the key decides as always",
    view: view(FAILSAFE_ON, { key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "master")),
    health: health({ pg1: { primary: inFailsafe(5001) }, pg2: { primary: probe(5002, 200) } }),
    want: "route",
    target: "pg2",
  },
  {
    name: "leader key, role primary, running, /primary 200: route",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2),
    health: health(PG1_OK),
    want: "route",
    target: "pg1",
  },
  {
    name: "Patroni 4's role primary is the same",
    view: view({ key: "leader", value: "pg1" }, member("pg1", 5001, "primary"), PG2),
    health: health(PG1_OK),
    want: "route",
    target: "pg1",
  },
  {
    name: "no leader key: none",
    view: view(PG1, PG2),
    health: health(PG1_OK),
    want: "none",
    reason: /no leader key/,
  },
  {
    name: "leader missing from members: none",
    view: view({ key: "leader", value: "pg9" }, PG1, PG2),
    health: health(PG1_OK),
    want: "none",
    reason: /pg9 is not among the members/,
  },
  {
    name: "leader's record is not JSON: none",
    view: view({ key: "leader", value: "pg1" }, { key: "members/pg1", value: "{not json" }, PG2),
    health: health(PG1_OK),
    want: "none",
    reason: /unusable/,
  },
  {
    name: "leader's conn_url has no port: none",
    view: view(
      { key: "leader", value: "pg1" },
      {
        key: "members/pg1",
        value: '{"conn_url":"postgres://127.0.0.1/postgres","role":"master","state":"running"}',
      },
    ),
    health: health(PG1_OK),
    want: "none",
    reason: /conn_url/,
  },
  {
    name: "new leader whose record still says replica, not yet confirmed by REST: none",
    view: view({ key: "leader", value: "pg2" }, PG1, PG2),
    health: health({}),
    want: "none",
    reason: /role replica/,
  },
  {
    name: "new leader whose record still says replica but whose /primary answers 503: none",
    view: view({ key: "leader", value: "pg2" }, PG1, PG2),
    health: health({ pg2: { primary: probe(5002, 503) } }),
    want: "none",
    reason: /503/,
  },
  {
    name: "new leader whose record still says replica and whose /primary answers 200: route (REST confirms the role)",
    view: view({ key: "leader", value: "pg2" }, PG1, PG2),
    health: health({ pg2: { primary: probe(5002, 200) } }),
    want: "route",
    target: "pg2",
  },
  {
    name: "--check etcd: a leader whose record says replica is not routed",
    view: view({ key: "leader", value: "pg2" }, PG1, PG2),
    mode: "etcd",
    want: "none",
    reason: /role replica/,
  },
  {
    name: "standby leader is not a primary: none",
    view: view({ key: "leader", value: "pg1" }, member("pg1", 5001, "standby_leader")),
    health: health(PG1_OK),
    want: "none",
    reason: /standby_leader/,
  },
  {
    name: "leader is starting: none",
    view: view({ key: "leader", value: "pg1" }, member("pg1", 5001, "master", { state: "starting" })),
    health: health(PG1_OK),
    want: "none",
    reason: /starting/,
  },
  {
    name: "new leader not yet checked: none, awaiting confirmation",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2),
    health: health({}),
    want: "none",
    reason: /awaiting REST confirmation of pg1/,
  },
  {
    name: "new leader answers /primary 200 while its body says replica (lock held, promotion not done): none",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "master")),
    health: health({ pg2: { primary: { ...probe(5002, 200), role: "replica" } } }),
    want: "none",
    reason: /awaiting REST confirmation of pg2/,
  },
  {
    name: "the routed primary answers 200 while stopping (no switchover key): pause, no new clients",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2),
    health: health({ pg1: { primary: { ...probe(5001, 200), role: "primary", state: "stopping" } } }),
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
  },
  {
    name: "new leader's /primary body says master: route",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "replica")),
    health: health({ pg2: { primary: { ...probe(5002, 200), role: "primary" } } }),
    want: "route",
    target: "pg2",
  },
  // Patroni 3.0.2 mid-promotion: the record says `promoted` (decoded `promoting`) for up to a
  // loop after PostgreSQL has left recovery; /primary answers 200 from the moment the lock is
  // held, with the body's role from pg_is_in_recovery() (or, when its query fails, Patroni's own
  // role and state `unknown`). None of that is a reason to fence a routed primary.
  {
    name: "routed new primary whose record turns `promoted` while /primary confirms it: route",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "promoted")),
    health: health({ pg2: { primary: { ...probe(5002, 200), role: "primary", state: "running" } } }),
    previous: t("pg2", 5002),
    want: "route",
    target: "pg2",
  },
  {
    name: "new leader whose record says `promoted` and whose /primary body says master: route at once",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "promoted")),
    health: health({ pg2: { primary: { ...probe(5002, 200), role: "primary", state: "running" } } }),
    want: "route",
    target: "pg2",
  },
  {
    name: "new leader whose record says `promoted`, not yet checked: none, awaiting confirmation",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "promoted")),
    want: "none",
    reason: /pg2 has role promoting; awaiting REST confirmation/,
  },
  {
    name: "routed primary, record `promoted`, /primary 200 whose body says replica: pause, not fenced",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "promoted")),
    health: health({ pg2: { primary: { ...probe(5002, 200), role: "replica", state: "running" } } }),
    previous: t("pg2", 5002),
    want: "pause",
    target: "pg2",
    reason: /answers 200 with role replica/,
  },
  {
    name: "routed primary whose /primary 200 body says state unknown (Patroni's query failed): pause",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "master")),
    health: health({ pg2: { primary: { ...probe(5002, 200), role: "promoting", state: "unknown" } } }),
    previous: t("pg2", 5002),
    want: "pause",
    target: "pg2",
  },
  {
    name: "routed primary whose record says `promoted` and that misses one check: pause",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "promoted")),
    health: health({ pg2: { primary: probe(5002, null, 1) } }),
    previous: t("pg2", 5002),
    want: "pause",
    target: "pg2",
  },
  {
    name: "routed primary whose record says `promoted` and that misses two checks, etcd live: pause (the key names it)",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "promoted")),
    health: health({ pg2: { primary: probe(5002, null, 2) } }),
    previous: t("pg2", 5002),
    want: "pause",
    target: "pg2",
  },
  {
    name: "routed primary whose record says `promoted` and that misses two checks, etcd unreachable: none (fence)",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "promoted")),
    health: health({ pg2: { primary: probe(5002, null, 2) } }),
    dcs: DOWN_SHORT,
    previous: t("pg2", 5002),
    want: "none",
  },
  {
    name: "routed primary whose record says `promoted` and /primary answers 503: none (fence)",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "promoted")),
    health: health({ pg2: { primary: probe(5002, 503) } }),
    previous: t("pg2", 5002),
    want: "none",
    reason: /503/,
  },
  {
    name: "routed primary whose record says `demoted` is definitive: none (fence), whatever REST says",
    view: view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "demoted")),
    health: health({ pg2: { primary: { ...probe(5002, 200), role: "primary", state: "running" } } }),
    previous: t("pg2", 5002),
    want: "none",
    reason: /role unknown/,
  },
  {
    name: "the leader key moves off the routed primary to an unconfirmed member: none (fence the old one)",
    view: view({ key: "leader", value: "pg2" }, PG1, PG2),
    health: health({ pg1: { primary: probe(5001, 200) } }),
    previous: t("pg1", 5001),
    want: "none",
  },
  {
    name: "--check rest: a 200 whose body says replica is not a primary",
    view: view(PG1, PG2),
    health: health({ pg2: { primary: { ...probe(5002, 200), role: "replica" } } }),
    mode: "rest",
    want: "none",
  },
  {
    name: "leader answers /primary 503: none",
    view: view({ key: "leader", value: "pg1" }, PG1),
    health: health({ pg1: { primary: probe(5001, 503) } }),
    previous: t("pg1", 5001),
    want: "none",
    reason: /503/,
  },
  {
    name: "REST result for another api_url does not count",
    view: view({ key: "leader", value: "pg1" }, PG1),
    health: health({ pg1: { primary: { ...probe(5001, 200), apiUrl: "http://127.0.0.1:9999" } } }),
    want: "none",
    reason: /awaiting/,
  },
  {
    name: "leader without api_url cannot be confirmed: none",
    view: view(
      { key: "leader", value: "pg1" },
      { key: "members/pg1", value: '{"conn_url":"postgres://h:5/d","role":"master","state":"running"}' },
    ),
    want: "none",
    reason: /no api_url/,
  },
  {
    name: "routed primary misses one REST check: pause, sessions kept",
    view: view({ key: "leader", value: "pg1" }, PG1),
    health: health({ pg1: { primary: probe(5001, null, 1) } }),
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
  },
  {
    name: "routed primary misses two REST checks while a live etcd names it leader: pause, sessions kept",
    view: view({ key: "leader", value: "pg1" }, PG1),
    health: health({ pg1: { primary: { ...probe(5001, null, 2), silentSince: NOW - 60_000 } } }),
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
    reason: /has not answered for 60\.0 s; .*sessions stay while etcd names it leader/,
  },
  {
    name: "REST silent 6 s and etcd unreachable (ttl 20 s): pause, sessions kept up to half the ttl",
    view: view({ key: "leader", value: "pg1" }, PG1, { key: "config", value: '{"ttl":20}' }),
    health: health({ pg1: { primary: { ...probe(5001, null, 5), silentSince: NOW - 6_000 } } }),
    dcs: DOWN_SHORT,
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
    reason: /etcd is unreachable; .*half of Patroni's ttl/,
  },
  {
    name: "REST silent 10 s and etcd unreachable (ttl 20 s): none (fence)",
    view: view({ key: "leader", value: "pg1" }, PG1, { key: "config", value: '{"ttl":20}' }),
    health: health({ pg1: { primary: { ...probe(5001, null, 5), silentSince: NOW - 10_000 } } }),
    dcs: DOWN_SHORT,
    previous: t("pg1", 5001),
    want: "none",
    reason: /does not answer/,
  },
  {
    name: "REST silent, etcd unreachable, no answer ever seen: none (fence)",
    view: view({ key: "leader", value: "pg1" }, PG1),
    health: health({ pg1: { primary: probe(5001, null, 2) } }),
    dcs: DOWN_SHORT,
    previous: t("pg1", 5001),
    want: "none",
    reason: /does not answer/,
  },
  {
    name: "a leader not routed before whose REST does not answer: none",
    view: view({ key: "leader", value: "pg1" }, PG1),
    health: health({ pg1: { primary: { ...probe(5001, null, 2), silentSince: NOW - 1_000 } } }),
    previous: t("pg2", 5002),
    want: "none",
    reason: /does not answer/,
  },
  {
    name: "a stale REST result counts as no answer",
    view: view({ key: "leader", value: "pg1" }, PG1),
    health: health({ pg1: { primary: probe(5001, 200, 0, 10_000) } }),
    want: "none",
  },
  {
    name: "switchover pending against the leader: pause",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, {
      key: "failover",
      value: '{"leader":"pg1","member":"pg2"}',
    }),
    health: health(PG1_OK),
    previous: t("pg1", 5001),
    failoverSeenAt: NOW - 100,
    want: "pause",
    target: "pg1",
    reason: /switchover from pg1 to pg2 pending/,
  },
  {
    name: "the leader's agent wrote its handover fence: pause new clients on it",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, {
      key: "pgha-fence",
      value: '{"state":"handover","member":"pg1","candidate":"pg2","since":"2026-11-28T11:59:59Z"}',
    }),
    health: health(PG1_OK),
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
    reason: /pg1 is stopping and hands over to pg2/,
  },
  {
    name: "a handover fence left by a former leader says nothing about this one: route",
    view: view(
      { key: "leader", value: "pg2" },
      member("pg2", 5002, "master"),
      member("pg1", 5001, "replica"),
      {
        key: "pgha-fence",
        value: '{"state":"handover","member":"pg1","candidate":"pg2","since":"2026-11-28T11:59:59Z"}',
      },
    ),
    health: health({ pg2: { primary: probe(5002, 200) } }),
    want: "route",
    target: "pg2",
  },
  {
    name: "a stopping fence (no handover) does not pause: the leader still serves until it stops",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, {
      key: "pgha-fence",
      value: '{"state":"stopping","member":"pg1","since":"2026-11-28T11:59:59Z"}',
    }),
    health: health(PG1_OK),
    previous: t("pg1", 5001),
    want: "route",
    target: "pg1",
  },

  {
    name: "the routed leader answers 503 while its body still says running primary: none at once (fence, then replay)",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2),
    health: health({
      pg1: { primary: { ...probe(5001, 503), refusals: 1, role: "primary", state: "running" } },
    }),
    previous: t("pg1", 5001),
    want: "none",
    reason: /answers \/primary with 503/,
  },
  {
    name: "switchover scheduled in the future: route",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, {
      key: "failover",
      value: '{"leader":"pg1","member":"pg2","scheduled_at":"2026-11-28T13:00:00+00:00"}',
    }),
    health: health(PG1_OK),
    failoverSeenAt: NOW,
    want: "route",
    target: "pg1",
  },
  {
    name: "scheduled switchover now due: pause",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, {
      key: "failover",
      value: '{"leader":"pg1","member":"pg2","scheduled_at":"2026-11-28T11:59:00+00:00"}',
    }),
    health: health(PG1_OK),
    failoverSeenAt: NOW - 30_000,
    want: "pause",
  },
  {
    name: "failover key naming another leader is not about this primary: route",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, {
      key: "failover",
      value: '{"leader":"pg3","member":"pg2"}',
    }),
    health: health(PG1_OK),
    failoverSeenAt: NOW,
    want: "route",
  },
  {
    name: "failover to the current leader changes nothing: route",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, { key: "failover", value: '{"member":"pg1"}' }),
    health: health(PG1_OK),
    failoverSeenAt: NOW,
    want: "route",
  },
  {
    name: "a switchover request left pending for minutes is ignored: route",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, {
      key: "failover",
      value: '{"leader":"pg1","member":"pg2"}',
    }),
    health: health(PG1_OK),
    failoverSeenAt: NOW - 10 * 60_000,
    want: "route",
  },
  {
    name: "etcd unreachable: keep routing to the last leader while /primary answers 200",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2),
    health: health(PG1_OK),
    dcs: DOWN_LONG,
    previous: t("pg1", 5001),
    want: "route",
    target: "pg1",
    reason: /etcd unreachable/,
  },
  {
    name: "etcd unreachable and the last leader demoted itself (/primary 503): none",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2),
    health: health({ pg1: { primary: probe(5001, 503) } }),
    dcs: DOWN_SHORT,
    previous: t("pg1", 5001),
    want: "none",
  },
  {
    name: "--check etcd: leader key alone routes",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2),
    mode: "etcd",
    want: "route",
    target: "pg1",
  },
  {
    name: "--check etcd: etcd unreachable briefly keeps routing",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, { key: "config", value: '{"ttl":10}' }),
    mode: "etcd",
    dcs: DOWN_SHORT,
    want: "route",
  },
  {
    name: "--check etcd: etcd unreachable past Patroni's ttl: none",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2, { key: "config", value: '{"ttl":10}' }),
    mode: "etcd",
    dcs: { connected: false, disconnectedSince: NOW - 11_000 },
    want: "none",
    reason: /ttl/,
  },
  {
    name: "--check rest: the one member answering /primary, whatever etcd says",
    view: view(PG1, PG2, PG3),
    health: health({ pg1: { primary: probe(5001, 503) }, pg2: { primary: probe(5002, 200) } }),
    mode: "rest",
    want: "route",
    target: "pg2",
  },
  {
    name: "--check rest: two members answering /primary: never two primaries",
    view: view({ key: "leader", value: "pg1" }, PG1, PG2),
    health: health({ pg1: { primary: probe(5001, 200) }, pg2: { primary: probe(5002, 200) } }),
    mode: "rest",
    previous: t("pg1", 5001),
    want: "none",
    reason: /several members/,
  },
  {
    name: "--check rest: no answer from the routed one yet: pause",
    view: view(PG1, PG2),
    health: health({ pg1: { primary: probe(5001, null, 1) }, pg2: { primary: probe(5002, 503) } }),
    mode: "rest",
    previous: t("pg1", 5001),
    want: "pause",
    target: "pg1",
  },
  {
    name: "--check rest: nobody answers: none",
    view: view(PG1, PG2),
    health: health({ pg1: { primary: probe(5001, 503) }, pg2: { primary: probe(5002, 503) } }),
    mode: "rest",
    want: "none",
  },
];

describe("selectPrimary: the primary port's target from the cluster view and REST health", () => {
  for (const c of cases) {
    it(c.name, () => {
      const ctx: PrimaryContext = deepFreeze({
        mode: c.mode ?? "both",
        dcs: c.dcs ?? LIVE,
        previous: c.previous ?? null,
        failoverSeenAt: c.failoverSeenAt ?? null,
      });
      const v = deepFreeze(c.view);
      const h = deepFreeze(c.health ?? health({}));
      const before = JSON.stringify({ v, h: [...h], ctx });
      const d = selectPrimary(v, h, ctx, NOW);
      assert.equal(JSON.stringify({ v, h: [...h], ctx }), before, "inputs unchanged");
      assert.equal(d.action, c.want, `action (reason: ${d.reason})`);
      if (c.want === "none") assert.equal(d.target, null);
      if (c.target !== undefined) assert.equal(d.target?.name ?? null, c.target);
      if (c.reason) assert.match(d.reason, c.reason);
      assert.ok(Object.isFrozen(d), "decision is frozen");
      // Pure: the same inputs give the same decision.
      assert.deepEqual(selectPrimary(v, h, ctx, NOW), d);
    });
  }

  it("a planned switchover as Patroni 3.0.2 writes it: routed once confirmed, never un-routed meanwhile", () => {
    const leader = { key: "leader", value: "pg2" };
    // The role as Patroni 3.0.2 writes it in the body, normalised as the health check reads it.
    const body = (role: string, state = "running") => ({
      ...probe(5002, 200),
      role: normaliseRole(role),
      state,
    });
    // [record role of pg2, its /primary answer (undefined: not checked), the action wanted]
    const steps: [string, Probe | undefined, PrimaryAction][] = [
      ["replica", undefined, "none"], // the leader key PUT, before any REST check
      ["replica", body("replica"), "none"], // lock held, PostgreSQL still in recovery
      ["replica", body("master"), "route"], // out of recovery: REST agrees
      ["promoted", body("master"), "route"], // the record catches up, in two writes
      ["promoted", body("promoted", "unknown"), "pause"], // a REST query that failed meanwhile
      ["promoted", body("master"), "route"],
      ["master", body("master"), "route"],
    ];
    let previous: Target | null = null;
    let routedOnce = false;
    for (const [i, [role, answer, want]] of steps.entries()) {
      const v = view(leader, member("pg1", 5001, "replica"), member("pg2", 5002, role));
      const h = health(answer === undefined ? {} : { pg2: { primary: answer } });
      const d = selectPrimary(v, h, { mode: "both", dcs: LIVE, previous, failoverSeenAt: null }, NOW);
      assert.equal(d.action, want, `step ${i} (${role}): ${d.reason}`);
      if (routedOnce) assert.equal(d.target?.name, "pg2", `step ${i}: the routed primary is kept`);
      if (d.action === "route") routedOnce = true;
      previous = d.target ?? previous;
      if (d.action === "none") previous = null;
    }
  });

  it("routes to the member named by the leader key even when another also claims role primary", () => {
    const v = view({ key: "leader", value: "pg2" }, PG1, member("pg2", 5002, "master"));
    const h = health({ pg1: { primary: probe(5001, 200) }, pg2: { primary: probe(5002, 200) } });
    const d = selectPrimary(v, h, { mode: "both", dcs: LIVE, previous: null, failoverSeenAt: null }, NOW);
    assert.equal(d.action, "route");
    assert.equal(d.target?.name, "pg2");
    assert.equal(d.target?.port, 5002);
  });
});
