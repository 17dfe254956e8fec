/**
 * The router against etcd keys written by hand (no Patroni): malformed member
 * records, a leader naming a missing member and a conn_url without a port route
 * nowhere (fail closed), held clients are closed after --hold-timeout with an
 * error, and a routed primary whose record turns unusable is fenced.
 * The backend is a small TCP server standing in for PostgreSQL (--check etcd).
 */
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { EtcdServer } from "../harness/etcd.js";
import { waitFor } from "../harness/proc.js";
import { RouterProcess, rawConnect, untilClosed } from "../harness/router.js";

const SCOPE = "handmade";
const PREFIX = `/service/${SCOPE}/`;

/** A StartupMessage for `user`. */
function startupPacket(user = "u"): Buffer {
  const body = Buffer.from(`\0\0\0\0user\0${user}\0\0`, "latin1");
  body.writeUInt32BE(196608, 0);
  const out = Buffer.alloc(4 + body.length);
  out.writeUInt32BE(out.length, 0);
  body.copy(out, 4);
  return out;
}

describe("router: malformed DCS records and held clients", () => {
  let etcd: EtcdServer;
  let r: RouterProcess;
  let backend: net.Server;
  let backendPort = 0;
  const backendSockets = new Set<net.Socket>();

  const put = (key: string, value: string) =>
    etcd
      .client()
      .put(PREFIX + key)
      .value(value)
      .exec();
  const member = (port: number | null) =>
    JSON.stringify({
      conn_url: port === null ? "postgres://127.0.0.1/postgres" : `postgres://127.0.0.1:${port}/postgres`,
      api_url: "http://127.0.0.1:1/patroni",
      state: "running",
      role: "master",
    });

  before(async () => {
    etcd = await EtcdServer.start();
    // Stands in for PostgreSQL: answers any startup with one byte, then echoes.
    backend = net.createServer((s) => {
      backendSockets.add(s);
      s.on("close", () => backendSockets.delete(s));
      s.once("data", () => s.write("R"));
      s.on("error", () => undefined);
    });
    await new Promise<void>((res) => backend.listen(0, "127.0.0.1", () => res()));
    backendPort = (backend.address() as net.AddressInfo).port;
    r = await RouterProcess.start({
      etcd: etcd.endpoint,
      scope: SCOPE,
      replica: false,
      args: ["--check", "etcd", "--hold-timeout", "1500ms"],
    });
  });
  after(async () => {
    await r?.destroy();
    backend?.close();
    for (const s of backendSockets) s.destroy();
    await etcd?.destroy();
  });

  async function expectHeldThenClosed(): Promise<void> {
    const s = await rawConnect(r.port);
    s.write(startupPacket());
    const t0 = Date.now();
    const got = await untilClosed(s, 10_000);
    assert.ok(Date.now() - t0 >= 1400, "held for --hold-timeout");
    assert.equal(String.fromCharCode(got[0]!), "E", "an ErrorResponse before the close");
    assert.match(got.toString("latin1"), /57P03/);
  }

  it("no keys at all: not ready, and a client is held then closed after --hold-timeout with an error", async () => {
    assert.equal((await r.get("/readyz")).status, 503);
    await expectHeldThenClosed();
    assert.ok((await r.metric("router_hold_wait_seconds_count", { outcome: "timeout" })) >= 1);
    assert.ok((await r.metric("router_clients_closed_total", { outcome: "hold_timeout" })) >= 1);
  });

  for (const [what, setup, reason] of [
    ["a member record that is not JSON", () => put("members/pg1", "{garbage"), /unusable/],
    ["a conn_url without a port", () => put("members/pg1", member(null)), /conn_url/],
    [
      "a leader naming a missing member",
      async () => {
        await etcd.client().delete().key(`${PREFIX}members/pg1`).exec();
        await put("members/pg2", member(backendPort));
      },
      /not among the members/,
    ],
  ] as const) {
    it(`${what}: no target, clients held then closed, the router stays up`, async () => {
      await put("leader", "pg1");
      await setup();
      await waitFor(`the decision to name ${reason}`, async () =>
        reason.test((await r.route(SCOPE)).primary.reason),
      );
      assert.equal((await r.route(SCOPE)).primary.action, "none");
      await expectHeldThenClosed();
      assert.equal((await r.get("/healthz")).status, 200);
    });
  }

  it("counts undecodable member records", async () => {
    await put("members/pg3", "[1,2,3]");
    await waitFor("invalid members counted", async () => (await r.metric("router_invalid_members")) >= 1);
    const view = await r.route(SCOPE);
    assert.ok(view.members.some((m) => m.name === "pg3" && typeof m.invalid === "string"));
  });

  it("passthrough: 8 MiB echoed byte for byte under backpressure, and half-close both ways", async () => {
    // An echo server standing in for PostgreSQL: AuthenticationOk + ReadyForQuery, then echo;
    // on the client's FIN it still sends "bye" before its own FIN.
    const ready = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0, 0x5a, 0, 0, 0, 5, 0x49]);
    const echo = net.createServer({ allowHalfOpen: true }, (s) => {
      backendSockets.add(s);
      s.on("error", () => undefined);
      let startup: Buffer | null = Buffer.alloc(0);
      s.on("data", (d: Buffer) => {
        if (startup === null) {
          s.write(d);
          return;
        }
        startup = Buffer.concat([startup, d]);
        if (startup.length < 4 || startup.length < startup.readUInt32BE(0)) return;
        const rest = startup.subarray(startup.readUInt32BE(0));
        startup = null;
        s.write(ready);
        if (rest.length > 0) s.write(rest);
      });
      s.on("end", () => s.end("bye"));
    });
    await new Promise<void>((res) => echo.listen(0, "127.0.0.1", () => res()));
    try {
      await put("leader", "pg1");
      await put("members/pg1", member((echo.address() as net.AddressInfo).port));
      await waitFor(
        "routing to the echo server",
        async () => (await r.route(SCOPE)).primary.action === "route",
      );
      const s = net.connect({ port: r.port, host: "127.0.0.1", allowHalfOpen: true });
      const received: Buffer[] = [];
      let total = 0;
      const gotAll = new Promise<void>((res) => {
        s.on("data", (d: Buffer) => {
          received.push(d);
          total += d.length;
          if (total >= ready.length + payload.length + 3) res();
        });
      });
      const ended = new Promise<void>((res) => s.once("end", () => res()));
      const payload = Buffer.alloc(8 * 1024 * 1024);
      for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
      s.pause(); // nothing read for a while: the router must hold back, not buffer without bound
      s.write(startupPacket());
      s.write(payload);
      await new Promise((res) => setTimeout(res, 500));
      s.resume();
      s.end(); // half-close: the server still answers after our FIN
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error(`got ${total} bytes`)), 30_000);
      });
      await Promise.race([Promise.all([gotAll, ended]), deadline]).finally(() => clearTimeout(timer));
      const all = Buffer.concat(received);
      assert.ok(all.subarray(0, ready.length).equals(ready));
      assert.ok(
        all.subarray(ready.length, ready.length + payload.length).equals(payload),
        "echoed unmodified",
      );
      assert.equal(all.subarray(ready.length + payload.length).toString(), "bye");
      s.destroy();
    } finally {
      echo.close();
    }
  });

  it("held clients are connected in arrival order once a primary is routable", async () => {
    await etcd.client().delete().prefix(PREFIX).exec();
    await waitFor("no target", async () => (await r.route(SCOPE)).primary.action === "none");
    const order: string[] = [];
    const recorder = net.createServer((s) => {
      backendSockets.add(s);
      s.on("error", () => undefined);
      s.once("data", (d: Buffer) => {
        order.push(/user\0([^\0]*)/.exec(d.toString("latin1"))?.[1] ?? "?");
        s.write("R");
      });
    });
    await new Promise<void>((res) => recorder.listen(0, "127.0.0.1", () => res()));
    // Its own router with a hold budget long enough for a slow machine.
    const patient = await RouterProcess.start({
      etcd: etcd.endpoint,
      scope: SCOPE,
      replica: false,
      // Arrival order is each worker's: one worker.
      args: ["--check", "etcd", "--hold-timeout", "30s", "--workers", "1"],
    });
    try {
      const clients = [];
      for (const user of ["first", "second", "third"]) {
        const s = await rawConnect(patient.port);
        s.write(startupPacket(user));
        clients.push(s);
        await new Promise((res) => setTimeout(res, 30));
      }
      await waitFor("three held clients", async () => (await patient.metric("router_held_clients")) === 3);
      await put("members/pg1", member((recorder.address() as net.AddressInfo).port));
      await put("leader", "pg1");
      await waitFor("all three served", () => order.length === 3, { timeoutMs: 5000 });
      assert.deepEqual(order, ["first", "second", "third"]);
      for (const s of clients) s.destroy();
    } finally {
      await patient.destroy();
      recorder.close();
    }
  });

  it("a routed primary whose record turns unusable is fenced: its session is closed", async () => {
    await put("members/pg1", member(backendPort));
    await put("leader", "pg1");
    await waitFor("routing to the stand-in", async () => (await r.route(SCOPE)).primary.action === "route");
    const s = await rawConnect(r.port);
    s.write(startupPacket());
    const first = await new Promise<Buffer>((res) => s.once("data", res));
    assert.equal(first.toString(), "R", "the backend's answer passed through");
    const closed = untilClosed(s, 10_000);
    await put("members/pg1", "not json at all");
    await closed;
    assert.ok((await r.metric("router_clients_closed_total", { outcome: "fenced" })) >= 1);
    assert.equal((await r.route(SCOPE)).primary.action, "none");
  });
});
