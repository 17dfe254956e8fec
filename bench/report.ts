/** The printed table and the verdicts against the targets. Pure functions of the results document. */
import type { Cell } from "./datapath.js";
import type { EventSummary, Via } from "./failover.js";
import type { FastFailoverResults, FfMode, FfPath } from "./fast-failover.js";
import {
  checkFault,
  describeTarget,
  type FaultSummary,
  type FaultsResult,
  FRONT_ENDS,
  type FrontEnd,
  type FrontEndSummary,
  QUIET_MS,
  summarizeFaults,
} from "./fault-figures.js";
import {
  checkHostFault,
  describeHostTarget,
  type HostsResult,
  hostsTable,
  hostTarget,
} from "./host-figures.js";
import { type LabRecord, labLine, shortServerVersion } from "./lab-versions.js";
import type { MemoryFigure } from "./memory.js";
import type { Inclusive, SelfTime } from "./profile.js";
import type { Summary } from "./stats.js";

export interface Results {
  readonly machine: Record<string, unknown>;
  readonly options: Record<string, unknown>;
  /** Patroni's ttl of the lab the unplanned failovers ran on. */
  ttl: number;
  /** Each lab's versions and the parts that ran on it (results from before 2026-12-03 have none). */
  labs?: LabRecord[];
  setup?: Record<string, unknown>;
  /** The switchover and failover parts' lab, when it is not `setup`'s. */
  failoverSetup?: Record<string, unknown>;
  dataPath?: { cells: Cell[] };
  planned?: { summary: EventSummary };
  unplanned?: { summary: EventSummary };
  switchLatency?: { summary: Record<string, unknown> };
  registrator?: Record<string, unknown>;
  fastFailover?: FastFailoverResults;
  memory?: MemoryFigure[];
  profile?: { tps: number; profile: string; top: SelfTime[]; inclusive?: Inclusive[] };
  faults?: FaultsResult;
  hosts?: HostsResult;
  errors: Record<string, string>;
}

export interface Verdict {
  readonly target: string;
  readonly measured: string;
  readonly ok: boolean | null;
}

function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) {
    for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  }
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const f = (x: number | undefined, digits = 0) =>
  x === undefined || !Number.isFinite(x) ? "-" : x.toFixed(digits);

/** The larger of the two writers' median windows: write unavailability as a client sees it. */
export function windowOf(s: EventSummary, via: Via): number {
  return Math.max(s.via[via]["per-write"].unavailableMs, s.via[via]["long-lived"].unavailableMs);
}

