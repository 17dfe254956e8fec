/**
 * One client session: the per-connection hot path, and nothing else.
 *
 * Until the session is plain passthrough, bytes go through its start-up state
 * machine (startup.ts), which decides what goes where: the client's first packets
 * are kept and replayed to another server, one at a time, while nothing of the
 * server's answer has reached the client (a refused or reset connect, or a startup
 * answered with SQLSTATE 57P01/57P02/57P03, is retried within the hold budget).
 * This module owns the sockets and timers and carries out the machine's actions.
 * Once both directions pass through, bytes flow unmodified, with backpressure and
 * half-close, and nothing is done per chunk but a write. Listeners are module
 * functions that find the session through the socket (no closures per connection).
 */
import assert from "node:assert/strict";
import type net from "node:net";
import type { Backend } from "./backend.js";
import {
  type CloseOutcome,
  type RetryReason,
  Startup,
  type StartupAction,
  type UpstreamLoss,
} from "./startup.js";
import type { Target } from "./target.js";
import { connectUpstream } from "./upstream.js";

export type { CloseOutcome, RetryReason } from "./startup.js";

/** What a session needs from its listener. */
export interface ConnHost {
  readonly connectTimeoutMs: number;
  readonly startupTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Where a new session goes now; null to hold it; "reject" to close it. */
  pick(): Backend | null | "reject";
  /** What a client refused by `pick` is told. */
  rejectMessage(): string;
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

const kConn = Symbol("conn");
type Sock = net.Socket & { [kConn]: Conn };

const RETRY_MIN_MS = 20;
const RETRY_MAX_MS = 500;
/** After the server has closed (or the router has answered), how long a client that never closes is kept. */
const LINGER_MS = 2_000;

export class Conn {
  readonly client: Sock;
  up: Sock | null = null;
  backend: Backend | null = null;
  /** When the hold/retry budget ends (ms since epoch). */
  readonly deadline: number;
  readonly acceptedAt: number;

  /** Client bytes go straight to the server (else through the start-up machine). */
  clientRaw = false;
  /** Server bytes go straight to the client (else through the start-up machine). */
  upRaw = false;
  private readonly startup = new Startup();
  private sessionKey: string | null = null;
  /** The session is over but the client is still read, to be told why in its own terms. */
  private refusing = false;
  private startupRead = false;

  private attempts = 0;
  private timer: NodeJS.Timeout | null = null;
  /**
   * Fixed deadlines, counted from accept, that activity does not push back: the client's
   * first packets within --startup-timeout, and a refused client's answer within LINGER_MS.
   * (An idle timer would let a client that trickles a byte a second keep its slot forever.)
   */
  private deadlineTimer: NodeJS.Timeout | null = null;
  state: "held" | "reading" | "connecting" | "open" | "waiting" | "closed" = "held";
  /** Set by the listener while the session waits in its hold queue. */
  heldSince = 0;
  /** Set by the listener: the session was held at some point, and released at some point. */
  wasHeld = false;
  wasReleased = false;

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

  /** Start (or continue after a hold): read the first packets, or connect when one is in hand. */
  resume(): void {
    if (this.state === "closed") return;
    if (!this.startup.started) {
      this.state = "reading";
      if (this.deadlineTimer === null) {
        const left = Math.max(0, this.acceptedAt + this.host.startupTimeoutMs - Date.now());
        this.deadlineTimer = setTimeout(startupExpired, left, this);
      }
      this.client.resume();
      return;
    }
    this.connect();
  }

  /** The backend was fenced: retry elsewhere while the startup can be replayed, else close. */
  fence(): void {
    if (this.state === "closed") return;
    this.apply(this.startup.upstreamLost("fenced"));
  }

  /**
   * Closes a session the router gives up on, telling a client still in its start-up why:
   * an SSLRequest it waits for is answered 'N', then its StartupMessage the ErrorResponse.
   */
  reject(outcome: CloseOutcome, sqlstate: string, message: string): void {
    if (this.state === "closed") return;
    this.finish(outcome);
    this.detachUpstream();
    this.refusing = true;
    this.lingerAtMost();
    this.client.resume();
    this.apply(this.startup.refuse(outcome, sqlstate, message));
  }

