/**
 * The router as one object: routes (control plane + listeners) by scope, the
 * optional live route table, the admin server, and the shutdown steps. main.ts
 * builds one from the configuration; tests build one in-process.
 *
 * Three roles. Whole (--workers 0, tests): routes from etcd (live-source.ts), decided
 * here, with listeners. Control (in the supervisor): the same routes and decisions, no
 * listeners; each evaluation's plan goes to the workers. Data (a worker): routes and
 * decisions from the supervisor (ipc-source.ts), with listeners; etcd3 and undici are
 * never loaded.
 */
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import type { AdminServer, Readiness } from "../shared/admin.js";
import type { Logger } from "../shared/logger.js";
import type { ShutdownSteps } from "../shared/shutdown.js";
import { type MetricsSetup, RouterMetrics } from "./metrics.js";
import type { RouterConfig, RouteSpec } from "./options.js";
import { ProxyListener, ProxyShared } from "./proxy.js";
import { ClusterRoute, type LeaderSpares, type RouteOptions, type RoutePlan } from "./route.js";
import { diffRoutes, type TableRoutes } from "./route-diff.js";
import type { RouteSource } from "./route-source.js";
import type { RoutesView } from "./route-status.js";
import type { Target } from "./target.js";

interface OpenRoute {
  readonly spec: RouteSpec;
  readonly control: ClusterRoute;
  /** Null in the control role (no listeners). */
  readonly primary: ProxyListener | null;
  readonly replica: ProxyListener | null;
}

/** The control role's outlet: each route's plan after each evaluation, and its closing. */
export interface PlanOutlet {
  plan(spec: RouteSpec, plan: RoutePlan): void;
  closed(scope: string): void;
}

export interface RouterRole {
  /** false in a worker, whose supervisor serves the admin port for all workers. */
  readonly admin: boolean;
  /** Where routes come from; by default etcd (live-source.ts, loaded on start). */
  readonly source?: RouteSource;
  /** Set in the supervisor: decide and hand the plans on, without listeners. */
  readonly control?: PlanOutlet;
}

export class Router {
  readonly registry: MetricsSetup["registry"];
  readonly metrics: RouterMetrics;
  private readonly shared: ProxyShared;
  private readonly routes = new Map<string, OpenRoute>();
  /** Without a supervisor (--workers 0) the router's own admin server; made on start. */
  private admin: AdminServer | null = null;
  private source: RouteSource | null = null;
  private tableInvalid: readonly string[] = [];
  private ops: Promise<void> = Promise.resolve();
  private stopping = false;

  constructor(
    private readonly config: RouterConfig,
    private readonly log: Logger,
    setup: MetricsSetup,
    private readonly opts: RouterRole = { admin: true },
  ) {
    this.registry = setup.registry;
    this.metrics = new RouterMetrics(setup);
    this.shared = new ProxyShared(
      {
        holdTimeoutMs: config.holdTimeout * 1000,
        connectTimeoutMs: config.connectTimeout * 1000,
        startupTimeoutMs: config.startupTimeout * 1000,
        idleTimeoutMs: config.idleTimeout * 1000,
        maxConnections: config.maxConnections,
        maxConnectionsPerSource: config.maxConnectionsPerSource,
      },
      this.metrics,
    );
    this.metrics.bindClients(() => this.shared.open, config.maxConnections);
  }

  async start(): Promise<void> {
    this.source =
      this.opts.source ?? new (await import("./live-source.js")).LiveRoutes(this.config, this.log);
    if (this.opts.admin) {
      // Without a supervisor (--workers 0) this admin server is the router's; the status page too.
      // Loaded here: a worker has no admin server and never loads it (nor prom-client).
      const [{ AdminServer }, { statusRoutes }] = await Promise.all([
        import("../shared/admin.js"),
        import("./status-page.js"),
      ]);
      const status = statusRoutes(() => this.routesView());
      this.admin = new AdminServer({
        listen: this.config.adminListen,
        registry: this.registry as Registry,
        readiness: () => this.readiness(),
        routes: { "/routes": () => this.routesView(), ...status.json },
        pages: status.pages,
        log: this.log,
      });
      await this.admin.start();
    }
    await this.source.start({
      open: (spec) => this.openRoute(spec),
      close: (scope) => this.closeRoute(scope),
      table: (t) => this.enqueue(() => this.applyTable(t)),
    });
  }

  get adminAddress(): AddressInfo | null {
    return this.admin?.address ?? null;
  }

  /** Where a route's listener is bound (tests listen on port 0). */
  address(scope: string, role: "primary" | "replica" = "primary"): AddressInfo | null {
    const r = this.routes.get(scope);
    return (role === "primary" ? r?.primary?.address : r?.replica?.address) ?? null;
  }

  get scopes(): string[] {
    return [...this.routes.keys()].sort();
  }

  /** Runs route changes one at a time, in order (a failure is logged). */
  enqueue(op: () => Promise<void>): void {
    this.ops = this.ops.then(op).catch((err: unknown) => this.log.error({ err }, "route change failed"));
  }

  /** Waits for queued route-table changes to be applied. */
  settled(): Promise<void> {
    return this.ops;
  }