export function verdicts(r: Results): Verdict[] {
  const out: Verdict[] = [];
  const cell = (w: string, c: number) => r.dataPath?.cells.find((x) => x.workload === w && x.clients === c);
  const s8 = cell("select-only", 8);
  if (s8) {
    const x = s8.ratios.routerHaproxy;
    out.push({
      target: "router >= 1.0x HAProxy TPS (select-only, 8 clients)",
      measured: `${f(x, 2)}x`,
      ok: x >= 1,
    });
  }
  const s1 = cell("select-only", 1);
  if (s1) {
    out.push({
      target: "one-client latency <= HAProxy's (select-only)",
      measured: `${f(s1.latencyMs.router, 3)} ms vs ${f(s1.latencyMs.haproxy, 3)} ms (${f(s1.ratios.latencyRouterHaproxy, 2)}x)`,
      ok: s1.ratios.latencyRouterHaproxy <= 1,
    });
  }
  const p = r.planned?.summary;
  if (p) {
    const router = windowOf(p, "router");
    const best = Math.min(windowOf(p, "haproxy-docs"), windowOf(p, "haproxy-fast"));
    out.push({
      target: "planned switchover: unavailability <= 1/2 of HAProxy's (the better of its two configs)",
      measured: `${router} ms vs ${best} ms`,
      ok: router <= best / 2,
    });
    const failedNew = p.via.router["per-write"].failedNewTotal + p.via.router["long-lived"].failedNewTotal;
    out.push({
      target: "planned switchover: zero failed new-connection attempts through the router",
      measured: `${failedNew} over ${p.n} switchover(s)`,
      ok: failedNew === 0,
    });
  }
  const u = r.unplanned?.summary;
  if (u) {
    const w = windowOf(u, "router");
    out.push({
      target: `unplanned failover: unavailability <= ttl + 1 s (${r.ttl + 1} s)`,
      measured: `${w} ms`,
      ok: w <= (r.ttl + 1) * 1000,
    });
  }
  const sl = r.switchLatency?.summary as
    | { router: { putToServedMs: Summary; writableToServedMs: Summary } }
    | undefined;
  if (sl) {
    const a = sl.router.putToServedMs;
    const w = sl.router.writableToServedMs;
    out.push({
      target: "switch latency p99 <= 50 ms (leader key PUT -> first client served by the new primary)",
      measured: `p50 ${a.p50} ms, p99 ${a.p99} ms (n=${a.n})`,
      ok: a.p99 <= 50,
    });
    out.push({
      target: "switch latency p99 <= 50 ms (new primary out of recovery -> first client served)",
      measured: `p50 ${w.p50} ms, p99 ${w.p99} ms (n=${w.n})`,
      ok: w.p99 <= 50,
    });
  }
  const reg = r.registrator?.["startToKeyMs"] as Summary | undefined;
  if (reg) {
    out.push({
      target: "registrator: container start -> key in etcd p99 <= 100 ms",
      measured: `p50 ${reg.p50} ms, p99 ${reg.p99} ms (n=${reg.n})`,
      ok: reg.p99 <= 100,
    });
  }
  const ff = r.fastFailover;
  if (ff && ff.firstServedMs.release.router.n > 0) {
    const on = ff.firstServedMs.release.router;
    const failed = ff.failedNew.release.router;
    out.push({
      target: `leader container SIGKILL -> first write served through the router p99 <= 3 s, 0 lost, 0 failed (-release-dead-leaders, ${ff.stack ?? "single"} stack)`,
      measured: `p50 ${f(on.p50 / 1000, 2)} s, p99 ${f(on.p99 / 1000, 2)} s (n=${on.n}); ${ff.lost} lost, ${failed} failed new connections`,
      ok: on.p99 <= 3000 && ff.lost === 0 && failed === 0,
    });
  }
  for (const m of r.memory?.filter((x) => x.proxy === "router" && x.clients >= 8000) ?? []) {
    out.push({
      target: `router memory < 200 MB with ${m.clients} ${m.state} idle clients`,
      measured: `${m.rssMb} MB resident`,
      ok: m.rssMb < 200,
    });
    const before = r.memory?.find((x) => x.proxy === "router-before" && x.clients === m.clients);
    if (before && m.state === "connected" && m.settledRssMb !== undefined) {
      out.push({
        target: `router memory (supervisor + workers) no more than the router before its workers, ${m.clients} connected idle clients, settled`,
        measured: `${m.settledRssMb} MB against ${before.settledRssMb} MB (${f(m.settledRssMb / before.settledRssMb, 2)}×)`,
        ok: m.settledRssMb <= before.settledRssMb,
      });
    }
  }
  for (const x of r.faults ? summarizeFaults(r.faults.runs) : []) {
    const fig = x.frontEnds.router;
    const errors = x.errors.length > 0 ? `error: ${x.errors.join("; ")}` : "";
    out.push({
      target: `fault, ${x.label}: ${describeTarget(x.target)} (router)`,
      measured: [fig ? faultMeasured(fig) : "", errors].filter((s) => s !== "").join("; ") || "not measured",
      ok: fig !== null && x.errors.length === 0 && checkFault(x.target, fig).ok,
    });
  }
  for (const x of r.hosts?.runs ?? []) {
    const t = hostTarget(x.fault, r.hosts!.ttl);
    out.push({
      target: `host fault, ${x.label}: ${describeHostTarget(t)}`,
      measured: x.error
        ? `error: ${x.error}`
        : `stopped ${(x.writesStoppedMs / 1000).toFixed(1)} s, ${x.failedConnections} failed connections, ${x.lost} lost, ${x.ackedByDemotedLeader} acked by a demoted leader`,
      ok: checkHostFault(t, x).ok,
    });
  }
  return out;
}

