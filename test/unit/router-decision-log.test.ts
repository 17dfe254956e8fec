/**
 * The router's last primary decisions (router/decisions.ts): every change is kept with its
 * time, newest first, at most DECISIONS_KEPT; a change back to `route` says what the
 * interruption was (switchover, failover, resumed, first), how long it lasted and what
 * became of the clients held meanwhile; several workers' lists merge into one with
 * their hold counts summed.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DECISIONS_KEPT,
  type Decision,
  DecisionLog,
  HoldTally,
  mergeDecisions,
} from "../../router/decisions.js";

const T0 = 1_700_000_000_000;

describe("DecisionLog", () => {
  it("a switchover: the pause and the gap, then pg1 → pg2 with its duration and the held clients' fate", () => {
    const tally = new HoldTally();
    const log = new DecisionLog(tally, T0);
    log.record(T0 + 100, "route", "pg1", "pg1 holds the leader key and answers /primary", false);
    log.settle();
    // Clients held before this interruption are not its clients.
    tally.held();
    tally.unheld("released", 50);
    log.record(T0 + 10_000, "pause", "pg1", "a switchover is announced", true);
    for (let i = 0; i < 14; i++) tally.held();
    log.record(T0 + 10_900, "none", null, "no leader key", false);
    log.record(T0 + 11_200, "route", "pg2", "pg2 holds the leader key and answers /primary", false);
    // The release runs after the decision; settle() counts it.
    for (let i = 0; i < 13; i++) tally.unheld("released", 1100 - i * 10);
    tally.unheld("timeout", 900);
    log.settle();
    const [last, ...rest] = log.entries;
    assert.deepEqual(last?.switch, {
      kind: "switchover",
      from: "pg1",
      to: "pg2",
      ms: 1200,
      held: 14,
      released: 13,
      failed: 1,
      gone: 0,
      waitMsMax: 1100,
    });
    assert.deepEqual(
      rest.map((d) => [d.at - T0, d.action, d.target, d.switch?.kind ?? null]),
      [
        [10_900, "none", null, null],
        [10_000, "pause", "pg1", null],
        [100, "route", "pg1", "first"],
      ],
    );
    assert.ok(Object.isFrozen(last) && Object.isFrozen(last?.switch), "entries are frozen");
  });

  it("kinds: another member without an announcement is a failover; the same member again is resumed", () => {
    const tally = new HoldTally();
    const log = new DecisionLog(tally, T0);
    const step = (
      at: number,
      action: "route" | "pause" | "none",
      target: string | null,
      announced = false,
    ) => {
      log.record(T0 + at, action, target, `${action} ${target}`, announced);
      log.settle();
    };
    step(0, "route", "pg1");
    step(1000, "pause", "pg1");
    step(1300, "route", "pg1");
    step(5000, "none", null);
    step(15_000, "route", "pg3");
    const kinds = log.entries
      .filter((d) => d.switch)
      .map((d) => [d.switch!.kind, d.switch!.from, d.switch!.ms]);
    assert.deepEqual(kinds, [
      ["failover", "pg1", 10_000],
      ["resumed", "pg1", 300],
      ["first", null, 0],
    ]);
  });

  it("a change of reason while routed carries no switch; no held client means no wait", () => {
    const log = new DecisionLog(new HoldTally(), T0);
    log.record(T0, "route", "pg1", "a", false);
    log.settle();
    log.record(T0 + 5, "route", "pg1", "b (failsafe mode)", false);
    log.settle();
    assert.equal(log.entries[0]?.switch, undefined);
    assert.equal(log.entries[1]?.switch?.waitMsMax, 0);
  });

  it(`keeps the newest ${DECISIONS_KEPT}`, () => {
    const log = new DecisionLog(new HoldTally(), T0);
    for (let i = 0; i < DECISIONS_KEPT + 7; i++) {
      log.record(T0 + i, i % 2 === 0 ? "route" : "pause", "pg1", String(i), false);
      log.settle();
    }
    assert.equal(log.entries.length, DECISIONS_KEPT);
    assert.equal(log.entries[0]?.reason, String(DECISIONS_KEPT + 6));
  });
});

describe("mergeDecisions (several workers)", () => {
  const sw = (
    at: number,
    held: number,
    failed: number,
    wait: number,
    from = "pg1",
    to = "pg2",
  ): Decision => ({
    at,
    action: "route",
    target: to,
    reason: "r",
    switch: {
      kind: "switchover",
      from,
      to,
      ms: 1200,
      held,
      released: held - failed,
      failed,
      gone: 0,
      waitMsMax: wait,
    },
  });
  const pause: Decision = { at: T0 - 1200, action: "pause", target: "pg1", reason: "announced" };

  it("takes the first worker's list and sums the others' hold counts for the same switch", () => {
    const merged = mergeDecisions([
      [sw(T0, 5, 0, 900), pause],
      [sw(T0 + 3, 9, 1, 1300), { ...pause, at: pause.at + 2 }],
      undefined,
    ]);
    assert.equal(merged.length, 2);
    assert.deepEqual(merged[0]?.switch, {
      kind: "switchover",
      from: "pg1",
      to: "pg2",
      ms: 1200,
      held: 14,
      released: 13,
      failed: 1,
      gone: 0,
      waitMsMax: 1300,
    });
    assert.deepEqual(merged[1], pause);
  });

  it("does not add another switch (other members, or long apart), and a lone or malformed list stays as it is", () => {
    const first = [sw(T0, 2, 0, 100)];
    assert.deepEqual(
      mergeDecisions([first, [sw(T0, 7, 0, 100, "pg3", "pg2")], [sw(T0 + 60_000, 7, 0, 1)]]),
      first,
    );
    assert.deepEqual(mergeDecisions([first, "junk" as unknown as Decision[]]), first);
    assert.deepEqual(mergeDecisions([]), []);
  });
});
