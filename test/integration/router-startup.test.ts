/**
 * The start-up as clients see it, with etcd keys written by hand (--check etcd) and no
 * Patroni: psql (libpq, sslmode=prefer sends an SSLRequest first) whose hold time runs
 * out, or that the router refuses at accept, prints PostgreSQL's kind of FATAL line, not
 * "server sent an error response during SSL exchange"; a direct-TLS client (PostgreSQL
 * 17's sslnegotiation=direct: a TLS ClientHello as its first bytes) is forwarded raw to
 * the primary, byte for byte, and a real TLS session runs through the router. The
 * primary is a small server standing in for PostgreSQL 17.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import tls from "node:tls";
import { EtcdServer } from "../harness/etcd.js";
import { run, waitFor } from "../harness/proc.js";
import { psql, RouterProcess, rawConnect, untilClosed } from "../harness/router.js";

const SCOPE = "standin";
const EMPTY_SCOPE = "nobody";
const SSL_EXCHANGE_ERROR = /error response during SSL exchange/;

/** A TLS record header (handshake, TLS 1.0 record version) and a body: what a direct-TLS client sends first. */
function tlsRecord(body: Buffer): Buffer {
  const header = Buffer.from([0x16, 0x03, 0x01, 0, 0]);
  header.writeUInt16BE(body.length, 3);
  return Buffer.concat([header, body]);
}

