/**
 * A client's start-up as a pure state machine over bytes, apart from the sockets.
 *
 * Inputs: bytes from the client, bytes from the server, the upstream's fate (an
 * attempt begins, connects, is lost or fenced), the client's end, and a refusal
 * (the hold time ran out, the router is shutting down). Outputs: actions for the
 * session to carry out in order (write these bytes to the server or the client,
 * connect, retry elsewhere, pass through from here, close). conn.ts owns the
 * sockets and timers and does what it is told; nothing here does I/O.
 *
 * The client's first packets (SSLRequest / GSSENCRequest answered 'N', then the
 * StartupMessage; or a CancelRequest; or a direct-TLS ClientHello) are kept, so
 * that they can be replayed to another server while nothing of the server's answer
 * to the startup has reached the client. A replay sends each packet only once the
 * server has answered the one before, as a client does: PostgreSQL refuses bytes
 * that arrive after an SSLRequest before its answer ("received unencrypted data
 * after SSL request"). The answers the client already has are swallowed; a replayed
 * negotiation answered otherwise ('S' where the client had 'N') cannot be used.
 *
 * A refusal answers the client in its own terms: an SSLRequest still waiting gets
 * 'N', then its StartupMessage gets the ErrorResponse, so a client prints a FATAL
 * line and not "error response during SSL exchange".
 */
import assert from "node:assert/strict";
import {
  cancelKeyOfRequest,
  classifyClientPacket,
  errorResponse,
  GSSENC_REQUEST_CODE,
  RETRYABLE_SQLSTATES,
  SSL_REQUEST_CODE,
  StartupAnswerScanner,
  TLS_HANDSHAKE_RECORD,
  unsupportedProtocolError,
} from "./pgwire.js";

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
/** How an upstream attempt ended: `closed` cleanly (FIN), `reset` with an error. */
export type UpstreamLoss = "connect_failed" | "connect_timeout" | "closed" | "reset" | "fenced";

export type StartupAction =
  /** A server is needed: drop the current upstream, if any, and connect (by cancel key, else pick). */
  | { readonly do: "connect" }
  | { readonly do: "server"; readonly bytes: Buffer }
  | { readonly do: "client"; readonly bytes: Buffer }
  /** From here client bytes go straight to the server. */
  | { readonly do: "clientRaw" }
  /** From here server bytes go straight to the client. */
  | { readonly do: "serverRaw" }
  /** The server's BackendKeyData, so that a CancelRequest can find it. */
  | { readonly do: "session"; readonly key: string }
  /** This attempt cannot be used and nothing of it reached the client: connect again within the budget. */
  | { readonly do: "retry"; readonly reason: RetryReason }
  /** Give up on the session, telling the client why (see `refuse`). */
  | {
      readonly do: "refuse";
      readonly outcome: CloseOutcome;
      readonly sqlstate: string;
      readonly message: string;
    }
  /** The client has ended its side and the server has all it sent: end the server's side. */
  | { readonly do: "endServer" }
  /** The server ended cleanly: end the client's side once what it was sent is flushed. */
  | { readonly do: "end" }
  /** Close the client: after what was written to it (`flush`), or now. */
  | { readonly do: "close"; readonly outcome: CloseOutcome; readonly flush: boolean };

type PacketKind = "ssl" | "gssenc" | "startup" | "cancel" | "direct";
type Upstream = "none" | "wanted" | "connecting" | "connected" | "retrying";

const CHAR_N = 0x4e;
const CHAR_E = 0x45;
const ANSWER_N: Buffer = Buffer.from([CHAR_N]);
/** Bytes a client may send past its first packets before any server has them. */
const MAX_EARLY_BYTES = 1024 * 1024;

const NONE: readonly StartupAction[] = Object.freeze([]);
const CONNECT: StartupAction = Object.freeze({ do: "connect" });
const CLIENT_RAW: StartupAction = Object.freeze({ do: "clientRaw" });
const SERVER_RAW: StartupAction = Object.freeze({ do: "serverRaw" });
const END: StartupAction = Object.freeze({ do: "end" });
const END_SERVER: StartupAction = Object.freeze({ do: "endServer" });

