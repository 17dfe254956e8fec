/**
 * The router's Prometheus metrics. Children for a backend are looked up once per
 * backend (see Backend); nothing here is touched per chunk of data.
 */
import type { Counter, Gauge, Histogram, MetricObjectWithValues, MetricValue, Registry } from "prom-client";
import type { BackendMetrics } from "./backend.js";
import type { SpareMetrics } from "./spares.js";

const WAIT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const REST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

/**
 * The metric constructors: prom-client's (prom-metrics.ts) or, in a worker, lite-metrics.ts's,
 * which implement the part of prom-client's API used here.
 */
export interface MetricKinds {
  readonly Counter: typeof Counter;
  readonly Gauge: typeof Gauge;
  readonly Histogram: typeof Histogram;
}

/** A worker's registry (lite-metrics.ts): prom-client's JSON, nothing else. */
export interface JsonRegistry {
  getMetricsAsJSON(): Promise<MetricObjectWithValues<MetricValue<string>>[]>;
}

/** Where a router's metrics are registered, and with which constructors. */
export interface MetricsSetup {
  readonly registry: Registry | JsonRegistry;
  readonly kinds: MetricKinds;
}

export class RouterMetrics {
  readonly connectionsActive: Gauge<"route" | "role" | "backend">;
  readonly connectionsTotal: Counter<"route" | "role" | "backend">;
  readonly spareConnections: Counter<"route" | "outcome">;
  readonly clientsAccepted: Counter<"route" | "role">;
  readonly clientsClosed: Counter<"route" | "role" | "outcome">;
  readonly clientsRefused: Counter<"route" | "role" | "reason">;
  readonly heldClients: Gauge<"route" | "role">;
  readonly holdWait: Histogram<"route" | "role" | "outcome">;
  readonly connectErrors: Counter<"route" | "role" | "reason">;
  readonly primaryChanges: Counter<"route">;
  readonly switchSeconds: Histogram<"route">;
  readonly bytes: Counter<"route" | "role" | "direction">;
  readonly restSeconds: Histogram<"route" | "member" | "check">;
  readonly restChecks: Counter<"route" | "member" | "check" | "result">;
  readonly etcdWatchUp: Gauge<"watch">;
  readonly primaryRoutable: Gauge<"route">;
  readonly eligibleReplicas: Gauge<"route">;
  readonly invalidMembers: Gauge<"route">;
  readonly maxConnections: Gauge;
  readonly ipcBadMessages: Counter;
  private openClients: () => number = () => 0;

