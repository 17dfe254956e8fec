import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  appliesTo,
  checkFault,
  describeTarget,
  FAULTS,
  type FaultRun,
  type FrontEndFigures,
  frontEndFigures,
  gapBefore,
  inFlightMayFail,
  longestGap,
  summarizeFaults,
  targetOf,
  type WriterRecord,
} from "../../bench/fault-figures.js";
import { faultTable, type Results, verdicts } from "../../bench/report.js";

const T0 = 1_000_000;

describe("fault figures: the issue's targets", () => {
  const table: [(typeof FAULTS)[number], number | null][] = [
    ["leader-stop", null],
    ["leader-kill", null],
    ["etcd-kill", 1000],
    ["etcd-all-stop", 1000],
    ["leader-cut", 12_000],
    ["router-worker-kill", null],
    ["registrator-kill", null],
  ];
  for (const [fault, stopped] of table) {
    it(`${fault}: writes stop for at most ${stopped ?? "any"} ms, 0 failed new, 0 lost`, () => {
      assert.deepEqual(targetOf(fault, 10), { maxStoppedMs: stopped, maxFailedNew: 0, maxLost: 0 });
    });
  }
  it("the leader's cut follows Patroni's ttl", () => {
    assert.equal(targetOf("leader-cut", 30).maxStoppedMs, 32_000);
    assert.equal(describeTarget(targetOf("leader-cut", 10)), "stopped <= 12 s, 0 failed new, 0 lost");
    assert.equal(describeTarget(targetOf("leader-stop", 10)), "0 failed new, 0 lost");
  });
  it("HAProxy sees every fault but a router worker's", () => {
    assert.deepEqual(
      FAULTS.filter((f) => !appliesTo(f, "haproxy")),
      ["router-worker-kill"],
    );
    assert.ok(FAULTS.every((f) => appliesTo(f, "router")));
  });
});

describe("fault figures: gaps between acknowledged writes", () => {
  const cases: [string, number[], number, number, number][] = [
    ["steady writes", [T0 + 100, T0 + 200, T0 + 300], T0, T0 + 350, 100],
    ["a pause in the middle", [T0 + 100, T0 + 1600, T0 + 1700], T0, T0 + 1750, 1500],
    ["writes before `from` do not count", [T0 - 5000, T0 + 100, T0 + 200], T0, T0 + 250, 100],
    ["the first write after `from` closes the first gap", [T0 + 900], T0, T0 + 950, 900],
    ["a writer that never wrote again: the whole tail", [T0 - 100, T0 + 50], T0, T0 + 9050, 9000],
    ["no writes at all", [], T0, T0 + 4000, 4000],
  ];
  for (const [name, acks, from, end, want] of cases) {
    it(name, () => assert.equal(longestGap(acks, from, end), want));
  }
});

describe("fault figures: the quiet seconds before the fault", () => {
  const cases: [string, number[], number][] = [
    ["the pace alone", [T0 - 1900, T0 - 1800, T0 - 1700, T0 - 100, T0], 1600],
    ["writes outside the window do not count", [T0 - 9000, T0 - 1500, T0 - 1400, T0 + 5000], 100],
    ["one write: no gap", [T0 - 50], 0],
  ];
  for (const [name, acks, want] of cases) it(name, () => assert.equal(gapBefore(acks, T0), want));
});

const rec = (kind: string, ackTimes: number[], failures: WriterRecord["failures"] = []): WriterRecord => ({
  kind,
  ackTimes,
  failures,
});

describe("which faults count connections in start-up on the killed process apart", () => {
  it("a SIGKILLed leader and a SIGKILLed router worker; no other fault", () => {
    assert.deepEqual(
      FAULTS.filter((f) => inFlightMayFail(f)),
      ["leader-kill", "router-worker-kill"],
    );
  });
});

