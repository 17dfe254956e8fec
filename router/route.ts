/**
 * The control plane of one cluster (one route): the etcd watch of
 * /<namespace>/<scope>/ feeding frozen ClusterViews, the REST checker, and the
 * pure decisions that turn both into the backends new clients go to. Effects
 * happen here and only here: a new primary backend, a fence of the old one, a
 * release of held clients, one log line when a decision changes.
 *
 * Under a supervisor, the supervisor's ClusterRoute decides and each worker's one applies its
 * plan (RouteDeps.decided, from ipc-source.ts); with --workers 0 one ClusterRoute does both.
 *
 * Its I/O comes in through RouteDeps (route-deps.ts builds the real ones), as the
 * registrator's tracker gets TrackerDeps, so a unit test drives it with a fed view,
 * set health results and its own clock. Next stop: selection.ts (the decisions), then
 * backend.ts (the fence) and conn.ts (the sessions it closes).
 */
import type { Logger } from "../shared/logger.js";
import { type ClusterView, clusterFromSnapshot, decodeCluster } from "../shared/patroni.js";
import type { PrefixSnapshot, WatchState } from "../shared/watch.js";
import { Backend, type SparePool } from "./backend.js";
import { DecisionLog, HoldTally } from "./decisions.js";
import type { CheckPlan, RestTls } from "./health.js";
import type { RouterMetrics } from "./metrics.js";
import type { CheckMode, ReplicaFallback, RouteSpec } from "./options.js";
import type { RouteStatus } from "./route-status.js";
import {
  type DcsStatus,
  type Health,
  LAG_HYSTERESIS,
  type PrimaryDecision,
  pickReplica,
  primaryVerdict,
  type ReplicaDecision,
  replicaLag,
  sameDecision,
  sameReplicaDecision,
  sameTarget,
  selectPrimary,
  selectReplicas,
} from "./selection.js";
import { SPARE_TTL_MS, SPARES_PER_LEADER } from "./spares.js";
import type { Target } from "./target.js";

/** How long etcd must be unreachable before --etcd-lost reject refuses clients. */
export const ETCD_LOST_GRACE_MS = 3000;

export interface RouteOptions {
  readonly namespace: string;
  readonly mode: CheckMode;
  readonly closeOnDemote: boolean;
  readonly maxLag: number;
  readonly replicaFallback: ReplicaFallback;
  /** "reject": while etcd is unreachable and no primary is routed, new primary-port clients are refused at once. */
  readonly etcdLost?: "hold" | "reject";
  readonly restTimeoutMs: number;
  readonly restIntervalMs: number;
  readonly restTls?: RestTls;
}

/** The etcd view of the cluster's prefix (a PrefixWatch): snapshots, changes and the watch's state. */
export interface ClusterSnapshots {
  on(event: "snapshot" | "change", listener: (snap: PrefixSnapshot) => void): unknown;
  on(event: "state", listener: (state: WatchState, err?: Error) => void): unknown;
  start(): Promise<void>;
  close(): Promise<void>;
}

/** The REST checks of the members (a HealthChecker). */
export interface HealthChecks {
  readonly health: Health;
  start(): void;
  setPlan(plan: readonly CheckPlan[]): void;
  setFast(names: ReadonlySet<string>): void;
  checkNow(): void;
  close(): Promise<void>;
}

/** Spare connections opened to one leader (a Spares). */
export interface LeaderSpares extends SparePool {
  readonly target: Target;
}

/**
 * Decisions made by one control plane for every worker (the supervisor's route, see
 * supervisor.ts): a worker's route applies them instead of deciding itself, so all workers
 * route alike.
 */
export interface RouteDecisions {
  readonly primary: PrimaryDecision;
  readonly replicas: ReplicaDecision;
  /** Members whose REST confirmation the primary decision awaits (spares go to the leader among them). */
  readonly awaiting: readonly string[];
}

/** What a route's control plane hands its workers after each evaluation (ipc.ts carries it). */
export interface RoutePlan {
  readonly snapshot: PrefixSnapshot;
  readonly state: WatchState;
  readonly health: Health;
  readonly decided: RouteDecisions;
}

