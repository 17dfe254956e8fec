/**
 * Denial of service against one router process, played on loopback: thousands of
 * clients from one source (127.0.0.2) that connect and stay silent, or trickle their
 * start-up a byte a second, and a flood of silent connections on the admin port. Then a
 * real psql from another source (127.0.0.1) must connect and query at once, and the
 * router's descriptors stay bounded throughout:
 *
 *  - a client's start-up has a fixed deadline from accept (--startup-timeout), which
 *    trickled bytes do not push back;
 *  - a source over --max-connections-per-source is refused, and refused sockets are
 *    kept at most 2 s, however much they send, and at most 256 at once;
 *  - the admin port serves at most 64 connections and closes silent ones.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { PatroniCluster } from "../harness/patroni.js";
import { run, waitFor } from "../harness/proc.js";
import { RouterProcess } from "../harness/router.js";

const ATTACKER = "127.0.0.2";

function descriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

/** A connection from the attacker's address that stays open until the router closes it. */
function attackerSocket(port: number): Promise<net.Socket | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port, localAddress: ATTACKER });
    s.on("error", () => undefined);
    s.once("connect", () => resolve(s));
    s.once("close", () => resolve(null));
  });
}

describe("router: slow and silent clients cannot lock others out", { timeout: 180_000 }, () => {
  let c: PatroniCluster;
  let r: RouterProcess;
  const sockets: net.Socket[] = [];

  before(async () => {
    c = await PatroniCluster.start({ nodes: 1 });
    r = await RouterProcess.start({
      etcd: c.etcd.endpoint,
      scope: c.scope,
      replica: false,
      args: [
        "--workers",
        "0",
        "--max-connections",
        "1000",
        "--max-connections-per-source",
        "200",
        "--startup-timeout",
        "3s",
      ],
    });
    await r.waitReady();
  });

  after(async () => {
    for (const s of sockets) s.destroy();
    await r?.destroy();
    await c?.destroy();
  });

  it("1 500 silent and trickling clients from one source, 1 000 silent admin connections: psql from another source still connects", async () => {
    const pid = r.proc.child.pid!;
    const before = descriptors(pid);
    const t0 = Date.now();
    // Trickling clients, within the per-source cap: a StartupMessage's first bytes, one a second.
    const trickle = (await Promise.all(Array.from({ length: 150 }, () => attackerSocket(r.port)))).filter(
      (s): s is net.Socket => s !== null,
    );
    const closedAt = new Map<net.Socket, number>();
    for (const s of trickle) s.once("close", () => closedAt.set(s, Date.now()));
    const drip = setInterval(() => {
      for (const s of trickle) if (!s.destroyed) s.write(Buffer.from([0]));
    }, 1000);
    // Silent clients, far more than the rest of the cap: 50 accepted, the others refused.
    const silent = await Promise.all(Array.from({ length: 1000 }, () => attackerSocket(r.port)));
    // A flood on the admin port.
    const admin = await Promise.all(
      Array.from(
        { length: 1000 },
        () =>
          new Promise<net.Socket | null>((resolve) => {
            const s = net.connect({ host: "127.0.0.1", port: r.adminPort, localAddress: ATTACKER });
            s.on("error", () => undefined);
            s.once("connect", () => resolve(s));
            s.once("close", () => resolve(null));
          }),
      ),
    );
    for (const s of [...silent, ...trickle, ...admin]) if (s) sockets.push(s);
    try {
      const during = descriptors(pid);
      // The cap (200) + refused ones lingering (256 at most) + the admin port's 64 + the process's own.
      assert.ok(
        during - before < 200 + 256 + 64 + 50,
        `descriptors bounded during the attack: ${before} → ${during}`,
      );
      // A real client from another source connects and queries now.
      const conn = c.node((await c.leader())!).pg();
      const q0 = Date.now();
      const out = await run(
        "psql",
        [
          `host=127.0.0.1 port=${r.port} user=${conn.user} dbname=postgres sslmode=prefer`,
          "-Atc",
          "select 1",
        ],
        { env: { ...process.env, PGPASSWORD: conn.password, PGCONNECT_TIMEOUT: "10" }, timeoutMs: 20_000 },
      );
      assert.equal(out.stdout.trim(), "1");
      const psqlMs = Date.now() - q0;
      // The trickling clients lose their slot at the start-up deadline, bytes or not.
      await waitFor("every trickling client closed", () => trickle.every((s) => s.destroyed), {
        timeoutMs: 15_000,
        intervalMs: 200,
      });
      const times = [...closedAt.values()].map((t) => t - t0);
      const earliest = Math.min(...times);
      const latest = Math.max(...times);
      assert.equal(trickle.length, 150, "the trickling clients were accepted");
      assert.ok(earliest >= 2_500, `kept until the start-up deadline: the first closed at ${earliest} ms`);
      assert.ok(
        latest <= 3_000 + 3_000,
        `closed at the start-up deadline, bytes or not: the last at ${latest} ms`,
      );
      // Silent admin connections are closed too; /metrics answers afterwards.
      await waitFor(
        "the admin port's silent connections closed",
        () => admin.every((s) => s === null || s.destroyed),
        {
          timeoutMs: 20_000,
          intervalMs: 200,
        },
      );
      assert.match(
        (await r.get("/metrics")).text,
        /router_clients_refused_total\{[^}]*reason="max_connections_per_source"/,
      );
      await waitFor("descriptors back to normal", () => descriptors(pid) - before < 40, {
        timeoutMs: 20_000,
      });
      console.log(
        `slow clients: ${descriptors(pid)} descriptors after (${before} before, ${during} during); psql connected in ${psqlMs} ms; trickling clients closed between ${earliest} and ${latest} ms (start-up deadline 3 s)`,
      );
    } finally {
      clearInterval(drip);
    }
  });
});
