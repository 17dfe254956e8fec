/**
 * What a route does with its decisions (ClusterRoute's effects), driven through its RouteDeps:
 * a fed etcd view, health results set by the test, the test's clock, and real spare
 * connections to a real TCP listener on loopback. Real backends and real metrics throughout.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import net, { type AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { Registry } from "prom-client";
import type { Backend } from "../../router/backend.js";
import type { CheckPlan } from "../../router/health.js";
import { RouterMetrics } from "../../router/metrics.js";
import type { CheckMode, RouteSpec } from "../../router/options.js";
import { promMetrics } from "../../router/prom-metrics.js";
import { ClusterRoute, type HealthChecks, type LeaderSpares, type RouteOptions } from "../../router/route.js";
import type { Health, MemberHealth } from "../../router/selection.js";
import { Spares } from "../../router/spares.js";
import type { Target } from "../../router/target.js";
import { createLogger } from "../../shared/logger.js";
import type { KV, PrefixSnapshot, PrefixWatchEvents } from "../../shared/watch.js";
import { waitFor } from "../harness/proc.js";

const SCOPE = "demo";
const PREFIX = `/service/${SCOPE}/`;
const T0 = Date.parse("2026-12-01T12:00:00Z");
const silent = createLogger({ name: "test", level: "silent" });

/** The etcd side, fed by the test: each `put`/`del` emits a new snapshot as a PrefixWatch would. */
class FedSnapshots extends EventEmitter<PrefixWatchEvents> {
  private kvs = new Map<string, KV>();
  private revision = 1;
  async start(): Promise<void> {
    this.emit("state", "live");
    this.emit("snapshot", this.snap(), "initial");
  }
  async close(): Promise<void> {}
  put(key: string, value: unknown): void {
    const k = PREFIX + key;
    const modRevision = ++this.revision;
    const v = typeof value === "string" ? value : JSON.stringify(value);
    this.kvs = new Map(this.kvs).set(k, {
      key: k,
      value: v,
      modRevision,
      createRevision: modRevision,
      lease: "0",
    });
    this.emit("change", this.snap(), [{ type: "put", key: k, value: v, modRevision }]);
  }
  del(key: string): void {
    const k = PREFIX + key;
    this.kvs = new Map(this.kvs);
    this.kvs.delete(k);
    const modRevision = ++this.revision;
    this.emit("change", this.snap(), [{ type: "delete", key: k, value: null, modRevision }]);
  }
  private snap(): PrefixSnapshot {
    return { revision: this.revision, kvs: this.kvs };
  }
}

/** REST results set by the test; `plan` is what the route last asked to check. */
class SetHealth implements HealthChecks {
  health: Health = new Map();
  plan: readonly CheckPlan[] = [];
  constructor(private readonly onResult: () => void) {}
  start(): void {}
  setPlan(plan: readonly CheckPlan[]): void {
    this.plan = plan;
  }
  setFast(): void {}
  checkNow(): void {}
  async close(): Promise<void> {}
  set(entries: Record<string, MemberHealth>): void {
    this.health = new Map(Object.entries(entries));
    this.onResult();
  }
}

/** A session as a backend sees it: records whether it was fenced. */
class Session {
  fenced = false;
  fence(): void {
    this.fenced = true;
  }
}

const apiUrl = (port: number) => `http://127.0.0.1:${port + 1000}`;

function member(port: number, role: string): Record<string, unknown> {
  return {
    conn_url: `postgres://127.0.0.1:${port}/postgres`,
    api_url: `${apiUrl(port)}/patroni`,
    state: "running",
    role,
    xlog_location: 1000,
    timeline: 1,
  };
}

interface Harness {
  route: ClusterRoute;
  etcd: FedSnapshots;
  rest: SetHealth;
  registry: Registry;
  clock: { now: number };
  opened: LeaderSpares[];
}

