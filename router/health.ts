/**
 * Patroni REST checks for one cluster: GET /primary and /replica per member,
 * over one keep-alive undici Pool per API origin, each with a deadline of
 * --rest-timeout. Every --rest-interval all planned checks run; `checkNow()` runs
 * them at once (on every etcd change); members in the fast set are re-checked
 * every FAST_CHECK_MS for at most FAST_WINDOW_MS (a new leader awaiting
 * confirmation). Patroni 3's REST API speaks HTTP/1.0 and closes each connection,
 * so a check costs a connect; the pools keep connections where the server allows.
 * Results are an immutable Health map replaced on each answer.
 */
import { readFileSync } from "node:fs";
import { Pool } from "undici";
import type { Logger } from "../shared/logger.js";
import type { MemberRole } from "../shared/patroni.js";
import { parsePatroniStatus } from "../shared/patroni-rest.js";
import type { RouterMetrics } from "./metrics.js";
import type { Health, MemberHealth, Probe } from "./selection.js";

/**
 * Re-check period for a leader awaiting REST confirmation (a check still under way when the
 * period ends is followed by the next one as soon as it answers).
 */
export const FAST_CHECK_MS = 10;
/** How long a member stays in the fast set before it falls back to --rest-interval. */
export const FAST_WINDOW_MS = 5_000;

export type CheckKind = "primary" | "replica";

export interface CheckPlan {
  readonly name: string;
  readonly apiUrl: string;
  readonly checks: readonly CheckKind[];
}

export interface RestTls {
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /** The name checked in the certificate (and sent as SNI) instead of the api_url's host. */
  readonly serverName?: string | undefined;
}

export interface HealthOptions {
  readonly route: string;
  readonly timeoutMs: number;
  readonly intervalMs: number;
  /** Query string for /replica (e.g. `?lag=16777216`), or "". */
  readonly replicaQuery: string;
  readonly tls?: RestTls;
}

export class HealthChecker {
  private plan: readonly CheckPlan[] = [];
  private snapshot: Health = new Map();
  private readonly pools = new Map<string, Pool>();
  private readonly inflight = new Set<string>();
  private readonly again = new Set<string>();
  /** Members in the fast set, with when each entered it. */
  private fast = new Map<string, number>();
  private interval: NodeJS.Timeout | null = null;
  private fastTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly tlsOptions: Record<string, Buffer | string>;

  constructor(
    private readonly opts: HealthOptions,
    private readonly onResult: () => void,
    private readonly metrics: RouterMetrics,
    private readonly log: Logger,
  ) {
    const t = opts.tls ?? {};
    this.tlsOptions = {
      ...(t.caFile ? { ca: readFileSync(t.caFile) } : {}),
      ...(t.certFile ? { cert: readFileSync(t.certFile) } : {}),
      ...(t.keyFile ? { key: readFileSync(t.keyFile) } : {}),
      ...(t.serverName ? { servername: t.serverName } : {}),
    };
  }

  get health(): Health {
    return this.snapshot;
  }

  start(): void {
    this.interval = setInterval(() => this.checkNow(), this.opts.intervalMs);
    this.interval.unref();
  }

  /** What to check from now on; results for members no longer planned are dropped. */
  setPlan(plan: readonly CheckPlan[]): void {
    this.plan = plan;
    const keep = new Set(plan.map((p) => p.name));
    let changed = false;
    const next = new Map(this.snapshot);
    for (const name of next.keys()) {
      if (!keep.has(name)) {
        next.delete(name);
        changed = true;
      }
    }
    if (changed) this.snapshot = next;
    const origins = new Set(plan.map((p) => new URL(p.apiUrl).origin));
    for (const [origin, pool] of this.pools) {
      if (!origins.has(origin)) {
        this.pools.delete(origin);
        void pool.close().catch(() => undefined);
      }
    }
  }

  /** Members whose /primary is re-checked every FAST_CHECK_MS (for FAST_WINDOW_MS from when they entered). */
  setFast(names: ReadonlySet<string>): void {
    const now = Date.now();
    const next = new Map<string, number>();
    for (const name of names) next.set(name, this.fast.get(name) ?? now);
    this.fast = next;
    if (names.size > 0 && this.fastTimer === null && !this.closed) {
      this.fastTimer = setInterval(() => this.runFast(), FAST_CHECK_MS);
      this.fastTimer.unref();
    } else if (names.size === 0 && this.fastTimer !== null) {
      clearInterval(this.fastTimer);
      this.fastTimer = null;
    }
  }

  checkNow(): void {
    for (const p of this.plan) for (const kind of p.checks) this.check(p, kind);
  }

