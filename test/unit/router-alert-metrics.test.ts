import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import { RouterMetrics } from "../../router/metrics.js";
import { type RouterConfig, routerSpec } from "../../router/options.js";
import { promMetrics } from "../../router/prom-metrics.js";
import { Router } from "../../router/router.js";
import { parseArgs } from "../../shared/config.js";
import { createLogger } from "../../shared/logger.js";

/** The value of one unlabelled sample in Prometheus' text format. */
function sample(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

describe("the router's capacity metrics (for the alert on --max-connections)", () => {
  it("router_clients_open is read when scraped, router_max_connections is the limit", async () => {
    const registry = new Registry();
    const metrics = new RouterMetrics(promMetrics(registry));
    let open = 3;
    metrics.bindClients(() => open, 120);
    let text = await registry.metrics();
    assert.equal(sample(text, "router_clients_open"), 3);
    assert.equal(sample(text, "router_max_connections"), 120);
    open = 117;
    text = await registry.metrics();
    assert.equal(sample(text, "router_clients_open"), 117);
  });

  it("a router reports its --max-connections and no open client before it starts", async () => {
    const r = parseArgs(routerSpec, ["--scope", "demo", "--max-connections", "250"], {});
    assert.equal(r.kind, "config");
    const registry = new Registry();
    new Router(
      r.config as RouterConfig,
      createLogger({ name: "test", level: "silent" }),
      promMetrics(registry),
    );
    const text = await registry.metrics();
    assert.equal(sample(text, "router_max_connections"), 250);
    assert.equal(sample(text, "router_clients_open"), 0);
  });
});

describe("a listener's series that alerts take increases of", () => {
  it("start at 0: hold waits by outcome, and refusals at --max-connections", async () => {
    const registry = new Registry();
    new RouterMetrics(promMetrics(registry)).listener("demo", "primary");
    const text = await registry.metrics();
    for (const outcome of ["released", "timeout", "closed"]) {
      assert.match(
        text,
        new RegExp(
          `^router_hold_wait_seconds_count\\{route="demo",role="primary",outcome="${outcome}"\\} 0$`,
          "m",
        ),
      );
    }
    assert.match(
      text,
      /^router_clients_refused_total\{route="demo",role="primary",reason="max_connections"\} 0$/m,
    );
  });
});
