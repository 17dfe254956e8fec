/**
 * One client session: the per-connection hot path, and nothing else.
 *
 * A session reads the client's first packets (SSLRequest/GSSENCRequest answered
 * 'N', then the StartupMessage, or a CancelRequest) and keeps them, so that the
 * startup can be replayed against another server while nothing of the server's
 * answer has reached the client: a refused or reset connect, or a startup
 * answered with SQLSTATE 57P01/57P02/57P03, is retried within the hold budget.
 * Once the server's answer starts flowing (or TLS begins), bytes pass both ways
 * unmodified, with backpressure and half-close, and nothing is done per chunk but
 * a write. Listeners are module functions that find the session through the
 * socket (no closures per connection).
 */
import assert from "node:assert/strict";
import net from "node:net";
import type { Backend } from "./backend.js";
import {
  cancelKeyOfRequest,
  classifyClientPacket,
  errorResponse,
  RETRYABLE_SQLSTATES,
  StartupAnswerScanner,
} from "./pgwire.js";
import type { Target } from "./selection.js";

/** What a session needs from its listener. */
export interface ConnHost {
  readonly connectTimeoutMs: number;
  readonly startupTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Where a new session goes now; null to hold it; "reject" to close it. */
  pick(): Backend | null | "reject";
  /** Queue the session until `pick` may answer (the listener calls `resume`). */
  hold(c: Conn): void;
  /** The server that owns the session a CancelRequest names, if known. */
  cancelTarget(key: string): Target | null;
  registerSession(key: string, target: Target): void;
  forgetSession(key: string): void;
  /** Accounting once the session is over. */
  closed(c: Conn, outcome: CloseOutcome): void;
  /** A failed attempt that will be retried. */
  retried(c: Conn, why: RetryReason): void;
}

export type CloseOutcome =
  | "done"
  | "fenced"
  | "hold_timeout"
  | "rejected"
  | "bad_startup"
  | "startup_timeout"
  | "idle_timeout"
  | "upstream_error"
  | "client_error"
  | "shutdown";
export type RetryReason =
  | "connect_failed"
  | "connect_timeout"
  | "startup_refused"
  | "closed_early"
  | "fenced";

const kConn = Symbol("conn");
type Sock = net.Socket & { [kConn]: Conn };

const CHAR_N = 0x4e;
const RETRY_MIN_MS = 20;
const RETRY_MAX_MS = 500;
/** After the server has closed, how long a client that never closes its side is kept. */
const LINGER_MS = 2_000;

export class Conn {
  readonly client: Sock;
  up: Sock | null = null;
  backend: Backend | null = null;
  /** When the hold/retry budget ends (ms since epoch). */
  readonly deadline: number;
  readonly acceptedAt: number;

  // Client side: packets are parsed until the StartupMessage (or a CancelRequest) is read.
  clientRaw = false;
  private cbuf: Buffer | null = null;
  /** Packets sent upstream that a retry sends again, in order. */
  private replay: Buffer[] = [];
  private cancelKey: string | null = null;
  /** Negotiation answers ('N') the client already has: swallowed when replayed. */
  private answered = 0;
  private swallow = 0;
  private negotiating = false;
  private startupSent = false;

  // Upstream side.
  upRaw = false;
  private scanner: StartupAnswerScanner | null = null;
  private held: Buffer[] | null = null;
  private answerStarted = false;
  replayable = true;
  private sessionKey: string | null = null;

  private attempts = 0;
  private timer: NodeJS.Timeout | null = null;
  state: "held" | "reading" | "connecting" | "open" | "waiting" | "closed" = "held";
  /** Set by the listener while the session waits in its hold queue. */
  heldSince = 0;

