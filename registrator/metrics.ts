/** The registrator's Prometheus metrics, all prefixed `registrator_`. */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";

export class RegistratorMetrics {
  readonly servicesRegistered: Gauge;
  readonly servicesDesired: Gauge;
  readonly dockerEvents: Counter<"action">;
  readonly malformedEvents: Counter;
  readonly etcdOperations: Counter<"op">;
  readonly etcdErrors: Counter<"op">;
  readonly leaseHeld: Gauge;
  readonly leaseGrants: Counter;
  readonly resyncs: Counter<"result">;
  readonly resyncDuration: Histogram;
  readonly reconcileActions: Counter<"action">;
  readonly dockerConnected: Gauge;
  readonly dockerReconnects: Counter;
  readonly skipped: Counter<"reason">;
  readonly inspectErrors: Counter;
  readonly leaderReleases: Counter<"reason">;
  readonly leaderReleaseSkips: Counter<"reason">;

  private leaseHeldFn: () => boolean = () => false;
  private readyFn: () => boolean = () => false;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    const heldNow = () => this.leaseHeldFn();
    const readyNow = () => this.readyFn();
    new Gauge({
      name: "registrator_ready",
      help: "1 when /readyz answers 200: the first sync is done, the Docker event stream is open and the lease is held",
      registers,
      collect() {
        this.set(readyNow() ? 1 : 0);
      },
    });
    this.servicesRegistered = new Gauge({
      name: "registrator_services_registered",
      help: "Services whose key this registrator holds in etcd",
      registers,
    });
    this.servicesDesired = new Gauge({
      name: "registrator_services_desired",
      help: "Services the running containers want registered",
      registers,
    });
    this.dockerEvents = new Counter({
      name: "registrator_docker_events_total",
      help: "Docker container events received, by action",
      labelNames: ["action"],
      registers,
    });
    this.malformedEvents = new Counter({
      name: "registrator_docker_events_malformed_total",
      help: "Lines of the Docker event stream that were not JSON",
      registers,
    });
    this.etcdOperations = new Counter({
      name: "registrator_etcd_operations_total",
      help: "etcd requests made, by operation (txn, get, grant, revoke)",
      labelNames: ["op"],
      registers,
    });
    this.etcdErrors = new Counter({
      name: "registrator_etcd_errors_total",
      help: "etcd requests that failed, by operation",
      labelNames: ["op"],
      registers,
    });
    this.leaseHeld = new Gauge({
      name: "registrator_lease_held",
      help: "1 while the registrator holds a live etcd lease (always 1 with -ttl 0)",
      registers,
      collect() {
        this.set(heldNow() ? 1 : 0);
      },
    });
    this.leaseGrants = new Counter({
      name: "registrator_lease_grants_total",
      help: "Leases granted (more than one means a lease was lost and every key written again)",
      registers,
    });
    this.resyncs = new Counter({
      name: "registrator_resyncs_total",
      help: "Reconciliations of etcd with Docker, by result",
      labelNames: ["result"],
      registers,
    });
    this.resyncDuration = new Histogram({
      name: "registrator_resync_duration_seconds",
      help: "Duration of a reconciliation of etcd with Docker",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.reconcileActions = new Counter({
      name: "registrator_reconcile_actions_total",
      help: "Keys written or deleted by reconciliation, by action",
      labelNames: ["action"],
      registers,
    });
    this.dockerConnected = new Gauge({
      name: "registrator_docker_connected",
      help: "1 while the Docker event stream is open",
      registers,
    });
    this.dockerReconnects = new Counter({
      name: "registrator_docker_reconnects_total",
      help: "Times the Docker event stream was lost or could not be opened",
      registers,
    });
    this.skipped = new Counter({
      name: "registrator_skipped_total",
      help: "Ports or containers not registered, by reason (counted when the reason first applies)",
      labelNames: ["reason"],
      registers,
    });
    this.inspectErrors = new Counter({
      name: "registrator_docker_inspect_errors_total",
      help: "Container inspections that failed for a reason other than the container being gone",
      registers,
    });
    this.leaderReleases = new Counter({
      name: "registrator_leader_releases_total",
      help: "Leader keys deleted because the container of the member holding them died (-release-dead-leaders), by how it died: oom, killed, signal, exited",
      labelNames: ["reason"],
      registers,
    });
    this.leaderReleaseSkips = new Counter({
      name: "registrator_leader_release_skips_total",
      help: "Deaths of Patroni members' containers that released nothing (-release-dead-leaders), by why: not-leader, planned-stop, other-host, not-tied, fenced, cluster-paused, changed, unknown-state",
      labelNames: ["reason"],
      registers,
    });
  }

  /** Where the lease_held gauge reads its value at scrape time. */
  bindLeaseHeld(fn: () => boolean): void {
    this.leaseHeldFn = fn;
  }

  /** Where the ready gauge reads its value at scrape time (the same answer as /readyz). */
  bindReady(fn: () => boolean): void {
    this.readyFn = fn;
  }
}
