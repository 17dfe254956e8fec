import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type Attempt, analyse } from "../../bench/writers.js";

const ok = (start: number, end: number, what: Attempt["what"] = "write"): Attempt => ({
  start,
  end,
  ok: true,
  what,
});
const fail = (start: number, end: number, what: Attempt["what"] = "write"): Attempt => ({
  start,
  end,
  ok: false,
  what,
  error: "57P01 terminating connection due to administrator command",
});

describe("write unavailability around an event", () => {
  it("a held write: the window is the gap between the last write before and the first after, no failure", () => {
    const attempts = [ok(0, 5), ok(50, 55), ok(100, 1900), ok(1950, 1955)];
    const f = analyse("per-write", attempts, 80, 3000);
    assert.equal(f.unavailableMs, 1845);
    assert.equal(f.failed, 0);
    assert.equal(f.recovered, true);
  });

  it("refused attempts count as failed new connections; the window still ends at the next write", () => {
    const attempts = [ok(0, 5), fail(50, 51), fail(100, 101), fail(150, 151), ok(200, 206), ok(250, 255)];
    const f = analyse("per-write", attempts, 40, 1000);
    assert.deepEqual(
      { w: f.unavailableMs, failed: f.failed, failedNew: f.failedNew, session: f.failedOnSession },
      { w: 201, failed: 3, failedNew: 3, session: 0 },
    );
  });

  it("long-lived: a write lost on the old session and a refused reconnect are told apart", () => {
    const attempts = [
      ok(0, 2),
      fail(50, 60),
      fail(110, 111, "connect"),
      ok(160, 170, "connect"),
      ok(171, 180),
    ];
    const f = analyse("long-lived", attempts, 40, 1000);
    assert.equal(f.failed, 2);
    assert.equal(f.failedNew, 1);
    assert.equal(f.failedOnSession, 1);
    assert.equal(f.unavailableMs, 178);
  });

  it("a writer that never wrote again is not recovered and counts the gap to the end", () => {
    const attempts = [ok(0, 5), fail(50, 60), fail(100, 110)];
    const f = analyse("per-write", attempts, 20, 5000);
    assert.equal(f.recovered, false);
    assert.equal(f.unavailableMs, 4995);
  });

  it("an attempt under way when the server died is in flight, not a failed new connection", () => {
    const attempts = [ok(0, 5), fail(50, 9000), ok(9050, 9060)];
    const f = analyse("per-write", attempts, 60, 10_000);
    assert.deepEqual(
      { failed: f.failed, inFlight: f.inFlight, failedNew: f.failedNew },
      { failed: 1, inFlight: 1, failedNew: 0 },
    );
  });

  it("attempts that failed before the event are not its failures", () => {
    const attempts = [fail(0, 1), ok(50, 55), ok(100, 105)];
    assert.equal(analyse("per-write", attempts, 60, 500).failed, 0);
  });
});