const LOSS_REASON: Readonly<Record<UpstreamLoss, RetryReason>> = Object.freeze({
  connect_failed: "connect_failed",
  connect_timeout: "connect_timeout",
  closed: "closed_early",
  reset: "closed_early",
  fenced: "fenced",
});

const toServer = (bytes: Buffer): StartupAction => ({ do: "server", bytes });
const toClient = (bytes: Buffer): StartupAction => ({ do: "client", bytes });
const close = (outcome: CloseOutcome, flush: boolean): StartupAction => ({ do: "close", outcome, flush });

interface Refusal {
  readonly outcome: CloseOutcome;
  readonly sqlstate: string;
  readonly message: string;
}

export class Startup {
  // --- the client's side ------------------------------------------------------------------------
  /** Client bytes not yet read as a packet. */
  private cbuf: Buffer | null = null;
  /** The client's first packets, in order: what a replay sends (freed once past replay). */
  private packets: Buffer[] = [];
  private readonly kinds: PacketKind[] = [];
  /** Negotiation answers the client has received (each an 'N'). */
  private answered = 0;
  /** Client bytes past its first packets, or sent before the answer it waits for, not yet sent on. */
  private early: Buffer[] | null = null;
  private earlyLength = 0;
  /** The last first packet (StartupMessage, CancelRequest, direct TLS) is in hand. */
  complete = false;
  /** The key of the client's CancelRequest, which routes it. */
  cancelKey: string | null = null;
  private clientEnded = false;
  private refusal: Refusal | null = null;

  // --- the current attempt ------------------------------------------------------------------------
  private up: Upstream = "none";
  /** Packets of `packets` sent in this attempt. */
  private sent = 0;
  /** The last packet sent is a negotiation whose one-byte answer has not come. */
  private awaiting = false;
  private scanner: StartupAnswerScanner | null = null;
  /** Server bytes held back while its first message is an ErrorResponse not yet read whole. */
  private held: Buffer[] | null = null;
  /** Part of the server's answer to the startup has reached the client. */
  answerStarted = false;
  private replayOk = true;
  private endSent = false;
  clientRaw = false;
  serverRaw = false;

  /** A first packet is in hand (the session needs a server). */
  get started(): boolean {
    return this.kinds.length > 0;
  }

  /** Whether an attempt failing now can be retried elsewhere without the client noticing. */
  get replayable(): boolean {
    return this.replayOk && !this.answerStarted && this.packets.length > 0 && this.refusal === null;
  }

  // --- inputs -------------------------------------------------------------------------------------

  /** Bytes from the client (until `clientRaw`). */
  clientData(chunk: Buffer): readonly StartupAction[] {
    const out: StartupAction[] = [];
    if (this.refusal !== null) {
      this.cbuf = this.cbuf === null ? chunk : Buffer.concat([this.cbuf, chunk]);
      this.readRefused(this.refusal, out);
    } else if (this.complete || this.clientAwaitsAnswer()) this.clientEarly(chunk, out);
    else {
      this.cbuf = this.cbuf === null ? chunk : Buffer.concat([this.cbuf, chunk]);
      this.readPacket(out);
    }
    return out;
  }

  /** The session opened an upstream (a new connection or a spare) for the packets in hand. */
  attempt(): void {
    assert.ok(this.started && this.refusal === null, "an attempt needs a first packet and no refusal");
    assert.ok(this.packets.length === this.kinds.length, "an attempt has every first packet to send");
    this.up = "connecting";
    this.sent = 0;
    this.awaiting = false;
    this.scanner = null;
    this.held = null;
  }

  /** The upstream is connected: send what the server may have now. */
  upstreamConnected(): readonly StartupAction[] {
    if (this.up !== "connecting") return NONE;
    this.up = "connected";
    const out: StartupAction[] = [];
    this.pump(out);
    return out;
  }

