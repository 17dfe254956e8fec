/**
 * The `hosts` part's arithmetic, pure: what the writers of one whole-host fault add up to, the
 * targets, and the table. hosts.ts does the I/O.
 */
import type { HostFault } from "../test/harness/host-faults.js";

export interface WriterRecord {
  readonly kind: string;
  readonly ackTimes: readonly number[];
  readonly failures: readonly { readonly at: number; readonly phase: "connect" | "session" }[];
}

export interface HostFaultFigures {
  readonly fault: HostFault;
  readonly label: string;
  readonly target: string;
  readonly leader: string;
  /** Longest time without an acknowledged write from the fault on, over every writer (ms). */
  readonly writesStoppedMs: number;
  /** The same per writer kind. */
  readonly stoppedByKind: Readonly<Record<string, number>>;
  /** New connections that failed, and sessions that failed, from the fault on. */
  readonly failedConnections: number;
  readonly failedSessions: number;
  readonly lost: number;
  readonly ackedByDemotedLeader: number;
  /** From the fault to three members streaming again (ms). */
  readonly healedMs: number;
  readonly error?: string;
}

export interface HostTarget {
  /** Longest stop of writes, ms; null: no bound. */
  readonly maxStoppedMs: number | null;
  readonly maxLost: 0;
  readonly maxDemotedAcks: 0;
}

/** The targets: the leader's host killed or cut off, writes stop at most ttl + 2 s; always 0 lost, 0 acked by a demoted leader. */
export function hostTarget(fault: HostFault, ttlS: number): HostTarget {
  const bound = fault === "leader-kill" || fault === "leader-partition" ? (ttlS + 2) * 1000 : null;
  return { maxStoppedMs: bound, maxLost: 0, maxDemotedAcks: 0 };
}

export function describeHostTarget(t: HostTarget): string {
  return `${t.maxStoppedMs === null ? "" : `stopped <= ${t.maxStoppedMs / 1000} s, `}0 lost, 0 by a demoted leader`;
}

/** Longest gap between acknowledged writes from `from` on (from `from` to the first ack, then between acks). */
export function longestGap(ackTimes: readonly number[], from: number): number {
  let gap = 0;
  let prev = from;
  for (const t of [...ackTimes].sort((a, b) => a - b)) {
    if (t < from) continue;
    gap = Math.max(gap, t - prev);
    prev = t;
  }
  return gap;
}

export function hostFaultFigures(
  base: { fault: HostFault; label: string; target: string; leader: string; from: number; healedAt: number },
  writers: readonly WriterRecord[],
  lost: number,
  ackedByDemotedLeader: number,
): HostFaultFigures {
  const stoppedByKind: Record<string, number> = {};
  for (const w of writers) stoppedByKind[w.kind] = longestGap(w.ackTimes, base.from);
  const after = writers.flatMap((w) => w.failures.filter((f) => f.at >= base.from));
  return {
    fault: base.fault,
    label: base.label,
    target: base.target,
    leader: base.leader,
    writesStoppedMs: Math.max(0, ...Object.values(stoppedByKind)),
    stoppedByKind,
    failedConnections: after.filter((f) => f.phase === "connect").length,
    failedSessions: after.filter((f) => f.phase === "session").length,
    lost,
    ackedByDemotedLeader,
    healedMs: base.healedAt - base.from,
  };
}

export function checkHostFault(t: HostTarget, x: HostFaultFigures): { ok: boolean; misses: string[] } {
  const misses: string[] = [];
  if (x.error) misses.push(x.error);
  if (t.maxStoppedMs !== null && x.writesStoppedMs > t.maxStoppedMs) {
    misses.push(`stopped ${(x.writesStoppedMs / 1000).toFixed(1)} s > ${t.maxStoppedMs / 1000} s`);
  }
  if (x.lost > t.maxLost) misses.push(`${x.lost} lost`);
  if (x.ackedByDemotedLeader > t.maxDemotedAcks)
    misses.push(`${x.ackedByDemotedLeader} acked by a demoted leader`);
  return { ok: misses.length === 0, misses };
}

export interface HostsResult {
  readonly ttl: number;
  readonly writers: readonly string[];
  readonly paceMs: number;
  readonly connectTimeoutS: number;
  readonly startupMs: number;
  readonly runs: readonly HostFaultFigures[];
}

function pad(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** One row per fault: writes stopped (and the slowest writer kind), failed connections and sessions, lost, acked by a demoted leader. */
export function hostsTable(r: HostsResult): string {
  const rows: string[][] = [
    [
      "fault",
      "host",
      "writes stopped s",
      "slowest writer",
      "failed conns",
      "failed sessions",
      "lost",
      "acked by demoted leader",
      "healed s",
      "target",
      "verdict",
    ],
  ];
  for (const x of r.runs) {
    const t = hostTarget(x.fault, r.ttl);
    const c = checkHostFault(t, x);
    const slowest = Object.entries(x.stoppedByKind).sort((a, b) => b[1] - a[1])[0]?.[0] ?? "";
    rows.push([
      x.label,
      x.target,
      (x.writesStoppedMs / 1000).toFixed(1),
      slowest,
      String(x.failedConnections),
      String(x.failedSessions),
      String(x.lost),
      String(x.ackedByDemotedLeader),
      (x.healedMs / 1000).toFixed(0),
      describeHostTarget(t),
      c.ok ? "met" : `MISSED (${c.misses.join("; ")})`,
    ]);
  }
  return pad(rows);
}
