/**
 * Part 7's arithmetic, pure: the faults it plays, their targets (issue 15), and what a front
 * end's writers add up to for one fault. faults.ts does the I/O; report.ts prints.
 */

export const FAULTS = [
  "leader-stop",
  "leader-kill",
  "etcd-kill",
  "etcd-all-stop",
  "leader-cut",
  "router-worker-kill",
  "registrator-kill",
] as const;
export type Fault = (typeof FAULTS)[number];

export const FRONT_ENDS = ["router", "haproxy"] as const;
export type FrontEnd = (typeof FRONT_ENDS)[number];

/** How long the whole-etcd outage and the leader's cut from etcd last (issue 15). */
export const ETCD_OUTAGE_MS = 40_000;
export const LEADER_CUT_MS = 45_000;

export const FAULT_LABELS: Readonly<Record<Fault, string>> = {
  "leader-stop": "the leader's container stopped",
  "leader-kill": "the leader's container SIGKILLed",
  "etcd-kill": "one etcd member SIGKILLed (raft leader)",
  "etcd-all-stop": `every etcd member stopped for ${ETCD_OUTAGE_MS / 1000} s`,
  "leader-cut": `the leader cut off from etcd for ${LEADER_CUT_MS / 1000} s`,
  "router-worker-kill": "a router worker SIGKILLed",
  "registrator-kill": "the registrator SIGKILLed",
};

/** HAProxy has no worker of ours to lose; every other fault is the stack's, and both front ends see it. */
export function appliesTo(fault: Fault, fe: FrontEnd): boolean {
  return fe === "router" || fault !== "router-worker-kill";
}

/**
 * A connection whose start-up the dying server had already answered cannot be replayed
 * elsewhere, and one a killed router worker had accepted goes with it (README: "Faults"): for
 * a SIGKILLed leader or router worker, failures of connections begun before the kill are
 * counted apart, as the e2e fault suite does.
 */
export function inFlightMayFail(fault: Fault): boolean {
  return fault === "leader-kill" || fault === "router-worker-kill";
}

export interface FaultTarget {
  /** Longest time without an acknowledged write, in ms; null: no bound on it. */
  readonly maxStoppedMs: number | null;
  /** Every fault: 0 failed new connections and 0 acknowledged writes lost. */
  readonly maxFailedNew: 0;
  readonly maxLost: 0;
}

/** The targets for one fault, with Patroni's ttl in seconds. */
export function targetOf(fault: Fault, ttlS: number): FaultTarget {
  const maxStoppedMs =
    fault === "etcd-all-stop" || fault === "etcd-kill"
      ? 1000
      : fault === "leader-cut"
        ? (ttlS + 2) * 1000
        : null;
  return { maxStoppedMs, maxFailedNew: 0, maxLost: 0 };
}

export function describeTarget(t: FaultTarget): string {
  const stop = t.maxStoppedMs === null ? "" : `stopped <= ${t.maxStoppedMs / 1000} s, `;
  return `${stop}0 failed new, 0 lost`;
}

export interface AttemptFailure {
  /** When the attempt began and when it failed, ms since epoch. */
  readonly startedAt: number;
  readonly at: number;
  readonly phase: "connect" | "session";
  readonly error: string;
}

/** One writer as the I/O side recorded it: when each acknowledged write returned, and each failure. */
export interface WriterRecord {
  readonly kind: string;
  readonly ackTimes: readonly number[];
  readonly failures: readonly AttemptFailure[];
}

export interface WriterFigures {
  readonly kind: string;
  readonly acked: number;
  readonly stoppedMs: number;
  /** The longest gap between acknowledged writes in the quiet seconds before the fault (ms). */
  readonly beforeMs: number;
  readonly failedNew: number;
  readonly inFlight: number;
  readonly sessionsEnded: number;
  /** Failures, times in ms from the fault's start. */
  readonly failures: readonly { startedMs: number; atMs: number; phase: string; error: string }[];
  /** When each acknowledged write returned, ms from the fault's start. */
  readonly ackMs: readonly number[];
}

