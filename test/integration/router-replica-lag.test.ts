/**
 * The replica port never uses a replica lagging past --max-lag. Lag is made real:
 * WAL replay is paused on a replica while the primary writes; the replica still
 * receives WAL, but its readers fall behind. (pg_wal_replay_pause() does not hold:
 * Patroni 3 resumes paused replay on PostgreSQL 14+ within a loop, so the replica's
 * startup process, which replays WAL, is stopped with SIGSTOP instead.)
 * This cluster also runs with ssl=on (a self-signed certificate), so that TLS is
 * seen passing through the router untouched.
 */
import assert from "node:assert/strict";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PatroniCluster } from "../harness/patroni.js";
import { run, waitFor } from "../harness/proc.js";
import { clientVia, RouterProcess, whoServes } from "../harness/router.js";

describe("router: replica lag", () => {
  let c: PatroniCluster;
  let r: RouterProcess;
  let leader: string;
  let replicas: string[];

  async function sql(member: string, text: string): Promise<void> {
    const client = clientVia(c, c.node(member).pgPort);
    await client.connect();
    try {
      await client.query(text);
    } finally {
      await client.end();
    }
  }

  /** Stops (or continues) WAL replay on a replica by signalling its startup process. */
  async function replay(member: string, signal: "SIGSTOP" | "SIGCONT"): Promise<void> {
    const client = clientVia(c, c.node(member).pgPort);
    await client.connect();
    try {
      const r = await client.query("SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'");
      process.kill(Number(r.rows[0].pid), signal);
    } finally {
      await client.end();
    }
  }

  let certDir: string;

  before(async () => {
    certDir = mkdtempSync(join(tmpdir(), "router-tls-"));
    const [cert, key] = [join(certDir, "server.crt"), join(certDir, "server.key")];
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
      key,
      "-out",
      cert,
    ]);
    if (process.getuid?.() === 0) {
      const pgUser = await run("id", ["-u", "postgres"]);
      const pgGroup = await run("id", ["-g", "postgres"]);
      for (const f of [certDir, cert, key]) chownSync(f, Number(pgUser.stdout), Number(pgGroup.stdout));
    }
    c = await PatroniCluster.start({
      nodes: 3,
      parameters: { ssl: "on", ssl_cert_file: cert, ssl_key_file: key },
    });
    leader = (await c.leader())!;
    replicas = c.nodes.map((n) => n.name).filter((n) => n !== leader);
    r = await RouterProcess.start({ etcd: c.etcd.endpoint, scope: c.scope, args: ["--max-lag", "1MiB"] });
    await r.waitReady();
    await waitFor(
      "both replicas eligible",
      async () => (await r.workerRoutes(c.scope)).every((w) => w.replicas.length === 2),
      {
        timeoutMs: 30_000,
      },
    );
  });
  after(async () => {
    await r?.destroy();
    await c?.destroy();
    rmSync(certDir, { recursive: true, force: true });
  });

  it("TLS passes through: the server's 'S', then a TLS session end to end", async () => {
    const out = await run(
      "psql",
      [
        `host=127.0.0.1 port=${r.port} user=postgres dbname=postgres sslmode=require`,
        "-tAc",
        "SELECT ssl, inet_server_port() FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
      ],
      { env: { ...process.env, PGPASSWORD: c.node(leader).pg().password, PGCONNECT_TIMEOUT: "30" } },
    );
    assert.equal(out.stdout.trim(), `t|${c.node(leader).pgPort}`);
  });

  it("a replica whose replay is paused while the primary writes is left out; reads go to the other", async () => {
    const [lagging, fresh] = replicas as [string, string];
    await replay(lagging, "SIGSTOP");
    await sql(
      leader,
      "CREATE TABLE bulk AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 40000) g",
    );
    // The fresh replica lags too for a moment (it replays the same 8 MB) and comes back below
    // the return threshold; until then reads fall back to the primary (the default).
    await waitFor(
      "the lagging replica excluded and the other eligible",
      async () => {
        const route = await r.route(c.scope);
        const reason = route.replicas.excluded.find((e) => e.name === lagging)?.reason ?? "";
        const workers = await r.workerRoutes(c.scope);
        return (
          /max-lag/.test(reason) && workers.every((w) => w.replicas.length === 1 && w.replicas[0] === fresh)
        );
      },
      {
        timeoutMs: 30_000,
      },
    );
    const lag = (await r.route(c.scope)).members.find((m) => m.name === lagging)?.lagBytes ?? 0;
    assert.ok(lag > 1024 * 1024, `lag ${lag} past 1 MiB`);
    for (let i = 0; i < 12; i++) {
      const w = await whoServes(c, r.replicaPort!);
      assert.equal(w.member, fresh, `a read served by ${w.member}, not by ${fresh} (${lagging} lags)`);
      assert.equal(w.standby, true);
    }
  });

  it("with no replica eligible, --replica-fallback primary sends reads to the primary", async () => {
    const [, fresh] = replicas as [string, string];
    await replay(fresh, "SIGSTOP");
    await sql(leader, "INSERT INTO bulk SELECT g, repeat('y', 200) FROM generate_series(1, 40000) g");
    await waitFor(
      "no replica eligible",
      async () => (await r.workerRoutes(c.scope)).every((w) => w.replicas.length === 0),
      {
        timeoutMs: 30_000,
      },
    );
    const w = await whoServes(c, r.replicaPort!);
    assert.equal(w.member, leader);
    assert.equal(w.standby, false);
  });

  it("replicas that catch up are used again", async () => {
    for (const name of replicas) await replay(name, "SIGCONT");
    await waitFor(
      "both replicas eligible again",
      async () => (await r.workerRoutes(c.scope)).every((w) => w.replicas.length === 2),
      {
        timeoutMs: 30_000,
      },
    );
    const seen = new Set<string>();
    await waitFor(
      "reads on both replicas",
      async () => {
        seen.add((await whoServes(c, r.replicaPort!)).member);
        return seen.size === 2;
      },
      { timeoutMs: 20_000, intervalMs: 50 },
    );
    assert.ok(!seen.has(leader));
  });
});
