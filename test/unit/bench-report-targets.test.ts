import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { parse } from "yaml";
import type { Cell } from "../../bench/datapath.js";
import { type EventSummary, summarizeEvents } from "../../bench/failover.js";
import { type KillRecord, summarise, ttlOverride } from "../../bench/fast-failover.js";
import type { MemoryFigure } from "../../bench/memory.js";
import { DEFAULT_PARTS, planOf } from "../../bench/options.js";
import { lastJsonDocument } from "../../bench/registrator-part.js";
import { type Results, render, verdicts } from "../../bench/report.js";
import type { WriterFigures } from "../../bench/writers.js";
import { REPO_ROOT } from "../harness/docker.js";

const wf = (unavailableMs: number, failed = 0, failedNew = failed): WriterFigures => ({
  unavailableMs,
  failed,
  inFlight: 0,
  failedNew,
  failedOnSession: failed - failedNew,
  recovered: true,
  writes: 10,
  errors: [],
  failures: [],
});

function event(router: number, docs: number, fast: number, routerFailedNew = 0) {
  return {
    kind: "planned" as const,
    from: "pg1",
    to: "pg2",
    patroniMs: 2000,
    observedMs: 9000,
    routerRetries: 0,
    routerDecisions: [],
    figures: {
      router: { "per-write": wf(router, routerFailedNew), "long-lived": wf(router - 100, 1, 0) },
      "haproxy-docs": { "per-write": wf(docs, 60), "long-lived": wf(docs, 5, 4) },
      "haproxy-fast": { "per-write": wf(fast, 3), "long-lived": wf(fast, 2, 1) },
    },
  };
}

function results(cells: Cell[], planned: EventSummary): Results {
  return {
    machine: { date: "d", host: "h" },
    options: { rounds: 3, seconds: 5 },
    ttl: 10,
    dataPath: { cells },
    planned: { summary: planned },
    errors: {},
  };
}

const cell = (routerHaproxy: number, latencyRouterHaproxy: number, clients: number): Cell =>
  ({
    workload: "select-only",
    clients,
    rounds: { direct: [], haproxy: [], naive: [], router: [], router1: [] },
    tps: { direct: 30000, haproxy: 25000, naive: 18000, router: 25000 * routerHaproxy, router1: 25000 },
    latencyMs: {
      direct: 0.05,
      haproxy: 0.09,
      naive: 0.085,
      router: 0.09 * latencyRouterHaproxy,
      router1: 0.09,
    },
    cpuUsPerTxn: { haproxy: 22, naive: 30, router: 31, router1: 30 },
    ratios: {
      routerHaproxy,
      routerDirect: 0.8,
      haproxyDirect: 0.85,
      naiveDirect: 0.65,
      latencyRouterHaproxy,
      cpuRouterHaproxy: 1.4,
      cpuRouterNaive: 1.03,
      routerRouter1: 1,
      cpuRouterRouter1: 1.03,
    },
  }) as Cell;