  constructor({ registry, kinds }: MetricsSetup) {
    const { Counter, Gauge, Histogram } = kinds;
    const registers = [registry as Registry];
    const openNow = () => this.openClients();
    this.connectionsActive = new Gauge({
      name: "router_connections_active",
      help: "Client sessions attached to a backend",
      labelNames: ["route", "role", "backend"],
      registers,
    });
    this.connectionsTotal = new Counter({
      name: "router_connections_total",
      help: "Upstream connections made, by backend",
      labelNames: ["route", "role", "backend"],
      registers,
    });
    this.spareConnections = new Counter({
      name: "router_spare_connections_total",
      help: "Connections opened to a leader awaiting REST confirmation (opened), and those sessions took (used)",
      labelNames: ["route", "outcome"],
      registers,
    });
    this.clientsAccepted = new Counter({
      name: "router_clients_accepted_total",
      help: "Client connections accepted",
      labelNames: ["route", "role"],
      registers,
    });
    this.clientsClosed = new Counter({
      name: "router_clients_closed_total",
      help: "Client connections closed, by outcome (done, fenced, hold_timeout, bad_startup, ...)",
      labelNames: ["route", "role", "outcome"],
      registers,
    });
    this.clientsRefused = new Counter({
      name: "router_clients_refused_total",
      help: "Client connections refused at accept (max_connections, shutdown)",
      labelNames: ["route", "role", "reason"],
      registers,
    });
    this.heldClients = new Gauge({
      name: "router_held_clients",
      help: "Clients accepted and waiting for a routable backend",
      labelNames: ["route", "role"],
      registers,
    });
    this.holdWait = new Histogram({
      name: "router_hold_wait_seconds",
      help: "How long held clients waited, by outcome (released, timeout, closed)",
      labelNames: ["route", "role", "outcome"],
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.connectErrors = new Counter({
      name: "router_upstream_retries_total",
      help: "Upstream attempts that failed and were retried (connect_failed, connect_timeout, startup_refused, closed_early, fenced)",
      labelNames: ["route", "role", "reason"],
      registers,
    });
    // With several workers (supervisor.ts) every worker runs the same control plane and sees
    // the same changes: their metrics are merged by "max" or "min", not summed. Sessions,
    // bytes and REST checks are each worker's own, and are summed.
    this.primaryChanges = new Counter({
      name: "router_primary_changes_total",
      aggregator: "max",
      help: "Times the routed primary changed (to another member or to none)",
      labelNames: ["route"],
      registers,
    });
    this.switchSeconds = new Histogram({
      name: "router_switch_seconds",
      aggregator: "max",
      help: "From the etcd change to a new primary being routable",
      labelNames: ["route"],
      buckets: WAIT_BUCKETS,
      registers,
    });
    this.bytes = new Counter({
      name: "router_bytes_total",
      help: "Bytes relayed, counted when a session closes (in: client to server, out: server to client)",
      labelNames: ["route", "role", "direction"],
      registers,
    });
    this.restSeconds = new Histogram({
      name: "router_rest_check_seconds",
      help: "Latency of Patroni REST checks",
      labelNames: ["route", "member", "check"],
      buckets: REST_BUCKETS,
      registers,
    });
    this.restChecks = new Counter({
      name: "router_rest_checks_total",
      help: "Patroni REST checks by result (ok: 200, refused: another status, error: no answer)",
      labelNames: ["route", "member", "check", "result"],
      registers,
    });
    this.etcdWatchUp = new Gauge({
      name: "router_etcd_watch_up",
      aggregator: "min",
      help: "1 while the etcd watch is live, 0 while etcd is unreachable",
      labelNames: ["watch"],
      registers,
    });
    this.primaryRoutable = new Gauge({
      name: "router_primary_routable",
      aggregator: "min",
      help: "1 when new clients of the primary port are routed, 0 while they are held",
      labelNames: ["route"],
      registers,
    });
    this.eligibleReplicas = new Gauge({
      name: "router_eligible_replicas",
      aggregator: "min",
      help: "Replicas the replica port may use",
      labelNames: ["route"],
      registers,
    });
    this.invalidMembers = new Gauge({
      name: "router_invalid_members",
      aggregator: "max",
      help: "Member records in etcd that could not be decoded",
      labelNames: ["route"],
      registers,
    });
    new Gauge({
      name: "router_clients_open",
      help: "Client connections open across all listeners, held ones included (at most router_max_connections)",
      registers,
      collect() {
        this.set(openNow());
      },
    });
    this.ipcBadMessages = new Counter({
      name: "router_ipc_bad_messages_total",
      help: "Messages from the supervisor a worker could not use (logged and ignored)",
      registers,
    });
    this.ipcBadMessages.inc(0);
    this.maxConnections = new Gauge({
      name: "router_max_connections",
      help: "--max-connections: clients beyond it are refused",
      registers,
    });
  }

  /** Where router_clients_open reads its value at scrape time, and the limit it is measured against. */
  bindClients(open: () => number, max: number): void {
    this.openClients = open;
    this.maxConnections.set(max);
  }

  /**
   * The series of a new listener that alert rules take increases of, at 0 rather than absent:
   * Prometheus' increase() cannot count what a series held at its first sample.
   */
  listener(route: string, role: "primary" | "replica"): void {
    for (const outcome of ["released", "timeout", "closed"]) this.holdWait.zero({ route, role, outcome });
    this.clientsRefused.inc({ route, role, reason: "max_connections" }, 0);
  }

  backend(route: string, role: "primary" | "replica", backend: string): BackendMetrics {
    const labels = { route, role, backend };
    return { active: this.connectionsActive.labels(labels), total: this.connectionsTotal.labels(labels) };
  }

  spares(route: string): SpareMetrics {
    return {
      opened: this.spareConnections.labels({ route, outcome: "opened" }),
      used: this.spareConnections.labels({ route, outcome: "used" }),
    };
  }

  /** Drops a removed route's gauges so that /metrics shows only live routes. */
  forgetRoute(route: string): void {
    for (const g of [this.primaryRoutable, this.eligibleReplicas, this.invalidMembers]) g.remove({ route });
    for (const role of ["primary", "replica"]) this.heldClients.remove({ route, role });
    this.etcdWatchUp.remove({ watch: route });
  }
}