  constructor(
    socket: net.Socket,
    readonly host: ConnHost,
    holdTimeoutMs: number,
  ) {
    this.client = socket as Sock;
    this.client[kConn] = this;
    this.acceptedAt = Date.now();
    this.deadline = this.acceptedAt + holdTimeoutMs;
    socket.on("data", onClientData);
    socket.on("end", onClientEnd);
    socket.on("close", onClientClose);
    socket.on("error", onSocketError);
    socket.on("drain", onClientDrain);
    socket.on("timeout", onClientTimeout);
  }

  get closed(): boolean {
    return this.state === "closed";
  }

  /** Start (or continue after a hold): read the first packets, or connect when they are in hand. */
  resume(): void {
    if (this.state === "closed") return;
    if (this.replay.length === 0 && !this.clientRaw) {
      this.state = "reading";
      this.client.setTimeout(this.host.startupTimeoutMs);
      this.client.resume();
      if (this.cbuf !== null) this.onClientPackets(Buffer.alloc(0));
      return;
    }
    this.connect();
  }

  /** The backend was fenced: retry elsewhere while the startup can be replayed, else close. */
  fence(): void {
    if (this.state === "closed") return;
    if (this.replayable && !this.answerStarted && this.replay.length > 0) this.retry("fenced");
    else this.close("fenced");
  }

  /** Closes a session the router gives up on, telling a client still in its startup why. */
  reject(outcome: CloseOutcome, sqlstate: string, message: string): void {
    if (this.state === "closed") return;
    if (!this.answerStarted) {
      this.detachUpstream();
      this.finish(outcome);
      this.client.removeListener("data", onClientData);
      this.client.on("data", discard);
      this.client.resume();
      this.client.end(errorResponse(sqlstate, message));
      this.client.setTimeout(LINGER_MS);
      return;
    }
    this.close(outcome);
  }

  close(outcome: CloseOutcome): void {
    if (this.state === "closed") return;
    this.finish(outcome);
    this.detachUpstream();
    this.client.destroy();
  }