  /** Bytes from the server (until `serverRaw`). */
  serverData(chunk: Buffer): readonly StartupAction[] {
    const out: StartupAction[] = [];
    if (chunk.length === 0 || this.up !== "connected" || this.serverRaw) return out;
    if (this.awaiting) {
      this.answer(chunk, out);
      return out;
    }
    const s = this.scanner;
    if (s === null) {
      // The server speaks unasked: not PostgreSQL's start-up; let the client see it.
      out.push(toClient(chunk));
      this.passThrough(out);
      return out;
    }
    s.push(chunk);
    if (!this.answerStarted) {
      if (s.awaitingFirstError) {
        if (this.held === null) this.held = [chunk];
        else this.held.push(chunk);
        return out;
      }
      if (s.firstError != null && RETRYABLE_SQLSTATES.has(s.firstError) && this.replayable) {
        this.lose("startup_refused", out);
        return out;
      }
      this.answerStarted = true;
      this.pastReplay();
      if (this.held !== null) for (const h of this.held) out.push(toClient(h));
      this.held = null;
      this.setClientRaw(out);
    }
    out.push(toClient(chunk));
    if (s.ready || s.invalid) {
      if (s.backendKey !== null) out.push({ do: "session", key: s.backendKey });
      this.scanner = null;
      this.setServerRaw(out);
    }
    return out;
  }

  /** The server's one-byte answer to the negotiation just sent (and anything after it). */
  private answer(chunk: Buffer, out: StartupAction[]): void {
    const b = chunk[0]!;
    const alone = chunk.length === 1; // nothing may follow an 'N' before the client speaks again
    const index = this.sent - 1;
    this.awaiting = false;
    if (index < this.answered) {
      // A replayed negotiation: the client has had its 'N' already.
      if (b === CHAR_N && alone) this.pump(out);
      else if (b === CHAR_N || b === CHAR_E)
        this.lose("startup_refused", out); // E: no process for it
      else {
        this.up = "none";
        out.push({
          do: "refuse",
          outcome: "upstream_error",
          sqlstate: "57P03",
          message: mismatch(this.kinds[index]!, b),
        });
      }
      return;
    }
    // The client's own negotiation: this is its answer.
    if (b === CHAR_E && this.replayable) {
      this.lose("startup_refused", out); // the server could not start a process: try again
      return;
    }
    if (b === CHAR_N && alone) {
      this.answered++;
      out.push(toClient(ANSWER_N));
      return;
    }
    // TLS or GSS encryption begins (or something unexpected): pass through from here.
    out.push(toClient(chunk));
    this.passThrough(out);
  }

  /** The upstream attempt ended (or its server was fenced). */
  upstreamLost(how: UpstreamLoss): readonly StartupAction[] {
    if (this.up !== "connecting" && this.up !== "connected") return NONE;
    const out: StartupAction[] = [];
    if (this.replayable) {
      this.lose(LOSS_REASON[how], out);
      return out;
    }
    this.up = "none";
    if (how === "closed") out.push(END);
    else out.push(close(how === "fenced" ? "fenced" : "upstream_error", false));
    return out;
  }

  /** The client ended its side (FIN) before passthrough. */
  clientHalfClosed(): readonly StartupAction[] {
    this.clientEnded = true;
    this.replayOk = false;
    const out: StartupAction[] = [];
    this.maybeEndServer(out);
    return out;
  }

  /**
   * The router gives up on this session (hold time out, shutdown, no server for the
   * port) and tells the client `message`: a negotiation it still waits for is answered
   * 'N', its StartupMessage gets the ErrorResponse, and it is closed. A client past
   * the point where it could read an error from the router is closed at once.
   */
  refuse(outcome: CloseOutcome, sqlstate: string, message: string): readonly StartupAction[] {
    this.up = "none";
    this.scanner = null;
    this.held = null;
    this.awaiting = false;
    if (this.answerStarted || this.clientRaw || this.serverRaw) return [close(outcome, false)];
    const r: Refusal = { outcome, sqlstate, message };
    this.refusal = r;
    const out: StartupAction[] = [];
    const last = this.kinds[this.kinds.length - 1];
    if (last === "startup") {
      out.push(toClient(errorResponse(sqlstate, message)), close(outcome, true));
      return out;
    }
    if (last === "cancel" || last === "direct") {
      out.push(close(outcome, false));
      return out;
    }
    if (this.clientAwaitsAnswer()) {
      this.answered++;
      out.push(toClient(ANSWER_N));
    }
    // What the client sent after that is read as the next packets.
    if (this.early !== null) {
      const pending = this.early;
      if (this.cbuf !== null) pending.push(this.cbuf);
      this.cbuf = Buffer.concat(pending);
      this.early = null;
      this.earlyLength = 0;
    }
    this.readRefused(r, out);
    return out;
  }