async function harness(mode: CheckMode, sparePort: () => number, closeOnDemote = true): Promise<Harness> {
  const etcd = new FedSnapshots();
  const clock = { now: T0 };
  const registry = new Registry();
  const metrics = new RouterMetrics(promMetrics(registry));
  const opened: LeaderSpares[] = [];
  let rest: SetHealth | null = null;
  const spec: RouteSpec = {
    scope: SCOPE,
    listen: { host: "127.0.0.1", port: 0 },
    replicaListen: null,
    source: "flag",
  };
  const opts: RouteOptions = {
    namespace: "/service/",
    mode,
    closeOnDemote,
    maxLag: 1 << 20,
    replicaFallback: "hold",
    restTimeoutMs: 1000,
    restIntervalMs: 1000,
  };
  const route = new ClusterRoute(
    spec,
    {
      snapshots: etcd,
      checks: (onResult) => {
        rest = new SetHealth(onResult);
        return rest;
      },
      now: () => clock.now,
      // Spares to the test's listener, whatever address the member has.
      openSpares: (target: Target, count: number) => {
        const s = new Spares({ ...target, port: sparePort() }, count, metrics.spares(SCOPE));
        const pool: LeaderSpares = {
          target,
          take: () => s.take(),
          expire: (ms) => s.expire(ms),
        };
        opened.push(pool);
        return pool;
      },
    },
    opts,
    metrics,
    silent,
  );
  route.start();
  await etcd.start();
  assert.ok(rest !== null);
  return { route, etcd, rest, registry, clock, opened };
}

/** The number of router_switch_seconds observations and their sum, from /metrics' text. */
async function switches(registry: Registry): Promise<{ count: number; sum: number }> {
  const text = await registry.metrics();
  const value = (suffix: string) => {
    const m = new RegExp(`^router_switch_seconds${suffix}\\{route="${SCOPE}"\\} (\\S+)$`, "m").exec(text);
    return m ? Number(m[1]) : 0;
  };
  return { count: value("_count"), sum: value("_sum") };
}

const confirmed = (port: number, at: number): MemberHealth => ({
  primary: { status: 200, failures: 0, at, apiUrl: apiUrl(port), role: "primary", state: "running" },
});

/** pg1 leads and its REST API confirms it; pg2 is a replica. */
function twoMembersPg1Confirmed(h: Harness): void {
  h.etcd.put("members/pg1", member(5001, "master"));
  h.etcd.put("members/pg2", member(5002, "replica"));
  h.etcd.put("leader", "pg1");
  h.rest.set({ pg1: confirmed(5001, h.clock.now) });
}

