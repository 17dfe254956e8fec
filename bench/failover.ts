/**
 * Parts 2 and 3: a planned switchover (Patroni's REST /switchover) and an
 * unplanned failover (kill -9 of the primary's Patroni and postmaster), with the
 * two writers (writers.ts) running through our router and through HAProxy (both
 * check profiles) during the same event, so all three see the same failover.
 */
import { waitFor } from "../test/harness/proc.js";
import type { Lab } from "./lab.js";
import { newClient } from "./pgclient.js";
import { median, now, round } from "./stats.js";
import { analyse, TABLE_SQL, Writer, type WriterFigures, type WriterMode } from "./writers.js";

export const VIA = ["router", "haproxy-docs", "haproxy-fast"] as const;
export type Via = (typeof VIA)[number];
const MODES: readonly WriterMode[] = ["per-write", "long-lived"];

export type EventKind = "planned" | "unplanned";

export interface EventResult {
  readonly kind: EventKind;
  readonly from: string;
  readonly to: string;
  /** From the event to Patroni's REST naming a new leader whose /primary answers 200 (ms). */
  readonly patroniMs: number;
  readonly observedMs: number;
  readonly figures: Record<Via, Record<WriterMode, WriterFigures>>;
  readonly routerRetries: number;
  /** The router's decisions, times in ms from the event. */
  readonly routerDecisions: readonly {
    atMs: number;
    action?: string;
    target?: string | null;
    reason?: string;
  }[];
}

function portOf(lab: Lab, via: Via): number {
  return via === "router"
    ? lab.router.port
    : via === "haproxy-docs"
      ? lab.haproxyDocsPort
      : lab.haproxyFastPort;
}