describe("benchmark targets", () => {
  it("planned switchover: medians over events, compared with the better HAProxy config; failed new connections summed", () => {
    const s = summarizeEvents("planned", [
      event(1000, 6000, 4000),
      event(1400, 7000, 4400),
      event(1200, 6500, 3000, 1),
    ]);
    assert.equal(s.via.router["per-write"].unavailableMs, 1200);
    assert.equal(s.via["haproxy-fast"]["per-write"].unavailableMs, 4000);
    assert.equal(s.via.router["per-write"].failedNewTotal, 1);
    const v = verdicts(results([], s));
    assert.deepEqual(
      v.map((x) => x.ok),
      [true, false],
    );
  });

  it("data path: router TPS at 8 clients against HAProxy, one-client latency against HAProxy", () => {
    const table: [number, number, boolean[]][] = [
      [1.02, 0.95, [true, true]],
      [0.87, 1.48, [false, false]],
    ];
    for (const [tpsRatio, latRatio, want] of table) {
      const s = summarizeEvents("planned", [event(1000, 6000, 4000)]);
      const v = verdicts(results([cell(1, latRatio, 1), cell(tpsRatio, 1, 8)], s)).slice(0, 2);
      assert.deepEqual(
        v.map((x) => x.ok),
        want,
      );
    }
  });

  it("switch latency: judged from the leader PUT and from the new primary leaving recovery", () => {
    const sum = (p99: number) => ({ n: 20, p50: p99 / 2, p99, min: 1, max: p99 });
    const r: Results = {
      machine: {},
      options: {},
      ttl: 10,
      switchLatency: {
        summary: {
          router: { putToServedMs: sum(240), putToRouteMs: sum(220), writableToServedMs: sum(30) },
        },
      },
      errors: {},
    };
    assert.deepEqual(
      verdicts(r).map((v) => [v.target.includes("PUT"), v.ok]),
      [
        [true, false],
        [false, true],
      ],
    );
  });

  it("the table names every part that ran and every target", () => {
    const s = summarizeEvents("planned", [event(1000, 6000, 4000)]);
    const text = render(results([cell(0.9, 1.2, 1), cell(0.9, 1.2, 8)], s));
    for (const want of ["1. Data path", "2. Planned switchover", "Targets", "MISSED", "haproxy-fast"]) {
      assert.ok(text.includes(want), want);
    }
  });

  it("the data path prints each proxy's CPU per transaction and the router's ratios", () => {
    const s = summarizeEvents("planned", [event(1000, 6000, 4000)]);
    const text = render(results([cell(0.9, 1.2, 8)], s));
    const lines = text.split("\n");
    const head = lines.findIndex((l) => l.startsWith("Proxy CPU time per transaction"));
    assert.ok(head > 0, text);
    assert.match(
      lines[head + 1]!,
      /^workload\s+clients\s+haproxy\s+naive\s+router\s+router, 1 process\s+router\/haproxy\s+router\/naive\s+router\/1 process$/,
    );
    assert.match(
      lines[head + 2]!,
      /^select-only\s+8\s+22\.0\s+30\.0\s+31\.0\s+30\.0\s+1\.40\s+1\.03\s+1\.03$/,
    );
  });
});

describe("memory part", () => {
  const fig = (proxy: MemoryFigure["proxy"], rssMb: number, settledRssMb: number): MemoryFigure => ({
    proxy,
    state: "connected",
    clients: 8000,
    baselineRssMb: 80,
    rssMb,
    settledRssMb,
    hwmMb: rssMb,
    anonMb: rssMb - 45,
    perClientKb: 5,
    idleCpuMsPerS: 5,
  });
  const judged = (router: number, before: number) => {
    const r = { ...results([], summarizeEvents("planned", [])), dataPath: undefined };
    r.memory = [
      fig("router", router + 20, router),
      fig("router-before", before + 2, before),
      fig("naive", 128, 128),
    ];
    const t = verdicts(r).find((v) => v.target.includes("router before its workers"));
    assert.ok(t, "a target against the router before its workers");
    return { ...t, text: render(r) };
  };

  it("memory is judged settled, against the router before its workers measured in the same run", () => {
    const met = judged(130, 144);
    assert.equal(met.ok, true);
    assert.equal(met.measured, "130 MB against 144 MB (0.90×)");
    assert.match(met.text, /^router\s+8000\s+connected\s+150\.0\s+130\.0\s.*\s0\.90$/m);
    assert.equal(judged(150, 144).ok, false);
  });
});

