/**
 * The client's start-up as a state machine over bytes (router/startup.ts), in byte
 * tables: each step is an input (client bytes, server bytes, an attempt, its connect,
 * its loss, a refusal) and the actions it must produce, in order. Then the same runs
 * with the packets split at every offset, client side and server side.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  CANCEL_REQUEST_CODE,
  errorResponse,
  GSSENC_REQUEST_CODE,
  SSL_REQUEST_CODE,
  sqlstateOf,
} from "../../router/pgwire.js";
import { type CloseOutcome, Startup, type StartupAction, type UpstreamLoss } from "../../router/startup.js";

// --- bytes ------------------------------------------------------------------------------------------

function packet(code: number, extra: Buffer = Buffer.alloc(0)): Buffer {
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

const params = (...kv: string[]) => Buffer.from(`${kv.join("\0")}\0\0`, "latin1");
const SSL = packet(SSL_REQUEST_CODE);
const GSS = packet(GSSENC_REQUEST_CODE);
const STARTUP = packet(
  0x30000,
  params("user", "postgres", "database", "postgres", "application_name", "psql"),
);
const STARTUP_3_2 = packet(0x30002, params("user", "postgres"));
const STARTUP_2_0 = packet(0x20000, Buffer.alloc(288)); // protocol 2's fixed 296-byte packet
const STARTUP_4_0 = packet(0x40000, params("user", "postgres"));
const CANCEL = packet(CANCEL_REQUEST_CODE, Buffer.from([0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]));
const CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03]);
const N = Buffer.from("N");
const S = Buffer.from("S");
const G = Buffer.from("G");
const AUTH_OK = message("R", Buffer.from([0, 0, 0, 0]));
const AUTH_SASL = message("R", Buffer.concat([Buffer.from([0, 0, 0, 10]), params("SCRAM-SHA-256")]));
const PARAM = message("S", "server_version\u000015.18\u0000");
const KEY = message("K", Buffer.from([0, 0, 0x30, 0x39, 0xde, 0xad, 0xbe, 0xef]));
const READY = message("Z", "I");
const ANSWER = Buffer.concat([AUTH_OK, PARAM, KEY, READY]);
const QUERY = message("Q", "SELECT 1\u0000");
const SASL_INITIAL = message("p", "SCRAM-SHA-256\u0000\u0000\u0000\u0000\u0001x");
/** What PostgreSQL says when it refuses a startup, by SQLSTATE. */
const ERR = (code: string) => errorResponse(code, `server error ${code}`);

const NAMES = new Map<string, string>(
  Object.entries({
    SSL,
    GSS,
    STARTUP,
    STARTUP_3_2,
    CANCEL,
    CLIENT_HELLO,
    N,
    S,
    G,
    ANSWER,
    AUTH_OK,
    AUTH_SASL,
    QUERY,
    SASL_INITIAL,
  }).map(([name, b]) => [b.toString("hex"), name]),
);

/** A name for bytes: a known packet, an ErrorResponse by its SQLSTATE, else hex. */
function nameOf(b: Buffer): string {
  const known = NAMES.get(b.toString("hex"));
  if (known !== undefined) return known;
  if (b[0] === 0x45 && b.length > 5 && b.readUInt32BE(1) === b.length - 1) {
    return `E(${sqlstateOf(b.subarray(5))})`;
  }
  if (b[0] === 0x45 && b.toString("latin1").endsWith("\n\0")) return "E(protocol 2)";
  return b.toString("hex");
}

function render(a: StartupAction): string {
  switch (a.do) {
    case "server":
      return `server ${nameOf(a.bytes)}`;
    case "client":
      return `client ${nameOf(a.bytes)}`;
    case "retry":
      return `retry ${a.reason}`;
    case "refuse":
      return `refuse ${a.outcome} ${a.sqlstate}`;
    case "close":
      return `close ${a.outcome}${a.flush ? " after flush" : ""}`;
    case "session":
      return `session ${Buffer.from(a.key, "latin1").toString("hex")}`;
    default:
      return a.do;
  }
}

