import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { selfTimes } from "../../bench/profile.js";

describe("CPU profile summary", () => {
  const frame = (functionName: string, url = "", lineNumber = -1) => ({ functionName, url, lineNumber });
  const profile = {
    startTime: 0,
    endTime: 1_000_000, // 1 s in µs
    nodes: [
      { id: 1, callFrame: frame("(root)") },
      { id: 2, callFrame: frame("(idle)") },
      { id: 3, callFrame: frame("onClientData", "file:///repo/dist/router/conn.js", 411) },
      { id: 4, callFrame: frame("onClientData", "file:///repo/dist/router/conn.js", 411) },
      { id: 5, callFrame: frame("writeBuffer") },
    ],
    samples: [2, 2, 2, 2, 2, 3, 4, 4, 5, 5],
  };

  it("sums self samples per function across call sites, most first, with shares of all and of busy time", () => {
    const top = selfTimes(profile, 3);
    assert.deepEqual(top[0], { fn: "(idle)", where: "", selfMs: 500, pct: 50, busyPct: Number.NaN });
    assert.deepEqual(top[1], {
      fn: "onClientData",
      where: "router/conn.js:412",
      selfMs: 300,
      pct: 30,
      busyPct: 60,
    });
    assert.deepEqual(top[2], { fn: "writeBuffer", where: "", selfMs: 200, pct: 20, busyPct: 40 });
  });
});