describe("fault figures: one front end's writers", () => {
  const t = { t0: T0, injected: T0 + 300, end: T0 + 10_000, inFlightMayFail: false };
  const steady = (from: number, to: number) => {
    const xs: number[] = [];
    for (let x = from; x <= to; x += 100) xs.push(x);
    return xs;
  };

  it("sums failures by phase and takes the worst writer's gap", () => {
    const ws = [
      rec(
        "psql per-write",
        [...steady(T0 - 2000, T0), ...steady(T0 + 2500, T0 + 10_000)],
        [{ startedAt: T0 + 50, at: T0 + 400, phase: "connect", error: "refused" }],
      ),
      rec("pg kept", steady(T0 - 2000, T0 + 10_000), [
        { startedAt: T0 + 10, at: T0 + 20, phase: "session", error: "terminated" },
      ]),
    ];
    const f = frontEndFigures(ws, 0, t);
    assert.equal(f.writesStoppedMs, 2500);
    assert.equal(f.failedNew, 1);
    assert.equal(f.inFlight, 0);
    assert.equal(f.sessionsEnded, 1);
    assert.equal(f.notRecovered, 0);
    assert.deepEqual(f.writers[0]!.failures, [
      { startedMs: 50, atMs: 400, phase: "connect", error: "refused" },
    ]);
  });

  it("for a SIGKILLed server, connections begun before the kill returned are counted apart", () => {
    const failures = [
      { startedAt: T0 + 250, at: T0 + 900, phase: "connect" as const, error: "in start-up" },
      { startedAt: T0 + 301, at: T0 + 900, phase: "connect" as const, error: "after" },
    ];
    const killed = frontEndFigures([rec("pg per-write", [T0 + 5000], failures)], 0, {
      ...t,
      inFlightMayFail: true,
    });
    assert.deepEqual([killed.failedNew, killed.inFlight], [1, 1]);
    const stopped = frontEndFigures([rec("pg per-write", [T0 + 5000], failures)], 0, t);
    assert.deepEqual([stopped.failedNew, stopped.inFlight], [2, 0]);
  });

  it("a writer with no write after the fault did not recover", () => {
    const f = frontEndFigures([rec("psql kept", [T0 - 100])], 0, t);
    assert.equal(f.notRecovered, 1);
    assert.equal(f.writesStoppedMs, 10_100);
    assert.deepEqual(checkFault(targetOf("leader-stop", 10), f).misses, ["1 writers did not write again"]);
  });
});

const figures = (o: Partial<FrontEndFigures>): FrontEndFigures => ({
  writesStoppedMs: 200,
  beforeMs: 150,
  failedNew: 0,
  inFlight: 0,
  sessionsEnded: 0,
  lost: 0,
  notRecovered: 0,
  writers: [],
  ...o,
});

describe("fault figures: verdicts", () => {
  const etcd = targetOf("etcd-all-stop", 10);
  const cases: [string, Partial<FrontEndFigures>, string[]][] = [
    ["within every target", {}, []],
    ["writes stopped too long", { writesStoppedMs: 1001 }, ["writes stopped 1001 ms > 1000 ms"]],
    ["a failed new connection", { failedNew: 2 }, ["2 failed new connections"]],
    ["in flight ones do not count", { inFlight: 1 }, []],
    ["sessions may end", { sessionsEnded: 3 }, []],
    [
      "a lost write and a long stop",
      { lost: 1, writesStoppedMs: 30_500 },
      ["writes stopped 30500 ms > 1000 ms", "1 acknowledged writes lost"],
    ],
  ];
  for (const [name, o, misses] of cases) {
    it(name, () => {
      const c = checkFault(etcd, figures(o));
      assert.deepEqual(c.misses, misses);
      assert.equal(c.ok, misses.length === 0);
    });
  }
  it("no bound on the stop where the issue sets none", () => {
    assert.ok(checkFault(targetOf("leader-kill", 10), figures({ writesStoppedMs: 11_000 })).ok);
  });
});

const runOf = (fault: (typeof FAULTS)[number], router: FrontEndFigures, haproxy: FrontEndFigures | null) =>
  ({
    fault,
    label: fault,
    at: "2026-12-03T08:00:00.000Z",
    load: { before: [3.5, 2, 1], after: [4, 2, 1] },
    injectMs: 100,
    recoveredMs: 5000,
    target: targetOf(fault, 10),
    frontEnds: { router, haproxy },
  }) satisfies FaultRun;

describe("fault figures: the printed table and the Targets list", () => {
  const fr = {
    ttl: 10,
    rounds: 1,
    writersPerFrontEnd: ["psql per-write"],
    paceMs: 100,
    haproxy: { checks: "inter 1s fall 2 rise 1", config: "" },
    runs: [
      runOf("etcd-kill", figures({ writesStoppedMs: 250 }), figures({ writesStoppedMs: 1500, failedNew: 3 })),
      runOf("router-worker-kill", figures({ sessionsEnded: 1 }), null),
      runOf(
        "leader-kill",
        figures({ writesStoppedMs: 11_300, inFlight: 1 }),
        figures({ writesStoppedMs: 12_000 }),
      ),
    ],
  };

  it("one row per fault and front end; n/a where the fault does not apply", () => {
    const lines = faultTable(fr).split("\n");
    assert.equal(lines.length, 7);
    assert.match(
      lines[0]!,
      /^fault\s+front end\s+writes stopped s\s+before s\s+failed new conns\s+sessions ended/,
    );
    assert.match(
      lines[1]!,
      /^etcd-kill\s+router\s+0\.3\s+0\.1\s+0\s+0\s+0\s+stopped <= 1 s, 0 failed new, 0 lost\s+met\s+3\.5$/,
    );
    assert.match(
      lines[2]!,
      /^\s+haproxy\s+1\.5\s+0\.1\s+3\s+0\s+0\s+.*MISSED \(writes stopped 1500 ms > 1000 ms; 3 failed new connections\)$/,
    );
    assert.match(lines[4]!, /^\s+haproxy\s+n\/a\s+n\/a\s+n\/a\s+n\/a\s+n\/a\s+n\/a$/);
    assert.match(
      lines[5]!,
      /^leader-kill\s+router\s+11\.3\s+0\.1\s+0 \(\+1 in flight\)\s+0\s+0\s+0 failed new, 0 lost\s+met/,
    );
  });

  it("the Targets list has the router's verdict for each fault", () => {
    const r: Results = { machine: {}, options: {}, ttl: 10, faults: fr, errors: {} };
    const v = verdicts(r);
    assert.deepEqual(
      v.map((x) => x.ok),
      [true, true, true],
    );
    assert.equal(v[0]!.target, "fault, etcd-kill: stopped <= 1 s, 0 failed new, 0 lost (router)");
    assert.equal(
      v[2]!.measured,
      "stopped 11.3 s, 0 failed new (+1 in start-up on the killed server), 0 lost",
    );
  });

  it("a fault that could not be played is a miss, not a pass", () => {
    const failed = {
      ...runOf("leader-cut", figures({}), null),
      frontEnds: { router: null, haproxy: null },
      error: "boom",
    };
    const r: Results = { machine: {}, options: {}, ttl: 10, faults: { ...fr, runs: [failed] }, errors: {} };
    assert.deepEqual(verdicts(r), [
      {
        target: "fault, leader-cut: stopped <= 12 s, 0 failed new, 0 lost (router)",
        measured: "error: boom",
        ok: false,
      },
    ]);
    assert.match(faultTable({ ...fr, runs: [failed] }), /ERROR: boom/);
  });
});

