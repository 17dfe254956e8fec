import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import { RegistratorMetrics } from "../../registrator/metrics.js";

describe("registrator_ready", () => {
  it("says at each scrape what /readyz says", async () => {
    const registry = new Registry();
    const metrics = new RegistratorMetrics(registry);
    assert.match(await registry.metrics(), /^registrator_ready 0$/m, "not ready until bound");
    let ready = true;
    metrics.bindReady(() => ready);
    assert.match(await registry.metrics(), /^registrator_ready 1$/m);
    ready = false;
    assert.match(await registry.metrics(), /^registrator_ready 0$/m);
  });
});
