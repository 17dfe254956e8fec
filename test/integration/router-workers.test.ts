/**
 * The router as a supervisor and two workers sharing the listening ports, in front
 * of a real 3-node Patroni cluster: SIGKILL of one worker ends that worker's own
 * sessions only; connections opened after the kill all succeed (psql with its
 * default sslmode=prefer and node-postgres, a new connection per write, and one
 * kept connection each); the supervisor starts a new worker; /routes and /metrics
 * stay one view of every worker. The supervisor is the one control plane: workers
 * hold no connection to etcd or to Patroni's REST API, weigh less than the
 * supervisor, and all route to the same primary; when the supervisor dies, its
 * workers close their sessions and exit (no stale routes).
 */
// run-tests: early (about a minute)
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { ACKED_TABLE_SQL, AckWriter, missing, type PgTarget } from "../harness/ack-writers.js";
import { PatroniCluster } from "../harness/patroni.js";
import { waitFor } from "../harness/proc.js";
import { RouterProcess } from "../harness/router.js";

interface WorkersView {
  readonly clients: number;
  readonly workers: {
    worker: number;
    pid: number;
    clients: number;
    routes: { scope: string; primary: { target: string | null } }[];
  }[];
}

/** The remote ports of a process's established TCP connections (from /proc). */
function remotePorts(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {}
  }
  const ports: number[] = [];
  for (const file of ["tcp", "tcp6"]) {
    for (const line of readFileSync(`/proc/${pid}/net/${file}`, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== "01" || !inodes.has(f[9]!)) continue;
      ports.push(Number.parseInt(f[2]!.split(":")[1]!, 16));
    }
  }
  return ports;
}

/**
 * A module hook (`node --import`, through NODE_OPTIONS so that the workers have it too) that
 * appends every module a process loads to `<dir>/<pid>`.
 */
function moduleLog(dir: string): string {
  const hooks = `import { appendFileSync } from "node:fs";
export async function load(url, context, next) {
  appendFileSync(${JSON.stringify(dir)} + "/" + process.pid, url + "\\n");
  return next(url, context);
}`;
  const file = join(dir, "register.mjs");
  writeFileSync(
    file,
    `import { register } from "node:module";\nregister(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});\n`,
  );
  return file;
}

function loaded(dir: string, pid: number): string[] {
  return readFileSync(join(dir, String(pid)), "utf8").split("\n");
}

function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
}

