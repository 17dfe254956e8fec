/**
 * The etcd edge. Holds what every container wants (`setContainer`) and makes
 * etcd match it:
 *
 * - every key is attached to ONE KeptLease per process (`-ttl 0`: plain keys);
 *   on `granted` (first grant, or a new one after loss) everything is written again;
 * - changes are flushed at once, batched into transactions, one writer at a time;
 *   a failed write is retried with a capped backoff;
 * - `resync()` reads the prefix back from etcd and repairs it (missing, wrong or
 *   unwanted keys; with -cleanup, stale keys of this host);
 * - `stop()` revokes the lease (or deletes the plain keys) so the keys go at once.
 */
import type { Etcd3 } from "etcd3";
import { toEtcdError } from "../shared/etcd.js";
import { registryKeys } from "../shared/keys.js";
import { KeptLease } from "../shared/lease.js";
import type { Logger } from "../shared/logger.js";
import { Backoff } from "../shared/time.js";
import type { RegistratorMetrics } from "./metrics.js";
import { type Action, type ActualKey, plan } from "./reconciler.js";
import type { Service } from "./service-model.js";

/** etcd's default --max-txn-ops. */
export const MAX_TXN_OPS = 128;
export const WRITE_RETRY_MIN_MS = 100;
export const WRITE_RETRY_MAX_MS = 1000;

export interface PublisherOptions {
  readonly prefix: string;
  readonly hostname: string;
  /** Seconds; 0 writes plain keys. */
  readonly ttl: number;
  readonly cleanup: boolean;
}

export interface ResyncResult {
  readonly actions: readonly Action[];
  readonly durationMs: number;
}

export class Publisher {
  private readonly byContainer = new Map<string, readonly Service[]>();
  /** Keys this process wrote under the current lease, with their values. */
  private readonly acked = new Map<string, string>();
  private readonly lease: KeptLease | null;
  private readonly backoff = new Backoff(WRITE_RETRY_MIN_MS, WRITE_RETRY_MAX_MS);
  private chain: Promise<unknown> = Promise.resolve();
  private flushing: Promise<void> | null = null;
  private again = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private conflicts = "";

  constructor(
    private readonly client: Etcd3,
    private readonly opts: PublisherOptions,
    private readonly log: Logger,
    private readonly metrics: RegistratorMetrics,
  ) {
    this.lease = opts.ttl > 0 ? new KeptLease(client, opts.ttl, log) : null;
    this.lease?.on("granted", () => {
      this.metrics.leaseGrants.inc();
      this.metrics.etcdOperations.inc({ op: "grant" });
      this.acked.clear();
      this.kick();
    });
    this.lease?.on("lost", () => {
      this.acked.clear();
      this.metrics.servicesRegistered.set(0);
    });
  }

  /** Resolves once a lease is held (retrying until then); plain keys need none. */
  async start(): Promise<void> {
    await this.lease?.start();
  }

  get leaseHeld(): boolean {
    return this.lease ? this.lease.held : true;
  }

  get leaseId(): string | null {
    return this.lease ? this.lease.id : "0";
  }

  /** Replaces the services one container wants (an empty list removes them). */
  setContainer(containerId: string, services: readonly Service[]): void {
    if (services.length === 0) this.byContainer.delete(containerId);
    else this.byContainer.set(containerId, services);
    this.kick();
  }

  /** Every service wanted now, by key (the first container by ID wins a key two containers want). */
  desiredServices(): Map<string, Service> {
    return this.collect().services;
  }

  /** Schedules a flush of whatever differs from what was last written. */
  kick(): void {
    if (this.closed) return;
    if (this.flushing) {
      this.again = true;
      return;
    }
    this.flushing = this.flushLoop();
  }

  /** Reads the prefix from etcd and repairs it. Throws an EtcdError when etcd does not answer. */
  async resync(): Promise<ResyncResult> {
    const started = performance.now();
    const actions = await this.exclusive(async () => {
      const leaseId = this.leaseId;
      if (leaseId === null) throw toEtcdError(new Error("no lease held"), "resync");
      const desired = this.desiredValues();
      const actual = await this.readActual();
      const todo = plan(desired, actual, { ...this.planContext(leaseId), cleanup: this.opts.cleanup });
      await this.apply(todo, leaseId, "resync");
      const refused = new Set(todo.filter((a) => a.action === "refuse").map((a) => a.key));
      this.acked.clear();
      for (const [k, v] of desired) if (!refused.has(k)) this.acked.set(k, v);
      this.metrics.servicesRegistered.set(this.acked.size);
      return todo;
    });
    this.kick();
    return { actions, durationMs: performance.now() - started };
  }

  /** Stops writing; revokes the lease (or deletes the plain keys) so every key goes at once. */
  async stop(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.chain.catch(() => undefined);
    if (this.lease) {
      this.metrics.etcdOperations.inc({ op: "revoke" });
      await this.lease.revoke();
      this.log.info("lease revoked; this registrator's keys are gone");
    } else {
      const deletes: Action[] = [...this.acked.keys()].map((key) => ({
        action: "delete",
        key,
        reason: "registrator stopping",
      }));
      try {
        await this.apply(deletes, "0", "stop");
      } catch (err) {
        this.log.warn({ err }, "could not delete this registrator's keys on the way out");
      }
    }
    this.metrics.servicesRegistered.set(0);
  }

  private collect(): { services: Map<string, Service>; clashes: string[] } {
    const services = new Map<string, Service>();
    const clashes: string[] = [];
    for (const id of [...this.byContainer.keys()].sort()) {
      for (const s of this.byContainer.get(id)!) {
        const had = services.get(s.key);
        if (had) clashes.push(`${s.key} (${had.containerName}, ${s.containerName})`);
        else services.set(s.key, s);
      }
    }
    return { services, clashes };
  }

