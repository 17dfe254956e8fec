import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CANCEL_REQUEST_CODE,
  classifyClientPacket,
  errorResponse,
  GSSENC_REQUEST_CODE,
  SSL_REQUEST_CODE,
  StartupAnswerScanner,
  sqlstateOf,
} from "../../router/pgwire.js";

function packet(code: number, extra = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(8 + extra.length);
  b.writeUInt32BE(b.length, 0);
  b.writeUInt32BE(code, 4);
  extra.copy(b, 8);
  return b;
}

function message(type: string, body: Buffer | string): Buffer {
  const payload = typeof body === "string" ? Buffer.from(body, "latin1") : body;
  const b = Buffer.alloc(5 + payload.length);
  b.write(type, 0, "latin1");
  b.writeUInt32BE(4 + payload.length, 1);
  payload.copy(b, 5);
  return b;
}

const AUTH_OK = message("R", Buffer.from([0, 0, 0, 0]));
const KEY = message("K", Buffer.from([0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]));
const PARAM = message("S", "server_version\u000015.5\u0000");
const READY = message("Z", "I");

describe("classifyClientPacket", () => {
  for (const [name, buf, want] of [
    ["SSLRequest", packet(SSL_REQUEST_CODE), "ssl"],
    ["GSSENCRequest", packet(GSSENC_REQUEST_CODE), "gssenc"],
    ["CancelRequest", packet(CANCEL_REQUEST_CODE, Buffer.alloc(8)), "cancel"],
    ["StartupMessage 3.0", packet(196608, Buffer.from("user\u0000u\u0000\u0000", "latin1")), "startup"],
    ["a partial header", Buffer.from([0, 0, 0]), "incomplete"],
    ["an HTTP request", Buffer.from("GET / HTTP/1.1\r\n"), "invalid"],
    ["protocol 2.0", packet(131072, Buffer.alloc(4)), "invalid"],
    ["a CancelRequest of the wrong length", packet(CANCEL_REQUEST_CODE), "invalid"],
    ["a length past 10000", Buffer.from([0, 1, 0, 0, 0, 3, 0, 0]), "invalid"],
  ] as const) {
    it(`${name} → ${want}`, () => assert.equal(classifyClientPacket(buf).kind, want));
  }
  it("reports the packet's length so the caller can split it off", () => {
    const p = packet(SSL_REQUEST_CODE);
    const r = classifyClientPacket(Buffer.concat([p, Buffer.from("more")]));
    assert.equal(r.kind === "ssl" && r.length, 8);
  });
});

describe("StartupAnswerScanner", () => {
  const answer = Buffer.concat([AUTH_OK, PARAM, KEY, READY]);

  it("finds BackendKeyData and ReadyForQuery in one chunk", () => {
    const s = new StartupAnswerScanner();
    s.push(answer);
    assert.equal(s.firstType, "R".charCodeAt(0));
    assert.equal(s.ready, true);
    assert.equal(s.backendKey, Buffer.from([0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]).toString("latin1"));
    assert.equal(s.firstError, undefined);
  });

  it("gives the same result whatever the chunking (every split point, byte by byte)", () => {
    const whole = new StartupAnswerScanner();
    whole.push(answer);
    for (let cut = 1; cut < answer.length; cut++) {
      const s = new StartupAnswerScanner();
      s.push(answer.subarray(0, cut));
      s.push(answer.subarray(cut));
      assert.deepEqual(
        [s.ready, s.backendKey, s.messages],
        [whole.ready, whole.backendKey, whole.messages],
        `cut ${cut}`,
      );
    }
    const bytes = new StartupAnswerScanner();
    for (const b of answer) bytes.push(Buffer.from([b]));
    assert.equal(bytes.backendKey, whole.backendKey);
  });

  it("reads the SQLSTATE of a first ErrorResponse, even split, and says when it is still incomplete", () => {
    const err = errorResponse("57P01", "terminating connection due to administrator command");
    const s = new StartupAnswerScanner();
    s.push(err.subarray(0, 7));
    assert.equal(s.awaitingFirstError, true);
    s.push(err.subarray(7));
    assert.equal(s.awaitingFirstError, false);
    assert.equal(s.firstError, "57P01");
  });

  it("an error after the first message is not the startup's refusal", () => {
    const s = new StartupAnswerScanner();
    s.push(Buffer.concat([AUTH_OK, errorResponse("28P01", "password authentication failed")]));
    assert.equal(s.firstError, undefined);
    assert.equal(s.awaitingFirstError, false);
  });

  it("flags a nonsensical length instead of reading forever", () => {
    const s = new StartupAnswerScanner();
    s.push(Buffer.from([0x52, 0, 0, 0, 1]));
    assert.equal(s.invalid, true);
  });
});

describe("sqlstateOf / errorResponse", () => {
  it("round-trips", () => {
    const e = errorResponse("53300", "too many connections");
    assert.equal(e[0], "E".charCodeAt(0));
    assert.equal(e.readUInt32BE(1), e.length - 1);
    assert.equal(sqlstateOf(e.subarray(5)), "53300");
  });
  it("is null without a C field or with a truncated body", () => {
    assert.equal(sqlstateOf(Buffer.from("Mhello\u0000\u0000", "latin1")), null);
    assert.equal(sqlstateOf(Buffer.from("C57P0", "latin1")), null);
  });
});
