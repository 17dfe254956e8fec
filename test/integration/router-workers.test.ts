/**
 * The router as a supervisor and two workers sharing the listening ports, in front
 * of a real 3-node Patroni cluster: SIGKILL of one worker ends that worker's own
 * sessions only; connections opened after the kill all succeed (psql with its
 * default sslmode=prefer and node-postgres, a new connection per write, and one
 * kept connection each); the supervisor starts a new worker; /routes and /metrics
 * stay one view of every worker.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { ACKED_TABLE_SQL, AckWriter, missing, type PgTarget } from "../harness/ack-writers.js";
import { PatroniCluster } from "../harness/patroni.js";
import { waitFor } from "../harness/proc.js";
import { RouterProcess } from "../harness/router.js";

interface WorkersView {
  readonly clients: number;
  readonly workers: { worker: number; pid: number; clients: number }[];
}

describe("router: a supervisor and two workers", { timeout: 240_000 }, () => {
  let c: PatroniCluster;
  let r: RouterProcess;
  let target: PgTarget;

  before(async () => {
    c = await PatroniCluster.start({ nodes: 3 });
    r = await RouterProcess.start({ etcd: c.etcd.endpoint, scope: c.scope, args: ["--workers", "2"] });
    await r.waitReady();
    const conn = c.node((await c.leader())!).pg();
    target = { host: "127.0.0.1", port: r.port, user: conn.user, password: conn.password };
    const client = new pg.Client({ ...conn });
    await client.connect();
    await client.query(ACKED_TABLE_SQL);
    await client.end();
  });

  after(async () => {
    await r?.destroy();
    await c?.destroy();
  });

  it("/routes and /metrics count every worker's sessions", async () => {
    const sessions = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const s = new pg.Client({ ...target, database: "postgres" });
        await s.connect();
        return s;
      }),
    );
    try {
      const view = (await r.get("/routes")).body as WorkersView;
      assert.equal(view.workers.length, 2);
      assert.equal(view.clients, 8, JSON.stringify(view.workers));
      assert.equal(await r.metric("router_clients_open"), 8);
      assert.equal(await r.metric("router_workers"), 2);
    } finally {
      await Promise.all(sessions.map((s) => s.end()));
    }
  });

  it("SIGKILL of a worker: only its sessions end, every connection opened after it succeeds, a new worker starts", async () => {
    // Kept sessions on both workers.
    const kept = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const s = new pg.Client({ ...target, database: "postgres" });
        s.on("error", () => undefined);
        await s.connect();
        return s;
      }),
    );
    const before = (await r.get("/routes")).body as WorkersView;
    const victim = before.workers[0]!;
    const writers = [
      new AckWriter("workers-psql", "psql per-write", () => target, 1_000_000, 20).start(),
      new AckWriter("workers-pg", "pg per-write", () => target, 2_000_000, 20).start(),
      new AckWriter("workers-kept", "pg kept", () => target, 3_000_000, 20).start(),
    ];
    try {
      await new Promise((res) => setTimeout(res, 2000));
      const killedAt = Date.now();
      process.kill(victim.pid, "SIGKILL");
      await new Promise((res) => setTimeout(res, 4000));
      await Promise.all(writers.map((w) => w.stop()));
      // Sessions of the killed worker end; the others' stay.
      const alive = await Promise.all(
        kept.map((s) =>
          s.query("select 1").then(
            () => true,
            () => false,
          ),
        ),
      );
      const ended = alive.filter((a) => !a).length;
      assert.equal(ended, victim.clients, `the killed worker had ${victim.clients} of the 10 sessions`);
      for (const w of writers) {
        const after = w.failures.filter((f) => f.startedAt > killedAt + 50);
        assert.deepEqual(after, [], `${w.kind}: no connection opened after the kill fails`);
        assert.ok(
          w.acks.some((a) => a.at > killedAt),
          `${w.kind} kept writing`,
        );
        const during = w.failures.length;
        console.log(
          `${w.kind}: ${w.acks.length} acknowledged, ${during} failed (all begun before the kill, on the killed worker)`,
        );
      }
      assert.deepEqual(await missing(c.node((await c.leader())!).pg() as PgTarget, writers), []);
      await waitFor(
        "a new worker",
        async () => {
          const v = (await r.get("/routes")).body as WorkersView;
          return v.workers.length === 2 && !v.workers.some((w) => w.pid === victim.pid);
        },
        { timeoutMs: 20_000 },
      );
      assert.equal(await r.metric("router_worker_restarts_total", { reason: "signal" }), 1);
      assert.match(r.tail(200), /router worker died; restarting it/);
    } finally {
      await Promise.all(kept.map((s) => s.end().catch(() => undefined)));
    }
  });
});
