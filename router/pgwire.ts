/**
 * Just enough of PostgreSQL's wire protocol to route a connection: the client's
 * first packets (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage) and the
 * server's answer to a startup (first message, BackendKeyData, ReadyForQuery).
 * Nothing here changes a byte; the proxy forwards what it reads. The order of the
 * start-up (who speaks when) is startup.ts's.
 */

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** PostgreSQL's own bound on a startup packet (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_LENGTH = 10_000;
/**
 * First byte of a TLS handshake record: a client with PostgreSQL 17's direct TLS
 * (`sslnegotiation=direct`) starts with a ClientHello instead of an SSLRequest. No
 * startup packet starts with it (its length would be past MAX_STARTUP_LENGTH).
 */
export const TLS_HANDSHAKE_RECORD = 0x16;
/** The protocol the router reads (and PostgreSQL 15 speaks): 3.0; a later 3.x is the server's to negotiate. */
export const PROTOCOL_MAJOR = 3;
/** Longest server message kept while looking at a startup answer. */
const MAX_CAPTURE = 64 * 1024;

/** SQLSTATEs that mean "this server cannot take you now": the startup may be replayed elsewhere. */
export const RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set([
  "57P01", // admin_shutdown: the database system is shutting down
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now: starting up / not yet accepting connections
]);

export type FirstPacketKind = "ssl" | "gssenc" | "cancel" | "startup";

export type PacketClass =
  | { readonly kind: "incomplete" }
  | { readonly kind: FirstPacketKind; readonly length: number }
  /** A whole startup packet of a protocol other than 3.x: PostgreSQL answers it with an error. */
  | { readonly kind: "unsupported"; readonly length: number; readonly code: number }
  | { readonly kind: "invalid"; readonly reason: string };

const INCOMPLETE: PacketClass = Object.freeze({ kind: "incomplete" });

/**
 * Classifies the client packet at the start of `buf` (length-prefixed, no type byte).
 * A packet is reported only once all of it is in `buf` (as PostgreSQL reads it whole
 * before it acts); a length out of range is invalid as soon as it is read.
 */
export function classifyClientPacket(buf: Buffer): PacketClass {
  if (buf.length < 8) return INCOMPLETE;
  const length = buf.readUInt32BE(0);
  const code = buf.readUInt32BE(4);
  if (length < 8 || length > MAX_STARTUP_LENGTH) {
    return { kind: "invalid", reason: `startup packet length ${length} out of range` };
  }
  let kind: FirstPacketKind;
  switch (code) {
    case SSL_REQUEST_CODE:
      if (length !== 8) return { kind: "invalid", reason: "bad SSLRequest length" };
      kind = "ssl";
      break;
    case GSSENC_REQUEST_CODE:
      if (length !== 8) return { kind: "invalid", reason: "bad GSSENCRequest" };
      kind = "gssenc";
      break;
    case CANCEL_REQUEST_CODE:
      if (length !== 16) return { kind: "invalid", reason: "bad CancelRequest" };
      kind = "cancel";
      break;
    default:
      if (buf.length < length) return INCOMPLETE;
      if (code >>> 16 !== PROTOCOL_MAJOR) return { kind: "unsupported", length, code };
      kind = "startup";
  }
  return buf.length < length ? INCOMPLETE : { kind, length };
}

/**
 * PostgreSQL's own answer to a startup packet of a protocol it does not speak
 * (ProcessStartupPacket: FATAL, feature_not_supported), byte for byte but for the
 * source-location fields. An older client gets it in protocol 2's format ('E', then
 * "FATAL:  <message>\n" as a C string, no SQLSTATE), which PostgreSQL keeps so that
 * such a client can read it; a newer one a v3 ErrorResponse with SQLSTATE 0A000. A
 * negotiation request sent twice gets it too, its code read as a version (1234.5679).
 */
export function unsupportedProtocolError(code: number): Buffer {
  const major = code >>> 16;
  const message = `unsupported frontend protocol ${major}.${code & 0xffff}: server supports ${PROTOCOL_MAJOR}.0 to ${PROTOCOL_MAJOR}.0`;
  if (major < PROTOCOL_MAJOR) return Buffer.from(`EFATAL:  ${message}\n\0`, "utf8");
  return errorResponse("0A000", message);
}

