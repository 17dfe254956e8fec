/**
 * The routes from etcd: the static routes of the command line, the route table (with
 * --route-table) and, for each route, the etcd watch and REST checks (route-deps.ts).
 * Loaded only where routes are decided: the supervisor, or the router with --workers 0.
 */
import { createEtcdClient, type Etcd3 } from "../shared/etcd.js";
import { etcdConnection } from "../shared/etcd-options.js";
import type { Logger } from "../shared/logger.js";
import type { RouterMetrics } from "./metrics.js";
import { type RouterConfig, type RouteSpec, staticRoutes } from "./options.js";
import type { RouteDeps, RouteOptions } from "./route.js";
import { liveRouteDeps } from "./route-deps.js";
import type { RouteSink, RouteSource } from "./route-source.js";
import { RouteTable } from "./route-table.js";

export class LiveRoutes implements RouteSource {
  private etcd: Etcd3 | null = null;
  private routeTable: RouteTable | null = null;

  constructor(
    private readonly config: RouterConfig,
    private readonly log: Logger,
  ) {}

  async start(sink: RouteSink): Promise<void> {
    const c = this.config;
    this.etcd = createEtcdClient({ hosts: c.etcd, ...etcdConnection(c) });
    for (const spec of staticRoutes(c)) await sink.open(spec);
    if (c.routeTable) {
      this.routeTable = new RouteTable(this.etcd, c.listen.host, this.log);
      this.routeTable.on("change", (t) => sink.table(t));
      void this.routeTable.start();
    }
  }

  get table(): "live" | "unreachable" | null {
    if (this.routeTable === null) return null;
    return this.routeTable.connected ? "live" : "unreachable";
  }

  deps(spec: RouteSpec, opts: RouteOptions, metrics: RouterMetrics, log: Logger): RouteDeps {
    if (this.etcd === null) throw new Error("router not started");
    return liveRouteDeps(spec.scope, this.etcd, opts, metrics, log);
  }

  async close(): Promise<void> {
    await this.routeTable?.close();
    this.routeTable = null;
    this.etcd?.close();
    this.etcd = null;
  }
}