describe("fault figures: several rounds of each fault", () => {
  const rounds = [
    { ...runOf("etcd-kill", figures({ writesStoppedMs: 300 }), figures({ writesStoppedMs: 400 })), round: 1 },
    { ...runOf("leader-kill", figures({ writesStoppedMs: 11_000 }), figures({ failedNew: 20 })), round: 1 },
    { ...runOf("etcd-kill", figures({ writesStoppedMs: 2500, failedNew: 1 }), figures({})), round: 2 },
    {
      ...runOf("leader-kill", figures({ writesStoppedMs: 12_000, inFlight: 1 }), figures({ failedNew: 7 })),
      round: 2,
    },
    { ...runOf("etcd-kill", figures({ writesStoppedMs: 700, lost: 0 }), figures({})), round: 3 },
  ];

  it("per fault, in the order first played: the median stop and the largest, totals of the counts", () => {
    const s = summarizeFaults(rounds);
    assert.deepEqual(
      s.map((x) => [x.fault, x.rounds]),
      [
        ["etcd-kill", 3],
        ["leader-kill", 2],
      ],
    );
    assert.deepEqual(s[0]!.frontEnds.router, {
      n: 3,
      writesStoppedMs: 700,
      maxStoppedMs: 2500,
      beforeMs: 150,
      failedNew: 1,
      inFlight: 0,
      sessionsEnded: 0,
      lost: 0,
      notRecovered: 0,
    });
    // an even count takes the lower middle: a value one round measured
    assert.equal(s[1]!.frontEnds.router!.writesStoppedMs, 11_000);
    assert.equal(s[1]!.frontEnds.haproxy!.failedNew, 27);
    assert.deepEqual(s[0]!.load, [3.5, 3.5, 3.5]);
  });

  it("the table shows the median with the largest; one failure in any round misses the target", () => {
    const fr = {
      ttl: 10,
      rounds: 3,
      writersPerFrontEnd: ["pg kept"],
      paceMs: 100,
      haproxy: { checks: "", config: "" },
      runs: rounds,
    };
    const lines = faultTable(fr).split("\n");
    assert.match(
      lines[1]!,
      /^etcd-kill\s+router\s+0\.7 \(max 2\.5\)\s+0\.1\s+1\s+.*MISSED \(1 failed new connections\)\s+3\.5, 3\.5, 3\.5$/,
    );
    const r: Results = { machine: {}, options: {}, ttl: 10, faults: fr, errors: {} };
    assert.equal(
      verdicts(r)[1]!.measured,
      "stopped 11.0 (max 12.0) s, 0 failed new (+1 in start-up on the killed server), 0 lost over 2 rounds",
    );
  });

  it("a round that could not be played is reported beside the others", () => {
    const failed = {
      ...runOf("etcd-kill", figures({}), null),
      frontEnds: { router: null, haproxy: null },
      error: "timeout",
    };
    const s = summarizeFaults([rounds[0]!, failed]);
    assert.deepEqual(s[0]!.errors, ["timeout"]);
    assert.equal(s[0]!.frontEnds.router!.n, 1);
    const r: Results = {
      machine: {},
      options: {},
      ttl: 10,
      faults: {
        ttl: 10,
        rounds: 2,
        writersPerFrontEnd: [],
        paceMs: 100,
        haproxy: { checks: "", config: "" },
        runs: [rounds[0]!, failed],
      },
      errors: {},
    };
    assert.equal(verdicts(r)[0]!.ok, false);
    assert.match(verdicts(r)[0]!.measured, /error: timeout$/);
  });
});
