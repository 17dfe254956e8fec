/**
 * The route table's pure half: the routes a snapshot of `/routing/allocation/` describes,
 * and `diffRoutes`, which says which routes to open and close when it changes. Apart from
 * route-table.ts (the watch) so that a router worker, which applies the table as its
 * supervisor sends it, loads no etcd client.
 */
import { routingKeys } from "../shared/keys.js";
import type { PrefixSnapshot } from "../shared/watch.js";
import { type RouteSpec, routeFromTable } from "./options.js";

export interface TableRoutes {
  readonly routes: ReadonlyMap<string, RouteSpec>;
  /** Keys whose value or scope could not be used. */
  readonly invalid: readonly string[];
}

/** The routes a snapshot of the table describes, listening on `host`. */
export function routesFromTable(snap: PrefixSnapshot, host: string): TableRoutes {
  const routes = new Map<string, RouteSpec>();
  const invalid: string[] = [];
  const prefix = routingKeys.allocationPrefix;
  for (const kv of snap.kvs.values()) {
    const scope = kv.key.slice(prefix.length);
    const r = scope.includes("/") ? null : routeFromTable(scope, kv.value, host);
    if (r === null) invalid.push(kv.key);
    else routes.set(scope, r);
  }
  return { routes, invalid };
}

export interface RouteDiff {
  readonly open: readonly RouteSpec[];
  readonly close: readonly string[];
}

function sameSpec(a: RouteSpec, b: RouteSpec): boolean {
  return (
    a.listen.host === b.listen.host &&
    a.listen.port === b.listen.port &&
    (a.replicaListen?.port ?? null) === (b.replicaListen?.port ?? null) &&
    (a.replicaListen?.host ?? null) === (b.replicaListen?.host ?? null)
  );
}

/**
 * From the routes open now (`current`, from any source) to the table's `desired` ones.
 * Routes from flags are never closed or replaced; a table route whose port changed is
 * closed and opened again.
 */
export function diffRoutes(
  current: ReadonlyMap<string, RouteSpec>,
  desired: ReadonlyMap<string, RouteSpec>,
): RouteDiff {
  const open: RouteSpec[] = [];
  const close: string[] = [];
  for (const [scope, cur] of current) {
    if (cur.source !== "table") continue;
    const want = desired.get(scope);
    if (want === undefined || !sameSpec(cur, want)) close.push(scope);
  }
  for (const [scope, want] of desired) {
    const cur = current.get(scope);
    if (cur === undefined || (cur.source === "table" && !sameSpec(cur, want))) open.push(want);
  }
  return { open, close };
}
