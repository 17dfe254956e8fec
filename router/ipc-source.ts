/**
 * A worker's routes: the supervisor's plans (ipc.ts) in place of etcd and the REST
 * checks. Each route's ClusterRoute gets the plan's etcd snapshot and watch state as
 * its ClusterSnapshots, the plan's REST results as its HealthChecks, and the plan's
 * decisions to apply; it opens its own spare connections (they carry sessions). This
 * module and what it imports load neither etcd3 nor undici.
 */
import { EventEmitter } from "node:events";
import type { Logger } from "../shared/logger.js";
import type { PrefixSnapshot, WatchState } from "../shared/watch.js";
import type { RouteMessage, WorkerSide } from "./ipc.js";
import type { RouterMetrics } from "./metrics.js";
import type { RouteSpec } from "./options.js";
import type {
  ClusterSnapshots,
  HealthChecks,
  RouteDecisions,
  RouteDeps,
  RouteOptions,
  RoutePlan,
} from "./route.js";
import type { RouteSink, RouteSource } from "./route-source.js";
import type { Health } from "./selection.js";
import { Spares } from "./spares.js";

/** One route's latest plan, fed to its ClusterRoute as events. */
class PlanFeed {
  plan: RoutePlan;
  private readonly events = new EventEmitter();
  private started = false;
  private onResult: () => void = () => undefined;

  constructor(plan: RoutePlan) {
    this.plan = plan;
  }

  apply(plan: RoutePlan): void {
    const before = this.plan;
    this.plan = plan;
    if (!this.started) return;
    if (plan.state !== before.state) this.events.emit("state", plan.state);
    if (plan.snapshot.revision !== before.snapshot.revision || plan.snapshot.kvs !== before.snapshot.kvs) {
      this.events.emit("change", plan.snapshot);
    } else {
      this.onResult();
    }
  }

  readonly snapshots: ClusterSnapshots = {
    on: (event: string, listener: (...args: never[]) => void) =>
      this.events.on(event, listener as (...args: unknown[]) => void),
    start: async () => {
      this.started = true;
      this.events.emit("state", this.plan.state satisfies WatchState);
      this.events.emit("snapshot", this.plan.snapshot satisfies PrefixSnapshot);
    },
    close: async () => {
      this.started = false;
      this.events.removeAllListeners();
    },
  };

  checks(onResult: () => void): HealthChecks {
    this.onResult = onResult;
    const feed = this;
    return {
      get health(): Health {
        return feed.plan.health;
      },
      start: () => undefined,
      setPlan: () => undefined,
      setFast: () => undefined,
      checkNow: () => undefined,
      close: async () => undefined,
    };
  }

  decided(): RouteDecisions {
    return this.plan.decided;
  }
}

export class IpcRoutes implements RouteSource {
  private readonly feeds = new Map<string, PlanFeed>();
  private sink: RouteSink | null = null;
  readonly table = null;

  constructor(private readonly log: Logger) {}

  async start(sink: RouteSink): Promise<void> {
    this.sink = sink;
  }

  /** A plan from the supervisor (opens the route the first time), or null: the route closed. */
  receive(scope: string, m: RouteMessage | null, enqueue: (op: () => Promise<void>) => void): void {
    const sink = this.sink;
    if (sink === null) return;
    const feed = this.feeds.get(scope);
    if (m === null) {
      if (feed === undefined) return;
      this.feeds.delete(scope);
      enqueue(() => sink.close(scope));
      return;
    }
    if (feed !== undefined) {
      feed.apply(m.plan);
      return;
    }
    this.feeds.set(scope, new PlanFeed(m.plan));
    enqueue(async () => {
      try {
        await sink.open(m.spec);
      } catch (err) {
        this.feeds.delete(scope);
        this.log.error({ err, route: scope, port: m.spec.listen.port }, "cannot open route");
      }
    });
  }

  deps(spec: RouteSpec, _opts: RouteOptions, metrics: RouterMetrics, _log: Logger): RouteDeps {
    const feed = this.feeds.get(spec.scope);
    if (feed === undefined) throw new Error(`no plan for route ${spec.scope}`);
    return {
      snapshots: feed.snapshots,
      checks: (onResult) => feed.checks(onResult),
      now: Date.now,
      openSpares: (target, count) => new Spares(target, count, metrics.spares(spec.scope)),
      decided: () => feed.decided(),
    };
  }

  async close(): Promise<void> {
    this.feeds.clear();
  }
}

/** What a data-path router needs to answer its supervisor (`serveSupervisor`). */
export interface PlannedRouter {
  readonly registry: WorkerSide["registry"];
  readonly metrics: Pick<RouterMetrics, "ipcBadMessages">;
  readiness: WorkerSide["readiness"];
  routesView: WorkerSide["routesView"];
  enqueue(op: () => Promise<void>): void;
}

/** The worker's side of the IPC channel: plans go to `source`, which applies them through the router. */
export function workerSide(
  router: PlannedRouter,
  source: IpcRoutes,
  hooks: Pick<WorkerSide, "shutdown" | "orphaned">,
): WorkerSide {
  return {
    registry: router.registry,
    readiness: () => router.readiness(),
    routesView: () => router.routesView(),
    route: (scope, m) => source.receive(scope, m, (op) => router.enqueue(op)),
    bad: () => router.metrics.ipcBadMessages.inc(),
    ...hooks,
  };
}
