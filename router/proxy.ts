/**
 * A listener: accepts clients on one port of one route, hands each to a Conn,
 * and holds clients while no backend is routable (accepted, nothing read), in
 * arrival order, until `release()` is called or their hold budget runs out. One
 * timer per listener watches the oldest held client's deadline.
 */
import net, { type AddressInfo } from "node:net";
import type { HostPort } from "../shared/host-port.js";
import type { Logger } from "../shared/logger.js";
import type { Backend } from "./backend.js";
import { type CloseOutcome, Conn, type ConnHost, type RetryReason, refuseClient } from "./conn.js";
import type { HoldTally } from "./decisions.js";
import type { RouterMetrics } from "./metrics.js";
import type { Target } from "./target.js";

/** What all listeners of one process share. */
export class ProxyShared {
  /** Client connections open across all listeners (held ones included). */
  open = 0;
  /** Open client connections by source address (only while --max-connections-per-source is set). */
  readonly bySource = new Map<string, number>();
  /** Server sessions by their cancel key, so a CancelRequest reaches the server that owns it. */
  readonly sessions = new Map<string, Target>();

  constructor(
    readonly opts: {
      readonly holdTimeoutMs: number;
      readonly connectTimeoutMs: number;
      readonly startupTimeoutMs: number;
      readonly idleTimeoutMs: number;
      readonly maxConnections: number;
      /** 0: no cap. */
      readonly maxConnectionsPerSource: number;
    },
    readonly metrics: RouterMetrics,
  ) {}

  /** Counts a client against its source's cap; false when the source is over it. */
  admitSource(source: string): boolean {
    const cap = this.opts.maxConnectionsPerSource;
    if (cap === 0) return true;
    const n = this.bySource.get(source) ?? 0;
    if (n >= cap) return false;
    this.bySource.set(source, n + 1);
    return true;
  }

  releaseSource(source: string): void {
    if (this.opts.maxConnectionsPerSource === 0) return;
    const n = (this.bySource.get(source) ?? 1) - 1;
    if (n <= 0) this.bySource.delete(source);
    else this.bySource.set(source, n);
  }
}

/** Where new clients of a listener go: `pick` chooses (and may rotate); `ready` only asks. */
export interface Picker {
  pick(): Backend | null | "reject";
  ready(): boolean;
  /** What a refused client is told (default: no server available for this port). */
  rejectMessage?(): string;
}

export class ProxyListener implements ConnHost {
  private readonly server: net.Server;
  private readonly conns = new Set<Conn>();
  private queue: Conn[] = [];
  private holdTimer: NodeJS.Timeout | null = null;
  private heldCount = 0;
  private accepting = true;
  private bound: AddressInfo | null = null;
  readonly connectTimeoutMs: number;
  readonly startupTimeoutMs: number;
  readonly idleTimeoutMs: number;
  private readonly labels: { route: string; role: string };

  constructor(
    readonly route: string,
    readonly role: "primary" | "replica",
    readonly listen: HostPort,
    private readonly shared: ProxyShared,
    private readonly picker: Picker,
    private readonly log: Logger,
    /** Counts this listener's held clients for the route's decision log (the primary port's). */
    private readonly tally: HoldTally | null = null,
  ) {
    this.connectTimeoutMs = shared.opts.connectTimeoutMs;
    this.startupTimeoutMs = shared.opts.startupTimeoutMs;
    this.idleTimeoutMs = shared.opts.idleTimeoutMs;
    this.labels = { route, role };
    shared.metrics.listener(route, role);
    this.server = net.createServer({
      pauseOnConnect: true,
      allowHalfOpen: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 30_000,
    });
    this.server.on("connection", (socket) => this.onConnection(socket));
    this.server.on("error", (err) => this.log.error({ err }, "listener error"));
  }

  get address(): AddressInfo | null {
    return this.bound;
  }
  get held(): number {
    return this.heldCount;
  }
  get active(): number {
    return this.conns.size;
  }