  private async applyTable(t: TableRoutes): Promise<void> {
    if (this.stopping) return;
    if (t.invalid.join() !== this.tableInvalid.join() && t.invalid.length > 0) {
      this.log.warn({ keys: t.invalid }, "route table entries ignored (expected PORT or PORT,REPLICA_PORT)");
    }
    this.tableInvalid = t.invalid;
    const current = new Map([...this.routes].map(([scope, r]) => [scope, r.spec]));
    const diff = diffRoutes(current, t.routes);
    for (const scope of diff.close) await this.closeRoute(scope);
    for (const spec of diff.open) {
      try {
        await this.openRoute(spec);
      } catch (err) {
        this.log.error(
          { err, scope: spec.scope, port: spec.listen.port },
          "cannot open route from the table",
        );
      }
    }
  }

  async openRoute(spec: RouteSpec): Promise<void> {
    if (this.source === null) throw new Error("router not started");
    const c = this.config;
    const log = this.log.child({ route: spec.scope });
    const routeOptions: RouteOptions = {
      namespace: c.namespace,
      mode: c.check,
      closeOnDemote: c.closeOnDemote,
      maxLag: c.maxLag,
      replicaFallback: c.replicaFallback,
      etcdLost: c.etcdLost,
      restTimeoutMs: c.restTimeout * 1000,
      restIntervalMs: c.restInterval * 1000,
      restTls: { caFile: c.restCa, certFile: c.restCert, keyFile: c.restKey, serverName: c.restServerName },
    };
    const outlet = this.opts.control;
    const deps = this.source.deps(spec, routeOptions, this.metrics, log);
    const control = new ClusterRoute(
      spec,
      outlet === undefined ? deps : { ...deps, openSpares: noSpares },
      routeOptions,
      this.metrics,
      this.log,
    );
    if (outlet !== undefined) {
      control.dataPath = false;
      control.onEvaluated = () => outlet.plan(spec, control.plan());
      this.routes.set(spec.scope, { spec, control, primary: null, replica: null });
      control.start();
      log.info({ source: spec.source }, "route open (control plane)");
      return;
    }
    const primary = new ProxyListener(
      spec.scope,
      "primary",
      spec.listen,
      this.shared,
      {
        pick: () => control.primaryOrReject(),
        ready: () => control.primaryOrReject() !== null,
        rejectMessage: () => control.rejectReason,
      },
      log.child({ role: "primary" }),
      control.holds,
    );
    const replica =
      spec.replicaListen === null
        ? null
        : new ProxyListener(
            spec.scope,
            "replica",
            spec.replicaListen,
            this.shared,
            { pick: () => control.pickReplica(), ready: () => control.replicaReady() },
            log.child({ role: "replica" }),
          );
    control.onRoutable = () => {
      primary.release();
      replica?.release();
    };
    // Routes first, listeners after: a worker has the supervisor's current plan before it accepts.
    control.start();
    try {
      await primary.start();
      await replica?.start();
    } catch (err) {
      primary.stop();
      replica?.stop();
      await control.stop();
      throw err;
    }
    this.routes.set(spec.scope, { spec, control, primary, replica });
    log.info({ source: spec.source }, "route open");
  }

  async closeRoute(scope: string): Promise<void> {
    const r = this.routes.get(scope);
    if (r === undefined) return;
    this.routes.delete(scope);
    r.primary?.stop();
    r.replica?.stop();
    r.primary?.closeAll("shutdown");
    r.replica?.closeAll("shutdown");
    await r.control.stop();
    this.opts.control?.closed(scope);
    this.log.info({ route: scope }, "route closed");
  }

  readiness(): Readiness {
    const routes: Record<string, unknown> = {};
    let ready = !this.stopping;
    for (const [scope, r] of this.routes) {
      const s = r.control.status();
      routes[scope] = {
        routable: r.control.routable,
        reason: s.primary.reason,
        etcd: s.etcd.connected ? "live" : "unreachable",
      };
      if (!r.control.routable) ready = false;
    }
    const details: Record<string, unknown> = { routes };
    const table = this.source?.table ?? null;
    if (table !== null) details["routeTable"] = table;
    return { ready, details };
  }

  routesView(): RoutesView {
    return {
      routes: [...this.routes.values()].map((r) => ({
        ...r.control.status(),
        listen: r.primary?.address ? `${r.primary.address.address}:${r.primary.address.port}` : null,
        replicaListen: r.replica?.address ? `${r.replica.address.address}:${r.replica.address.port}` : null,
        held: { primary: r.primary?.held ?? 0, replica: r.replica?.held ?? 0 },
        clients: { primary: r.primary?.active ?? 0, replica: r.replica?.active ?? 0 },
      })),
      clients: this.shared.open,
      maxConnections: this.config.maxConnections,
    };
  }

  shutdownSteps(): ShutdownSteps {
    return {
      stopAccepting: async () => {
        this.stopping = true;
        await this.ops;
        for (const r of this.routes.values()) {
          r.primary?.stop();
          r.replica?.stop();
        }
      },
      drain: async () => {
        await Promise.all(
          [...this.routes.values()].flatMap((r) => [r.primary?.drained(), r.replica?.drained()]),
        );
      },
      close: () => this.close(),
    };
  }

  /** Closes everything at once (after a drain, or in tests). */
  async close(): Promise<void> {
    this.stopping = true;
    await this.ops;
    for (const scope of [...this.routes.keys()]) await this.closeRoute(scope);
    await this.admin?.close();
    await this.source?.close();
    this.source = null;
  }
}

/** The control role opens no spare connections: the workers do, as the plan says. */
function noSpares(target: Target): LeaderSpares {
  return { target, take: () => null, expire: () => undefined };
}