  private runFast(): void {
    const now = Date.now();
    for (const p of this.plan) {
      const since = this.fast.get(p.name);
      if (since !== undefined && now - since < FAST_WINDOW_MS && p.checks.includes("primary")) {
        this.check(p, "primary");
      }
    }
  }

  private check(p: CheckPlan, kind: CheckKind): void {
    if (this.closed) return;
    const key = `${p.name}\0${kind}`;
    if (this.inflight.has(key)) {
      this.again.add(key); // a result that predates this request is not enough
      return;
    }
    this.inflight.add(key);
    void this.probe(p, kind).finally(() => {
      this.inflight.delete(key);
      if (this.again.delete(key)) {
        const current = this.plan.find((x) => x.name === p.name);
        if (current?.checks.includes(kind)) this.check(current, kind);
      }
    });
  }

  private pool(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (pool === undefined) {
      pool = new Pool(origin, {
        connections: 2,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connectTimeout: this.opts.timeoutMs,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        connect: { timeout: this.opts.timeoutMs, ...this.tlsOptions },
      });
      pool.on("connectionError", () => undefined);
      this.pools.set(origin, pool);
    }
    return pool;
  }

  private async probe(p: CheckPlan, kind: CheckKind): Promise<void> {
    const url = new URL(`${p.apiUrl}/${kind}${kind === "replica" ? this.opts.replicaQuery : ""}`);
    const started = performance.now();
    let status: number | null = null;
    let lsn: number | null = null;
    let role: MemberRole | null = null;
    let state: string | null = null;
    let failsafe = false;
    try {
      const res = await this.pool(url.origin).request({
        path: url.pathname + url.search,
        method: "GET",
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        signal: AbortSignal.timeout(this.opts.timeoutMs),
      });
      status = res.statusCode;
      // Patroni answers a refusal (503) with the same status body as a 200: a refusal's body
      // says whether the server still runs as a primary and whether failsafe mode is active
      // (selection.ts: a primary taking its key again after failsafe mode is asked again).
      const parsed = parsePatroniStatus(await res.body.text());
      // The WAL position readers of this server see.
      lsn = kind === "primary" ? parsed.location : parsed.replayedLocation;
      role = parsed.role;
      state = parsed.state;
      failsafe = parsed.failsafe;
    } catch (err) {
      this.log.debug({ err, member: p.name, check: kind }, "REST check failed");
    }
    if (this.closed) return;
    const seconds = (performance.now() - started) / 1000;
    const labels = { route: this.opts.route, member: p.name, check: kind };
    this.metrics.restSeconds.observe(labels, seconds);
    this.metrics.restChecks.inc({
      ...labels,
      result: status === null ? "error" : status === 200 ? "ok" : "refused",
    });
    this.log.debug(
      { member: p.name, check: kind, status, role, state, ms: Math.round(seconds * 1e4) / 10 },
      "REST check",
    );
    this.record(p, kind, status, { lsn, role, state, failsafe });
  }

  private record(
    p: CheckPlan,
    kind: CheckKind,
    status: number | null,
    body: { lsn: number | null; role: MemberRole | null; state: string | null; failsafe: boolean },
  ): void {
    const planned = this.plan.find((x) => x.name === p.name);
    if (planned === undefined || planned.apiUrl !== p.apiUrl) return; // plan changed meanwhile
    const prev: MemberHealth = this.snapshot.get(p.name) ?? {};
    const before = prev[kind];
    const failures =
      status !== null ? 0 : before !== undefined && before.apiUrl === p.apiUrl ? before.failures + 1 : 1;
    const sameApi = before !== undefined && before.apiUrl === p.apiUrl;
    const refusals = status === null || status === 200 ? 0 : (sameApi ? (before.refusals ?? 0) : 0) + 1;
    const at = Date.now();
    // Silence runs from the last answered check (or from this one, when none answered before).
    const silentSince =
      status !== null
        ? null
        : sameApi
          ? before.status !== null
            ? before.at
            : (before.silentSince ?? at)
          : at;
    const probe: Probe = Object.freeze({
      status,
      failures,
      refusals,
      silentSince,
      at,
      apiUrl: p.apiUrl,
      ...body,
      // Unanswered: what the last answer said about failsafe mode stands (selection.ts keeps
      // a failsafe primary's sessions through a short silence).
      failsafe: status === null && sameApi ? (before.failsafe ?? false) : body.failsafe,
    });
    const next = new Map(this.snapshot);
    next.set(p.name, Object.freeze({ ...prev, [kind]: probe }));
    this.snapshot = next;
    this.onResult();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.interval !== null) clearInterval(this.interval);
    if (this.fastTimer !== null) clearInterval(this.fastTimer);
    this.interval = this.fastTimer = null;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)));
  }
}