  async start(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      // reusePort (Node 22.12+; ignored before): a new router can bind the same port beside
      // this one while it drains (the compose stack's rolling update, README "Updates").
      this.server.listen(
        { port: this.listen.port, host: this.listen.host, backlog: 4096, reusePort: true },
        () => {
          this.server.off("error", reject);
          resolve();
        },
      );
    });
    this.bound = this.server.address() as AddressInfo;
    this.log.info({ address: this.bound.address, port: this.bound.port }, "listening");
    return this.bound;
  }

  /** Stops accepting; held clients are closed (they have no session to finish). */
  stop(): void {
    this.accepting = false;
    for (const c of this.queue) if (!c.closed) c.reject("shutdown", "57P01", "the router is shutting down");
    this.queue = [];
    // The listening socket closes now; close()'s callback would wait for every session.
    if (this.server.listening) this.server.close();
  }

  /** Closes every session of this listener. */
  closeAll(outcome: CloseOutcome): void {
    for (const c of [...this.conns]) c.close(outcome);
  }

  /** Resolves when no session of this listener is left. */
  async drained(pollMs = 100): Promise<void> {
    while (this.conns.size > 0) await new Promise((r) => setTimeout(r, pollMs));
  }

  private onConnection(socket: net.Socket): void {
    const shared = this.shared;
    if (!this.accepting || shared.open >= shared.opts.maxConnections) {
      const reason = this.accepting ? "max_connections" : "shutdown";
      shared.metrics.clientsRefused.inc({ ...this.labels, reason });
      refuseClient(
        socket,
        reason === "shutdown" ? "57P01" : "53300",
        reason === "shutdown" ? "the router is shutting down" : "too many connections to the router",
      );
      return;
    }
    const source = socket.remoteAddress ?? "";
    if (!shared.admitSource(source)) {
      shared.metrics.clientsRefused.inc({ ...this.labels, reason: "max_connections_per_source" });
      refuseClient(socket, "53300", `too many connections to the router from ${source}`);
      return;
    }
    shared.open++;
    shared.metrics.clientsAccepted.inc(this.labels);
    const c = new Conn(socket, this, shared.opts.holdTimeoutMs);
    this.conns.add(c);
    if (this.heldCount === 0 && this.picker.ready()) {
      c.resume();
      return;
    }
    this.hold(c);
    if (this.picker.ready()) this.release();
  }

  /** A routable backend may exist now: let held clients go, oldest first. */
  release(): void {
    const now = Date.now();
    while (this.queue.length > 0) {
      const c = this.queue[0]!;
      if (!c.closed) {
        if (!this.picker.ready()) break;
        this.unhold(c, now, "released");
      }
      this.queue.shift();
      if (!c.closed) c.resume();
    }
    this.armHoldTimer();
  }

  // --- ConnHost ---------------------------------------------------------------------------------

  pick(): Backend | null | "reject" {
    return this.picker.pick();
  }

  rejectMessage(): string {
    return this.picker.rejectMessage?.() ?? "no server available for this port";
  }

  hold(c: Conn): void {
    if (!this.accepting) {
      c.reject("shutdown", "57P01", "the router is shutting down");
      return;
    }
    if (!c.wasHeld) {
      c.wasHeld = true;
      this.tally?.held();
    }
    c.heldSince = Date.now();
    this.heldCount++;
    this.shared.metrics.heldClients.inc(this.labels);
    // Arrival order: a client held again after a failed attempt goes before later arrivals.
    let i = this.queue.length;
    while (i > 0 && this.queue[i - 1]!.acceptedAt > c.acceptedAt) i--;
    this.queue.splice(i, 0, c);
    this.armHoldTimer();
  }

  cancelTarget(key: string): Target | null {
    return this.shared.sessions.get(key) ?? null;
  }

  registerSession(key: string, target: Target): void {
    this.shared.sessions.set(key, target);
  }

  forgetSession(key: string): void {
    this.shared.sessions.delete(key);
  }

  retried(_c: Conn, why: RetryReason): void {
    this.shared.metrics.connectErrors.inc({ ...this.labels, reason: why });
  }

  closed(c: Conn, outcome: CloseOutcome): void {
    if (c.heldSince > 0) this.unhold(c, Date.now(), outcome === "hold_timeout" ? "timeout" : "closed");
    if (!this.conns.delete(c)) return;
    const m = this.shared.metrics;
    this.shared.open--;
    this.shared.releaseSource(c.client.remoteAddress ?? "");
    m.clientsClosed.inc({ ...this.labels, outcome });
    const read = c.client.bytesRead;
    const written = c.client.bytesWritten;
    if (read > 0) m.bytes.inc({ ...this.labels, direction: "in" }, read);
    if (written > 0) m.bytes.inc({ ...this.labels, direction: "out" }, written);
  }

  // --- hold budget ------------------------------------------------------------------------------

  private unhold(c: Conn, now: number, outcome: "released" | "timeout" | "closed"): void {
    if (c.heldSince === 0) return;
    this.shared.metrics.holdWait.observe({ ...this.labels, outcome }, (now - c.heldSince) / 1000);
    // A client held again after a failed attempt is counted once, as one client.
    if (outcome !== "released" || !c.wasReleased) this.tally?.unheld(outcome, now - c.heldSince);
    if (outcome === "released") c.wasReleased = true;
    this.shared.metrics.heldClients.dec(this.labels);
    this.heldCount--;
    c.heldSince = 0;
  }

  private armHoldTimer(): void {
    while (this.queue.length > 0 && this.queue[0]!.closed) this.queue.shift();
    if (this.holdTimer !== null) clearTimeout(this.holdTimer);
    this.holdTimer = null;
    const head = this.queue[0];
    if (head === undefined) return;
    this.holdTimer = setTimeout(() => this.expire(), Math.max(0, head.deadline - Date.now()) + 1);
  }

  private expire(): void {
    this.holdTimer = null;
    const now = Date.now();
    while (this.queue.length > 0 && (this.queue[0]!.closed || this.queue[0]!.deadline <= now)) {
      const c = this.queue.shift()!;
      if (!c.closed) {
        c.reject(
          "hold_timeout",
          "57P03",
          `no ${this.role} of ${this.route} became available in time (router)`,
        );
      }
    }
    this.armHoldTimer();
  }
}
