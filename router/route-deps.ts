/**
 * The real I/O of a route (ClusterRoute's RouteDeps): the etcd watch of
 * /<namespace>/<scope>/, the REST checker of its members, the wall clock, and spare
 * connections opened over TCP. router.ts builds these for each route it opens.
 */
import type { Etcd3 } from "etcd3";
import { clusterPrefix } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { PrefixWatch } from "../shared/watch.js";
import { HealthChecker } from "./health.js";
import type { RouterMetrics } from "./metrics.js";
import type { RouteDeps, RouteOptions } from "./route.js";
import { Spares } from "./spares.js";

/** `log` is the route's logger (with its `route` binding). */
export function liveRouteDeps(
  scope: string,
  etcd: Etcd3,
  opts: RouteOptions,
  metrics: RouterMetrics,
  log: Logger,
): RouteDeps {
  return {
    snapshots: new PrefixWatch(etcd, clusterPrefix(opts.namespace, scope), log),
    checks: (onResult) =>
      new HealthChecker(
        {
          route: scope,
          timeoutMs: opts.restTimeoutMs,
          intervalMs: opts.restIntervalMs,
          replicaQuery: opts.mode === "rest" ? `?lag=${opts.maxLag}` : "",
          ...(opts.restTls ? { tls: opts.restTls } : {}),
        },
        onResult,
        metrics,
        log,
      ),
    now: Date.now,
    openSpares: (target, count) => new Spares(target, count, metrics.spares(scope)),
  };
}
