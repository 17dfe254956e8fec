/**
 * Part 1, the data path: pgbench select-only and tpcb-like at several client
 * counts, straight to the primary, through HAProxy, through the naive pipe proxy
 * and through our router. Rounds are interleaved (every target once per round,
 * in a rotating order) so that a noisy moment on this shared machine falls on
 * all targets alike; medians over rounds; ratios are medians of per-round ratios.
 */
import { cpus } from "node:os";
import { cpuTimeUs, NaiveProxy, RouterProc } from "./endpoints.js";
import type { Lab } from "./lab.js";
import { type PgbenchResult, pgbenchRound, threadsFor, type Workload } from "./pgbench.js";
import { median, pairedRatio, round } from "./stats.js";

/** `router`: as it ships (a supervisor and two workers); `router1`: one process (--workers 0). */
export const TARGETS = ["direct", "haproxy", "naive", "router", "router1"] as const;
export type Target = (typeof TARGETS)[number];
/** The targets that are a proxy process, whose CPU time per transaction is measured. */
export const PROXIES = ["haproxy", "naive", "router", "router1"] as const;
export type Proxy = (typeof PROXIES)[number];

/** One pgbench round on one target; `cpuUsPerTxn`: the proxy's CPU time over the round / transactions. */
export interface RoundResult {
  readonly tps: number;
  readonly latencyMs: number;
  readonly failed: number;
  readonly cpuUsPerTxn?: number;
}

export interface DataPathOptions {
  readonly rounds: number;
  readonly seconds: number;
  readonly clients: readonly number[];
  readonly workloads: readonly Workload[];
  readonly scale: number;
}

export interface Step {
  readonly round: number;
  readonly workload: Workload;
  readonly clients: number;
  readonly target: Target;
}

/** Pure: the order of the rounds. Each (workload, clients) pair runs every target once per round, rotated. */
export function planRounds(
  rounds: number,
  workloads: readonly Workload[],
  clients: readonly number[],
  targets: readonly Target[] = TARGETS,
): Step[] {
  const steps: Step[] = [];
  for (let r = 0; r < rounds; r++) {
    let k = 0;
    for (const workload of workloads) {
      for (const c of clients) {
        const shift = (r + k++) % targets.length;
        const order = [...targets.slice(shift), ...targets.slice(0, shift)];
        for (const target of order) steps.push({ round: r, workload, clients: c, target });
      }
    }
  }
  return steps;
}

export interface Cell {
  readonly workload: Workload;
  readonly clients: number;
  /** Per target: one result per round, in round order. */
  readonly rounds: Record<Target, RoundResult[]>;
  readonly tps: Record<Target, number>;
  readonly latencyMs: Record<Target, number>;
  /** Per proxy: median CPU time (all its threads, µs) per transaction, connection set-up and its health checks included. */
  readonly cpuUsPerTxn: Record<Proxy, number>;
  readonly ratios: {
    readonly routerHaproxy: number;
    readonly routerDirect: number;
    readonly haproxyDirect: number;
    readonly naiveDirect: number;
    /** Latency (lower is better): router's average latency over HAProxy's. */
    readonly latencyRouterHaproxy: number;
    /** CPU per transaction (lower is better): router's over HAProxy's, and router's over the naive proxy's. */
    readonly cpuRouterHaproxy: number;
    readonly cpuRouterNaive: number;
    /** What the workers cost: the router as it ships over the router in one process (TPS; CPU). */
    readonly routerRouter1: number;
    readonly cpuRouterRouter1: number;
  };
}

