/**
 * The last primary decisions of one route, for the status page and /routes: a
 * small ring buffer of every change of the primary decision (the ones route.ts
 * logs as "primary decision"), each with its time. A change back to `route`
 * after clients were not routed (a switchover, a failover, a fence lifted) also
 * carries what the interruption cost: how long it lasted, how many clients of
 * the primary port were held meanwhile, how many were released to the new
 * primary, and how many gave up (hold timeout) or went away while held.
 *
 * The hold counts come from the primary listener's HoldTally (proxy.ts). With
 * several workers each keeps its own; mergeDecisions() makes one list of them.
 */
import type { PrimaryAction } from "./selection.js";

/** How many decisions a route keeps. */
export const DECISIONS_KEPT = 20;

/** How an interruption of routing ended. */
export type SwitchKind =
  /** Patroni announced it (the failover key: a switchover), and another member was routed. */
  | "switchover"
  /** Another member was routed without an announcement (the old one failed). */
  | "failover"
  /** The same member was routed again (a REST blip, an announced switchover that did not happen). */
  | "resumed"
  /** The first primary this process routed. */
  | "first";

export interface SwitchSummary {
  readonly kind: SwitchKind;
  readonly from: string | null;
  readonly to: string;
  /** From the first decision that stopped routing to this one. */
  readonly ms: number;
  /** Clients of the primary port held during the interruption. */
  readonly held: number;
  /** Held clients released to a backend. */
  readonly released: number;
  /** Held clients closed because their --hold-timeout ran out. */
  readonly failed: number;
  /** Held clients that went away by themselves. */
  readonly gone: number;
  /** The longest wait of a client released or failed during the interruption. */
  readonly waitMsMax: number;
}

export interface Decision {
  /** When the decision changed (ms since the epoch). */
  readonly at: number;
  readonly action: PrimaryAction;
  readonly target: string | null;
  readonly reason: string;
  /** Set on a change to `route` that ended an interruption (or the first one). */
  readonly switch?: SwitchSummary;
}

/** Cumulative hold counts of a listener (only ever grow), and the longest wait since the last mark. */
export interface HoldCounts {
  readonly held: number;
  readonly released: number;
  readonly timedOut: number;
  readonly gone: number;
  readonly waitMsMax: number;
}

/** Counts a listener's held clients; one per listener, touched only when a client is held or let go. */
export class HoldTally {
  private c = { held: 0, released: 0, timedOut: 0, gone: 0, waitMsMax: 0 };

  held(): void {
    this.c.held++;
  }

  unheld(outcome: "released" | "timeout" | "closed", waitedMs: number): void {
    if (outcome === "released") this.c.released++;
    else if (outcome === "timeout") this.c.timedOut++;
    else this.c.gone++;
    if (waitedMs > this.c.waitMsMax) this.c.waitMsMax = waitedMs;
  }

  /** The counts now; the longest wait starts again from 0. */
  mark(): HoldCounts {
    const now = { ...this.c };
    this.c.waitMsMax = 0;
    return now;
  }

  get counts(): HoldCounts {
    return { ...this.c };
  }
}

/** What a DecisionLog reads hold counts from (a HoldTally). */
export interface HoldSource {
  readonly counts: HoldCounts;
  mark(): HoldCounts;
}

interface Gap {
  /** When routing stopped. */
  readonly since: number;
  /** The member routed before, or null before the first. */
  readonly from: string | null;
  /** The hold counts when routing stopped. */
  readonly holds: HoldCounts;
  /** A switchover was announced (Patroni's failover key) during the interruption. */
  announced: boolean;
}

/** The decisions of one route, newest first, at most DECISIONS_KEPT. */
export class DecisionLog {
  private list: Decision[] = [];
  /** While not routed: since when, and what was routed before. */
  private gap: Gap | null;
  /** An interruption that ended with the newest decision, until settle() has counted its clients. */
  private ended: Gap | null = null;
  /** The member the last `route` decision routed to. */
  private routed: string | null = null;

  constructor(
    private readonly holds: HoldSource,
    now: number,
    private readonly capacity = DECISIONS_KEPT,
  ) {
    this.gap = { since: now, from: null, holds: holds.mark(), announced: false };
  }

  /**
   * A changed primary decision. `announced`: a switchover is announced now (Patroni's failover
   * key). Call settle() once the clients a change to `route` releases have been let go.
   */
  record(at: number, action: PrimaryAction, target: string | null, reason: string, announced: boolean): void {
    this.push({ at, action, target, reason });
    if (action === "route") {
      this.routed = target;
      this.ended = this.gap;
      this.gap = null;
      return;
    }
    if (this.gap === null) {
      this.gap = { since: at, from: this.routed, holds: this.holds.mark(), announced };
    } else if (announced) this.gap.announced = true;
  }

  /** Completes the newest decision's switch summary, after the release of held clients. */
  settle(): void {
    const g = this.ended;
    this.ended = null;
    const d = this.list[0];
    if (g === null || d === undefined || d.action !== "route" || d.target === null) return;
    const now = this.holds.counts;
    const kind: SwitchKind =
      g.from === null ? "first" : g.from === d.target ? "resumed" : g.announced ? "switchover" : "failover";
    const released = now.released - g.holds.released;
    const failed = now.timedOut - g.holds.timedOut;
    const gone = now.gone - g.holds.gone;
    this.list[0] = Object.freeze({
      ...d,
      switch: Object.freeze({
        kind,
        from: g.from,
        to: d.target,
        ms: Math.max(0, d.at - g.since),
        held: now.held - g.holds.held,
        released,
        failed,
        gone,
        waitMsMax: released + failed + gone > 0 ? now.waitMsMax : 0,
      }),
    });
  }

  private push(d: Decision): void {
    this.list.unshift(Object.freeze(d));
    if (this.list.length > this.capacity) this.list.length = this.capacity;
  }

  /** Newest first. */
  get entries(): readonly Decision[] {
    return this.list.slice();
  }
}

/** Two workers' records of one decision: same change, seen within this much of each other. */
const SAME_DECISION_MS = 10_000;

/**
 * One list from several workers' lists: every worker sees the same decisions (each runs the whole
 * control plane), a few milliseconds apart, but holds its own clients. The first list is taken as
 * it is; a switch summary gets the hold counts of the matching decision of every other worker
 * added (the longest wait is the longest of all).
 */
export function mergeDecisions(lists: readonly (readonly Decision[] | undefined)[]): Decision[] {
  const [first, ...others] = lists.map((l) => (Array.isArray(l) ? l : []));
  if (first === undefined) return [];
  return first.map((d) => {
    const s = d.switch;
    if (s === undefined) return d;
    const sum = { ...s };
    for (const other of others) {
      const match = other
        .filter(
          (o) =>
            o.switch !== undefined &&
            o.target === d.target &&
            o.switch.from === s.from &&
            Math.abs(o.at - d.at) <= SAME_DECISION_MS,
        )
        .sort((a, b) => Math.abs(a.at - d.at) - Math.abs(b.at - d.at))[0]?.switch;
      if (match === undefined) continue;
      sum.held += match.held;
      sum.released += match.released;
      sum.failed += match.failed;
      sum.gone += match.gone;
      sum.waitMsMax = Math.max(sum.waitMsMax, match.waitMsMax);
    }
    return { ...d, switch: sum };
  });
}