describe("router: a supervisor and two workers", { timeout: 240_000 }, () => {
  let c: PatroniCluster;
  let r: RouterProcess;
  let target: PgTarget;
  const modules = mkdtempSync(join(tmpdir(), "router-modules-"));

  before(async () => {
    c = await PatroniCluster.start({ nodes: 3 });
    r = await RouterProcess.start({
      etcd: c.etcd.endpoint,
      scope: c.scope,
      args: ["--workers", "2"],
      env: { NODE_OPTIONS: `${process.env["NODE_OPTIONS"] ?? ""} --import=${moduleLog(modules)}`.trim() },
    });
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
    rmSync(modules, { recursive: true, force: true });
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
      // The supervisor's own process metrics (the restart alert reads the start time), and
      // each worker's memory, which workers without prom-client no longer report themselves.
      const startTime = await r.metric("router_process_start_time_seconds");
      assert.ok(
        Math.abs(startTime - Date.now() / 1000) < 600,
        `router_process_start_time_seconds ${startTime}`,
      );
      for (const w of view.workers) {
        const rss = await r.metric("router_worker_resident_memory_bytes", { worker: String(w.worker) });
        assert.ok(
          rss > 1e6 && Math.abs(rss - rssKb(w.pid) * 1024) < 16e6,
          `worker ${w.worker}: ${rss} bytes`,
        );
      }
    } finally {
      await Promise.all(sessions.map((s) => s.end()));
    }
  });

  it("one control plane: workers load none of etcd3, undici, pino and prom-client, talk neither to etcd nor to Patroni's REST API, weigh less than the supervisor, and route alike", async () => {
    const view = (await r.get("/routes")).body as WorkersView;
    const heavy = (pid: number) => [
      ...new Set(
        loaded(modules, pid).flatMap(
          (u) => /\/node_modules\/(etcd3|undici|pino|prom-client)\//.exec(u)?.[1] ?? [],
        ),
      ),
    ];
    assert.deepEqual(
      heavy(r.proc.child.pid!).sort(),
      ["etcd3", "pino", "prom-client", "undici"],
      "the supervisor loads them all (the check sees them)",
    );
    for (const w of view.workers) assert.deepEqual(heavy(w.pid), [], `worker ${w.worker} loads none`);
    const etcdPort = Number(c.etcd.endpoint.split(":").pop());
    const restPorts = new Set(c.nodes.map((n) => n.restPort));
    const supervisorPorts = remotePorts(r.proc.child.pid!);
    assert.ok(supervisorPorts.includes(etcdPort), `the supervisor watches etcd (${supervisorPorts})`);
    for (const w of view.workers) {
      const ports = remotePorts(w.pid);
      assert.ok(!ports.includes(etcdPort), `worker ${w.worker} holds no etcd connection (${ports})`);
      assert.ok(!ports.some((p) => restPorts.has(p)), `worker ${w.worker} checks no REST API (${ports})`);
      // etcd3 (grpc-js, protobufjs) and undici load only in the supervisor.
      assert.ok(
        rssKb(w.pid) < rssKb(r.proc.child.pid!),
        `worker ${w.worker} ${rssKb(w.pid)} kB resident, supervisor ${rssKb(r.proc.child.pid!)} kB`,
      );
    }
    const leader = await c.leader();
    const targets = view.workers.map((w) => w.routes.find((x) => x.scope === c.scope)?.primary.target);
    assert.deepEqual(
      targets,
      view.workers.map(() => leader),
    );
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
      // The new worker has the supervisor's routes: it routes where the other one does.
      const v = (await r.get("/routes")).body as WorkersView;
      const leader = await c.leader();
      assert.deepEqual(
        v.workers.map((w) => w.routes.find((x) => x.scope === c.scope)?.primary.target),
        [leader, leader],
      );
      assert.equal(await r.metric("router_worker_restarts_total", { reason: "signal" }), 1);
      assert.match(r.tail(200), /router worker died; restarting it/);
    } finally {
      await Promise.all(kept.map((s) => s.end().catch(() => undefined)));
    }
  });

  /** The router's view once both workers are up. */
  const twoWorkers = (timeoutMs: number, intervalMs: number) =>
    waitFor(
      "two workers",
      async () => {
        const w = (await r.get("/routes")).body as WorkersView;
        return w.workers.length === 2 ? w : null;
      },
      { timeoutMs, intervalMs },
    );

  it("workers SIGKILLed while the supervisor asks them (the admin port read without pause): the supervisor lives on", async () => {
    let asking = true;
    let answers = 0;
    const asker = (async () => {
      while (asking) {
        await Promise.all([r.get("/routes"), r.get("/metrics")]).then(
          () => answers++,
          () => undefined,
        );
      }
    })();
    const exits: string[] = [];
    void r.proc.exited.then((e) => exits.push(String(e)));
    try {
      for (let round = 0; round < 8; round++) {
        const v = await twoWorkers(30_000, 50);
        // Both at once: the supervisor is then sending to two channels that close under it.
        for (const w of v.workers) process.kill(w.pid, "SIGKILL");
        await new Promise((res) => setTimeout(res, 300));
      }
    } finally {
      asking = false;
      await asker;
    }
    assert.deepEqual(exits, [], "the supervisor did not exit");
    assert.ok(answers > 0, "the admin port answered meanwhile");
    const v = await twoWorkers(60_000, 200);
    assert.equal(v.workers.length, 2);
    const s = new pg.Client({ ...target, database: "postgres" });
    await s.connect();
    assert.equal((await s.query("select 1 as one")).rows[0].one, 1, "a new client is served");
    await s.end();
  });

  it("SIGKILL of the supervisor: its workers close their sessions and exit (no routes left unfollowed)", async () => {
    const own = await RouterProcess.start({
      etcd: c.etcd.endpoint,
      scope: c.scope,
      args: ["--workers", "2"],
    });
    try {
      await own.waitReady();
      const session = new pg.Client({ ...target, port: own.port, database: "postgres" });
      session.on("error", () => undefined);
      await session.connect();
      const ended = new Promise<void>((res) => session.once("end", () => res()));
      const pids = ((await own.get("/routes")).body as WorkersView).workers.map((w) => w.pid);
      assert.equal(pids.length, 2);
      process.kill(own.proc.child.pid!, "SIGKILL");
      await waitFor(
        "both workers to exit",
        async () =>
          pids.every((pid) => {
            try {
              // Gone, or a zombie nobody has reaped yet: it has exited either way.
              return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.startsWith("Z") === true;
            } catch {
              return true;
            }
          }),
        { timeoutMs: 20_000 },
      );
      await ended;
      assert.match(own.tail(200), /router supervisor gone; every session closes and this worker exits/);
    } finally {
      await own.destroy();
    }
  });
});