  close(outcome: CloseOutcome): void {
    if (this.state === "closed") return;
    this.finish(outcome);
    this.detachUpstream();
    this.client.destroy();
  }

  /** A closed session's client is kept at most LINGER_MS more, however much it sends. */
  private lingerAtMost(): void {
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.client.setTimeout(0);
    this.deadlineTimer = setTimeout(destroySocket, LINGER_MS, this.client);
  }

  private finish(outcome: CloseOutcome): void {
    this.state = "closed";
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
    this.deadlineTimer = null;
    if (this.sessionKey !== null) this.host.forgetSession(this.sessionKey);
    this.host.closed(this, outcome);
  }

  private detachUpstream(): void {
    const up = this.up;
    this.up = null;
    this.backend?.detach(this);
    if (up !== null) up.destroy();
  }

  /** Ends the client once what it was sent is flushed; what it sends meanwhile is dropped. */
  private endClient(): void {
    this.client.removeListener("data", onClientData);
    this.client.on("data", discard);
    this.client.resume();
    if (!this.client.writableEnded) this.client.end();
    this.lingerAtMost();
  }

  // --- the start-up machine's inputs and actions --------------------------------------------------

  onClientStartup(chunk: Buffer): void {
    if (this.state === "closed" && !this.refusing) return;
    this.apply(this.startup.clientData(chunk));
    if (!this.startupRead && this.startup.complete && this.state !== "closed") {
      // After its first packets the client waits for the server: the idle timeout applies.
      this.startupRead = true;
      if (this.deadlineTimer !== null) clearTimeout(this.deadlineTimer);
      this.deadlineTimer = null;
      this.client.setTimeout(this.host.idleTimeoutMs);
    }
  }

  onUpStartup(chunk: Buffer): void {
    this.apply(this.startup.serverData(chunk));
  }

  /** Carries out the machine's actions in order. Not per chunk once the session passes through. */
  private apply(actions: readonly StartupAction[]): void {
    for (const a of actions) {
      switch (a.do) {
        case "connect":
          if (this.up !== null) this.detachUpstream();
          this.connect();
          break;
        case "server": {
          const up = this.up;
          if (up !== null && !up.write(a.bytes)) this.client.pause();
          break;
        }
        case "client":
          if (!this.client.write(a.bytes)) this.up?.pause();
          break;
        case "clientRaw":
          this.clientRaw = true;
          break;
        case "serverRaw":
          this.upRaw = true;
          break;
        case "session":
          if (this.backend !== null) {
            this.sessionKey = a.key;
            this.host.registerSession(a.key, this.backend.target);
          }
          break;
        case "retry":
          this.retry(a.reason);
          return;
        case "refuse":
          this.reject(a.outcome, a.sqlstate, a.message);
          return;
        case "endServer":
          this.up?.end();
          break;
        case "end":
          this.upstreamEnded();
          break;
        case "close":
          if (this.state === "closed") {
            if (a.flush) this.endClient();
            else this.client.destroy();
          } else if (a.flush) {
            this.finish(a.outcome);
            this.detachUpstream();
            this.endClient();
          } else this.close(a.outcome);
          return;
      }
    }
  }

  // --- upstream ---------------------------------------------------------------------------------