function stoppedText(x: FrontEndSummary): string {
  return x.n > 1
    ? `${f(x.writesStoppedMs / 1000, 1)} (max ${f(x.maxStoppedMs / 1000, 1)})`
    : f(x.writesStoppedMs / 1000, 1);
}

function faultMeasured(x: FrontEndSummary): string {
  const inFlight = x.inFlight > 0 ? ` (+${x.inFlight} in start-up on the killed server)` : "";
  const rounds = x.n > 1 ? ` over ${x.n} rounds` : "";
  return `stopped ${stoppedText(x)} s, ${x.failedNew} failed new${inFlight}, ${x.lost} lost${rounds}`;
}

/**
 * Part 7's table: one row per fault and front end; "n/a" where a fault does not apply. Over
 * several rounds: the median stop (and the largest), totals of the counts.
 */
export function faultTable(fr: FaultsResult): string {
  const rows: string[][] = [
    [
      "fault",
      "front end",
      "writes stopped s",
      "before s",
      "failed new conns",
      "sessions ended",
      "acked writes lost",
      "target",
      "verdict",
      "load 1m",
    ],
  ];
  const row = (s: FaultSummary, fe: FrontEnd, first: boolean) => {
    const head = [first ? s.label : "", fe];
    const x = s.frontEnds[fe];
    const errors = s.errors.length > 0 ? `ERROR: ${s.errors.join("; ")}` : "";
    const load = first ? s.load.map((l) => f(l, 1)).join(", ") : "";
    if (!x && errors) return [...head, "-", "-", "-", "-", "-", describeTarget(s.target), errors, load];
    if (!x) return [...head, "n/a", "n/a", "n/a", "n/a", "n/a", "", "n/a", ""];
    const c = checkFault(s.target, x);
    const verdict =
      c.ok && !errors
        ? "met"
        : ["MISSED", c.misses.length > 0 ? `(${c.misses.join("; ")})` : "", errors]
            .filter((t) => t !== "")
            .join(" ");
    return [
      ...head,
      stoppedText(x),
      f(x.beforeMs / 1000, 1),
      x.inFlight > 0 ? `${x.failedNew} (+${x.inFlight} in flight)` : String(x.failedNew),
      String(x.sessionsEnded),
      String(x.lost),
      describeTarget(s.target),
      verdict,
      load,
    ];
  };
  for (const s of summarizeFaults(fr.runs)) {
    for (const [i, fe] of FRONT_ENDS.entries()) rows.push(row(s, fe, i === 0));
  }
  return table(rows);
}

