/**
 * The registrator assembled: Docker source → container tracker → publisher →
 * etcd, with a resync timer and the admin server beside them; with
 * -release-dead-leaders the tracker's looks also go to the leader releaser.
 */
import { lookup } from "node:dns/promises";
import { hostname as osHostname } from "node:os";
import type { Etcd3 } from "etcd3";
import { AdminServer, createRegistry } from "../shared/admin.js";
import { PgHaError } from "../shared/errors.js";
import { createEtcdClient, toEtcdError } from "../shared/etcd.js";
import { etcdConnection } from "../shared/etcd-options.js";
import { registryKeys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { Backoff, sleep } from "../shared/time.js";
import { createDockerClient, DockerSource } from "./docker-source.js";
import { targetGroups } from "./http-sd.js";
import { JoinedRestarter } from "./joined-restarter.js";
import { LeaderReleaser } from "./leader-releaser.js";
import type { ContainerView, LifecycleOptions } from "./lifecycle.js";
import { RegistratorMetrics } from "./metrics.js";
import type { RegistratorOptions } from "./options.js";
import { Publisher } from "./publisher.js";
import { ContainerTracker } from "./tracker.js";

export const HOST_LOOKUP_TIMEOUT_MS = 5000;

/** Resolves the hostname to the address used for ports bound to all interfaces (IPv4 first). */
export async function resolveHostIp(hostname: string): Promise<string | undefined> {
  const attempt = async (family: 4 | 6) => (await lookup(hostname, { family })).address;
  const timeout = sleep(HOST_LOOKUP_TIMEOUT_MS).then(() => undefined);
  const found = (async () => {
    try {
      return await attempt(4);
    } catch {
      return await attempt(6).catch(() => undefined);
    }
  })();
  return Promise.race([found, timeout]);
}

function containerReport(v: ContainerView) {
  return {
    id: v.id.slice(0, 12),
    name: v.name,
    state: v.state,
    reason: v.reason,
    services: v.services.map((s) => `${s.key}=${s.value}`),
    skipped: v.skipped,
  };
}

export class StartupError extends PgHaError {
  constructor(message: string, cause?: unknown) {
    super("E_ETCD", message, {}, cause);
  }
}

export class RegistratorApp {
  readonly metrics: RegistratorMetrics;
  private readonly client: Etcd3;
  private readonly publisher: Publisher;
  private readonly source: DockerSource;
  private readonly admin: AdminServer | null;
  private readonly releaser: LeaderReleaser | null;
  private readonly restarter: JoinedRestarter | null;
  private tracker: ContainerTracker | null = null;
  private readonly stopping = new AbortController();
  private resyncTimer: NodeJS.Timeout | null = null;
  private resyncRunning = false;
  private firstSyncDone = false;
  private firstSyncMs: number | null = null;
  private lastResyncSummary = "";
  private running: Promise<void> | null = null;

  constructor(
    private readonly o: RegistratorOptions,
    private readonly log: Logger,
  ) {
    const registry = createRegistry("registrator");
    this.metrics = new RegistratorMetrics(registry);
    this.client = createEtcdClient({
      hosts: o.registry.hosts,
      ...etcdConnection(o),
    });
    this.publisher = new Publisher(
      this.client,
      { prefix: o.registry.prefix, hostname: o.hostname, ttl: o.ttl, cleanup: o.cleanup },
      log.child({ component: "etcd" }),
      this.metrics,
    );
    this.metrics.bindLeaseHeld(() => this.publisher.leaseHeld);
    this.metrics.bindReady(() => this.ready);
    const docker = createDockerClient(o.dockerHost);
    this.source = new DockerSource(docker, log.child({ component: "docker" }), this.metrics);
    this.restarter = o.restartJoined
      ? new JoinedRestarter(docker, log.child({ component: "restart-joined" }))
      : null;
    this.releaser = o.releaseDeadLeaders
      ? new LeaderReleaser(
          this.client,
          { hostname: o.hostname, namespace: o.patroniNamespace },
          log.child({ component: "leader-release" }),
          this.metrics,
        )
      : null;
    this.admin = o.metricsAddr
      ? new AdminServer({
          listen: o.metricsAddr,
          registry,
          log: log.child({ component: "admin" }),
          readiness: () => this.readiness(),
          routes: {
            "/services": () => this.servicesReport(),
            "/containers": () => this.tracker?.snapshot().map(containerReport) ?? [],
            // Prometheus's HTTP service discovery: every registrator's services, from etcd.
            "/sd": async () => targetGroups(o.registry.prefix, await this.readRegistry()),
          },
        })
      : null;
  }

  get ready(): boolean {
    return this.firstSyncDone && this.source.connected && this.publisher.leaseHeld;
  }

  /** Starts serving; resolves once etcd answered and a lease is held (Docker is followed in the background). */
  async start(): Promise<void> {
    await this.admin?.start();
    // The default -hostname (the engine's name and a hash) is a name for keys, not for DNS:
    // the address of ports published on all interfaces then comes from the OS hostname.
    const resolvable = this.o.hostnameGiven ? this.o.hostname : osHostname();
    const defaultHostIp = this.o.ip ? undefined : await resolveHostIp(resolvable);
    if (!this.o.ip && !defaultHostIp) {
      this.log.warn(
        { hostname: resolvable },
        "the hostname does not resolve: ports published on all interfaces are skipped until -ip is set",
      );
    }
    const lifecycle: LifecycleOptions = {
      hostname: this.o.hostname,
      prefix: this.o.registry.prefix,
      hostIp: this.o.ip,
      defaultHostIp,
      internal: this.o.internal,
      explicit: this.o.explicit,
      useIpFromLabel: this.o.useIpFromLabel,
      tags: this.o.tags,
      deregister: this.o.deregister,
      requireHealthy: this.o.requireHealthy,
    };
    this.tracker = new ContainerTracker(
      {
        inspect: (id) => this.source.inspect(id),
        listRunning: () => this.source.listRunning(),
        publish: (id, services) => this.publisher.setContainer(id, services),
        isConnected: () => this.source.connected,
        ...(this.releaser ? { observed: this.releaser.observe.bind(this.releaser) } : {}),
      },
      lifecycle,
      this.log.child({ component: "containers" }),
      this.metrics,
    );
    await this.waitForEtcd();
    if (this.stopping.signal.aborted) return;
    await this.publisher.start();
    if (this.stopping.signal.aborted) return;
    const tracker = this.tracker;
    const releaser = this.releaser;
    const restarter = this.restarter;
    this.running = this.source.run({
      onEvent: (ev) => {
        releaser?.onEvent(ev);
        restarter?.onEvent(ev);
        tracker.onEvent(ev);
      },
      onConnected: () => {
        void restarter?.check();
        return this.fullSync();
      },
    });
    if (this.o.resync > 0) {
      this.resyncTimer = setInterval(() => void this.timedResync(), this.o.resync * 1000);
    }
  }

  /** Stops following Docker and the timer (first shutdown step). */
  stopAccepting(): void {
    this.stopping.abort();
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.source.stop();
    this.tracker?.stop();
    this.restarter?.stop();
  }

  /** Revokes the lease so every key goes at once, then closes etcd and the admin server. */
  async close(): Promise<void> {
    this.stopAccepting();
    await this.running;
    await this.releaser?.close();
    await this.publisher.stop();
    this.client.close();
    await this.admin?.close();
  }

  get adminAddress() {
    return this.admin?.address ?? null;
  }

  private async waitForEtcd(): Promise<void> {
    const { retryAttempts, retryInterval } = this.o;
    const probe = registryKeys.all(this.o.registry.prefix);
    for (let attempt = 0; !this.stopping.signal.aborted; attempt++) {
      try {
        this.metrics.etcdOperations.inc({ op: "get" });
        await this.client.getAll().prefix(probe).limit(1).keys();
        if (attempt > 0) this.log.info({ attempts: attempt + 1 }, "etcd answers");
        return;
      } catch (err) {
        this.metrics.etcdErrors.inc({ op: "get" });
        const e = toEtcdError(err, "probe", { hosts: this.o.registry.hosts });
        if (retryAttempts !== -1 && attempt >= retryAttempts) {
          throw new StartupError(`etcd did not answer after ${attempt + 1} attempt(s): ${e.message}`, e);
        }
        if (attempt === 0) this.log.warn({ err: e, retryInterval }, "etcd does not answer yet; retrying");
        else this.log.debug({ err: e, attempt }, "etcd still does not answer");
        await sleep(retryInterval, this.stopping.signal);
      }
    }
  }

  /** After each (re)subscription: look at every container, then make etcd match (retrying until it does). */
  private async fullSync(): Promise<void> {
    const started = performance.now();
    await this.tracker!.syncAll();
    const backoff = new Backoff(100, 2000);
    while (!this.stopping.signal.aborted) {
      if (await this.reconcile("docker sync")) break;
      await sleep(backoff.next(), this.stopping.signal);
    }
    if (!this.firstSyncDone && !this.stopping.signal.aborted) {
      this.firstSyncDone = true;
      this.firstSyncMs = Math.round(performance.now() - started);
      this.log.info(
        { services: this.publisher.desiredServices().size, ms: this.firstSyncMs },
        "initial sync done; ready",
      );
    }
  }

  private async timedResync(): Promise<void> {
    if (this.resyncRunning || !this.firstSyncDone || this.stopping.signal.aborted) return;
    this.resyncRunning = true;
    try {
      if (this.source.connected) {
        await this.tracker!.syncAll().catch((err: unknown) => {
          this.log.warn({ err }, "could not list containers for the resync; etcd is still reconciled");
        });
      }
      await this.reconcile("timer");
    } finally {
      this.resyncRunning = false;
    }
  }

  /** One reconciliation of etcd with what the containers want; logs its decision when it changes. */
  private async reconcile(cause: string): Promise<boolean> {
    const end = this.metrics.resyncDuration.startTimer();
    try {
      const r = await this.publisher.resync();
      end();
      this.metrics.resyncs.inc({ result: "ok" });
      const decision =
        r.actions.length === 0
          ? { action: "none", reason: "etcd matches the containers" }
          : { action: "repair", reason: `${r.actions.length} key(s) written or deleted` };
      const summary = `${decision.action}|${decision.reason}`;
      if (summary !== this.lastResyncSummary) this.log.info({ ...decision, cause }, "resync");
      else this.log.debug({ ...decision, cause, ms: Math.round(r.durationMs) }, "resync");
      this.lastResyncSummary = summary;
      return true;
    } catch (err) {
      end();
      this.metrics.resyncs.inc({ result: "error" });
      const e = toEtcdError(err, "resync");
      const summary = `error|${e.message}`;
      if (summary !== this.lastResyncSummary) this.log.warn({ err: e, cause }, "resync failed; will retry");
      this.lastResyncSummary = summary;
      return false;
    }
  }

  private readiness() {
    return {
      ready: this.ready,
      details: {
        initialSync: this.firstSyncDone,
        initialSyncMs: this.firstSyncMs,
        docker: this.source.connected ? "connected" : "disconnected",
        lease: this.o.ttl === 0 ? "none (-ttl 0)" : this.publisher.leaseHeld ? "held" : "not held",
        services: this.publisher.desiredServices().size,
      },
    };
  }

  /** Every key under the registry prefix (every host's), as etcd holds it now. */
  private async readRegistry(): Promise<Record<string, string>> {
    try {
      return await this.client.getAll().prefix(registryKeys.all(this.o.registry.prefix)).strings();
    } catch (err) {
      throw toEtcdError(err, "range read", { prefix: registryKeys.all(this.o.registry.prefix) });
    }
  }

  private servicesReport() {
    return [...this.publisher.desiredServices().values()].map((s) => ({
      key: s.key,
      value: s.value,
      name: s.name,
      id: s.id,
      container: s.containerName,
      tags: s.tags,
      attrs: s.attrs,
    }));
  }
}