// --- steps ---------------------------------------------------------------------------------------

type Step =
  | { readonly client: Buffer }
  | { readonly server: Buffer }
  | "attempt"
  | "connected"
  | { readonly lost: UpstreamLoss }
  | "clientEnd"
  | { readonly refuse: CloseOutcome; readonly sqlstate?: string; readonly message?: string };

const c = (b: Buffer): Step => ({ client: b });
const s = (b: Buffer): Step => ({ server: b });
const lost = (how: UpstreamLoss): Step => ({ lost: how });
const refuse = (outcome: CloseOutcome): Step => ({ refuse: outcome });

function feed(m: Startup, step: Step): readonly StartupAction[] {
  if (step === "attempt") {
    m.attempt();
    return [];
  }
  if (step === "connected") return m.upstreamConnected();
  if (step === "clientEnd") return m.clientHalfClosed();
  if ("client" in step) return m.clientData(step.client);
  if ("server" in step) return m.serverData(step.server);
  if ("lost" in step) return m.upstreamLost(step.lost);
  return m.refuse(step.refuse, step.sqlstate ?? "57P03", step.message ?? "no primary in time (router)");
}

function run(steps: readonly (readonly [Step, readonly string[]])[]): string[][] {
  const m = new Startup();
  return steps.map(([step]) => feed(m, step).map(render));
}

/** All bytes each side was sent, and the other actions in order: what must not depend on chunking. */
function flatten(m: Startup, steps: readonly Step[]): { server: string; client: string; control: string[] } {
  const server: Buffer[] = [];
  const client: Buffer[] = [];
  const control: string[] = [];
  for (const step of steps) {
    for (const a of feed(m, step)) {
      if (a.do === "server") server.push(a.bytes);
      else if (a.do === "client") client.push(a.bytes);
      else control.push(render(a));
    }
  }
  return {
    server: Buffer.concat(server).toString("hex"),
    client: Buffer.concat(client).toString("hex"),
    control,
  };
}

/** A connected session of a psql-like client: SSLRequest answered N, startup sent. */
const PSQL_UP: readonly (readonly [Step, readonly string[]])[] = [
  [c(SSL), ["connect"]],
  ["attempt", []],
  ["connected", ["server SSL"]],
  [s(N), ["client N"]],
  [c(STARTUP), ["server STARTUP"]],
];
const SERVED = ["clientRaw", "client ANSWER", "session 00003039deadbeef", "serverRaw"];

interface Case {
  readonly name: string;
  readonly steps: readonly (readonly [Step, readonly string[]])[];
}