/** Pure: medians and paired ratios of one cell's rounds. */
export function summarizeCell(
  workload: Workload,
  clients: number,
  rounds: Record<Target, RoundResult[]>,
): Cell {
  const tps = {} as Record<Target, number>;
  const latencyMs = {} as Record<Target, number>;
  for (const t of TARGETS) {
    tps[t] = round(median(rounds[t].map((x) => x.tps)), 0);
    latencyMs[t] = round(median(rounds[t].map((x) => x.latencyMs)), 3);
  }
  const cpu = (t: Proxy) => rounds[t].map((x) => x.cpuUsPerTxn ?? Number.NaN);
  const cpuUsPerTxn = {} as Record<Proxy, number>;
  for (const t of PROXIES) cpuUsPerTxn[t] = round(median(cpu(t)), 1);
  const series = (t: Target) => rounds[t].map((x) => x.tps);
  const lat = (t: Target) => rounds[t].map((x) => x.latencyMs);
  return {
    workload,
    clients,
    rounds,
    tps,
    latencyMs,
    cpuUsPerTxn,
    ratios: {
      routerHaproxy: round(pairedRatio(series("router"), series("haproxy")), 3),
      routerDirect: round(pairedRatio(series("router"), series("direct")), 3),
      haproxyDirect: round(pairedRatio(series("haproxy"), series("direct")), 3),
      naiveDirect: round(pairedRatio(series("naive"), series("direct")), 3),
      latencyRouterHaproxy: round(pairedRatio(lat("router"), lat("haproxy")), 3),
      cpuRouterHaproxy: round(pairedRatio(cpu("router"), cpu("haproxy")), 3),
      cpuRouterNaive: round(pairedRatio(cpu("router"), cpu("naive")), 3),
      routerRouter1: round(pairedRatio(series("router"), series("router1")), 3),
      cpuRouterRouter1: round(pairedRatio(cpu("router"), cpu("router1")), 3),
    },
  };
}

export async function runDataPath(
  lab: Lab,
  o: DataPathOptions,
  log: (msg: string) => void,
): Promise<{ options: DataPathOptions & { threads: Record<number, number> }; cells: Cell[] }> {
  const primary = await lab.primary();
  await lab.pgbenchTables(o.scale);
  const naive = await NaiveProxy.start(primary.pgPort);
  const single = await RouterProc.start({
    etcd: lab.cluster.etcd.endpoint,
    scope: lab.cluster.scope,
    args: ["--workers", "0"],
  });
  const cores = cpus().length;
  const threads: Record<number, number> = {};
  for (const c of o.clients) threads[c] = threadsFor(c, cores);
  const ports: Record<Target, number> = {
    direct: primary.pgPort,
    haproxy: lab.haproxyDocsPort,
    naive: naive.port,
    router: lab.router.port,
    router1: single.port,
  };
  const pids: Record<Proxy, number> = {
    haproxy: lab.haproxy.pid,
    naive: naive.pid,
    router: lab.router.pid,
    router1: single.pid,
  };
  const results = new Map<string, Record<Target, RoundResult[]>>();
  const key = (w: Workload, c: number) => `${w}/${c}`;
  try {
    const steps = planRounds(o.rounds, o.workloads, o.clients);
    let i = 0;
    for (const s of steps) {
      i++;
      const pid = s.target === "direct" ? undefined : pids[s.target];
      const cpuBefore = pid === undefined ? 0 : cpuTimeUs(pid);
      const r: PgbenchResult = await pgbenchRound(lab.pg(ports[s.target]), {
        workload: s.workload,
        clients: s.clients,
        threads: threads[s.clients]!,
        seconds: o.seconds,
      });
      let cell = results.get(key(s.workload, s.clients));
      if (!cell) {
        cell = { direct: [], haproxy: [], naive: [], router: [], router1: [] };
        results.set(key(s.workload, s.clients), cell);
      }
      const cpuUsPerTxn =
        pid === undefined || r.transactions <= 0 ? undefined : (cpuTimeUs(pid) - cpuBefore) / r.transactions;
      cell[s.target].push({ tps: r.tps, latencyMs: r.latencyMs, failed: r.failed, cpuUsPerTxn });
      log(
        `data path ${i}/${steps.length}: round ${s.round + 1} ${s.workload} c=${s.clients} ${s.target}: ` +
          `${Math.round(r.tps)} tps, ${r.latencyMs} ms` +
          (cpuUsPerTxn === undefined ? "" : `, proxy CPU ${cpuUsPerTxn.toFixed(1)} µs/txn`),
      );
    }
  } finally {
    await naive.stop();
    await single.stop("SIGTERM");
  }
  const cells: Cell[] = [];
  for (const w of o.workloads) {
    for (const c of o.clients) cells.push(summarizeCell(w, c, results.get(key(w, c))!));
  }
  return { options: { ...o, threads }, cells };
}