describe("router: the start-up as psql and direct-TLS clients see it", () => {
  let etcd: EtcdServer;
  let held: RouterProcess;
  let r: RouterProcess;
  let certDir: string;
  const sockets = new Set<net.Socket>();
  const servers: net.Server[] = [];

  const put = (key: string, value: string) => etcd.client().put(key).value(value).exec();

  /** Routes SCOPE's primary to 127.0.0.1:port and waits until the router does. */
  async function routeTo(port: number): Promise<void> {
    await put(`/service/${SCOPE}/leader`, "pg1");
    await put(
      `/service/${SCOPE}/members/pg1`,
      JSON.stringify({
        conn_url: `postgres://127.0.0.1:${port}/postgres`,
        api_url: "http://127.0.0.1:1/patroni",
        state: "running",
        role: "master",
      }),
    );
    await waitFor(`the router to route to port ${port}`, async () => {
      const body = (await r.get("/routes")).body as { routes: { primary: { address?: string } }[] };
      return body.routes[0]?.primary.address === `127.0.0.1:${port}`;
    });
  }

  async function listen(server: net.Server): Promise<number> {
    servers.push(server);
    server.on("connection", (s) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((res) => server.listen(0, "127.0.0.1", () => res()));
    return (server.address() as net.AddressInfo).port;
  }

  before(async () => {
    etcd = await EtcdServer.start();
    certDir = mkdtempSync(join(tmpdir(), "router-direct-tls-"));
    await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=localhost",
      "-keyout",
      join(certDir, "key.pem"),
      "-out",
      join(certDir, "cert.pem"),
    ]);
    held = await RouterProcess.start({
      etcd: etcd.endpoint,
      scope: EMPTY_SCOPE,
      replica: false,
      args: ["--check", "etcd", "--hold-timeout", "1500ms"],
    });
    r = await RouterProcess.start({
      etcd: etcd.endpoint,
      scope: SCOPE,
      replica: false,
      args: ["--check", "etcd"],
    });
  });
  after(async () => {
    await held?.destroy();
    await r?.destroy();
    for (const s of sockets) s.destroy();
    for (const s of servers) s.close();
    await etcd?.destroy();
    if (certDir) rmSync(certDir, { recursive: true, force: true });
  });

  for (const sslmode of ["prefer", "disable"]) {
    it(`hold time out, psql sslmode=${sslmode}: a clean FATAL line (57P03), never an error during the SSL exchange`, async () => {
      const t0 = Date.now();
      const res = await psql(held.port, "SELECT 1", { sslmode });
      assert.ok(Date.now() - t0 >= 1400, "held for --hold-timeout");
      assert.equal(res.code, 2, "the connection failed");
      assert.doesNotMatch(res.stderr, SSL_EXCHANGE_ERROR);
      assert.match(
        res.stderr,
        new RegExp(`FATAL:\\s+no primary of ${EMPTY_SCOPE} became available in time \\(router\\)`),
      );
    });
  }

  it("hold time out, psql sslmode=require: told the server does not support SSL, as PostgreSQL without TLS says", async () => {
    const res = await psql(held.port, "SELECT 1", { sslmode: "require" });
    assert.equal(res.code, 2);
    assert.match(res.stderr, /server does not support SSL, but SSL was required/);
    assert.ok((await held.metric("router_clients_closed_total", { outcome: "hold_timeout" })) >= 3);
  });

  it("refused at accept (--max-connections): psql prints the router's FATAL, not an SSL exchange error", async () => {
    const small = await RouterProcess.start({
      etcd: etcd.endpoint,
      scope: EMPTY_SCOPE,
      replica: false,
      // --max-connections is each worker's own (router/README.md): one process, so that both
      // clients meet the same limit whichever worker the kernel would hand them to.
      args: ["--check", "etcd", "--max-connections", "1", "--hold-timeout", "30s", "--workers", "0"],
    });
    try {
      const first = await rawConnect(small.port); // held: it takes the one slot
      sockets.add(first);
      await waitFor("the first client held", async () => (await small.metric("router_held_clients")) === 1);
      const res = await psql(small.port, "SELECT 1");
      assert.equal(res.code, 2);
      assert.doesNotMatch(res.stderr, SSL_EXCHANGE_ERROR);
      assert.match(res.stderr, /FATAL:\s+too many connections to the router/);
      assert.equal(await small.metric("router_clients_refused_total", { reason: "max_connections" }), 1);
    } finally {
      await small.destroy();
    }
  });

  it("a protocol-2.0 startup gets PostgreSQL's own FATAL from the router, in protocol 2's format", async () => {
    const v2 = Buffer.alloc(296); // protocol 2's fixed-size startup packet
    v2.writeUInt32BE(296, 0);
    v2.writeUInt32BE(0x20000, 4);
    v2.write("postgres", 8 + 64, "latin1");
    await routeTo(await listen(net.createServer((s) => s.on("error", () => undefined))));
    const s = await rawConnect(r.port);
    s.write(v2);
    const got = (await untilClosed(s, 10_000)).toString("latin1");
    assert.equal(got, "EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0");
  });

  it("direct TLS: the client's first bytes (0x16) reach the primary unmodified, and its answer comes back", async () => {
    const received: Buffer[] = [];
    const answer = Buffer.from([0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00]);
    const port = await listen(
      net.createServer((s) => {
        s.on("error", () => undefined);
        s.on("data", (d: Buffer) => {
          received.push(d);
          if (received.length === 1) s.write(answer);
        });
      }),
    );
    await routeTo(port);
    const connectionsBefore = await r.metric("router_connections_total");
    const badBefore = await r.metric("router_clients_closed_total", { outcome: "bad_startup" });
    const hello = tlsRecord(Buffer.from(Array.from({ length: 300 }, (_, i) => (i * 7) & 0xff)));
    const s = await rawConnect(r.port);
    sockets.add(s);
    const back = new Promise<Buffer>((res, rej) => {
      s.once("data", res);
      s.once("close", () => rej(new Error("closed before the primary's answer")));
    });
    // Split as a client might: the first byte alone, then the rest.
    s.write(hello.subarray(0, 1));
    await new Promise((res) => setTimeout(res, 50));
    s.write(hello.subarray(1));
    assert.deepEqual(await back, answer, "the primary's answer, unmodified");
    await waitFor("all bytes at the primary", () => Buffer.concat(received).length >= hello.length);
    assert.deepEqual(Buffer.concat(received), hello, "the client's bytes, unmodified");
    // Later bytes pass through both ways too.
    const more = Buffer.from("application data after the handshake");
    s.write(more);
    await waitFor(
      "more bytes at the primary",
      () => Buffer.concat(received).length >= hello.length + more.length,
    );
    assert.deepEqual(Buffer.concat(received).subarray(hello.length), more);
    assert.equal(await r.metric("router_connections_total"), connectionsBefore + 1);
    assert.equal(await r.metric("router_clients_closed_total", { outcome: "bad_startup" }), badBefore);
    s.destroy();
  });

  it("direct TLS: a real TLS session (ALPN postgresql) runs through the router to the primary", async () => {
    const key = readFileSync(join(certDir, "key.pem"));
    const cert = readFileSync(join(certDir, "cert.pem"));
    const server = tls.createServer({ key, cert, ALPNProtocols: ["postgresql"] }, (s) => {
      s.on("error", () => undefined);
      s.on("data", (d: Buffer) => s.write(Buffer.concat([Buffer.from("echo:"), d])));
    });
    server.on("tlsClientError", () => undefined);
    await routeTo(await listen(server));
    const client = tls.connect({
      host: "127.0.0.1",
      port: r.port,
      servername: "localhost",
      ca: cert,
      ALPNProtocols: ["postgresql"],
    });
    try {
      await new Promise<void>((res, rej) => {
        client.once("secureConnect", () => res());
        client.once("error", rej);
      });
      assert.equal(client.alpnProtocol, "postgresql");
      assert.equal(client.authorized, true, "the primary's certificate, end to end");
      const echoed = new Promise<Buffer>((res) => client.once("data", res));
      client.write("hello");
      assert.equal((await echoed).toString(), "echo:hello");
    } finally {
      client.destroy();
    }
  });
});
