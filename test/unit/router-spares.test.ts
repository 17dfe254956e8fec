/**
 * Spare connections against a real TCP server on loopback: what the server sees of them
 * (connections, no bytes), which spares are handed out, and when the others close.
 */
import assert from "node:assert/strict";
import net, { type AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { Spares } from "../../router/spares.js";
import { waitFor } from "../harness/proc.js";

describe("router: spare connections", () => {
  let server: net.Server;
  let port: number;
  /** Connections the server accepted, with what each sent and whether it closed. */
  const accepted: { socket: net.Socket; bytes: number; closed: boolean }[] = [];

  before(async () => {
    server = net.createServer((socket) => {
      const entry = { socket, bytes: 0, closed: false };
      accepted.push(entry);
      socket.on("data", (d) => {
        entry.bytes += d.length;
      });
      socket.on("error", () => undefined);
      socket.on("close", () => {
        entry.closed = true;
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    for (const a of accepted) a.socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  const target = () => ({ name: "pg1", host: "127.0.0.1", port, apiUrl: null });
  const open = () => accepted.filter((a) => !a.closed);

  it("opens the given number of connections and sends nothing on them", async () => {
    accepted.length = 0;
    const spares = new Spares(target(), 3);
    await waitFor("3 connections accepted", async () => accepted.length === 3);
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(
      accepted.map((a) => a.bytes),
      [0, 0, 0],
    );
    spares.expire(0);
    await waitFor("all closed", async () => open().length === 0);
  });

  it("hands out each spare once, then none; a taken spare carries what its taker writes", async () => {
    accepted.length = 0;
    const spares = new Spares(target(), 2);
    await waitFor("2 connections accepted", async () => accepted.length === 2);
    const a = spares.take();
    const b = spares.take();
    assert.ok(a !== null && b !== null && a !== b);
    assert.equal(spares.take(), null);
    assert.equal(a.connecting, false, "already connected");
    a.write(Buffer.from("startup"));
    await waitFor("the server got the bytes", async () => accepted.some((x) => x.bytes === 7));
    a.destroy();
    b.destroy();
  });

  it("a spare the server closed is not handed out", async () => {
    accepted.length = 0;
    const spares = new Spares(target(), 2);
    await waitFor("2 connections accepted", async () => accepted.length === 2);
    accepted[0]!.socket.end();
    await waitFor("the pool noticed", async () => spares.size === 1);
    const s = spares.take();
    assert.ok(s !== null);
    assert.equal(spares.take(), null);
    s.write(Buffer.from("x"));
    await waitFor("the remaining one works", async () => accepted[1]!.bytes === 1);
    s.destroy();
  });

  it("a spare on which the server speaks first is dropped", async () => {
    accepted.length = 0;
    const spares = new Spares(target(), 1);
    await waitFor("1 connection accepted", async () => accepted.length === 1);
    accepted[0]!.socket.write("E"); // e.g. an error sent before any startup packet
    await waitFor("the pool dropped it", async () => spares.size === 0);
    assert.equal(spares.take(), null);
  });

  it("expire(ms) closes the spares not taken after ms; taken ones stay open", async () => {
    accepted.length = 0;
    const spares = new Spares(target(), 3);
    await waitFor("3 connections accepted", async () => accepted.length === 3);
    const kept = spares.take()!;
    spares.expire(100);
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(open().length, 3, "nothing closed before the time");
    await waitFor("the two not taken closed", async () => open().length === 1);
    assert.equal(kept.destroyed, false);
    kept.destroy();
  });

  it("a refused connect leaves no spare", async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const spares = new Spares({ name: "pg9", host: "127.0.0.1", port: deadPort, apiUrl: null }, 2);
    await waitFor("both refused", async () => spares.size === 0);
    assert.equal(spares.take(), null);
  });
});