export async function ensureTable(lab: Lab): Promise<void> {
  const primary = await lab.primary();
  const c = newClient(lab.pg(primary.pgPort));
  await c.connect();
  try {
    await c.query(TABLE_SQL);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** One event with all six writers running; the cluster is healthy again when it returns. */
export async function runEvent(lab: Lab, kind: EventKind, log: (m: string) => void): Promise<EventResult> {
  await lab.waitAllServePrimary(120_000);
  const writers: { via: Via; mode: WriterMode; w: Writer }[] = [];
  for (const via of VIA) {
    for (const mode of MODES) {
      writers.push({ via, mode, w: new Writer(`${via}/${mode}`, mode, lab.pg(portOf(lab, via))) });
    }
  }
  for (const x of writers) x.w.start();
  const retries0 = await lab.router.metricSum("router_upstream_retries_total");
  let from = "";
  let to = "";
  let t0 = 0;
  let tDone = 0;
  let tEnd = 0;
  try {
    await waitFor("every writer to write 10 times in a row", () => writers.every((x) => x.w.healthy(10)), {
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    const leader = await lab.primary();
    from = leader.name;
    to = lab.nextCandidate(from).name;
    if (kind === "planned") await lab.cluster.waitSwitchoverPossible(to);
    t0 = now();
    if (kind === "planned") {
      const r = await leader.restPost("/switchover", { leader: from, candidate: to });
      if (r.status !== 200) throw new Error(`switchover ${from} -> ${to}: ${r.status} ${r.text}`);
    } else {
      await lab.cluster.kill9(from);
    }
    to = await waitFor(
      "a new leader",
      async () => {
        const name = await lab.cluster.leader();
        if (!name || name === from) return null;
        return (await lab.cluster.node(name).rest("/primary")).status === 200 ? name : null;
      },
      { timeoutMs: 120_000, intervalMs: 50 },
    );
    tDone = now();
    const capMs = kind === "planned" ? 60_000 : 90_000;
    await waitFor(
      "every writer to write again",
      () => {
        const t = now();
        if (t - t0 > capMs) return true;
        if (t - tDone < 2_000) return false;
        return writers.every(({ w }) => {
          const last = w.attempts[w.attempts.length - 1];
          const lastFail = [...w.attempts].reverse().find((a) => !a.ok);
          const wroteSince = w.attempts.some((a) => a.ok && a.what === "write" && a.end > tDone);
          return last?.ok === true && wroteSince && (lastFail === undefined || lastFail.end < t - 3_000);
        });
      },
      { timeoutMs: capMs + 10_000, intervalMs: 200 },
    );
    tEnd = now();
  } finally {
    await Promise.all(writers.map((x) => x.w.stop()));
  }
  const retries1 = await lab.router.metricSum("router_upstream_retries_total");
  const figures = {} as Record<Via, Record<WriterMode, WriterFigures>>;
  for (const via of VIA) figures[via] = {} as Record<WriterMode, WriterFigures>;
  for (const x of writers) figures[x.via][x.mode] = analyse(x.mode, x.w.attempts, t0, tEnd);
  const result: EventResult = {
    kind,
    from,
    to,
    patroniMs: Math.round(tDone - t0),
    observedMs: Math.round(tEnd - t0),
    figures,
    routerRetries: retries1 - retries0,
    routerDecisions: lab.router.decisions(t0 - 100, tEnd).map((d) => ({
      atMs: Math.round(d.t - t0),
      action: d.action,
      target: d.target,
      reason: d.reason ?? d.msg,
    })),
  };
  log(
    `${kind} ${from} -> ${to}: Patroni ${result.patroniMs} ms; ` +
      VIA.map(
        (v) =>
          `${v} ${MODES.map((m) => `${figures[v][m].unavailableMs}ms/${figures[v][m].failed}f`).join(" ")}`,
      ).join("; "),
  );
  if (kind === "unplanned") lab.cluster.node(from).start();
  await lab.waitAllServePrimary(180_000);
  return result;
}

export interface EventSummary {
  readonly kind: EventKind;
  readonly n: number;
  readonly patroniMs: number;
  /** Per path and writer: medians over the events (unavailability) and totals (failed attempts). */
  readonly via: Record<
    Via,
    Record<
      WriterMode,
      {
        unavailableMs: number;
        maxUnavailableMs: number;
        failedMedian: number;
        failedTotal: number;
        inFlightTotal: number;
        failedNewTotal: number;
        failedOnSessionTotal: number;
        notRecovered: number;
      }
    >
  >;
}

/** Pure: medians and totals over repeated events of one kind. */
export function summarizeEvents(kind: EventKind, events: readonly EventResult[]): EventSummary {
  const via = {} as EventSummary["via"];
  for (const v of VIA) {
    via[v] = {} as EventSummary["via"][Via];
    for (const m of MODES) {
      const fs = events.map((e) => e.figures[v][m]);
      via[v][m] = {
        unavailableMs: round(median(fs.map((f) => f.unavailableMs)), 0),
        maxUnavailableMs: Math.max(0, ...fs.map((f) => f.unavailableMs)),
        failedMedian: median(fs.map((f) => f.failed)),
        failedTotal: fs.reduce((s, f) => s + f.failed, 0),
        inFlightTotal: fs.reduce((s, f) => s + f.inFlight, 0),
        failedNewTotal: fs.reduce((s, f) => s + f.failedNew, 0),
        failedOnSessionTotal: fs.reduce((s, f) => s + f.failedOnSession, 0),
        notRecovered: fs.filter((f) => !f.recovered).length,
      };
    }
  }
  return { kind, n: events.length, patroniMs: round(median(events.map((e) => e.patroniMs)), 0), via };
}

export async function runEvents(
  lab: Lab,
  kind: EventKind,
  count: number,
  log: (m: string) => void,
): Promise<{ events: EventResult[]; summary: EventSummary }> {
  await ensureTable(lab);
  const events: EventResult[] = [];
  for (let i = 0; i < count; i++) events.push(await runEvent(lab, kind, log));
  return { events, summary: summarizeEvents(kind, events) };
}