  /** What to write; warns (once per change) when two containers want one key. */
  private desiredValues(): Map<string, string> {
    const { services, clashes } = this.collect();
    const summary = clashes.join("; ");
    if (summary !== this.conflicts) {
      this.conflicts = summary;
      if (summary)
        this.log.warn({ keys: clashes }, "several containers want the same key; the first by ID keeps it");
    }
    const out = new Map<string, string>();
    for (const [k, s] of services) out.set(k, s.value);
    this.metrics.servicesDesired.set(out.size);
    return out;
  }

  private planContext(leaseId: string) {
    return {
      prefix: this.opts.prefix,
      hostname: this.opts.hostname,
      leaseId,
      cleanup: false,
      owned: new Set(this.acked.keys()),
    };
  }

  private async flushLoop(): Promise<void> {
    try {
      do {
        this.again = false;
        await this.exclusive(() => this.flushOnce());
      } while (this.again && !this.closed);
    } catch (err) {
      this.log.warn({ err }, "etcd write failed; retrying");
      this.scheduleRetry();
    } finally {
      this.flushing = null;
    }
  }

  private async flushOnce(): Promise<void> {
    if (this.closed) return;
    const leaseId = this.leaseId;
    if (leaseId === null) return; // the next grant writes everything
    const desired = this.desiredValues();
    const actual = new Map<string, ActualKey>();
    for (const [k, v] of this.acked) actual.set(k, { value: v, lease: leaseId });
    await this.apply(plan(desired, actual, this.planContext(leaseId)), leaseId, "change");
    this.backoff.reset();
  }

  private scheduleRetry(): void {
    if (this.closed || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.kick();
    }, this.backoff.next());
  }

  private async readActual(): Promise<Map<string, ActualKey>> {
    this.metrics.etcdOperations.inc({ op: "get" });
    try {
      const res = await this.client.getAll().prefix(registryKeys.all(this.opts.prefix)).exec();
      const out = new Map<string, ActualKey>();
      for (const kv of res.kvs)
        out.set(kv.key.toString(), {
          value: kv.value.toString(),
          lease: String(kv.lease),
          modRevision: String(kv.mod_revision),
        });
      return out;
    } catch (err) {
      this.metrics.etcdErrors.inc({ op: "get" });
      throw toEtcdError(err, "range read", { prefix: registryKeys.all(this.opts.prefix) });
    }
  }

  /**
   * Applies actions: unguarded ones in transactions of at most MAX_TXN_OPS, each guarded delete
   * in a transaction of its own that compares the guard (a key changed meanwhile is left
   * alone); a refusal is logged and counted. Logs each change once it is written.
   */
  private async apply(actions: readonly Action[], leaseId: string, cause: string): Promise<void> {
    for (const a of actions) {
      if (a.action === "refuse") {
        this.log.warn({ key: a.key, reason: a.reason, cause }, "key left alone");
        this.metrics.reconcileActions.inc({ action: "refuse" });
      } else if (a.action === "delete" && a.guard !== undefined) {
        const compare =
          "lease" in a.guard
            ? {
                key: Buffer.from(a.key),
                result: "Equal" as const,
                target: "Lease" as const,
                lease: a.guard.lease,
              }
            : {
                key: Buffer.from(a.key),
                result: "Equal" as const,
                target: "Mod" as const,
                mod_revision: a.guard.modRevision,
              };
        this.metrics.etcdOperations.inc({ op: "txn" });
        let ok: boolean;
        try {
          const r = await this.client.kv.txn({
            compare: [compare],
            success: [{ request_delete_range: { key: Buffer.from(a.key) } }],
            failure: [],
          });
          ok = r.succeeded;
        } catch (err) {
          this.metrics.etcdErrors.inc({ op: "txn" });
          throw toEtcdError(err, "txn", { ops: 1 });
        }
        this.acked.delete(a.key);
        if (ok) {
          this.log.info({ action: a.action, key: a.key, reason: a.reason, cause }, "key deleted");
          this.metrics.reconcileActions.inc({ action: a.action });
        } else {
          this.log.info({ key: a.key, reason: a.reason, cause }, "key changed since it was read; left alone");
          this.metrics.reconcileActions.inc({ action: "refuse" });
        }
      }
    }
    const plainOps = actions.filter(
      (a): a is Exclude<Action, { action: "refuse" }> =>
        a.action === "put" || (a.action === "delete" && a.guard === undefined),
    );
    for (let i = 0; i < plainOps.length; i += MAX_TXN_OPS) {
      const batch = plainOps.slice(i, i + MAX_TXN_OPS);
      const success = batch.map((a) =>
        a.action === "put"
          ? { request_put: { key: Buffer.from(a.key), value: Buffer.from(a.value), lease: leaseId } }
          : { request_delete_range: { key: Buffer.from(a.key) } },
      );
      this.metrics.etcdOperations.inc({ op: "txn" });
      try {
        await this.client.kv.txn({ compare: [], success, failure: [] });
      } catch (err) {
        this.metrics.etcdErrors.inc({ op: "txn" });
        throw toEtcdError(err, "txn", { ops: batch.length });
      }
      for (const a of batch) {
        if (a.action === "put") {
          this.acked.set(a.key, a.value);
          this.log.info(
            { action: a.action, key: a.key, value: a.value, reason: a.reason, cause },
            "key written",
          );
        } else {
          this.acked.delete(a.key);
          this.log.info({ action: a.action, key: a.key, reason: a.reason, cause }, "key deleted");
        }
        this.metrics.reconcileActions.inc({ action: a.action });
      }
    }
    this.metrics.servicesRegistered.set(this.acked.size);
  }

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn);
    this.chain = run.catch(() => undefined);
    return run;
  }
}
