import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { median, pairedRatio, percentile, ratio, summary } from "../../bench/stats.js";

describe("bench statistics", () => {
  it("median of odd and even counts, ignoring non-finite values", () => {
    const cases: [number[], number][] = [
      [[3, 1, 2], 2],
      [[4, 1, 3, 2], 2.5],
      [[5], 5],
      [[Number.NaN, 7, 1], 4],
    ];
    for (const [xs, want] of cases) assert.equal(median(xs), want, JSON.stringify(xs));
    assert.ok(Number.isNaN(median([])));
  });

  it("nearest-rank percentiles: p99 of 20 samples is the largest, p50 the 10th", () => {
    const xs = Array.from({ length: 20 }, (_, i) => 20 - i); // 20..1, unsorted on purpose
    assert.equal(percentile(xs, 99), 20);
    assert.equal(percentile(xs, 50), 10);
    assert.equal(percentile(xs, 0), 1);
    assert.equal(percentile([42], 99), 42);
  });

  it("paired ratios are the median of per-round ratios, not the ratio of medians", () => {
    // Round 2 is slow for both targets: the pairing cancels it.
    const router = [100, 50, 110];
    const haproxy = [100, 40, 100];
    assert.equal(pairedRatio(router, haproxy), 1.1);
    assert.ok(Number.isNaN(ratio(1, 0)));
  });

  it("summary counts finite samples only", () => {
    assert.deepEqual(summary([1, 2, Number.NaN, 4]), { n: 3, p50: 2, p99: 4, min: 1, max: 4 });
  });
});
