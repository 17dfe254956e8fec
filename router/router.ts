/**
 * The router as one object: routes (control plane + listeners) by scope, the
 * optional live route table, the admin server, and the shutdown steps. main.ts
 * builds one from the configuration; tests build one in-process.
 */
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { AdminServer, createRegistry, type Readiness } from "../shared/admin.js";
import { createEtcdClient, type Etcd3 } from "../shared/etcd.js";
import { etcdConnection } from "../shared/etcd-options.js";
import type { Logger } from "../shared/logger.js";
import type { ShutdownSteps } from "../shared/shutdown.js";
import { RouterMetrics } from "./metrics.js";
import { type RouterConfig, type RouteSpec, staticRoutes } from "./options.js";
import { ProxyListener, ProxyShared } from "./proxy.js";
import { ClusterRoute, type RouteOptions } from "./route.js";
import { liveRouteDeps } from "./route-deps.js";
import type { RoutesView } from "./route-status.js";
import { diffRoutes, RouteTable, type TableRoutes } from "./route-table.js";
import { statusRoutes } from "./status-page.js";

interface OpenRoute {
  readonly spec: RouteSpec;
  readonly control: ClusterRoute;
  readonly primary: ProxyListener;
  readonly replica: ProxyListener | null;
}

export class Router {
  readonly registry: Registry;
  readonly metrics: RouterMetrics;
  private readonly shared: ProxyShared;
  private readonly routes = new Map<string, OpenRoute>();
  private readonly admin: AdminServer;
  private etcd: Etcd3 | null = null;
  private table: RouteTable | null = null;
  private tableInvalid: readonly string[] = [];
  private ops: Promise<void> = Promise.resolve();
  private stopping = false;

  constructor(
    private readonly config: RouterConfig,
    private readonly log: Logger,
    registry?: Registry,
    /** admin: false in a worker, whose supervisor serves the admin port for all workers. */
    private readonly opts: { readonly admin: boolean } = { admin: true },
  ) {
    this.registry = registry ?? createRegistry("router");
    this.metrics = new RouterMetrics(this.registry);
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
    // Without a supervisor (--workers 0) this admin server is the router's; the status page too.
    const status = statusRoutes(() => this.routesView());
    this.admin = new AdminServer({
      listen: config.adminListen,
      registry: this.registry,
      readiness: () => this.readiness(),
      routes: { "/routes": () => this.routesView(), ...status.json },
      pages: status.pages,
      log,
    });
  }

  async start(): Promise<void> {
    const c = this.config;
    const specs = staticRoutes(c);
    this.etcd = createEtcdClient({
      hosts: c.etcd,
      ...etcdConnection(c),
    });
    if (this.opts.admin) await this.admin.start();
    for (const spec of specs) await this.openRoute(spec);
    if (c.routeTable) {
      this.table = new RouteTable(this.etcd, c.listen.host, this.log);
      this.table.on("change", (t) => this.enqueue(() => this.applyTable(t)));
      void this.table.start();
    }
  }

  get adminAddress(): AddressInfo | null {
    return this.admin.address;
  }

  /** Where a route's listener is bound (tests listen on port 0). */
  address(scope: string, role: "primary" | "replica" = "primary"): AddressInfo | null {
    const r = this.routes.get(scope);
    return (role === "primary" ? r?.primary.address : r?.replica?.address) ?? null;
  }

  get scopes(): string[] {
    return [...this.routes.keys()].sort();
  }

  private enqueue(op: () => Promise<void>): void {
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
    if (this.etcd === null) throw new Error("router not started");
    const c = this.config;
    const log = this.log.child({ route: spec.scope });
    const routeOptions: RouteOptions = {
      namespace: c.namespace,
      mode: c.check,
      closeOnDemote: c.closeOnDemote,
      maxLag: c.maxLag,
      replicaFallback: c.replicaFallback,
      restTimeoutMs: c.restTimeout * 1000,
      restIntervalMs: c.restInterval * 1000,
      restTls: { caFile: c.restCa, certFile: c.restCert, keyFile: c.restKey, serverName: c.restServerName },
    };
    const control = new ClusterRoute(
      spec,
      liveRouteDeps(spec.scope, this.etcd, routeOptions, this.metrics, log),
      routeOptions,
      this.metrics,
      this.log,
    );
    const primary = new ProxyListener(
      spec.scope,
      "primary",
      spec.listen,
      this.shared,
      { pick: () => control.pickPrimary(), ready: () => control.pickPrimary() !== null },
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
    try {
      await primary.start();
      await replica?.start();
    } catch (err) {
      primary.stop();
      replica?.stop();
      throw err;
    }
    this.routes.set(spec.scope, { spec, control, primary, replica });
    control.start();
    log.info({ source: spec.source }, "route open");
  }

  async closeRoute(scope: string): Promise<void> {
    const r = this.routes.get(scope);
    if (r === undefined) return;
    this.routes.delete(scope);
    r.primary.stop();
    r.replica?.stop();
    r.primary.closeAll("shutdown");
    r.replica?.closeAll("shutdown");
    await r.control.stop();
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
    if (this.table !== null) details["routeTable"] = this.table.connected ? "live" : "unreachable";
    return { ready, details };
  }

  routesView(): RoutesView {
    return {
      routes: [...this.routes.values()].map((r) => ({
        ...r.control.status(),
        listen: r.primary.address ? `${r.primary.address.address}:${r.primary.address.port}` : null,
        replicaListen: r.replica?.address ? `${r.replica.address.address}:${r.replica.address.port}` : null,
        held: { primary: r.primary.held, replica: r.replica?.held ?? 0 },
        clients: { primary: r.primary.active, replica: r.replica?.active ?? 0 },
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
          r.primary.stop();
          r.replica?.stop();
        }
      },
      drain: async () => {
        await Promise.all(
          [...this.routes.values()].flatMap((r) => [r.primary.drained(), r.replica?.drained()]),
        );
      },
      close: () => this.close(),
    };
  }

  /** Closes everything at once (after a drain, or in tests). */
  async close(): Promise<void> {
    this.stopping = true;
    await this.ops;
    await this.table?.close();
    for (const scope of [...this.routes.keys()]) await this.closeRoute(scope);
    await this.admin.close();
    this.etcd?.close();
    this.etcd = null;
  }
}
