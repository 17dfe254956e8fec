/**
 * Where a Router's routes and their inputs come from. Two sources:
 * live-source.ts (etcd: the static routes, the route table, each route's etcd watch and
 * REST checks), used by a router that decides for itself (--workers 0, or the
 * supervisor's control plane); ipc-source.ts (the supervisor's plans over IPC), used by
 * a worker, which then loads neither etcd3 nor undici.
 */
import type { Logger } from "../shared/logger.js";
import type { RouterMetrics } from "./metrics.js";
import type { RouteSpec } from "./options.js";
import type { RouteDeps, RouteOptions } from "./route.js";
import type { TableRoutes } from "./route-diff.js";

/** What a source asks of the Router: open or close a route, apply the route table. */
export interface RouteSink {
  open(spec: RouteSpec): Promise<void>;
  close(scope: string): Promise<void>;
  table(t: TableRoutes): void;
}

export interface RouteSource {
  /** Opens the routes known now (a failure here is the router's failure to start). */
  start(sink: RouteSink): Promise<void>;
  deps(spec: RouteSpec, opts: RouteOptions, metrics: RouterMetrics, log: Logger): RouteDeps;
  /** The route table's watch: "live", "unreachable", or null without a table. */
  readonly table: "live" | "unreachable" | null;
  close(): Promise<void>;
}