const CASES: readonly Case[] = [
  {
    name: "a startup without negotiation (node-postgres): connect, send it, pass the answer through",
    steps: [
      [c(STARTUP), ["connect"]],
      ["attempt", []],
      ["connected", ["server STARTUP"]],
      [s(ANSWER), SERVED],
    ],
  },
  {
    name: "psql (sslmode=prefer): SSLRequest answered N reaches the client, then its startup goes on",
    steps: [...PSQL_UP, [s(ANSWER), SERVED]],
  },
  {
    name: "SSLRequest answered S: TLS begins, both ways pass through, nothing is kept",
    steps: [
      [c(SSL), ["connect"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(S), ["client S", "clientRaw", "serverRaw"]],
      [lost("reset"), ["close upstream_error"]],
    ],
  },
  {
    name: "GSSENCRequest answered G: GSS encryption begins, pass through",
    steps: [
      [c(GSS), ["connect"]],
      ["attempt", []],
      ["connected", ["server GSS"]],
      [s(G), ["client G", "clientRaw", "serverRaw"]],
    ],
  },
  {
    name: "GSSENCRequest answered N, then SSLRequest answered S (libpq's order)",
    steps: [
      [c(GSS), ["connect"]],
      ["attempt", []],
      ["connected", ["server GSS"]],
      [s(N), ["client N"]],
      [c(SSL), ["server SSL"]],
      [s(S), ["client S", "clientRaw", "serverRaw"]],
    ],
  },
  {
    name: "GSSENCRequest N, SSLRequest N, startup: served",
    steps: [
      [c(GSS), ["connect"]],
      ["attempt", []],
      ["connected", ["server GSS"]],
      [s(N), ["client N"]],
      [c(SSL), ["server SSL"]],
      [s(N), ["client N"]],
      [c(STARTUP), ["server STARTUP"]],
      [s(ANSWER), SERVED],
    ],
  },
  ...["57P01", "57P02", "57P03"].map(
    (code): Case => ({
      name: `startup answered ${code} after SSLRequest N: the replay sends the SSLRequest, swallows the N, then the startup`,
      steps: [
        ...PSQL_UP,
        [s(ERR(code)), [`retry startup_refused`]],
        ["attempt", []],
        ["connected", ["server SSL"]],
        [s(N), ["server STARTUP"]],
        [s(ANSWER), SERVED],
      ],
    }),
  ),
  {
    name: "a replay of GSSENCRequest N + SSLRequest N: one packet per answer",
    steps: [
      [c(GSS), ["connect"]],
      ["attempt", []],
      ["connected", ["server GSS"]],
      [s(N), ["client N"]],
      [c(SSL), ["server SSL"]],
      [s(N), ["client N"]],
      [c(STARTUP), ["server STARTUP"]],
      [s(ERR("57P01")), ["retry startup_refused"]],
      ["attempt", []],
      ["connected", ["server GSS"]],
      [s(N), ["server SSL"]],
      [s(N), ["server STARTUP"]],
      [s(ANSWER), SERVED],
    ],
  },
  {
    name: "a startup answered 57P03 twice, then served (each replay the same way)",
    steps: [
      ...PSQL_UP,
      [s(ERR("57P03")), ["retry startup_refused"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["server STARTUP"]],
      [s(ERR("57P03")), ["retry startup_refused"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["server STARTUP"]],
      [s(ANSWER), SERVED],
    ],
  },
  {
    name: "a startup refused with another SQLSTATE: the client gets the server's error",
    steps: [...PSQL_UP, [s(ERR("3D000")), ["clientRaw", "client E(3D000)"]], [lost("closed"), ["end"]]],
  },
  {
    name: "only the first ErrorResponse counts: a 57P01 after AuthenticationOk is the client's",
    steps: [
      ...PSQL_UP,
      [s(AUTH_OK), ["clientRaw", "client AUTH_OK"]],
      [s(ERR("57P01")), ["client E(57P01)"]],
      [lost("closed"), ["end"]],
    ],
  },
  {
    name: "a replayed SSLRequest answered S where the client had N: the attempt is refused with a clear error",
    steps: [
      ...PSQL_UP,
      [s(ERR("57P01")), ["retry startup_refused"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(S), ["refuse upstream_error 57P03"]],
      [refuse("upstream_error"), ["client E(57P03)", "close upstream_error after flush"]],
    ],
  },
  {
    name: "a replayed SSLRequest answered E (no process for it): retried",
    steps: [
      ...PSQL_UP,
      [lost("reset"), ["retry closed_early"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(Buffer.from("Ecould not fork new process for connection\n\0")), ["retry startup_refused"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["server STARTUP"]],
    ],
  },
  {
    name: "the client's own SSLRequest answered E: nothing reached it, retried",
    steps: [
      [c(SSL), ["connect"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(Buffer.from("Ecould not fork\n\0")), ["retry startup_refused"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["client N"]],
    ],
  },
  {
    name: "a refused connect before any answer: retried with the SSLRequest, whose answer is the client's",
    steps: [
      [c(SSL), ["connect"]],
      ["attempt", []],
      [lost("connect_failed"), ["retry connect_failed"]],
      ["attempt", []],
      [lost("connect_timeout"), ["retry connect_timeout"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["client N"]],
      [c(STARTUP), ["server STARTUP"]],
      [s(ANSWER), SERVED],
    ],
  },
  {
    name: "the server closes after its N, before the client's startup: replayed, the startup waits for the new N",
    steps: [
      [c(SSL), ["connect"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["client N"]],
      [lost("closed"), ["retry closed_early"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [c(STARTUP), []],
      [s(N), ["server STARTUP"]],
      [s(ANSWER), SERVED],
    ],
  },
  {
    name: "fenced while the startup is unanswered: retried elsewhere",
    steps: [...PSQL_UP, [lost("fenced"), ["retry fenced"]], ["attempt", []], ["connected", ["server SSL"]]],
  },
  {
    name: "fenced once the answer has started: closed",
    steps: [
      ...PSQL_UP,
      [s(AUTH_SASL), ["clientRaw", "client AUTH_SASL"]],
      [lost("fenced"), ["close fenced"]],
    ],
  },
  {
    name: "the server resets once the answer has started: closed as an upstream error",
    steps: [
      ...PSQL_UP,
      [s(AUTH_SASL), ["clientRaw", "client AUTH_SASL"]],
      [lost("reset"), ["close upstream_error"]],
    ],
  },
  {
    name: "a first ErrorResponse held back until whole, then the server leaves: retried, the client saw nothing",
    steps: [
      ...PSQL_UP,
      [s(ERR("57P01").subarray(0, 9)), []],
      [lost("closed"), ["retry closed_early"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["server STARTUP"]],
    ],
  },
  {
    name: "SCRAM: the client's answers pass once the server's answer has started",
    steps: [
      [c(STARTUP), ["connect"]],
      ["attempt", []],
      ["connected", ["server STARTUP"]],
      [s(AUTH_SASL), ["clientRaw", "client AUTH_SASL"]],
      [s(ANSWER), ["client ANSWER", "session 00003039deadbeef", "serverRaw"]],
    ],
  },
  {
    name: "a CancelRequest: delivered, then both ways pass through",
    steps: [
      [c(CANCEL), ["connect"]],
      ["attempt", []],
      ["connected", ["server CANCEL", "clientRaw", "serverRaw"]],
    ],
  },
  {
    name: "a CancelRequest after SSLRequest N: a new attempt (routed by its key) replays the SSLRequest first",
    steps: [
      [c(SSL), ["connect"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["client N"]],
      [c(CANCEL), ["connect"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["server CANCEL", "clientRaw", "serverRaw"]],
    ],
  },
  {
    name: "direct TLS (first byte 0x16): forwarded raw to the server once connected",
    steps: [
      [c(CLIENT_HELLO), ["connect"]],
      ["attempt", []],
      [lost("connect_failed"), ["retry connect_failed"]],
      ["attempt", []],
      ["connected", ["server CLIENT_HELLO", "clientRaw", "serverRaw"]],
    ],
  },
  {
    name: "direct TLS in two chunks before the connect: both go, in order",
    steps: [
      [c(CLIENT_HELLO.subarray(0, 1)), ["connect"]],
      [c(CLIENT_HELLO.subarray(1)), []],
      ["attempt", []],
      [
        "connected",
        ["server 16", `server ${CLIENT_HELLO.subarray(1).toString("hex")}`, "clientRaw", "serverRaw"],
      ],
    ],
  },
  {
    name: "protocol 3.2: the server negotiates; passed on",
    steps: [
      [c(STARTUP_3_2), ["connect"]],
      ["attempt", []],
      ["connected", ["server STARTUP_3_2"]],
    ],
  },
  {
    name: "protocol 2.0: PostgreSQL's own error (in protocol 2's format), then closed",
    steps: [[c(STARTUP_2_0), ["client E(protocol 2)", "close bad_startup after flush"]]],
  },
  {
    name: "protocol 4.0 after SSLRequest N: PostgreSQL's own error",
    steps: [
      [c(SSL), ["connect"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["client N"]],
      [c(STARTUP_4_0), ["client E(0A000)", "close bad_startup after flush"]],
    ],
  },
  {
    name: "a second SSLRequest after N: read as protocol 1234.5679, as PostgreSQL does",
    steps: [
      [c(SSL), ["connect"]],
      ["attempt", []],
      ["connected", ["server SSL"]],
      [s(N), ["client N"]],
      [c(SSL), ["client E(0A000)", "close bad_startup after flush"]],
    ],
  },
  {
    name: "garbage (an HTTP request): closed, nothing said",
    steps: [[c(Buffer.from("GET / HTTP/1.1\r\n\r\n")), ["close bad_startup"]]],
  },
  {
    name: "a client that does not wait for N (SSLRequest + startup at once): the server gets both and judges",
    steps: [
      [c(Buffer.concat([SSL, STARTUP])), ["connect"]],
      ["attempt", []],
      ["connected", ["server SSL", "server STARTUP", "clientRaw", "serverRaw"]],
      [lost("closed"), ["end"]],
    ],
  },
  {
    name: "bytes pipelined after the startup go with it; the session can no longer be replayed",
    steps: [
      [c(Buffer.concat([STARTUP, QUERY])), ["connect"]],
      ["attempt", []],
      ["connected", ["server STARTUP", "server QUERY"]],
      [s(ERR("57P01")), ["clientRaw", "client E(57P01)"]],
    ],
  },
  {
    name: "client bytes after the startup, before the answer: sent on, no replay",
    steps: [
      ...PSQL_UP,
      [c(SASL_INITIAL), ["server SASL_INITIAL"]],
      [lost("reset"), ["close upstream_error"]],
    ],
  },
  {
    name: "the client half-closes while connecting: the server gets its startup, then the end",
    steps: [
      [c(STARTUP), ["connect"]],
      ["attempt", []],
      ["clientEnd", []],
      ["connected", ["server STARTUP", "endServer"]],
      [lost("closed"), ["end"]],
    ],
  },
  // --- refusals (hold timeout, shutdown, no server) -----------------------------------------------
  {
    name: "hold timeout before anything was read: SSLRequest gets N, the startup the error (57P03)",
    steps: [
      [refuse("hold_timeout"), []],
      [c(SSL), ["client N"]],
      [c(STARTUP), ["client E(57P03)", "close hold_timeout after flush"]],
    ],
  },
  {
    name: "hold timeout while the client waits for its SSLRequest's answer: N, then the error",
    steps: [
      [c(SSL), ["connect"]],
      ["attempt", []],
      [lost("connect_failed"), ["retry connect_failed"]],
      [refuse("hold_timeout"), ["client N"]],
      [c(STARTUP), ["client E(57P03)", "close hold_timeout after flush"]],
    ],
  },
  {
    name: "hold timeout once the client has N and sent its startup: the error directly",
    steps: [
      ...PSQL_UP,
      [s(ERR("57P01")), ["retry startup_refused"]],
      [refuse("hold_timeout"), ["client E(57P03)", "close hold_timeout after flush"]],
    ],
  },
  {
    name: "hold timeout of a startup held before any server: the error directly",
    steps: [
      [c(STARTUP), ["connect"]],
      [refuse("hold_timeout"), ["client E(57P03)", "close hold_timeout after flush"]],
    ],
  },
  {
    name: "refused with an SSLRequest and a startup in one chunk: N, then the error",
    steps: [
      [refuse("shutdown"), []],
      [c(Buffer.concat([SSL, STARTUP])), ["client N", "client E(57P03)", "close shutdown after flush"]],
    ],
  },
  {
    name: "refused GSSENCRequest then SSLRequest: N, N, then the error",
    steps: [
      [refuse("rejected"), []],
      [c(GSS), ["client N"]],
      [c(SSL), ["client N"]],
      [c(STARTUP), ["client E(57P03)", "close rejected after flush"]],
    ],
  },
  {
    name: "refused with a startup sent early after an unanswered SSLRequest: N, then the error",
    steps: [
      [c(Buffer.concat([SSL, STARTUP])), ["connect"]],
      [refuse("hold_timeout"), ["client N", "client E(57P03)", "close hold_timeout after flush"]],
    ],
  },
  {
    name: "a refused CancelRequest or direct TLS: closed, nothing said",
    steps: [
      [refuse("hold_timeout"), []],
      [c(CANCEL), ["close hold_timeout"]],
    ],
  },
  {
    name: "a refused direct-TLS client: closed",
    steps: [
      [refuse("hold_timeout"), []],
      [c(CLIENT_HELLO), ["close hold_timeout"]],
    ],
  },
  {
    name: "refused once the answer has started: closed at once",
    steps: [
      ...PSQL_UP,
      [s(AUTH_SASL), ["clientRaw", "client AUTH_SASL"]],
      [refuse("shutdown"), ["close shutdown"]],
    ],
  },
];

describe("start-up state machine: byte tables", () => {
  for (const t of CASES) {
    it(t.name, () => {
      const got = run(t.steps);
      t.steps.forEach(([step, want], i) => {
        const label = typeof step === "string" ? step : JSON.stringify(step, (_k, v) => v?.data ?? v);
        assert.deepEqual(got[i], want, `step ${i + 1} (${label.slice(0, 80)})`);
      });
    });
  }
});

describe("start-up state machine: split at every offset", () => {
  /** The psql flow with client packets given as chunks; server answers whole. */
  const psql = (ssl: Buffer[], startup: Buffer[], answer: Buffer[]): Step[] => [
    ...ssl.map(c),
    "attempt",
    "connected",
    s(N),
    ...startup.map(c),
    ...answer.map(s),
  ];
  const splits = (b: Buffer): Buffer[][] => {
    const out: Buffer[][] = [];
    for (let cut = 1; cut < b.length; cut++) out.push([b.subarray(0, cut), b.subarray(cut)]);
    out.push([...b].map((x) => Buffer.from([x])));
    return out;
  };
  const whole = flatten(new Startup(), psql([SSL], [STARTUP], [ANSWER]));

  it("the unsplit run is the one the table says", () => {
    assert.equal(whole.server, Buffer.concat([SSL, STARTUP]).toString("hex"));
    assert.equal(whole.client, Buffer.concat([N, ANSWER]).toString("hex"));
    assert.deepEqual(whole.control, ["connect", "clientRaw", "session 00003039deadbeef", "serverRaw"]);
  });

  it("client side: the SSLRequest split anywhere", () => {
    for (const parts of splits(SSL)) {
      assert.deepEqual(
        flatten(new Startup(), psql(parts, [STARTUP], [ANSWER])),
        whole,
        `${parts.length} parts`,
      );
    }
  });

  it("client side: the StartupMessage split anywhere", () => {
    for (const parts of splits(STARTUP)) {
      assert.deepEqual(flatten(new Startup(), psql([SSL], parts, [ANSWER])), whole, `${parts[0]!.length}`);
    }
  });

  it("server side: the answer split anywhere", () => {
    for (const parts of splits(ANSWER)) {
      assert.deepEqual(flatten(new Startup(), psql([SSL], [STARTUP], parts)), whole, `${parts[0]!.length}`);
    }
  });

  it("server side: a 57P01 split anywhere is still retried, and the replay serves the same bytes", () => {
    const err = ERR("57P01");
    const replayed = (parts: Buffer[]): Step[] => [
      ...psql([SSL], [STARTUP], parts),
      "attempt",
      "connected",
      s(N),
      s(ANSWER),
    ];
    const want = {
      server: Buffer.concat([SSL, STARTUP, SSL, STARTUP]).toString("hex"),
      client: Buffer.concat([N, ANSWER]).toString("hex"),
      control: ["connect", "retry startup_refused", "clientRaw", "session 00003039deadbeef", "serverRaw"],
    };
    for (const parts of [[err], ...splits(err)]) {
      assert.deepEqual(flatten(new Startup(), replayed(parts)), want, `${parts[0]!.length}`);
    }
  });

  it("client side: a refused client's SSLRequest and startup split anywhere", () => {
    const both = Buffer.concat([SSL, STARTUP]);
    const want = {
      server: "",
      client: Buffer.concat([N, errorResponse("57P03", "no primary in time (router)")]).toString("hex"),
      control: ["close hold_timeout after flush"],
    };
    for (const parts of splits(both)) {
      assert.deepEqual(flatten(new Startup(), [refuse("hold_timeout"), ...parts.map(c)]), want);
    }
  });

  it("client side: direct TLS split anywhere reaches the server whole", () => {
    for (const parts of splits(CLIENT_HELLO)) {
      const got = flatten(new Startup(), [...parts.map(c), "attempt", "connected"]);
      assert.equal(got.server, CLIENT_HELLO.toString("hex"));
      assert.deepEqual(got.control, ["connect", "clientRaw", "serverRaw"]);
    }
  });

  it("a protocol-2 startup split anywhere: the error only once all of it is in", () => {
    for (const parts of splits(STARTUP_2_0)) {
      const m = new Startup();
      const outs = parts.map((p) => m.clientData(p).map(render));
      assert.deepEqual(outs.slice(0, -1).flat(), [], "nothing before the whole packet");
      assert.deepEqual(outs.at(-1), ["client E(protocol 2)", "close bad_startup after flush"]);
    }
  });
});

describe("start-up state machine: what it says", () => {
  it("a refusal carries the router's message and SQLSTATE in the ErrorResponse", () => {
    const m = new Startup();
    m.clientData(SSL);
    const out = m.refuse("hold_timeout", "57P03", "no primary of demo became available in time (router)");
    assert.deepEqual(out.map(render), ["client N"]);
    const [e] = m.clientData(STARTUP);
    assert.ok(e?.do === "client");
    assert.match(
      e.bytes.toString("latin1"),
      /SFATAL\0VFATAL\0C57P03\0Mno primary of demo became available in time/,
    );
  });

  it("the mismatch error says what happened", () => {
    const m = new Startup();
    for (const step of [
      c(SSL),
      "attempt",
      "connected",
      s(N),
      c(STARTUP),
      s(ERR("57P01")),
      "attempt",
      "connected",
    ] as Step[]) {
      feed(m, step);
    }
    const [a] = m.serverData(S);
    assert.ok(a?.do === "refuse");
    assert.match(a.message, /answered its SSLRequest with 'S' where the first answered 'N'/);
  });

  it("the cancel key is the CancelRequest's", () => {
    const m = new Startup();
    m.clientData(CANCEL);
    assert.equal(m.cancelKey, CANCEL.toString("latin1", 8, 16));
  });

  it("replayable until the answer starts, and not after", () => {
    const m = new Startup();
    assert.equal(m.replayable, false, "nothing to replay yet");
    for (const [step] of PSQL_UP) feed(m, step);
    assert.equal(m.replayable, true);
    m.serverData(AUTH_OK);
    assert.equal(m.replayable, false);
    assert.equal(m.answerStarted, true);
  });

  it("more than 1 MiB from a client before any server has its startup: closed", () => {
    const m = new Startup();
    assert.deepEqual(m.clientData(STARTUP).map(render), ["connect"]);
    assert.deepEqual(m.clientData(Buffer.alloc(512 * 1024)).map(render), []);
    assert.deepEqual(m.clientData(Buffer.alloc(600 * 1024)).map(render), ["close bad_startup"]);
  });
});