  private finish(outcome: CloseOutcome): void {
    this.state = "closed";
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.sessionKey !== null) this.host.forgetSession(this.sessionKey);
    this.host.closed(this, outcome);
  }

  private detachUpstream(): void {
    const up = this.up;
    this.up = null;
    this.backend?.detach(this);
    if (up !== null) up.destroy();
  }

  // --- client packets before the startup -----------------------------------------------------

  onClientPackets(chunk: Buffer): void {
    this.cbuf = this.cbuf === null ? chunk : Buffer.concat([this.cbuf, chunk]);
    while (this.cbuf !== null && !this.negotiating && !this.clientRaw && this.state !== "closed") {
      const p = classifyClientPacket(this.cbuf);
      if (p.kind === "incomplete") return;
      if (p.kind === "invalid") {
        this.close("bad_startup");
        return;
      }
      const packet = this.cbuf.subarray(0, p.length);
      this.cbuf = this.cbuf.length > p.length ? this.cbuf.subarray(p.length) : null;
      this.replay.push(packet);
      if (p.kind === "ssl" || p.kind === "gssenc") this.negotiating = true;
      else {
        if (p.kind === "cancel") this.cancelKey = cancelKeyOfRequest(packet);
        else {
          this.startupSent = true;
          if (this.up !== null) this.scanner = new StartupAnswerScanner();
        }
        // After the startup the client speaks only once the server has answered: forward as is.
        this.clientRaw = true;
        this.client.setTimeout(this.host.idleTimeoutMs);
      }
      if (this.up === null) this.connect();
      else this.up.write(packet);
    }
    if (this.clientRaw && this.cbuf !== null && this.up !== null) {
      this.replayable = false;
      this.up.write(this.cbuf);
      this.cbuf = null;
    }
  }

  // --- upstream ---------------------------------------------------------------------------------

  connect(): void {
    if (this.state === "closed") return;
    let target: Target | null = null;
    let backend: Backend | null = null;
    if (this.cancelKey !== null) target = this.host.cancelTarget(this.cancelKey);
    if (target === null) {
      const b = this.host.pick();
      if (b === "reject") {
        this.reject("rejected", "57P03", "no server available for this port");
        return;
      }
      if (b === null) {
        this.state = "held";
        this.client.pause();
        this.host.hold(this);
        return;
      }
      backend = b;
      target = b.target;
    }
    this.state = "connecting";
    this.client.pause();
    const spare = backend?.takeSpare() ?? null;
    const up = (spare ?? connectUpstream(target)) as Sock;
    up[kConn] = this;
    this.up = up;
    this.backend = backend;
    backend?.attach(this);
    if (this.up !== up) return; // fenced while attaching
    up.setTimeout(this.host.connectTimeoutMs);
    up.on("connect", onUpConnect);
    up.on("data", onUpData);
    up.on("end", onUpEnd);
    up.on("close", onUpClose);
    up.on("error", onSocketError);
    up.on("drain", onUpDrain);
    up.on("timeout", onUpTimeout);
    this.upRaw = this.cancelKey !== null; // a CancelRequest needs no scanning
    this.swallow = this.answered;
    this.scanner = this.startupSent ? new StartupAnswerScanner() : null;
    this.held = null;
    this.answerStarted = false;
    for (const p of this.replay) up.write(p);
    if (spare !== null) {
      up.resume();
      if (!up.connecting) this.onUpConnected(); // a spare connected before it was taken
    }
  }

  onUpConnected(): void {
    this.assertInvariants();
    this.state = "open";
    this.attempts = 0;
    // A CancelRequest is done once delivered; the server closes without an answer.
    if (this.cancelKey !== null) this.goneRaw();
    this.up!.setTimeout(this.host.idleTimeoutMs);
    this.client.resume();
  }

  /** Server bytes before the session is plain passthrough. */
  onUpStartup(chunk: Buffer): void {
    let i = 0;
    while (this.swallow > 0 && i < chunk.length) {
      if (chunk[i] !== CHAR_N) {
        this.close("upstream_error"); // a replayed negotiation answered differently
        return;
      }
      this.swallow--;
      i++;
    }
    if (i === chunk.length) return;
    const data = i === 0 ? chunk : chunk.subarray(i);
    if (this.negotiating) {
      this.negotiating = false;
      this.answered++;
      if (data[0] === CHAR_N && data.length === 1) {
        this.client.write(data);
        if (this.cbuf !== null) this.onClientPackets(Buffer.alloc(0));
        return;
      }
      // TLS or GSS begins (or something unexpected): nothing can be replayed from here.
      this.toRaw(data);
      return;
    }
    const s = this.scanner;
    if (s === null) {
      this.toRaw(data);
      return;
    }
    s.push(data);
    if (!this.answerStarted) {
      if (s.awaitingFirstError) {
        if (this.held === null) this.held = [data];
        else this.held.push(data);
        return;
      }
      if (s.firstError != null && RETRYABLE_SQLSTATES.has(s.firstError) && this.replayable) {
        this.retry("startup_refused");
        return;
      }
      this.goneRaw();
      if (this.held !== null) for (const h of this.held) this.client.write(h);
      this.held = null;
    }
    this.client.write(data);
    if (s.ready || s.invalid) {
      if (s.backendKey !== null && this.backend !== null) {
        this.sessionKey = s.backendKey;
        this.host.registerSession(s.backendKey, this.backend.target);
      }
      this.scanner = null;
      this.upRaw = true;
    }
  }

  /** Past the point of replay: free what was kept for it. */
  private goneRaw(): void {
    this.answerStarted = true;
    this.replayable = false;
    this.replay = [];
  }

  private toRaw(data: Buffer): void {
    this.goneRaw();
    this.upRaw = true;
    this.scanner = null;
    this.clientRaw = true;
    this.client.write(data);
    if (this.cbuf !== null && this.up !== null) {
      this.up.write(this.cbuf);
      this.cbuf = null;
    }
  }

  /** The upstream failed before the client saw anything: try again within the budget. */
  retry(why: RetryReason): void {
    if (this.state === "closed") return;
    if (!this.replayable || this.answerStarted) {
      this.close("upstream_error");
      return;
    }
    this.detachUpstream();
    this.host.retried(this, why);
    if (Date.now() >= this.deadline) {
      this.reject("hold_timeout", "57P03", "no server became available within the router's hold timeout");
      return;
    }
    this.state = "waiting";
    this.client.pause();
    const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** this.attempts++);
    this.timer = setTimeout(retryNow, delay, this);
  }

  /** The upstream ended or failed. */
  upstreamGone(error: boolean): void {
    if (this.state === "closed") return;
    if (!this.answerStarted && this.replayable && this.replay.length > 0) {
      this.retry(this.state === "connecting" ? "connect_failed" : "closed_early");
      return;
    }
    if (error) {
      this.close("upstream_error");
      return;
    }
    // Clean close: let what the client has buffered drain, then close.
    this.up = null;
    this.backend?.detach(this);
    if (!this.client.writableEnded) this.client.end();
    this.client.setTimeout(LINGER_MS);
  }

  /** Checked once per upstream connection, never per chunk. */
  private assertInvariants(): void {
    assert.ok(this.client[kConn] === this, "client socket bound to its session");
    assert.ok(this.up !== null && this.up[kConn] === this, "upstream socket bound to its session");
    assert.ok(this.backend === null || this.backend.conns.has(this), "attached to its backend");
  }
}

