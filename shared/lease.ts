/**
 * A lease with one job: stay alive. On loss (revoked, expired, or no keepalive
 * answered for a whole TTL) it grants a new lease and emits `granted` again, so
 * the owner rewrites every key. The etcd3 client reports `lost` only after 2×TTL
 * without a keepalive, so the last successful keepalive is tracked here.
 *
 * Events: `granted` (id: string), `lost` (err: Error), `error` is never emitted.
 */
import { EventEmitter } from "node:events";
import type { Etcd3, Lease } from "etcd3";
import { toEtcdError } from "./etcd.js";
import type { Logger } from "./logger.js";
import { Backoff, sleep } from "./time.js";

export const LEASE_RETRY_MIN_MS = 50;
/** Grants are retried at least this often, so keys are back within this after etcd answers. */
export const LEASE_RETRY_MAX_MS = 500;

export class KeptLease extends EventEmitter<{ granted: [id: string]; lost: [err: Error] }> {
  private current: Lease | null = null;
  private currentId: string | null = null;
  private lastKeepaliveAt = 0;
  private closed = false;
  private granting = false;
  private readonly watchdog: NodeJS.Timeout;
  private readonly abort = new AbortController();

  constructor(
    private readonly client: Etcd3,
    readonly ttlSeconds: number,
    private readonly log: Logger,
  ) {
    super();
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1)
      throw new RangeError(`lease TTL must be >= 1 s, got ${ttlSeconds}`);
    this.watchdog = setInterval(() => this.checkFreshness(), Math.max(100, (ttlSeconds * 1000) / 10));
    this.watchdog.unref();
  }

  /** Starts granting; resolves when the first lease is held (retrying until then or until closed). */
  async start(): Promise<void> {
    if (this.currentId) return;
    const granted = new Promise<void>((resolve) => this.once("granted", () => resolve()));
    void this.grantLoop();
    await Promise.race([
      granted,
      new Promise<void>((r) => this.abort.signal.addEventListener("abort", () => r())),
    ]);
  }

  get id(): string | null {
    return this.currentId;
  }

  /** True when a lease is granted and a keepalive answered within the TTL. */
  get held(): boolean {
    return this.currentId !== null && Date.now() - this.lastKeepaliveAt <= this.ttlSeconds * 1000;
  }

  /** The lease object to attach keys to, or null while none is held. */
  get lease(): Lease | null {
    return this.current;
  }

  /** Revokes the lease so its keys go at once; stops renewing. */
  async revoke(): Promise<void> {
    const lease = this.current;
    this.close();
    if (lease) {
      try {
        await lease.revoke();
      } catch (err) {
        this.log.warn(
          { err: toEtcdError(err, "lease revoke") },
          "could not revoke lease; its keys expire after the TTL",
        );
      }
    }
  }

  /** Stops renewing without revoking: keys expire after the TTL. */
  close(): void {
    this.closed = true;
    this.abort.abort();
    clearInterval(this.watchdog);
    this.current?.release();
    this.current = null;
    this.currentId = null;
  }

  private async grantLoop(): Promise<void> {
    if (this.granting) return;
    this.granting = true;
    const backoff = new Backoff(LEASE_RETRY_MIN_MS, LEASE_RETRY_MAX_MS);
    try {
      while (!this.closed && this.current === null) {
        const lease = this.client.lease(this.ttlSeconds, { autoKeepAlive: true });
        lease.on("lost", () => undefined); // handled below; keeps the emitter from throwing
        try {
          const id = await lease.grant();
          if (this.closed) {
            lease.release();
            return;
          }
          this.attach(lease, id);
          this.log.info({ lease: id, ttl: this.ttlSeconds }, "lease granted");
          this.emit("granted", id);
        } catch (err) {
          lease.release();
          this.log.debug({ err: toEtcdError(err, "lease grant") }, "lease grant failed; retrying");
          await sleep(backoff.next(), this.abort.signal);
        }
      }
    } finally {
      this.granting = false;
    }
  }

  private attach(lease: Lease, id: string): void {
    this.current = lease;
    this.currentId = id;
    this.lastKeepaliveAt = Date.now();
    lease.on("keepaliveSucceeded", () => {
      if (this.current === lease) this.lastKeepaliveAt = Date.now();
    });
    lease.on("lost", (err) => this.onLost(lease, err));
  }

  private checkFreshness(): void {
    const lease = this.current;
    if (lease && Date.now() - this.lastKeepaliveAt > this.ttlSeconds * 1000) {
      this.onLost(lease, new Error(`no keepalive answered for ${this.ttlSeconds} s; the lease has expired`));
    }
  }

  private onLost(lease: Lease, err: Error): void {
    if (lease !== this.current || this.closed) return;
    const id = this.currentId;
    this.current = null;
    this.currentId = null;
    lease.release();
    this.log.warn({ lease: id, err: toEtcdError(err, "lease keepalive") }, "lease lost; granting a new one");
    this.emit("lost", err);
    void this.grantLoop();
  }
}
