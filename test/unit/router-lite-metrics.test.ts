/**
 * A router worker's metrics (lite-metrics.ts) stand in for prom-client's: driven with the
 * same calls, both give the same JSON, and the supervisor's merge of either reads the same.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AggregatorRegistry, Registry } from "prom-client";
import { LiteRegistry, liteMetrics } from "../../router/lite-metrics.js";
import { type MetricsSetup, RouterMetrics } from "../../router/metrics.js";
import { promMetrics } from "../../router/prom-metrics.js";

type Json = Awaited<ReturnType<Registry["getMetricsAsJSON"]>>;

/** What a worker does to its metrics over a session's life, and more. */
function drive(setup: MetricsSetup): RouterMetrics {
  const m = new RouterMetrics(setup);
  let open = 0;
  m.bindClients(() => open, 500);
  m.listener("demo", "primary");
  m.listener("demo", "replica");
  const b = m.backend("demo", "primary", "pg1");
  b.active.inc();
  b.total.inc();
  b.active.inc();
  b.active.dec();
  const s = m.spares("demo");
  s.opened.inc();
  s.opened.inc();
  s.used.inc();
  m.clientsAccepted.inc({ route: "demo", role: "primary" });
  m.clientsClosed.inc({ route: "demo", role: "primary", outcome: "done" });
  m.clientsRefused.inc({ route: "demo", role: "replica", reason: "max_connections" });
  m.heldClients.inc({ route: "demo", role: "primary" });
  m.heldClients.dec({ route: "demo", role: "primary" });
  for (const v of [0.003, 0.2, 0.2, 7, 120])
    m.holdWait.observe({ route: "demo", role: "primary", outcome: "released" }, v);
  m.connectErrors.inc({ route: "demo", role: "primary", reason: "connect_failed" });
  m.primaryChanges.inc({ route: "demo" });
  m.switchSeconds.observe({ route: "demo" }, 0.04);
  m.bytes.inc({ route: "demo", role: "primary", direction: "in" }, 1234);
  m.etcdWatchUp.set({ watch: "demo" }, 1);
  m.primaryRoutable.set({ route: "demo" }, 1);
  m.eligibleReplicas.set({ route: "demo" }, 2);
  m.invalidMembers.set({ route: "gone" }, 1);
  m.forgetRoute("gone");
  m.ipcBadMessages.inc();
  open = 7;
  return m;
}

const asJson = async (r: { getMetricsAsJSON(): Promise<Json> }) =>
  JSON.parse(JSON.stringify(await r.getMetricsAsJSON())) as Json;

describe("a router worker's metrics without prom-client", () => {
  it("give prom-client's JSON for every series RouterMetrics keeps", async () => {
    const prom = promMetrics(new Registry());
    const lite = liteMetrics();
    drive(prom);
    drive(lite);
    const byName = (j: Json) => new Map(j.map((m) => [m.name, m]));
    const [p, l] = [byName(await asJson(prom.registry)), byName(await asJson(lite.registry))];
    assert.deepEqual([...l.keys()].sort(), [...p.keys()].sort());
    for (const [name, metric] of p) assert.deepEqual(l.get(name), metric, name);
  });

  it("merge across workers as prom-client's do (sums, and max/min where workers decide alike)", async () => {
    const text = async (make: () => MetricsSetup) => {
      const workers = [make(), make()];
      for (const w of workers) drive(w);
      const all = await Promise.all(workers.map((w) => asJson(w.registry)));
      return AggregatorRegistry.aggregate(
        all as Parameters<typeof AggregatorRegistry.aggregate>[0],
      ).metrics();
    };
    const prom = await text(() => promMetrics(new Registry()));
    const lite = await text(liteMetrics);
    assert.equal(lite, prom);
    assert.match(lite, /^router_clients_open 14$/m);
    assert.match(lite, /^router_primary_changes_total\{route="demo"\} 1$/m);
    assert.match(
      lite,
      /^router_hold_wait_seconds_bucket\{le="0.25",route="demo",role="primary",outcome="released"\} 6$/m,
    );
  });

  it("refuse what prom-client refuses: a label not declared, a counter going down", () => {
    const m = new RouterMetrics(liteMetrics());
    assert.throws(() => m.primaryChanges.inc({ scope: "demo" } as never), /label "scope"/);
    assert.throws(
      () => m.bytes.inc({ route: "demo", role: "primary", direction: "in" }, -1),
      /decrease a counter/,
    );
  });

  it("a registry lists only what was registered in it", async () => {
    assert.deepEqual(await new LiteRegistry().getMetricsAsJSON(), []);
  });
});