/** What a route reads from and acts through; route-deps.ts builds the real ones. */
export interface RouteDeps {
  readonly snapshots: ClusterSnapshots;
  /** The checker, given the callback that re-evaluates the route on each result. */
  readonly checks: (onResult: () => void) => HealthChecks;
  /** Milliseconds since the epoch. */
  readonly now: () => number;
  /** Opens `count` spare connections to a leader whose REST confirmation is awaited. */
  readonly openSpares: (target: Target, count: number) => LeaderSpares;
  /**
   * In a worker: the decisions of the supervisor's control plane (null before the first
   * arrives: clients are held). Absent where the route decides for itself.
   */
  readonly decided?: () => RouteDecisions | null;
}

const INITIAL: PrimaryDecision = Object.freeze({ action: "none", target: null, reason: "starting" });
const NO_REPLICAS: ReplicaDecision = Object.freeze({ eligible: [], excluded: [], reason: "starting" });

export class ClusterRoute {
  readonly scope: string;
  private view: ClusterView;
  private dcs: DcsStatus = { connected: false, disconnectedSince: null };
  /** The last etcd snapshot and watch state as received, for the workers (plan()). */
  private snap: PrefixSnapshot = { revision: 0, kvs: new Map() };
  private watchState: WatchState = "connecting";
  private awaiting: readonly string[] = [];
  private failoverRevision = 0;
  private failoverSeenAt: number | null = null;
  /** When the leader key last changed (PUT or DELETE), for router_switch_seconds. */
  private leaderChangedAt = 0;
  private primary: PrimaryDecision = INITIAL;
  private primaryBackend: Backend | null = null;
  /** The last target routed to (kept through pause and none), to tell a real switch from a return. */
  private lastRouted: PrimaryDecision["target"] = null;
  /** Spare connections to a leader awaiting REST confirmation (see spares.ts). */
  private spares: LeaderSpares | null = null;
  private replicas: ReplicaDecision = NO_REPLICAS;
  private replicaBackends: Backend[] = [];
  private turn = 0;
  private readonly watch: ClusterSnapshots;
  private readonly checker: HealthChecks;
  private readonly now: () => number;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;
  /** False in the supervisor's control plane, which holds no sessions (nothing to fence or log). */
  dataPath = true;
  /** Called after each evaluation (the supervisor sends the plan to its workers). */
  onEvaluated: () => void = () => undefined;
  /** Called when held clients may be able to go (a backend became routable). */
  onRoutable: () => void = () => undefined;
  private wasCutOff = false;
  /** The primary listener's held clients (it counts them; the decision log reads them). */
  readonly holds = new HoldTally();
  /** The last primary decisions, for /routes and the status page. */
  private readonly decisions: DecisionLog;

  constructor(
    readonly spec: RouteSpec,
    private readonly deps: RouteDeps,
    private readonly opts: RouteOptions,
    private readonly metrics: RouterMetrics,
    log: Logger,
  ) {
    this.scope = spec.scope;
    this.log = log.child({ route: spec.scope });
    this.now = deps.now;
    this.view = decodeCluster(spec.scope, [], 0);
    this.decisions = new DecisionLog(this.holds, this.now());
    this.watch = deps.snapshots;
    this.checker = deps.checks(() => this.evaluate());
    this.watch.on("snapshot", (snap) => this.onDcs(snap));
    this.watch.on("change", (snap) => this.onDcs(snap));
    this.watch.on("state", (state, err) => this.onWatchState(state, err));
  }