export function render(r: Results): string {
  const parts: string[] = [];
  const m = r.machine as {
    date?: string;
    host?: string;
    cpus?: string;
    loadBefore?: number[];
    loadAfter?: number[];
    cpuBusyBeforeRun?: number;
  };
  const busy =
    m.cpuBusyBeforeRun === undefined ? "" : `; CPU ${Math.round(m.cpuBusyBeforeRun * 100)}% busy just before`;
  parts.push(
    `pgha benchmark — ${m.date} on ${m.host} (${m.cpus}); load average before ${m.loadBefore?.join(" ")}, after ${m.loadAfter?.join(" ")}${busy}`,
  );
  if (r.labs && r.labs.length > 0)
    parts.push(
      `Versions measured (Patroni's REST /patroni, PostgreSQL's server_version), per lab:\n${r.labs.map((l) => `  ${labLine(l)}`).join("\n")}`,
    );
  /** " on Patroni 4.0.7 / PostgreSQL 17.12" for a part whose lab is recorded. */
  const on = (part: string) => {
    const l = r.labs?.find((x) => x.parts.includes(part));
    return l
      ? ` on Patroni ${l.patroni ?? "unknown"} / PostgreSQL ${l.postgres === null ? "unknown" : shortServerVersion(l.postgres)}`
      : "";
  };
  if (r.dataPath) {
    const o = r.options as { rounds?: number; seconds?: number };
    const rows: string[][] = [
      [
        "workload",
        "clients",
        "direct",
        "haproxy",
        "naive",
        "router",
        "router, 1 process",
        "router/haproxy",
        "router/1 process",
        "router/direct",
        "haproxy/direct",
        "naive/direct",
      ],
    ];
    for (const c of r.dataPath.cells) {
      const cellText = (t: "direct" | "haproxy" | "naive" | "router" | "router1") =>
        `${f(c.tps[t])} (${f(c.latencyMs[t], 3)})`;
      rows.push([
        c.workload,
        String(c.clients),
        cellText("direct"),
        cellText("haproxy"),
        cellText("naive"),
        cellText("router"),
        c.tps.router1 === undefined ? "–" : cellText("router1"),
        f(c.ratios.routerHaproxy, 2),
        f(c.ratios.routerRouter1, 2),
        f(c.ratios.routerDirect, 2),
        f(c.ratios.haproxyDirect, 2),
        f(c.ratios.naiveDirect, 2),
      ]);
    }
    parts.push(
      `\n1. Data path${on("datapath")}: pgbench TPS (average latency ms), median of ${o.rounds} interleaved rounds x ${o.seconds} s; ratios are medians of per-round ratios\n` +
        table(rows),
    );
    const cpuRows: string[][] = [
      [
        "workload",
        "clients",
        "haproxy",
        "naive",
        "router",
        "router, 1 process",
        "router/haproxy",
        "router/naive",
        "router/1 process",
      ],
    ];
    for (const c of r.dataPath.cells) {
      // results written before this figure existed have no cpuUsPerTxn
      const cpu = c.cpuUsPerTxn ?? ({} as Partial<Cell["cpuUsPerTxn"]>);
      cpuRows.push([
        c.workload,
        String(c.clients),
        f(cpu.haproxy, 1),
        f(cpu.naive, 1),
        f(cpu.router, 1),
        f(cpu.router1, 1),
        f(c.ratios.cpuRouterHaproxy, 2),
        f(c.ratios.cpuRouterNaive, 2),
        f(c.ratios.cpuRouterRouter1, 2),
      ]);
    }
    parts.push(
      "\nProxy CPU time per transaction, µs (all the process's threads; medians over the same rounds; connection set-up and health checks included)\n" +
        table(cpuRows),
    );
  }
  for (const [title, s] of [
    [`2. Planned switchover (Patroni REST /switchover)${on("planned")}`, r.planned?.summary],
    [
      `3. Unplanned failover (kill -9 of Patroni + postmaster; ttl ${r.ttl} s)${on("unplanned")}`,
      r.unplanned?.summary,
    ],
  ] as const) {
    if (!s) continue;
    const rows: string[][] = [
      [
        "path",
        "per-write: window ms",
        "failed (in flight)",
        "long-lived: window ms",
        "failed (reconnects, in flight)",
        "not recovered",
      ],
    ];
    for (const via of ["router", "haproxy-docs", "haproxy-fast"] as const) {
      const a = s.via[via]["per-write"];
      const b = s.via[via]["long-lived"];
      rows.push([
        via,
        `${a.unavailableMs} (max ${a.maxUnavailableMs})`,
        `${a.failedTotal} (${a.inFlightTotal})`,
        `${b.unavailableMs} (max ${b.maxUnavailableMs})`,
        `${b.failedTotal} (${b.failedNewTotal}, ${b.inFlightTotal})`,
        String(a.notRecovered + b.notRecovered),
      ]);
    }
    parts.push(
      `\n${title}: n=${s.n}, Patroni's own switch ${s.patroniMs} ms (median); windows are medians, failed attempts are totals (one attempt per 50 ms)\n` +
        table(rows),
    );
  }
  const sl = r.switchLatency?.summary as
    | Record<string, Record<string, Summary> | Summary | number>
    | undefined;
  if (sl) {
    const rows: string[][] = [["measure", "p50 ms", "p99 ms", "max ms", "n"]];
    const add = (label: string, s: Summary | undefined) =>
      s && rows.push([label, f(s.p50, 1), f(s.p99, 1), f(s.max, 1), String(s.n)]);
    add("Patroni + PostgreSQL: leader PUT -> out of recovery", sl["putToWritableMs"] as Summary);
    const router = sl["router"] as Record<string, Summary>;
    add("router: leader PUT -> decision to route there", router["putToRouteMs"]);
    add("router: leader PUT -> first client served", router["putToServedMs"]);
    add("router: out of recovery -> first client served", router["writableToServedMs"]);
    add("router: decision -> first client served", router["routeToServedMs"]);
    add(
      "haproxy-docs: leader PUT -> first client served",
      (sl["haproxy-docs"] as Record<string, Summary>)["putToServedMs"],
    );
    add(
      "haproxy-fast: leader PUT -> first client served",
      (sl["haproxy-fast"] as Record<string, Summary>)["putToServedMs"],
    );
    parts.push(`\n4. Switch latency over planned switchovers${on("latency")}\n${table(rows)}`);
  }
  if (r.registrator) {
    const g = r.registrator as Record<string, unknown>;
    const s = g["startToKeyMs"] as Summary | undefined;
    const b = g["startToKeyBaselineMs"] as Summary | undefined;
    const rss = g["rssAfterSync"] as { rssMb?: number } | undefined;
    parts.push(
      `\n5. Registrator (real dockerd): start -> key p50 ${s?.p50} ms, p99 ${s?.p99} ms (baseline pipeline p50 ${b?.p50}, p99 ${b?.p99}; ratio p50 ${g["startToKeyRatioP50"]}); ` +
        `initial sync of ${g["sync"]} containers ${g["syncInternalMs"]} ms (baseline ${g["syncBaselineMs"]} ms); resident ${rss?.rssMb} MB`,
    );
  }
  if (r.fastFailover) {
    const ff = r.fastFailover;
    const rows: string[][] = [["registrator", "path", "p50 s", "p99 s", "max s", "kills", "failed new"]];
    for (const mode of ["release", "ttl"] as const satisfies readonly FfMode[]) {
      for (const p of ["router", "haproxy-fast"] as const satisfies readonly FfPath[]) {
        const x = ff.firstServedMs[mode][p];
        if (x.n === 0) continue;
        rows.push([
          mode === "release" ? "-release-dead-leaders" : "flag off (Patroni's ttl)",
          p,
          f(x.p50 / 1000, 2),
          f(x.p99 / 1000, 2),
          f(x.max / 1000, 2),
          String(x.n),
          String(ff.failedNew[mode][p]),
        ]);
      }
    }
    parts.push(
      `\n8. Leader container SIGKILL (compose stack${ff.stack === "multihost" ? " with docker-compose.multihost.yml, -ip" : ", -internal"}, real Docker engine; ttl ${ff.ttl} s, loop_wait ${ff.loopWait} s): ` +
        `death (Docker's FinishedAt) -> first write served by the new primary, per-write node-postgres writers; ` +
        `${ff.lost} acknowledged writes lost\n${table(rows)}`,
    );
  }
  if (r.memory) {
    const rows: string[][] = [
      [
        "process",
        "clients",
        "state",
        "resident MB",
        "settled MB",
        "baseline MB",
        "KB/client",
        "idle CPU ms/s",
        "× naive",
        "settled × before",
      ],
    ];
    for (const x of r.memory) {
      // The naive proxy with as many connected clients, in the same run: the baseline of the ratio.
      const naive = r.memory.find(
        (y) => y.proxy === "naive" && y.clients === x.clients && y.state === "connected",
      );
      // The router before its workers, in the same run: "memory must not get worse".
      const before = r.memory.find((y) => y.proxy === "router-before" && y.clients === x.clients);
      const settled = (y: MemoryFigure | undefined) => y?.settledRssMb;
      rows.push([
        x.proxy,
        String(x.clients),
        x.state,
        f(x.rssMb, 1),
        settled(x) === undefined ? "" : f(settled(x)!, 1),
        f(x.baselineRssMb, 1),
        f(x.perClientKb, 1),
        f(x.idleCpuMsPerS, 1),
        naive && x.state === "connected" ? f(x.rssMb / naive.rssMb, 2) : "",
        settled(before) && settled(x) && x.state === "connected" ? f(settled(x)! / settled(before)!, 2) : "",
      ]);
    }
    parts.push(
      "\n6. Memory with idle clients (connected: client + upstream socket; held: client socket only); " +
        "resident: 3 s after the clients settled, settled: 25 s after (V8 has collected the burst's garbage); " +
        "before: the router before its workers, built in this run; " +
        `idle CPU: the process's CPU time in the median of 6 seconds with those clients open and silent\n${table(rows)}`,
    );
  }
  if (r.profile) {
    const rows: string[][] = [["self ms", "% all", "% busy", "function", "where"]];
    for (const t of r.profile.top) rows.push([String(t.selfMs), f(t.pct, 1), f(t.busyPct, 1), t.fn, t.where]);
    parts.push(
      `\nRouter CPU profile (pgbench select-only, 8 clients, ${r.profile.tps} tps): top self time\n${table(rows)}`,
    );
    const inc = r.profile.inclusive ?? [];
    if (inc.length > 0) {
      const irows = [
        ["% all", "router function on the stack", "where"],
        ...inc.map((t) => [f(t.pct, 1), t.fn, t.where]),
      ];
      parts.push(`${table(irows)}`);
    }
  }
  if (r.faults) {
    const fr = r.faults;
    parts.push(
      `\n7. Faults on the compose stack (Patroni ttl ${fr.ttl} s; ${fr.rounds === 1 ? "1 round of each fault" : `${fr.rounds} interleaved rounds of each fault: writes stopped is the median (and the largest), the counts are totals`}; per front end ${fr.writersPerFrontEnd.length} writers (${fr.writersPerFrontEnd.join(", ")}), one attempt per ${fr.paceMs} ms each; ` +
        `HAProxy on the host, Patroni's template with ${fr.haproxy.checks}; before: the longest gap between writes in the ${QUIET_MS / 1000} s before the fault, the pace and the load alone; in flight: connections in start-up on the SIGKILLed server, counted apart)\n${faultTable(fr)}`,
    );
  }
  if (r.hosts) {
    const h = r.hosts;
    parts.push(
      `\n9. Whole Docker hosts failing: three Docker hosts of this machine (network namespaces, a dockerd each), the multi-host stack on them (Patroni ttl ${h.ttl} s; ready in ${Math.round(h.startupMs / 1000)} s); ${h.writers.length} writers (${h.writers.join(", ")}), one attempt per ${h.paceMs} ms each: psql through one URL naming the three routers (target_session_attrs=read-write, connect_timeout=${h.connectTimeoutS}), node-postgres through a router on a host the fault leaves up; acked by demoted leader: writes the old leader acknowledged past the fork of the next timeline\n${hostsTable(h)}`,
    );
  }
  const v = verdicts(r);
  if (v.length > 0) {
    const rows = [
      ["target", "measured", "verdict"],
      ...v.map((x) => [x.target, x.measured, x.ok ? "met" : "MISSED"]),
    ];
    parts.push(`\nTargets\n${table(rows)}`);
  }
  for (const [part, err] of Object.entries(r.errors)) parts.push(`\n${part}: FAILED — ${err}`);
  return parts.join("\n") + "\n";
}
