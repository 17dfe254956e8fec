import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { inclusiveTimes, selfTimes } from "../../bench/profile.js";

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

describe("CPU profile: our functions on the stack", () => {
  const frame = (functionName: string, url = "", lineNumber = -1) => ({ functionName, url, lineNumber });
  it("counts each sample once per router function on its stack, whatever sits above it", () => {
    const profile = {
      startTime: 0,
      endTime: 1_000_000,
      nodes: [
        { id: 1, callFrame: frame("(root)"), children: [2, 3, 6] },
        { id: 2, callFrame: frame("onClientData", "file:///r/dist/router/conn.js", 10), children: [4] },
        { id: 3, callFrame: frame("onUpData", "file:///r/dist/router/conn.js", 20), children: [5] },
        { id: 4, callFrame: frame("writeBuffer") },
        { id: 5, callFrame: frame("writeBuffer") },
        { id: 6, callFrame: frame("(idle)") },
      ],
      samples: [4, 4, 4, 5, 6, 6, 6, 6, 2, 3],
    };
    assert.deepEqual(inclusiveTimes(profile), [
      { fn: "onClientData", where: "router/conn.js:11", pct: 40 },
      { fn: "onUpData", where: "router/conn.js:21", pct: 20 },
    ]);
  });
});