/** A new connection to a server, with the options every upstream socket has. */
export function connectUpstream(target: Target): net.Socket {
  return net.connect({
    host: target.host,
    port: target.port,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: 30_000,
    allowHalfOpen: true,
  });
}

// --- listeners (module functions: `this` is the socket) ------------------------------------------

function discard(): void {}

function onClientData(this: Sock, chunk: Buffer): void {
  const c = this[kConn];
  if (c.clientRaw) {
    const up = c.up;
    if (up === null) return;
    c.replayable = false;
    if (!up.write(chunk)) this.pause();
    return;
  }
  c.onClientPackets(chunk);
}

function onUpData(this: Sock, chunk: Buffer): void {
  const c = this[kConn];
  if (c.up !== this) return;
  if (c.upRaw) {
    if (!c.client.write(chunk)) this.pause();
    return;
  }
  c.onUpStartup(chunk);
}

function onClientDrain(this: Sock): void {
  this[kConn].up?.resume();
}

function onUpDrain(this: Sock): void {
  const c = this[kConn];
  if (c.up === this && c.state === "open") c.client.resume();
}

function onUpConnect(this: Sock): void {
  const c = this[kConn];
  if (c.up === this) c.onUpConnected();
}

function onClientEnd(this: Sock): void {
  const c = this[kConn];
  if (c.state === "reading" || c.state === "held" || c.state === "waiting") {
    c.close("done");
    return;
  }
  c.replayable = false;
  c.up?.end();
}

function onClientClose(this: Sock): void {
  this[kConn].close("done");
}

function onUpEnd(this: Sock): void {
  const c = this[kConn];
  if (c.up === this) c.upstreamGone(false);
}

function onUpClose(this: Sock, hadError: boolean): void {
  const c = this[kConn];
  if (c.up === this) c.upstreamGone(hadError);
}

function onSocketError(this: Sock): void {
  const c = this[kConn];
  if (this === c.client) c.close("client_error");
  else if (c.up === this) c.upstreamGone(true);
  // An 'error' is always followed by 'close'; nothing else to do.
}

function onClientTimeout(this: Sock): void {
  const c = this[kConn];
  if (c.state === "closed") this.destroy();
  else if (c.state === "reading") c.close("startup_timeout");
  else c.close("idle_timeout");
}

function onUpTimeout(this: Sock): void {
  const c = this[kConn];
  if (c.up !== this) return;
  if (c.state === "connecting") c.retry("connect_timeout");
  else c.close("idle_timeout");
}

function retryNow(c: Conn): void {
  if (c.state === "waiting") c.connect();
}