  start(): void {
    this.metrics.primaryRoutable.set({ route: this.scope }, 0);
    this.metrics.etcdWatchUp.set({ watch: this.scope }, 0);
    // From 0, not absent: Prometheus' increase() cannot count what a series held at its first sample.
    this.metrics.primaryChanges.inc({ route: this.scope }, 0);
    this.checker.start();
    void this.watch.start();
    // Time alone changes some decisions (a scheduled switchover falls due, a REST result ages).
    this.timer = setInterval(() => this.evaluate(), 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.watch.close();
    await this.checker.close();
    this.spares?.expire(0);
    this.spares = null;
    this.primaryBackend?.fence();
    this.metrics.forgetRoute(this.scope);
  }

  get routable(): boolean {
    return this.primary.action === "route";
  }

  /** The backend new clients of the primary port go to, or null to hold them. */
  pickPrimary(): Backend | null {
    const b = this.primaryBackend;
    return this.primary.action === "route" && b !== null && !b.fenced ? b : null;
  }

  /**
   * Where a new primary-port client goes: the primary, held (null), or refused at once when
   * this router is cut off from etcd and routes no primary (--etcd-lost reject), so that a
   * client naming several routers moves on to the next instead of waiting here.
   */
  primaryOrReject(): Backend | null | "reject" {
    const b = this.pickPrimary();
    return b === null && this.cutOff(this.now()) ? "reject" : b;
  }

  /**
   * Whether --etcd-lost reject applies: etcd unreachable for ETCD_LOST_GRACE_MS (not a client
   * moving from a dead member to a live one, which takes a second or two).
   */
  private cutOff(now: number): boolean {
    const since = this.dcs.disconnectedSince;
    return (
      this.opts.etcdLost === "reject" &&
      !this.dcs.connected &&
      since !== null &&
      now - since >= ETCD_LOST_GRACE_MS
    );
  }

  /** Why primaryOrReject() refused. */
  get rejectReason(): string {
    return `this router cannot reach etcd and knows no primary of ${this.scope}; try another router`;
  }

  pickReplica(): Backend | null | "reject" {
    const r = pickReplica(this.replicas.eligible, (name) => this.replicaLoad(name), this.turn++);
    const b = r === null ? undefined : this.replicaBackends.find((x) => x.target.name === r.name);
    if (b !== undefined) return b;
    switch (this.opts.replicaFallback) {
      case "primary":
        return this.pickPrimary();
      case "hold":
        return null;
      case "reject":
        return "reject";
    }
  }

  /** Whether a new replica-port client would be served (or rejected) now rather than held. */
  replicaReady(): boolean {
    if (this.replicaBackends.length > 0) return true;
    if (this.opts.replicaFallback === "primary") return this.pickPrimary() !== null;
    return this.opts.replicaFallback === "reject";
  }

  private replicaLoad(name: string): number {
    return this.replicaBackends.find((b) => b.target.name === name)?.conns.size ?? 0;
  }

  // --- inputs -----------------------------------------------------------------------------------

  private onDcs(snap: PrefixSnapshot): void {
    const now = this.now();
    const before = this.view;
    this.snap = snap;
    this.view = clusterFromSnapshot(snap, this.opts.namespace, this.scope);
    if (this.view.leader !== before.leader || this.view.leaderModRevision !== before.leaderModRevision) {
      this.leaderChangedAt = now;
    }
    const f = this.view.failover;
    if (f === null) {
      this.failoverRevision = 0;
      this.failoverSeenAt = null;
    } else if (f.modRevision !== this.failoverRevision) {
      this.failoverRevision = f.modRevision;
      this.failoverSeenAt = now;
    }
    this.metrics.invalidMembers.set({ route: this.scope }, this.view.invalidMembers);
    this.checker.setPlan(this.checkPlan());
    this.checker.checkNow();
    this.evaluate();
  }

  private onWatchState(state: WatchState, err?: Error): void {
    if (state === "closed") return;
    this.watchState = state;
    const connected = state === "live";
    if (connected === this.dcs.connected) return;
    this.dcs = { connected, disconnectedSince: connected ? null : this.now() };
    this.metrics.etcdWatchUp.set({ watch: this.scope }, connected ? 1 : 0);
    if (this.deps.decided !== undefined) {
      // A worker: the supervisor's watch, which the supervisor logs.
    } else if (connected) this.log.info("etcd watch live");
    else if (this.view.revision > 0) {
      this.log.warn({ err }, "etcd unreachable; keeping the last view and checking REST");
    }
    this.evaluate();
  }

  /** Which REST checks the current view calls for. */
  private checkPlan(): CheckPlan[] {
    const mode = this.opts.mode;
    const wantReplicas = this.spec.replicaListen !== null && mode !== "etcd";
    const routed = this.primaryBackend?.target.name;
    const plan: CheckPlan[] = [];
    for (const m of this.view.members) {
      if (!m.valid || m.apiUrl === null) continue;
      const checks: ("primary" | "replica")[] = [];
      if (mode === "rest" || (mode === "both" && (m.name === this.view.leader || m.name === routed))) {
        checks.push("primary");
      }
      if (wantReplicas && (mode === "rest" || m.name !== this.view.leader)) checks.push("replica");
      if (checks.length > 0) plan.push({ name: m.name, apiUrl: m.apiUrl, checks });
    }
    // Patroni's failsafe mode: the routed primary may lose etcd, and with it its leader key and
    // member record, and stay primary; keep checking it at the address it had.
    const routedTarget = this.primaryBackend?.target ?? null;
    if (
      mode === "both" &&
      routedTarget?.apiUrl &&
      this.view.config?.["failsafe_mode"] === true &&
      !plan.some((p) => p.name === routedTarget.name)
    ) {
      plan.push({ name: routedTarget.name, apiUrl: routedTarget.apiUrl, checks: ["primary"] });
    }
    return plan;
  }

  // --- decisions and their effects -----------------------------------------------------------------

  evaluate(): void {
    const now = this.now();
    const health = this.checker.health;
    const previous = this.primaryBackend?.target ?? null;
    const given = this.deps.decided === undefined ? undefined : (this.deps.decided() ?? null);
    const d =
      given === undefined
        ? selectPrimary(
            this.view,
            health,
            { mode: this.opts.mode, dcs: this.dcs, previous, failoverSeenAt: this.failoverSeenAt },
            now,
          )
        : (given?.primary ?? INITIAL);
    const wasRoutable = this.routable;
    if (!sameTarget(d.target, previous)) this.changePrimary(d);
    if (!sameDecision(d, this.primary)) {
      // A worker applies the supervisor's decision, which the supervisor logs once.
      const level = given !== undefined ? "debug" : d.action === "route" ? "info" : "warn";
      this.log[level](
        { action: d.action, target: d.target?.name ?? null, reason: d.reason },
        "primary decision",
      );
      this.decisions.record(now, d.action, d.target?.name ?? null, d.reason, this.failoverSeenAt !== null);
    }
    this.primary = d;
    this.metrics.primaryRoutable.set({ route: this.scope }, d.action === "route" ? 1 : 0);
    // A new primary after another one: how long since the leader key changed.
    const switched = d.action === "route" && !wasRoutable && this.lastRouted !== null;
    if (switched && this.leaderChangedAt > 0 && !sameTarget(d.target, this.lastRouted)) {
      this.metrics.switchSeconds.observe({ route: this.scope }, (now - this.leaderChangedAt) / 1000);
    }
    if (d.action === "route") this.lastRouted = d.target;
    const awaiting = given === undefined ? this.awaitingRest(d, health, now) : new Set(given?.awaiting ?? []);
    this.awaiting = [...awaiting];
    this.checker.setFast(awaiting);
    this.prepareSpares(d, awaiting);

    if (this.spec.replicaListen !== null) this.evaluateReplicas(now, given);
    if (d.action === "route" && !wasRoutable) this.onRoutable();
    // Cut off from etcd with no primary (--etcd-lost reject): the held clients are refused now.
    const cutOff = d.action !== "route" && this.cutOff(now);
    if (cutOff && !this.wasCutOff) this.onRoutable();
    this.wasCutOff = cutOff;
    // The release above let the held clients go: now the interruption's cost is known.
    this.decisions.settle();
    this.onEvaluated();
  }

  /** What the workers need to route as this route decided (see RoutePlan). */
  plan(): RoutePlan {
    return {
      snapshot: this.snap,
      state: this.watchState,
      health: this.checker.health,
      decided: { primary: this.primary, replicas: this.replicas, awaiting: this.awaiting },
    };
  }

  /**
   * The members whose REST answer the decision waits for (re-checked every FAST_CHECK_MS): the
   * leader while no primary is routed (or the routed one is paused) and its /primary has not
   * confirmed it. Not the leader of a pending switchover: that wait is for etcd, not REST.
   */
  private awaitingRest(d: PrimaryDecision, health: Health, now: number): Set<string> {
    const fast = new Set<string>();
    if (d.action === "route" || this.opts.mode === "etcd") return fast;
    if (this.opts.mode === "rest") {
      for (const m of this.view.members) fast.add(m.name);
      return fast;
    }
    const leader = this.view.members.find((m) => m.name === this.view.leader);
    if (leader?.valid && primaryVerdict(health.get(leader.name)?.primary, leader.apiUrl, now) !== "ok") {
      fast.add(leader.name);
    }
    return fast;
  }

  /**
   * While a new leader's REST confirmation is awaited (not the routed primary's, paused),
   * keeps spare connections open to it, opened once per leader (not refilled). Dropped when
   * the awaited leader changes or the wait ends without routing to it.
   */
  private prepareSpares(d: PrimaryDecision, awaiting: ReadonlySet<string>): void {
    const leader = this.view.members.find((m) => m.name === this.view.leader);
    const target =
      leader?.valid === true
        ? { name: leader.name, host: leader.host, port: leader.port, apiUrl: leader.apiUrl }
        : null;
    const want =
      d.action !== "route" &&
      target !== null &&
      awaiting.has(target.name) &&
      !sameTarget(target, this.primaryBackend?.target ?? null)
        ? target
        : null;
    if (this.spares !== null && !sameTarget(this.spares.target, want)) {
      this.spares.expire(0);
      this.spares = null;
    }
    if (want !== null && this.spares === null) {
      this.spares = this.deps.openSpares(want, SPARES_PER_LEADER);
      this.log.debug({ member: want.name, count: SPARES_PER_LEADER }, "spare connections opened");
    }
  }

  private changePrimary(d: PrimaryDecision): void {
    const old = this.primaryBackend;
    if (old !== null) {
      this.metrics.primaryChanges.inc({ route: this.scope });
      if (this.opts.closeOnDemote && this.dataPath) {
        this.log.warn(
          { from: old.target.name, to: d.target?.name ?? null, sessions: old.conns.size },
          "routed primary changed; closing its sessions",
        );
        old.fence();
      }
    }
    this.primaryBackend =
      d.target === null
        ? null
        : new Backend(
            this.scope,
            "primary",
            d.target,
            this.metrics.backend(this.scope, "primary", d.target.name),
          );
    if (this.primaryBackend !== null && this.spares !== null && sameTarget(this.spares.target, d.target)) {
      this.primaryBackend.spares = this.spares;
      this.spares.expire(SPARE_TTL_MS);
      this.spares = null;
    }
    this.checker.setPlan(this.checkPlan());
  }

  private evaluateReplicas(now: number, given: RouteDecisions | null | undefined): void {
    const previous = new Set(this.replicas.eligible.map((r) => r.name));
    const d =
      given === undefined
        ? selectReplicas(
            this.view,
            this.checker.health,
            { mode: this.opts.mode, maxLag: this.opts.maxLag, hysteresis: LAG_HYSTERESIS },
            previous,
            now,
          )
        : (given?.replicas ?? NO_REPLICAS);
    if (sameReplicaDecision(d, this.replicas)) return;
    const excluded = Object.fromEntries(d.excluded.map((e) => [e.name, e.reason]));
    this.log[given === undefined ? "info" : "debug"](
      { eligible: d.eligible.map((r) => r.name), excluded, reason: d.reason },
      "replica decision",
    );
    const grew = d.eligible.some((r) => !previous.has(r.name));
    this.replicas = d;
    this.replicaBackends = d.eligible.map(
      (r) =>
        this.replicaBackends.find((b) => sameTarget(b.target, r)) ??
        new Backend(this.scope, "replica", r, this.metrics.backend(this.scope, "replica", r.name)),
    );
    this.metrics.eligibleReplicas.set({ route: this.scope }, d.eligible.length);
    if (grew) this.onRoutable();
  }

  // --- the live view for /routes and /readyz ---------------------------------------------------------

  status(): RouteStatus {
    const v = this.view;
    return {
      scope: this.scope,
      source: this.spec.source,
      etcd: { connected: this.dcs.connected, revision: v.revision },
      leader: v.leader,
      primary: {
        action: this.primary.action,
        target: this.primary.target?.name ?? null,
        address: this.primary.target ? `${this.primary.target.host}:${this.primary.target.port}` : null,
        reason: this.primary.reason,
        sessions: this.primaryBackend?.conns.size ?? 0,
      },
      replicas: {
        eligible: this.replicaBackends.map((b) => ({
          name: b.target.name,
          address: `${b.target.host}:${b.target.port}`,
          sessions: b.conns.size,
        })),
        excluded: this.replicas.excluded,
        reason: this.replicas.reason,
        fallback: this.opts.replicaFallback,
      },
      failover: v.failover,
      members: v.members.map((m) =>
        m.valid
          ? {
              name: m.name,
              role: m.role,
              state: m.state,
              address: `${m.host}:${m.port}`,
              timeline: m.timeline,
              lagBytes: m.name === v.leader ? 0 : replicaLag(v, m, this.checker.health, this.now()),
              tags: m.tags,
              rest: this.checker.health.get(m.name) ?? null,
            }
          : { name: m.name, invalid: m.reason },
      ),
      decisions: this.decisions.entries,
    };
  }
}