  // --- the client's packets -------------------------------------------------------------------------

  private clientAwaitsAnswer(): boolean {
    const last = this.kinds[this.kinds.length - 1];
    return (last === "ssl" || last === "gssenc") && this.answered < this.kinds.length;
  }

  /** Reads the client's next first packet, and sends it on or asks for a server. */
  private readPacket(out: StartupAction[]): void {
    const buf = this.cbuf;
    if (buf === null || buf.length === 0) return;
    if (this.kinds.length === 0 && buf[0] === TLS_HANDSHAKE_RECORD) {
      // PostgreSQL 17's direct TLS: the bytes are the server's to read; forward them raw.
      this.cbuf = null;
      this.take("direct", buf);
      this.complete = true;
      this.want(out);
      return;
    }
    const p = classifyClientPacket(buf);
    if (p.kind === "incomplete") return;
    this.cbuf = null;
    if (p.kind === "invalid") {
      out.push(close("bad_startup", false));
      return;
    }
    const code = buf.readUInt32BE(4);
    if (p.kind === "unsupported" || this.repeated(code)) {
      out.push(toClient(unsupportedProtocolError(code)), close("bad_startup", true));
      return;
    }
    const packet = p.length === buf.length ? buf : buf.subarray(0, p.length);
    this.take(p.kind, packet);
    if (p.kind === "cancel") this.cancelKey = cancelKeyOfRequest(packet);
    if (p.kind === "startup" || p.kind === "cancel") this.complete = true;
    if (p.kind === "cancel" && this.up === "connected") {
      // A CancelRequest after a negotiation goes to the server that owns the session it names:
      // a new attempt, routed by its key, replays the negotiation there.
      this.want(out);
    } else if (this.up === "none") this.want(out);
    else if (this.up === "connected") this.pump(out);
    if (p.length < buf.length) this.clientEarly(buf.subarray(p.length), out);
  }

  /** Client bytes past its first packets, or sent before the answer it waits for. */
  private clientEarly(chunk: Buffer, out: StartupAction[]): void {
    if (this.up === "connected" && this.sent === this.kinds.length && this.early === null) {
      // Everything before them is with this server: send them on, as a direct connection would.
      out.push(toServer(chunk));
      this.replayOk = false;
      if (this.clientAwaitsAnswer()) this.passThrough(out); // the server judges them; nothing to follow
      return;
    }
    if (this.earlyLength + chunk.length > MAX_EARLY_BYTES) {
      out.push(close("bad_startup", false));
      return;
    }
    if (this.early === null) this.early = [chunk];
    else this.early.push(chunk);
    this.earlyLength += chunk.length;
  }

  /** A negotiation request the client has made already: PostgreSQL reads it as a protocol version. */
  private repeated(code: number): boolean {
    if (code === SSL_REQUEST_CODE) return this.kinds.includes("ssl");
    if (code === GSSENC_REQUEST_CODE) return this.kinds.includes("gssenc");
    return false;
  }

  private take(kind: PacketKind, packet: Buffer): void {
    this.kinds.push(kind);
    this.packets.push(packet);
  }

  private want(out: StartupAction[]): void {
    this.up = "wanted";
    out.push(CONNECT);
  }

  // --- sending ----------------------------------------------------------------------------------------

