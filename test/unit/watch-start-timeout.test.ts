/**
 * The wait for an etcd watch's start (shared/watch.ts): 3 s, doubled by each start given up in
 * a row, never above 24 s, so that a silent member is left quickly and a slow one still gets
 * its answer in the end.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { WATCH_START_TIMEOUT_MAX_MS, WATCH_START_TIMEOUT_MS, watchStartTimeout } from "../../shared/watch.js";

describe("watchStartTimeout", () => {
  const table: [stalls: number, ms: number][] = [
    [0, 3000],
    [1, 6000],
    [2, 12_000],
    [3, 24_000],
    [4, 24_000],
    [1000, 24_000],
  ];
  for (const [stalls, ms] of table) {
    it(`${stalls} starts given up in a row: waits ${ms} ms`, () => {
      assert.equal(watchStartTimeout(stalls), ms);
    });
  }
  it("starts at the first wait and is bounded by the largest", () => {
    assert.equal(watchStartTimeout(0), WATCH_START_TIMEOUT_MS);
    assert.equal(watchStartTimeout(50), WATCH_START_TIMEOUT_MAX_MS);
  });
});