  connect(): void {
    if (this.state === "closed") return;
    let target: Target | null = null;
    let backend: Backend | null = null;
    const cancelKey = this.startup.cancelKey;
    if (cancelKey !== null) target = this.host.cancelTarget(cancelKey);
    if (target === null) {
      const b = this.host.pick();
      if (b === "reject") {
        this.reject("rejected", "57P03", this.host.rejectMessage());
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
    this.upRaw = false;
    this.startup.attempt();
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
    if (spare !== null) {
      up.resume();
      if (!up.connecting) this.onUpConnected(); // a spare connected before it was taken
    }
  }

  onUpConnected(): void {
    this.assertInvariants();
    this.state = "open";
    this.attempts = 0;
    this.up!.setTimeout(this.host.idleTimeoutMs);
    this.client.resume();
    this.apply(this.startup.upstreamConnected());
  }

  /** The upstream failed before the client saw anything: try again within the budget. */
  retry(why: RetryReason): void {
    if (this.state === "closed") return;
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

  /** The upstream ended, failed or timed out. */
  upstreamGone(how: UpstreamLoss): void {
    if (this.state === "closed") return;
    const connecting = this.state === "connecting" && (how === "closed" || how === "reset");
    this.apply(this.startup.upstreamLost(connecting ? "connect_failed" : how));
  }

  /** The server ended cleanly: let what the client has buffered drain, then close. */
  private upstreamEnded(): void {
    this.up = null;
    this.backend?.detach(this);
    if (!this.client.writableEnded) this.client.end();
    this.lingerAtMost();
  }

  /** The client ended its side. */
  clientEnded(): void {
    if (this.state === "reading" || this.state === "held" || this.state === "waiting") {
      this.close("done");
      return;
    }
    if (this.clientRaw) this.up?.end();
    else this.apply(this.startup.clientHalfClosed());
  }

  /** Checked once per upstream connection, never per chunk. */
  private assertInvariants(): void {
    assert.ok(this.client[kConn] === this, "client socket bound to its session");
    assert.ok(this.up !== null && this.up[kConn] === this, "upstream socket bound to its session");
    assert.ok(this.backend === null || this.backend.conns.has(this), "attached to its backend");
  }
}

/**
 * Answers a client the router will not take (too many connections, shutting down) in its
 * own terms, as a session's refusal does: 'N' to an SSLRequest, then the ErrorResponse to
 * its StartupMessage. Not the hot path: one closure per refused client.
 */
export function refuseClient(socket: net.Socket, sqlstate: string, message: string): void {
  // Refused clients do not count against --max-connections, so they get a budget of their
  // own: past it, a refused socket is closed at once, unread.
  if (lingering >= MAX_LINGERING) {
    socket.on("error", discard);
    socket.destroy();
    return;
  }
  lingering++;
  const machine = new Startup();
  let done = false;
  const act = (actions: readonly StartupAction[]): void => {
    for (const a of actions) {
      if (done) return;
      if (a.do === "client") socket.write(a.bytes);
      else if (a.do === "close") {
        done = true;
        if (a.flush) socket.end();
        else socket.destroy();
      }
    }
  };
  // A fixed deadline: activity does not extend it.
  const deadline = setTimeout(destroySocket, LINGER_MS, socket);
  socket.once("close", () => {
    lingering--;
    clearTimeout(deadline);
  });
  socket.on("error", discard);
  socket.on("data", (chunk: Buffer) => {
    if (!done) act(machine.clientData(chunk));
  });
  socket.on("end", () => {
    if (!socket.writableEnded) socket.destroy();
  });
  socket.resume();
  act(machine.refuse("rejected", sqlstate, message));
}

/** Refused sockets still open (each waits at most LINGER_MS for its answer to flush). */
let lingering = 0;
/** At most this many refused sockets linger at once, per process. */
export const MAX_LINGERING = 256;

// --- listeners (module functions: `this` is the socket) ------------------------------------------

function discard(): void {}

function destroySocket(s: net.Socket): void {
  s.destroy();
}

function startupExpired(c: Conn): void {
  if (c.state === "reading") c.close("startup_timeout");
}

function onClientData(this: Sock, chunk: Buffer): void {
  const c = this[kConn];
  if (c.clientRaw) {
    const up = c.up;
    if (up === null) return;
    if (!up.write(chunk)) this.pause();
    return;
  }
  c.onClientStartup(chunk);
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
  if (c.state !== "closed") c.clientEnded();
  else if (!this.writableEnded) this.destroy(); // a refused client that leaves before its answer
}

function onClientClose(this: Sock): void {
  this[kConn].close("done");
}

function onUpEnd(this: Sock): void {
  const c = this[kConn];
  if (c.up === this) c.upstreamGone("closed");
}

function onUpClose(this: Sock, hadError: boolean): void {
  const c = this[kConn];
  if (c.up === this) c.upstreamGone(hadError ? "reset" : "closed");
}

function onSocketError(this: Sock): void {
  const c = this[kConn];
  if (this === c.client) c.close("client_error");
  else if (c.up === this) c.upstreamGone("reset");
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
  if (c.state === "connecting") c.upstreamGone("connect_timeout");
  else c.close("idle_timeout");
}

function retryNow(c: Conn): void {
  if (c.state === "waiting") c.connect();
}