  /** Sends the packets the server may have now: each negotiation only once the one before is answered. */
  private pump(out: StartupAction[]): void {
    while (this.up === "connected" && !this.awaiting && this.sent < this.kinds.length) {
      const i = this.sent++;
      const kind = this.kinds[i]!;
      out.push(toServer(this.packets[i]!));
      const last = this.sent === this.kinds.length;
      if (kind === "ssl" || kind === "gssenc") {
        this.awaiting = true;
        if (last && this.early !== null) {
          // The client did not wait for its answer: the server sees what it sent and judges.
          this.flushEarly(out);
          this.passThrough(out);
        }
      } else if (kind === "startup") {
        this.scanner = new StartupAnswerScanner();
        if (this.early !== null) this.flushEarly(out);
      } else {
        // A CancelRequest is done once delivered; direct TLS is the server's from the first byte.
        if (this.early !== null) this.flushEarly(out);
        this.passThrough(out);
      }
    }
    this.maybeEndServer(out);
  }

  private flushEarly(out: StartupAction[]): void {
    for (const b of this.early!) out.push(toServer(b));
    this.early = null;
    this.earlyLength = 0;
    this.replayOk = false;
  }

  private maybeEndServer(out: StartupAction[]): void {
    if (
      this.clientEnded &&
      !this.endSent &&
      this.up === "connected" &&
      this.sent === this.kinds.length &&
      this.early === null
    ) {
      this.endSent = true;
      out.push(END_SERVER);
    }
  }

  /** This attempt is over: retry while the client has seen nothing of it, else close. */
  private lose(reason: RetryReason, out: StartupAction[]): void {
    if (this.replayable) {
      this.up = "retrying";
      out.push({ do: "retry", reason });
    } else {
      this.up = "none";
      out.push(close("upstream_error", false));
    }
  }

  // --- passthrough --------------------------------------------------------------------------------------

  private passThrough(out: StartupAction[]): void {
    this.pastReplay();
    this.awaiting = false;
    this.scanner = null;
    this.setClientRaw(out);
    this.setServerRaw(out);
  }

  /** Past the point of replay: free what was kept for it. */
  private pastReplay(): void {
    this.replayOk = false;
    this.packets = [];
    this.cbuf = null;
  }

  private setClientRaw(out: StartupAction[]): void {
    if (this.clientRaw) return;
    this.clientRaw = true;
    out.push(CLIENT_RAW);
  }

  private setServerRaw(out: StartupAction[]): void {
    if (this.serverRaw) return;
    this.serverRaw = true;
    out.push(SERVER_RAW);
  }

  // --- refusal ----------------------------------------------------------------------------------------------

  /** Reads a refused client's packets: negotiations get 'N', the startup gets the error. */
  private readRefused(r: Refusal, out: StartupAction[]): void {
    for (;;) {
      const buf = this.cbuf;
      if (buf === null || buf.length === 0) return;
      if (this.kinds.length === 0 && buf[0] === TLS_HANDSHAKE_RECORD) {
        this.cbuf = null;
        out.push(close(r.outcome, false)); // TLS the router cannot speak: close
        return;
      }
      const p = classifyClientPacket(buf);
      if (p.kind === "incomplete") return;
      this.cbuf = p.kind !== "invalid" && p.length < buf.length ? buf.subarray(p.length) : null;
      if (p.kind === "invalid") {
        out.push(close(r.outcome, false));
        return;
      }
      const code = buf.readUInt32BE(4);
      if (p.kind === "unsupported" || this.repeated(code)) {
        out.push(toClient(unsupportedProtocolError(code)), close(r.outcome, true));
        this.cbuf = null;
        return;
      }
      this.kinds.push(p.kind);
      if (p.kind === "ssl" || p.kind === "gssenc") {
        this.answered++;
        out.push(toClient(ANSWER_N));
        continue;
      }
      this.cbuf = null;
      if (p.kind === "startup")
        out.push(toClient(errorResponse(r.sqlstate, r.message)), close(r.outcome, true));
      else out.push(close(r.outcome, false)); // a CancelRequest expects no answer
      return;
    }
  }
}

function mismatch(kind: PacketKind, answer: number): string {
  const request = kind === "gssenc" ? "GSSENCRequest" : "SSLRequest";
  const got = answer >= 0x20 && answer < 0x7f ? `'${String.fromCharCode(answer)}'` : `byte ${answer}`;
  return (
    `the server this connection was moved to answered its ${request} with ${got} where the first ` +
    `answered 'N'; connect again (router)`
  );
}