describe("router: a route's effects", () => {
  let server: net.Server;
  let port = 0;
  const accepted: net.Socket[] = [];

  before(async () => {
    server = net.createServer((s) => {
      accepted.push(s);
      s.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    for (const s of accepted) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it("a decision to route nowhere fences the old backend and its sessions", async () => {
    const h = await harness("etcd", () => port);
    try {
      h.etcd.put("members/pg1", member(5001, "master"));
      h.etcd.put("leader", "pg1");
      const b1 = h.route.pickPrimary();
      assert.ok(b1 !== null, "routed to pg1");
      assert.equal(b1.target.name, "pg1");
      const session = new Session();
      b1.attach(session);

      h.etcd.del("leader");
      assert.equal(h.route.pickPrimary(), null, "new clients are held");
      assert.equal(h.route.status().primary.action, "none");
      assert.ok(b1.fenced, "the old backend is fenced");
      assert.ok(session.fenced, "its session is fenced");
      const late = new Session();
      b1.attach(late);
      assert.ok(late.fenced, "a session that comes later to the fenced backend is fenced at once");
    } finally {
      await h.route.stop();
    }
  });

  it("with --close-on-demote false, routing nowhere leaves the old backend's sessions alone", async () => {
    const h = await harness("etcd", () => port, false);
    try {
      h.etcd.put("members/pg1", member(5001, "master"));
      h.etcd.put("leader", "pg1");
      const b1 = h.route.pickPrimary();
      assert.ok(b1 !== null);
      const session = new Session();
      b1.attach(session);
      h.etcd.del("leader");
      assert.equal(h.route.pickPrimary(), null);
      assert.ok(!b1.fenced && !session.fenced);
    } finally {
      await h.route.stop();
    }
  });

  it("spares opened to a leader awaiting REST confirmation move to its new backend", async () => {
    const before = accepted.length;
    const h = await harness("both", () => port);
    try {
      twoMembersPg1Confirmed(h);
      const b1 = h.route.pickPrimary() as Backend;
      assert.equal(b1?.target.name, "pg1");
      assert.equal(h.opened.length, 1, "spares to pg1 while its confirmation was awaited");
      assert.equal(b1.spares, h.opened[0], "they moved to pg1's backend");
      await waitFor("pg1's spares reach the server", () => accepted.length - before >= 4, {
        timeoutMs: 5_000,
      });
      const mid = accepted.length;

      // pg1 goes; pg2 takes the lock and its /primary has not answered yet.
      h.clock.now += 1_000;
      h.etcd.del("leader");
      h.etcd.put("members/pg2", member(5002, "master"));
      h.etcd.put("leader", "pg2");
      assert.equal(h.route.pickPrimary(), null, "held until pg2's REST API confirms it");
      assert.equal(h.opened.length, 2, "spares opened once for the awaited leader");
      const pg2Spares = h.opened[1]!;
      assert.equal(pg2Spares.target.name, "pg2");
      assert.ok(b1.fenced && b1.spares === null, "pg1's backend is fenced, its spares closed");
      await waitFor("pg2's spares reach the server", () => accepted.length - mid >= 4, { timeoutMs: 5_000 });

      h.clock.now += 500;
      h.rest.set({ pg2: confirmed(5002, h.clock.now) });
      const b2 = h.route.pickPrimary();
      assert.ok(b2 !== null && b2 !== b1, "a new backend for pg2");
      assert.equal(b2.target.name, "pg2");
      assert.equal(b2.spares, pg2Spares, "the spares moved to it");
      const spare = b2.takeSpare();
      assert.ok(spare !== null, "a session takes a spare");
      spare.destroy();
      assert.equal(h.opened.length, 2, "no spares opened again");
    } finally {
      await h.route.stop();
    }
  });

  it("switch time is recorded only when the routed primary really changes", async () => {
    const h = await harness("both", () => port);
    try {
      twoMembersPg1Confirmed(h);
      assert.equal(h.route.pickPrimary()?.target.name, "pg1");
      assert.deepEqual(await switches(h.registry), { count: 0, sum: 0 }, "the first primary is no switch");

      // The leader key of the same member goes and comes back: no switch.
      h.clock.now += 1_000;
      h.etcd.del("leader");
      assert.equal(h.route.pickPrimary(), null);
      h.clock.now += 1_000;
      h.etcd.put("leader", "pg1");
      h.rest.set({ pg1: confirmed(5001, h.clock.now) });
      assert.equal(h.route.pickPrimary()?.target.name, "pg1");
      assert.equal((await switches(h.registry)).count, 0, "back to the same primary is no switch");

      // pg2 takes over: its leader key at +0, its REST confirmation 1.5 s later.
      h.clock.now += 1_000;
      h.etcd.del("leader");
      h.clock.now += 2_000;
      h.etcd.put("members/pg2", member(5002, "master"));
      h.etcd.put("leader", "pg2");
      assert.equal(h.route.pickPrimary(), null);
      h.clock.now += 1_500;
      h.rest.set({ pg2: confirmed(5002, h.clock.now) });
      assert.equal(h.route.pickPrimary()?.target.name, "pg2");
      assert.deepEqual(
        await switches(h.registry),
        { count: 1, sum: 1.5 },
        "one switch, from pg2's leader key",
      );

      // Decisions repeated without a change record nothing more.
      h.clock.now += 500;
      h.route.evaluate();
      assert.equal((await switches(h.registry)).count, 1);
    } finally {
      await h.route.stop();
    }
  });
});
