/**
 * A router worker's log lines (worker-log.ts) reach the supervisor over IPC and are written
 * by its pino logger: the same lines as pino writes itself, secrets scrubbed, nothing below
 * the level sent, and fatal lines or lines after the supervisor is gone on stderr.
 */
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { describe, it } from "node:test";
import { isLogMessage, type LogMessage, type LogOutlet, workerLogger } from "../../router/worker-log.js";
import { createLogger, type Logger } from "../../shared/logger.js";

const SECRET = "s3cr3t-Pa55";

function pinoLines(level = "info") {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: createLogger({ name: "router", level }, stream), lines };
}

/** A worker whose channel hands each message to a supervisor's pino logger, as supervisor.ts does. */
function worker(level = "info", connected = true) {
  const supervisor = pinoLines("trace");
  const sent: unknown[] = [];
  const stderr: string[] = [];
  const out: LogOutlet = {
    connected,
    send: (m: LogMessage) => {
      const copy = structuredClone(m);
      sent.push(copy);
      if (isLogMessage(copy)) supervisor.log[copy.level](copy.obj, copy.msg);
    },
    stderr: (l) => stderr.push(l),
  };
  const log = workerLogger({ service: "router", level, bindings: { worker: 1 } }, out);
  return { log, lines: supervisor.lines, sent, stderr };
}

const strip = (l: Record<string, unknown>) => {
  const { time, ...rest } = l;
  assert.equal(typeof time, "string");
  return rest;
};

const BOOM = Object.assign(new Error("boom"), { code: "ECONNRESET" });

const calls: [string, (l: Logger) => void][] = [
  ["an object and a message", (l) => l.warn({ route: "demo", port: 5432 }, "route opened")],
  ["a message alone", (l) => l.info("bye")],
  ["placeholders", (l) => l.info("listening on %s:%d", "0.0.0.0", 5432)],
  ["an error", (l) => l.error({ err: BOOM }, "failed")],
  ["a child's bindings", (l) => l.child({ route: "demo" }).child({ role: "replica" }).info({ n: 1 }, "x")],
  ["a secret in a field", (l) => l.warn({ url: `postgres://admin:${SECRET}@db:5432/app` }, "connect")],
  ["a secret in the message", (l) => l.warn(`connecting to postgres://admin:${SECRET}@db/app`)],
  ["a secret in a binding", (l) => l.child({ dsn: `etcd://root:${SECRET}@etcd:2379` }).info("watch")],
];

describe("a router worker's log lines", () => {
  for (const [what, call] of calls) {
    it(`read as pino's own: ${what}`, () => {
      const w = worker();
      const direct = pinoLines();
      call(w.log);
      call(direct.log.child({ worker: 1 }));
      assert.equal(w.lines.length, 1);
      const [got, want] = [strip(w.lines[0]!), strip(direct.lines[0]!)];
      assert.deepEqual(got, want);
      assert.ok(!JSON.stringify(w.sent).includes(SECRET), "no secret leaves the worker");
      assert.ok(!JSON.stringify(w.lines).includes(SECRET));
    });
  }

  it("sends nothing below its level", () => {
    const w = worker("warn");
    w.log.info("quiet");
    w.log.debug({ a: 1 }, "quieter");
    w.log.warn("loud");
    assert.deepEqual(
      w.lines.map((l) => l.msg),
      ["loud"],
    );
    assert.equal(w.sent.length, 1);
  });

  it("writes fatal lines to stderr at once, and every line once the supervisor is gone", () => {
    const w = worker();
    w.log.fatal({ err: new Error("cannot listen") }, "router worker failed to start");
    assert.equal(w.sent.length, 0);
    const fatal = JSON.parse(w.stderr[0]!);
    assert.equal(fatal.level, "fatal");
    assert.equal(fatal.service, "router");
    assert.equal(fatal.worker, 1);
    assert.equal(fatal.err.message, "cannot listen");
    assert.equal(fatal.msg, "router worker failed to start");
    const orphan = worker("info", false);
    orphan.log.error({ url: `postgres://u:${SECRET}@h/db` }, "router supervisor gone");
    assert.equal(orphan.sent.length, 0);
    assert.equal(JSON.parse(orphan.stderr[0]!).msg, "router supervisor gone");
    assert.ok(!orphan.stderr[0]!.includes(SECRET));
  });

  it("a supervisor takes only well-formed lines", () => {
    for (const bad of [
      null,
      { t: "pgha:log", level: "silent", obj: {}, msg: "x" },
      { t: "pgha:log", level: "loud", obj: {}, msg: "x" },
      { t: "pgha:log", level: "info", obj: null, msg: "x" },
      { t: "pgha:log", level: "info", obj: {}, msg: 3 },
    ])
      assert.equal(isLogMessage(bad), false, JSON.stringify(bad));
    assert.equal(isLogMessage({ t: "pgha:log", level: "info", obj: {}, msg: "x" }), true);
  });
});