export interface FrontEndFigures {
  /** The longest time without an acknowledged write, over this front end's writers (ms). */
  readonly writesStoppedMs: number;
  /**
   * The same longest gap in the quiet seconds before the fault (worst writer): the pace and the
   * machine's load alone, what the figure above is to be read against.
   */
  readonly beforeMs: number;
  readonly failedNew: number;
  /** Connections in start-up on a SIGKILLed server (counted apart; see inFlightMayFail). */
  readonly inFlight: number;
  readonly sessionsEnded: number;
  readonly lost: number;
  /** Writers that wrote nothing after the fault began. */
  readonly notRecovered: number;
  readonly writers: readonly WriterFigures[];
}

/**
 * Longest time between two acknowledged writes after `from`, counting from `from` to the
 * first one and from the last one to `end` (a writer that never wrote again shows its whole
 * outage). Times in ms since epoch, ascending.
 */
export function longestGap(ackTimes: readonly number[], from: number, end: number): number {
  let gap = 0;
  let prev = from;
  for (const at of ackTimes) {
    if (at < from) continue;
    gap = Math.max(gap, at - prev);
    prev = at;
  }
  return Math.max(gap, end - prev);
}

/** The seconds before a fault that show the writers' pace on a quiet stack (they start 3 s before). */
export const QUIET_MS = 2_000;

/** Longest gap between two acknowledged writes that both returned in the `windowMs` before `t0`. */
export function gapBefore(ackTimes: readonly number[], t0: number, windowMs = QUIET_MS): number {
  let gap = 0;
  let prev: number | null = null;
  for (const at of ackTimes) {
    if (at < t0 - windowMs || at > t0) continue;
    if (prev !== null) gap = Math.max(gap, at - prev);
    prev = at;
  }
  return gap;
}

/**
 * What one front end's writers add up to. `t0`: the fault began; `injected`: the command that
 * played it returned; `end`: the writers stopped. Gaps count from a second before `t0`, as
 * the e2e suite's do, so a gap that began just before the fault is whole.
 */
export function frontEndFigures(
  writers: readonly WriterRecord[],
  lost: number,
  t: { t0: number; injected: number; end: number; inFlightMayFail: boolean },
): FrontEndFigures {
  const figures = writers.map((w): WriterFigures => {
    const connect = w.failures.filter((f) => f.phase === "connect");
    const inFlight = t.inFlightMayFail ? connect.filter((f) => f.startedAt <= t.injected) : [];
    return {
      kind: w.kind,
      acked: w.ackTimes.length,
      stoppedMs: longestGap(w.ackTimes, t.t0 - 1000, t.end),
      beforeMs: gapBefore(w.ackTimes, t.t0),
      failedNew: connect.length - inFlight.length,
      inFlight: inFlight.length,
      sessionsEnded: w.failures.filter((f) => f.phase === "session").length,
      failures: w.failures.map((f) => ({
        startedMs: f.startedAt - t.t0,
        atMs: f.at - t.t0,
        phase: f.phase,
        error: f.error,
      })),
      ackMs: w.ackTimes.map((a) => a - t.t0),
    };
  });
  const sum = (k: "failedNew" | "inFlight" | "sessionsEnded") => figures.reduce((a, w) => a + w[k], 0);
  return {
    writesStoppedMs: Math.max(0, ...figures.map((w) => w.stoppedMs)),
    beforeMs: Math.max(0, ...figures.map((w) => w.beforeMs)),
    failedNew: sum("failedNew"),
    inFlight: sum("inFlight"),
    sessionsEnded: sum("sessionsEnded"),
    lost,
    notRecovered: writers.filter((w) => !w.ackTimes.some((a) => a > t.t0)).length,
    writers: figures,
  };
}

export interface FaultCheck {
  readonly ok: boolean;
  /** What missed, in words; empty when ok. */
  readonly misses: readonly string[];
}

type Checked = Pick<FrontEndFigures, "writesStoppedMs" | "failedNew" | "lost" | "notRecovered">;

/**
 * One front end's figures against the fault's targets; over several rounds, the median stop
 * and the totals of failures and losses.
 */
