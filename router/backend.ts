/**
 * A backend is one routed server as the data plane sees it: where to connect,
 * the sessions attached to it, and its metric children (looked up once, not
 * per connection). A routed primary gets a new Backend each time it becomes the
 * primary; aborting its AbortController is the one call that fences it.
 */
import type net from "node:net";
import type { Counter, Gauge } from "prom-client";
import type { Target } from "./target.js";

export interface BackendMetrics {
  readonly active: Gauge.Internal<string>;
  readonly total: Counter.Internal;
}

/** What a backend needs from its spare connections (spares.ts implements it). */
export interface SparePool {
  /** A connected (or connecting) spare, detached from the pool; null when none is left. */
  take(): net.Socket | null;
  /** Closes the spares not taken after `ms` (now when 0). */
  expire(ms: number): void;
}

/** What a backend needs from a session: to be closed or retried elsewhere when fenced. */
export interface Fenceable {
  fence(): void;
}

export class Backend {
  readonly conns = new Set<Fenceable>();
  private readonly controller = new AbortController();
  /** Connections opened ahead to this target (see spares.ts), taken by new sessions first. */
  spares: SparePool | null = null;

  constructor(
    readonly route: string,
    readonly role: "primary" | "replica",
    readonly target: Target,
    readonly metrics: BackendMetrics,
  ) {
    this.controller.signal.addEventListener("abort", () => this.closeAll(), { once: true });
  }

  get fenced(): boolean {
    return this.controller.signal.aborted;
  }

  /** Closes (or re-routes, when still replayable) every session on this backend, now and later. */
  fence(): void {
    this.controller.abort();
  }

  attach(c: Fenceable): void {
    if (this.fenced) {
      c.fence();
      return;
    }
    this.conns.add(c);
    this.metrics.active.inc();
    this.metrics.total.inc();
  }

  detach(c: Fenceable): void {
    if (this.conns.delete(c)) this.metrics.active.dec();
  }

  /** A spare connection to the target, or null. */
  takeSpare(): net.Socket | null {
    const s = this.spares?.take() ?? null;
    if (s === null) this.spares = null;
    return s;
  }

  private closeAll(): void {
    this.spares?.expire(0);
    this.spares = null;
    for (const c of [...this.conns]) c.fence();
  }
}
