/**
 * The stop sequence's handover when Patroni's answer to the switchover is late or a refusal.
 * Patroni and etcd are played by tables here: the fault (an answer that comes after the
 * agent's timeout while the switchover goes on) cannot be made on demand with real parts; the
 * fault suite (test/e2e/no-single-point-of-failure.test.ts) stops a real leader under load.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Fence } from "../../agent/fence.js";
import { type StopDeps, StopSequence } from "../../agent/stop.js";
import { createLogger } from "../../shared/logger.js";
import type { PatroniStatus } from "../../shared/patroni-rest.js";

const cluster = {
  members: [
    { name: "pg1", role: "leader", state: "running", timeline: 2 },
    { name: "pg2", role: "sync_standby", state: "running", timeline: 2, lag: 0 },
  ],
};
const leaderStatus = {
  state: "running",
  role: "master",
  timeline: 2,
  replication: [{ application_name: "pg2", state: "streaming", sync_state: "sync", usename: "r" }],
};
const status = (role: PatroniStatus["role"], state: string): PatroniStatus => ({
  role,
  state,
  location: null,
  receivedLocation: null,
  replayedLocation: null,
  failsafe: false,
});

interface Step {
  readonly leader: string | null;
  readonly announced: boolean;
  readonly status: PatroniStatus | null;
}

/** A lab whose clock moves only when the sequence sleeps; etcd and Patroni answer per step. */
function lab(switchover: () => Promise<{ status: number; text: string }>, steps: Step[]) {
  let now = 0;
  let i = 0;
  const fences: Fence["state"][] = [];
  let terminated = 0;
  const step = () => steps[Math.min(i, steps.length - 1)]!;
  const deps: StopDeps = {
    rest: {
      cluster: async () => cluster,
      patroni: async () => leaderStatus,
      dynamicConfig: async () => ({ synchronous_mode: true }),
      switchover,
      status: async () => step().status,
    },
    fence: {
      leader: async () => (fences.length === 0 ? "pg1" : step().leader),
      switchoverAnnounced: async () => step().announced,
      write: async (f: Fence) => {
        fences.push(f.state);
      },
    },
    terminatePatroni: async () => {
      terminated++;
      return 0;
    },
    controlData: async () => null,
    log: createLogger({ name: "test", level: "silent" }),
    now: () => now,
    sleep: async (ms) => {
      now += ms;
      if (ms === 500) i++; // each poll moves to the next step
    },
  };
  const seq = new StopSequence(
    { self: "pg1", switchoverOnStop: true, gracePeriodMs: 60_000, switchoverTimeoutMs: 5_000 },
    deps,
  );
  return { seq, fences, terminated: () => terminated, now: () => now };
}

const late = () =>
  Promise.reject(new Error("switchover request failed: The operation was aborted due to timeout"));

describe("a handover whose switchover answer comes late", () => {
  it("the switchover goes on (demoting, key released, then pg2 leads): handed over, Patroni stopped only then", async () => {
    const l = lab(late, [
      { leader: "pg1", announced: true, status: status("primary", "stopping") },
      { leader: "pg1", announced: true, status: status("unknown", "stopped") },
      { leader: null, announced: true, status: status("unknown", "stopped") },
      { leader: "pg2", announced: false, status: status("replica", "starting") },
    ]);
    const out = await l.seq.run(0);
    assert.deepEqual(out.kind, "handed-over");
    assert.equal(out.kind === "handed-over" && out.candidate, "pg2");
    assert.equal(l.terminated(), 1);
    assert.deepEqual(l.fences, ["stopping", "handover"], "no fence written back to stopping");
  });

  it("refused and nothing announced while this node still runs as the primary: stops behind the fence at once", async () => {
    const l = lab(
      async () => ({ status: 412, text: "candidate name does not match with sync_standby" }),
      [{ leader: "pg1", announced: false, status: status("primary", "running") }],
    );
    const out = await l.seq.run(0);
    assert.equal(out.kind, "fenced");
    assert.deepEqual(l.fences, ["stopping", "handover", "stopping"]);
    assert.ok(l.now() < 2_000, `gave up after ${l.now()} ms of its clock`);
  });

  it("a switchover that never finishes is followed only until the grace period's reserve", async () => {
    const l = lab(late, [{ leader: "pg1", announced: true, status: status("primary", "stopping") }]);
    const out = await l.seq.run(0);
    assert.equal(out.kind, "fenced");
    assert.ok(l.now() >= 50_000 - 1 && l.now() <= 51_000, `followed until ${l.now()} ms`);
  });
});
