/**
 * The live route table: `/routing/allocation/<scope>` = `PORT[,REPLICA_PORT]`
 * in etcd. A watch keeps it; `diffRoutes` (pure) says which routes to open and
 * which to close when it changes, so a cluster is added or removed without a
 * restart. Routes given on the command line win over the table.
 */
import { EventEmitter } from "node:events";
import type { Etcd3 } from "etcd3";
import { routingKeys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { type PrefixSnapshot, PrefixWatch } from "../shared/watch.js";
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

export class RouteTable extends EventEmitter<{ change: [TableRoutes] }> {
  private readonly watch: PrefixWatch;

  constructor(
    etcd: Etcd3,
    private readonly host: string,
    log: Logger,
  ) {
    super();
    this.watch = new PrefixWatch(etcd, routingKeys.allocationPrefix, log.child({ watch: "route-table" }));
    this.watch.on("snapshot", (snap) => this.emit("change", routesFromTable(snap, this.host)));
    this.watch.on("change", (snap) => this.emit("change", routesFromTable(snap, this.host)));
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  get connected(): boolean {
    return this.watch.state === "live";
  }

  close(): Promise<void> {
    return this.watch.close();
  }
}