export function checkFault(t: FaultTarget, f: Checked): FaultCheck {
  const misses: string[] = [];
  if (t.maxStoppedMs !== null && f.writesStoppedMs > t.maxStoppedMs)
    misses.push(`writes stopped ${f.writesStoppedMs} ms > ${t.maxStoppedMs} ms`);
  if (f.failedNew > t.maxFailedNew) misses.push(`${f.failedNew} failed new connections`);
  if (f.lost > t.maxLost) misses.push(`${f.lost} acknowledged writes lost`);
  if (f.notRecovered > 0) misses.push(`${f.notRecovered} writers did not write again`);
  return { ok: misses.length === 0, misses };
}

export interface FaultRun {
  readonly fault: Fault;
  /** 1-based; rounds are interleaved (every fault once, then again). */
  readonly round?: number;
  readonly label: string;
  /** ISO time the fault began. */
  readonly at: string;
  readonly load: { before: number[]; after: number[] };
  /** From the fault's start to its command returning, and to the stack serving again (ms). */
  readonly injectMs: number;
  readonly recoveredMs: number;
  readonly target: FaultTarget;
  /** null: the fault does not apply to that front end (shown "n/a"). */
  readonly frontEnds: Readonly<Record<FrontEnd, FrontEndFigures | null>>;
  readonly detail?: string;
  /** The agents' and the router's log lines about the leader from a second before the fault to its end. */
  readonly decisions?: Readonly<Record<string, readonly string[]>>;
  readonly error?: string;
}

export interface FaultsResult {
  readonly ttl: number;
  readonly rounds: number;
  readonly writersPerFrontEnd: readonly string[];
  readonly paceMs: number;
  readonly haproxy: { readonly checks: string; readonly config: string };
  readonly runs: readonly FaultRun[];
}

/** One fault over its rounds, one front end: medians of the stops, totals of the counts. */
export interface FrontEndSummary {
  readonly n: number;
  /** Median over the rounds of the longest stop, and the largest. */
  readonly writesStoppedMs: number;
  readonly maxStoppedMs: number;
  readonly beforeMs: number;
  readonly failedNew: number;
  readonly inFlight: number;
  readonly sessionsEnded: number;
  readonly lost: number;
  readonly notRecovered: number;
}

export interface FaultSummary {
  readonly fault: Fault;
  readonly label: string;
  readonly target: FaultTarget;
  /** Rounds played, and the errors of those that could not be. */
  readonly rounds: number;
  readonly errors: readonly string[];
  readonly frontEnds: Readonly<Record<FrontEnd, FrontEndSummary | null>>;
  /** The 1-minute load average before each round. */
  readonly load: readonly number[];
}

/** Nearest-rank median (the lower middle of an even count): an observed value. */
function medianOf(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor((s.length - 1) / 2)] ?? 0;
}

/** The runs of each fault, in the order of the faults' first runs. */
export function summarizeFaults(runs: readonly FaultRun[]): FaultSummary[] {
  const order: Fault[] = [];
  for (const r of runs) if (!order.includes(r.fault)) order.push(r.fault);
  return order.map((fault) => {
    const mine = runs.filter((r) => r.fault === fault);
    const first = mine[0]!;
    const frontEnd = (fe: FrontEnd): FrontEndSummary | null => {
      const xs = mine.map((r) => r.frontEnds[fe]).filter((x): x is FrontEndFigures => x !== null);
      if (xs.length === 0) return null;
      const sum = (k: "failedNew" | "inFlight" | "sessionsEnded" | "lost" | "notRecovered") =>
        xs.reduce((a, x) => a + x[k], 0);
      return {
        n: xs.length,
        writesStoppedMs: medianOf(xs.map((x) => x.writesStoppedMs)),
        maxStoppedMs: Math.max(...xs.map((x) => x.writesStoppedMs)),
        beforeMs: medianOf(xs.map((x) => x.beforeMs)),
        failedNew: sum("failedNew"),
        inFlight: sum("inFlight"),
        sessionsEnded: sum("sessionsEnded"),
        lost: sum("lost"),
        notRecovered: sum("notRecovered"),
      };
    };
    return {
      fault,
      label: first.label,
      target: first.target,
      rounds: mine.length,
      errors: mine.flatMap((r) => (r.error ? [r.error] : [])),
      frontEnds: { router: frontEnd("router"), haproxy: frontEnd("haproxy") },
      load: mine.map((r) => r.load.before[0] ?? Number.NaN),
    };
  });
}
