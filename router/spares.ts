/**
 * Spare connections: TCP connections opened to a leader while the router waits for its
 * REST API to confirm the promotion. PostgreSQL's postmaster starts a server process as
 * soon as it accepts a connection, and that process waits for the startup packet; a
 * held client released onto a spare skips the connect and that start. Nothing is sent
 * on a spare before a session takes it, so it is safe to open to a server still in
 * recovery, and one closed unused (by the router, or by PostgreSQL after its
 * authentication_timeout) logs nothing there but, with log_connections, its
 * "connection received" line.
 */
import type net from "node:net";
import type { Counter } from "prom-client";
import type { Target } from "./target.js";
import { connectUpstream } from "./upstream.js";

export interface SpareMetrics {
  readonly opened: Counter.Internal;
  readonly used: Counter.Internal;
}

/** Spares opened per leader awaiting confirmation. */
export const SPARES_PER_LEADER = 4;
/** How long spares not taken stay open once the leader is routed. */
export const SPARE_TTL_MS = 2_000;

export class Spares {
  private readonly sockets = new Set<net.Socket>();
  private timer: NodeJS.Timeout | null = null;
  private readonly forget: (this: net.Socket) => void;

  constructor(
    readonly target: Target,
    count: number,
    private readonly metrics?: SpareMetrics,
  ) {
    const sockets = this.sockets;
    this.forget = function (this: net.Socket) {
      sockets.delete(this);
    };
    for (let i = 0; i < count; i++) {
      const s = connectUpstream(target);
      // PostgreSQL says nothing before the startup packet: data or an end means the spare is unusable.
      s.on("data", destroySpare);
      s.on("end", destroySpare);
      s.on("error", noop);
      s.on("close", this.forget);
      this.sockets.add(s);
    }
    metrics?.opened.inc(count);
  }

  get size(): number {
    return this.sockets.size;
  }

  /** A spare that is connected (or still connecting), detached from this pool; null when none is left. */
  take(): net.Socket | null {
    for (const s of this.sockets) {
      this.sockets.delete(s);
      if (s.destroyed || s.readyState === "readOnly" || s.readyState === "writeOnly") {
        s.destroy();
        continue;
      }
      s.off("data", destroySpare);
      s.off("end", destroySpare);
      s.off("error", noop);
      s.off("close", this.forget);
      s.pause(); // until the session has written its startup and attached its own listeners
      this.metrics?.used.inc();
      return s;
    }
    return null;
  }

  /** Closes the spares not taken after `ms` (now when 0). */
  expire(ms: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (ms <= 0) {
      for (const s of this.sockets) s.destroy();
      this.sockets.clear();
      return;
    }
    this.timer = setTimeout(() => this.expire(0), ms);
    this.timer.unref();
  }
}

function noop(): void {}

function destroySpare(this: net.Socket): void {
  this.destroy();
}
