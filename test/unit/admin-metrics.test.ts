import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createRegistry } from "../../shared/admin.js";

/** The value of one unlabelled sample in Prometheus' text format. */
function sample(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  assert.ok(m, `${name} in /metrics`);
  return Number(m[1]);
}

describe("default process metrics", () => {
  it("are prefixed per service, and an event-loop stall shows in the lag histogram", async () => {
    const registry = createRegistry("svc");
    await registry.metrics(); // start from an empty histogram
    await new Promise((r) => setTimeout(r, 250));
    const end = Date.now() + 400;
    while (Date.now() < end); // the event loop is blocked for 400 ms
    await new Promise((r) => setTimeout(r, 250));
    const text = await registry.metrics();
    assert.ok(sample(text, "svc_process_resident_memory_bytes") > 10 * 2 ** 20);
    assert.ok(sample(text, "svc_process_cpu_seconds_total") > 0);
    const max = sample(text, "svc_nodejs_eventloop_lag_max_seconds");
    assert.ok(max >= 0.3, `a 400 ms stall, lag max ${max} s`);
    assert.doesNotMatch(text, /^nodejs_/m, "no unprefixed default metric");
  });
});
