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
  unsupportedProtocolError,
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
    ["protocol 2.0 (whole)", packet(0x20000, Buffer.alloc(288)), "unsupported"],
    [
      "protocol 4.0 (whole)",
      packet(0x40000, Buffer.from("user\u0000u\u0000\u0000", "latin1")),
      "unsupported",
    ],
    ["protocol 1234.5681 (no such request)", packet(80877105), "unsupported"],
    ["protocol 2.0, not all of it yet", packet(0x20000, Buffer.alloc(288)).subarray(0, 100), "incomplete"],
    [
      "StartupMessage 3.2 (the server negotiates)",
      packet(0x30002, Buffer.from("user\u0000u\u0000\u0000", "latin1")),
      "startup",
    ],
    ["a CancelRequest of the wrong length", packet(CANCEL_REQUEST_CODE), "invalid"],
    ["a length past 10000", Buffer.from([0, 1, 0, 0, 0, 3, 0, 0]), "invalid"],
  ] as const) {
    it(`${name} → ${want}`, () => assert.equal(classifyClientPacket(buf).kind, want));
  }
  it("reports a packet only once all of it is in hand, whatever the split", () => {
    const whole = packet(
      196608,
      Buffer.from("user\u0000someone\u0000database\u0000db\u0000\u0000", "latin1"),
    );
    for (let cut = 0; cut < whole.length; cut++) {
      assert.equal(classifyClientPacket(whole.subarray(0, cut)).kind, "incomplete", `cut ${cut}`);
    }
    const cancel = packet(CANCEL_REQUEST_CODE, Buffer.alloc(8));
    assert.equal(classifyClientPacket(cancel.subarray(0, 12)).kind, "incomplete");
  });
  it("says a bad length at once, without waiting for the bytes it announces", () => {
    assert.equal(classifyClientPacket(Buffer.from([0, 0, 0x27, 0x11, 0, 3, 0, 0])).kind, "invalid");
  });
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

  it("a first message of which no byte, or only part of an ErrorResponse, is in: awaited", () => {
    const err = errorResponse("57P01", "terminating connection due to administrator command");
    for (let cut = 1; cut < 5; cut++) {
      const s = new StartupAnswerScanner();
      s.push(err.subarray(0, cut));
      assert.equal(s.awaitingFirstError, true, `cut ${cut}`);
    }
    const nothing = new StartupAnswerScanner();
    nothing.push(Buffer.alloc(0));
    assert.equal(nothing.awaitingFirstError, true, "no byte yet");
    const ok = new StartupAnswerScanner();
    ok.push(AUTH_OK.subarray(0, 1));
    assert.equal(ok.awaitingFirstError, false, "a first byte R settles it");
    assert.equal(ok.firstType, "R".charCodeAt(0));
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

describe("unsupportedProtocolError", () => {
  it("protocol 4.0: PostgreSQL's v3 FATAL (0A000, its message)", () => {
    const e = unsupportedProtocolError(0x40000);
    assert.equal(sqlstateOf(e.subarray(5)), "0A000");
    assert.match(
      e.toString("latin1"),
      /SFATAL\0VFATAL\0C0A000\0Munsupported frontend protocol 4\.0: server supports 3\.0 to 3\.0\0\0$/,
    );
    assert.match(unsupportedProtocolError(SSL_REQUEST_CODE).toString("latin1"), /protocol 1234\.5679:/);
  });
  it("protocol 2.0: the message in protocol 2's own format, as PostgreSQL 15 sends it", () => {
    assert.equal(
      unsupportedProtocolError(0x20000).toString("latin1"),
      "EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0",
    );
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