describe("fast failover part", () => {
  const kill = (mode: KillRecord["mode"], router: number, haproxy: number, failed = 0): KillRecord => ({
    mode,
    victim: "pg1",
    firstServedMs: { router, "haproxy-fast": haproxy },
    unavailableMs: { router, "haproxy-fast": haproxy },
    failedNew: { router: failed, "haproxy-fast": 0 },
    inFlight: { router: 0, "haproxy-fast": 1 },
    released: mode === "release" ? 1 : 0,
    errors: [],
  });
  const kills = [
    ...[900, 1100, 1000, 2900].map((ms) => kill("release", ms, ms + 1500)),
    ...[11_000, 12_000, Number.NaN].map((ms) => kill("ttl", ms, ms + 1500)),
  ];

  it("summarises per mode and path; a kill with no write served counts as the cap, never dropped", () => {
    const s = summarise(kills);
    assert.deepEqual(s.firstServedMs.release.router, { n: 4, p50: 1000, p99: 2900, min: 900, max: 2900 });
    assert.equal(s.firstServedMs.ttl.router.n, 3);
    assert.equal(s.firstServedMs.ttl.router.max, 90_000);
    assert.equal(s.failedNew.release.router, 0);
  });

  it("is judged on the router's p99 with the flag, lost writes and failed new connections", () => {
    const base = { machine: {}, options: {}, ttl: 10, errors: {} };
    const ff = (ks: KillRecord[], lost = 0) => ({
      kills: ks,
      ...summarise(ks),
      lost,
      ttl: 10,
      loopWait: 2,
      haproxyConfig: "",
    });
    const v = (r: Results) => verdicts(r).find((x) => x.target.startsWith("leader container SIGKILL"));
    assert.equal(v({ ...base, fastFailover: ff(kills) })?.ok, true);
    assert.equal(v({ ...base, fastFailover: ff(kills, 1) })?.ok, false);
    assert.equal(v({ ...base, fastFailover: ff([...kills, kill("release", 3100, 0)]) })?.ok, false);
    assert.equal(v({ ...base, fastFailover: ff([...kills, kill("release", 800, 0, 1)]) })?.ok, false);
    const text = render({ ...base, fastFailover: ff(kills) });
    assert.match(text, /8\. Leader container SIGKILL/);
    assert.match(text, /flag off \(Patroni's ttl\)\s+haproxy-fast/);
  });

  it("the flag-off override is the compose file's registrator command without -release-dead-leaders", () => {
    const command = (file: string) =>
      (
        parse(readFileSync(join(REPO_ROOT, file), "utf8")) as {
          services: { registrator: { command: string[] } };
        }
      ).services.registrator.command;
    for (const [stack, file] of [
      ["single", "docker-compose.yml"],
      ["multihost", "docker-compose.multihost.yml"],
    ] as const) {
      const want = command(file).filter((x) => x !== "-release-dead-leaders");
      assert.ok(command(file).includes("-release-dead-leaders"), `${file} runs with the flag`);
      const got = (parse(ttlOverride(stack)) as { services: { registrator: { command: string[] } } }).services
        .registrator.command;
      // Compose's own defaults differ in spelling only where the override names a variable plainly.
      assert.deepEqual(
        got.map((x) => x.replace(/:\?[^}]*}/g, "}")),
        want.map((x) => x.replace(/:\?[^}]*}/g, "}")),
      );
    }
  });

  it("runs only when asked for: it needs the Docker stack and about 15 minutes", () => {
    assert.ok(!DEFAULT_PARTS.includes("fastfailover"));
  });
});

describe("benchmark plumbing", () => {
  it("--quick shortens what was not given explicitly", () => {
    const base = {
      parts: ["datapath"] as const,
      quick: true,
      rounds: 0,
      seconds: 7,
      clients: [1, 8],
      workloads: ["tpcb-like", "select-only"] as const,
      scale: 1,
      switchovers: 0,
      failovers: 0,
      latencySwitchovers: 0,
      registratorStarts: 0,
      registratorSync: 0,
      ffKills: 0,
      ffStack: "single" as const,
      ffModes: ["release", "ttl"] as const,
      memoryClients: [1000],
      heldClients: 10000,
      memoryBefore: "off",
      profileSeconds: 0,
      faults: ["etcd-kill"] as const,
      faultRounds: 1,
      ttl: 10,
      failoverLab: "container" as const,
      walSegmentSize: 16,
      out: "/tmp/x",
    };
    const p = planOf(base);
    assert.equal(p.rounds, 2);
    assert.equal(p.seconds, 7);
    assert.equal(p.latencySwitchovers, 10);
    assert.deepEqual(p.workloads, ["select-only", "tpcb-like"]);
    assert.equal(planOf({ ...base, quick: false }).latencySwitchovers, 20);
    assert.equal(p.ffKills, 3);
    assert.equal(planOf({ ...base, quick: false }).ffKills, 10);
  });

  it("the registrator benchmark's result is the JSON document its output ends with", () => {
    const out = 'warming up\n{\n  "startToKeyMs": { "p99": 12 },\n  "sync": 200\n}\n';
    assert.deepEqual(lastJsonDocument(out), { startToKeyMs: { p99: 12 }, sync: 200 });
    assert.throws(() => lastJsonDocument("nothing here\n"), /no JSON result/);
  });
});