/** The key a CancelRequest carries (process id + secret), as a map key. */
export function cancelKeyOfRequest(packet: Buffer): string {
  return packet.toString("latin1", 8, 16);
}

/** The same key from a BackendKeyData body (8 bytes: process id, secret). */
export function cancelKeyOfBackendKeyData(body: Buffer): string {
  return body.toString("latin1", 0, 8);
}

/** The SQLSTATE (field `C`) of an ErrorResponse body, or null. */
export function sqlstateOf(body: Buffer): string | null {
  let i = 0;
  while (i < body.length) {
    const field = body[i]!;
    if (field === 0) return null;
    const end = body.indexOf(0, i + 1);
    if (end === -1) return null;
    if (field === 0x43 /* C */) return body.toString("latin1", i + 1, end);
    i = end + 1;
  }
  return null;
}

const TYPE_ERROR = 0x45; // E
const TYPE_BACKEND_KEY = 0x4b; // K
const TYPE_READY = 0x5a; // Z

/**
 * Follows the server's messages after a StartupMessage until ReadyForQuery,
 * keeping the first message's type, its SQLSTATE when it is an error, and the
 * BackendKeyData. Copies only those bodies (a few bytes); chunks may split anywhere.
 */
export class StartupAnswerScanner {
  private readonly header = Buffer.allocUnsafe(5);
  private headerLen = 0;
  private inBody = false;
  private type = 0;
  private left = 0;
  private capture: Buffer | null = null;
  private captured = 0;

  /** Messages whose header has been read. */
  messages = 0;
  /** Type byte of the first message, 0 until its first byte is in. */
  firstType = 0;
  /** SQLSTATE of the first message when it is a complete ErrorResponse; undefined until known. */
  firstError: string | null | undefined = undefined;
  backendKey: string | null = null;
  ready = false;
  invalid = false;

  /**
   * True while the answer's first message may be an ErrorResponse not yet read whole: no
   * byte of it is in yet, or it is an ErrorResponse (its first byte) not all in.
   */
  get awaitingFirstError(): boolean {
    if (this.invalid) return false;
    return this.firstType === 0 || (this.firstType === TYPE_ERROR && this.firstError === undefined);
  }

  push(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n && !this.ready && !this.invalid) {
      if (!this.inBody) {
        const take = Math.min(5 - this.headerLen, n - i);
        chunk.copy(this.header, this.headerLen, i, i + take);
        if (this.firstType === 0 && this.messages === 0) this.firstType = chunk[i]!; // known from its first byte
        this.headerLen += take;
        i += take;
        if (this.headerLen < 5) return;
        this.headerLen = 0;
        this.type = this.header[0]!;
        const length = this.header.readUInt32BE(1);
        if (length < 4 || length > 0x3fffffff) {
          this.invalid = true;
          return;
        }
        this.messages++;
        this.left = length - 4;
        const keep =
          (this.type === TYPE_BACKEND_KEY || (this.type === TYPE_ERROR && this.messages === 1)) &&
          this.left <= MAX_CAPTURE;
        this.capture = keep ? Buffer.allocUnsafe(this.left) : null;
        this.captured = 0;
        this.inBody = true;
        if (this.left === 0) this.endMessage();
        continue;
      }
      const take = Math.min(this.left, n - i);
      if (this.capture !== null) chunk.copy(this.capture, this.captured, i, i + take);
      this.captured += take;
      this.left -= take;
      i += take;
      if (this.left === 0) this.endMessage();
    }
  }

  private endMessage(): void {
    this.inBody = false;
    const body = this.capture;
    this.capture = null;
    if (this.type === TYPE_ERROR && this.messages === 1) this.firstError = body ? sqlstateOf(body) : null;
    else if (this.type === TYPE_BACKEND_KEY && body !== null && body.length >= 8) {
      this.backendKey = cancelKeyOfBackendKeyData(body);
    } else if (this.type === TYPE_READY) this.ready = true;
  }
}

/** An ErrorResponse a client understands, for the rare cases the router answers itself. */
export function errorResponse(sqlstate: string, message: string): Buffer {
  const fields = `SFATAL\0VFATAL\0C${sqlstate}\0M${message}\0\0`;
  const body = Buffer.from(fields, "utf8");
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = TYPE_ERROR;
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}
