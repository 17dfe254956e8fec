import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { planRounds, summarizeCell, TARGETS } from "../../bench/datapath.js";
import { round } from "../../bench/stats.js";

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
      router1: r([250, 170, 250], 0.08),
    });
    assert.equal(cell.tps.router, 250);
    assert.equal(cell.ratios.routerRouter1, 1, "the workers' cost: paired by round, median of 1.04, 0.94, 1");
    assert.equal(cell.ratios.routerHaproxy, 1.04);
    assert.equal(cell.ratios.routerDirect, 0.806);
    assert.equal(cell.ratios.latencyRouterHaproxy, 0.889);
  });

  it("a proxy's CPU per transaction: medians per proxy, ratios paired by round, a missing round left out", () => {
    const r = (cpu: (number | undefined)[]) =>
      cpu.map((c) => ({ tps: 100, latencyMs: 1, failed: 0, cpuUsPerTxn: c }));
    const cell = summarizeCell("select-only", 8, {
      direct: r([undefined, undefined, undefined]),
      haproxy: r([20, 25, 22]),
      naive: r([30, 31, undefined]),
      router: r([28, 40, 33]),
      router1: r([28, 20, 30]),
    });
    assert.deepEqual(cell.cpuUsPerTxn, { haproxy: 22, naive: 30.5, router: 33, router1: 28 });
    // per round 1.4, 1.6, 1.5 -> median 1.5; router/naive: 28/30, 40/31 (the third has no naive figure)
    assert.equal(cell.ratios.cpuRouterHaproxy, 1.5);
    assert.equal(cell.ratios.cpuRouterNaive, round((28 / 30 + 40 / 31) / 2, 3));
  });
});
