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
import { PrefixWatch } from "../shared/watch.js";
import { routesFromTable, type TableRoutes } from "./route-diff.js";

export { diffRoutes, type RouteDiff, routesFromTable, type TableRoutes } from "./route-diff.js";

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
