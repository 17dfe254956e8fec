import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { planRounds, summarizeCell, TARGETS } from "../../bench/datapath.js";

describe("data path rounds", () => {
  it("every target runs once per round and cell, back to back, in a rotating order", () => {
    const steps = planRounds(3, ["select-only", "tpcb-like"], [1, 8]);
    assert.equal(steps.length, 3 * 2 * 2 * TARGETS.length);
    for (let i = 0; i < steps.length; i += TARGETS.length) {
      const block = steps.slice(i, i + TARGETS.length);
      assert.equal(new Set(block.map((s) => `${s.round}/${s.workload}/${s.clients}`)).size, 1);
      assert.deepEqual([...block.map((s) => s.target)].sort(), [...TARGETS].sort());
    }
    const firsts = steps
      .filter((s) => s.workload === "select-only" && s.clients === 8)
      .filter((_, i) => i % TARGETS.length === 0)
      .map((s) => s.target);
    assert.equal(new Set(firsts).size, 3, "a different target leads each round");
  });

  it("a cell's medians and ratios come from its rounds", () => {
    const r = (tps: number[], lat: number) => tps.map((t) => ({ tps: t, latencyMs: lat, failed: 0 }));
    const cell = summarizeCell("select-only", 8, {
      direct: r([300, 200, 310], 0.05),
      haproxy: r([250, 150, 260], 0.09),
      naive: r([200, 120, 190], 0.085),
      router: r([260, 160, 250], 0.08),
    });
    assert.equal(cell.tps.router, 250);
    assert.equal(cell.ratios.routerHaproxy, 1.04);
    assert.equal(cell.ratios.routerDirect, 0.806);
    assert.equal(cell.ratios.latencyRouterHaproxy, 0.889);
  });
});
