/**
 * `--etcd-lost reject` (set by the multi-host files, where clients name every host's router):
 * a router that cannot reach etcd and routes no primary refuses new primary-port clients at
 * once with a FATAL that says why, so libpq, given several hosts, tries the next one at once
 * instead of spending its connect_timeout in the router's hold queue. Without it (the default,
 * `hold`) the same client waits. While etcd answers, a router with `reject` still holds.
 *
 * Real parts: a router whose etcd is stopped, a real PostgreSQL (one Patroni node on its own
 * etcd) as the next host in the client's list, psql (sslmode=prefer) and node-postgres.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { EtcdServer } from "../harness/etcd.js";
import { PatroniCluster } from "../harness/patroni.js";
import { run, waitFor } from "../harness/proc.js";
import { psql, RouterProcess } from "../harness/router.js";

const SCOPE = "lost";

/** psql with a 2 s connect_timeout through `r` times out: held, neither served nor refused. */
async function assertHeld(r: RouterProcess): Promise<void> {
  const res = await run(
    "psql",
    ["-X", "-Atc", "select 1", `host=127.0.0.1 port=${r.port} user=postgres connect_timeout=2`],
    { env: { ...process.env, PGSSLMODE: "prefer", PGPASSWORD: "x" }, timeoutMs: 30_000 },
  ).catch((err: Error) => err);
  assert.ok(res instanceof Error, "psql did not connect");
  assert.match(res.message, /timeout expired/);
}

describe("router: --etcd-lost reject, a router cut off from etcd refuses at once", {
  timeout: 240_000,
}, () => {
  let etcd: EtcdServer;
  let cluster: PatroniCluster;
  let rejecting: RouterProcess;
  let holding: RouterProcess;

  before(async () => {
    etcd = await EtcdServer.start();
    cluster = await PatroniCluster.start({ nodes: 1 });
    const common = ["--check", "etcd", "--hold-timeout", "30s"];
    rejecting = await RouterProcess.start({
      etcd: etcd.endpoint,
      scope: SCOPE,
      replica: false,
      args: [...common, "--etcd-lost", "reject"],
    });
    holding = await RouterProcess.start({ etcd: etcd.endpoint, scope: SCOPE, replica: false, args: common });
    // Nobody leads in the routers' etcd: /readyz stays 503; wait for their watches instead.
    for (const r of [rejecting, holding]) {
      await waitFor("the router's etcd watch", async () => (await r.metric("router_etcd_watch_up")) > 0, {
        timeoutMs: 30_000,
        intervalMs: 200,
      });
    }
  });

  after(async () => {
    await rejecting?.destroy();
    await holding?.destroy();
    await cluster?.destroy();
    await etcd?.destroy();
  });

  const pgNode = () => cluster.nodes[0]!.pg();

  it("while etcd answers and nobody leads, a new client is held, not refused", async () => {
    await assertHeld(rejecting);
    assert.equal(await rejecting.metric("router_clients_closed_total", { outcome: "rejected" }), 0);
  });

  it("etcd stopped: psql and node-postgres are refused at once with a FATAL saying why", async () => {
    await etcd.stop();
    await waitFor(
      "the router to see etcd gone",
      async () => (await rejecting.metric("router_etcd_watch_up")) === 0,
      {
        timeoutMs: 30_000,
        intervalMs: 200,
      },
    );
    for (const sslmode of ["prefer", "disable"]) {
      const r = await psql(rejecting.port, "select 1", { sslmode, timeoutMs: 20_000 });
      assert.equal(r.code, 2, `psql sslmode=${sslmode}: ${r.stderr}`);
      assert.match(
        r.stderr,
        /FATAL: +this router cannot reach etcd and knows no primary of lost; try another router/,
      );
    }
    const c = new pg.Client({ host: "127.0.0.1", port: rejecting.port, user: "postgres", password: "x" });
    const err = await c.connect().then(
      () => null,
      (e: Error & { code?: string }) => e,
    );
    await c.end().catch(() => undefined);
    assert.equal(err?.code, "57P03", String(err));
    assert.match(err?.message ?? "", /cannot reach etcd/);
    assert.ok((await rejecting.metric("router_clients_closed_total", { outcome: "rejected" })) >= 3);
  });

  it("psql naming the cut-off router first and a live server second connects through the second", async () => {
    const before = await rejecting.metric("router_clients_closed_total", { outcome: "rejected" });
    const n = pgNode();
    const url = `postgresql://${n.user}@127.0.0.1:${rejecting.port},127.0.0.1:${n.port}/postgres?target_session_attrs=read-write&connect_timeout=10`;
    const r = await run("psql", ["-X", "-Atc", "select pg_is_in_recovery()", url], {
      env: { ...process.env, PGSSLMODE: "prefer", PGPASSWORD: n.password },
      timeoutMs: 60_000,
    });
    assert.equal(r.stdout.trim(), "f");
    assert.equal(
      await rejecting.metric("router_clients_closed_total", { outcome: "rejected" }),
      before + 1,
      "libpq tried the cut-off router first, was refused, and went on",
    );
  });

  it("control: with the default (hold), the cut-off router keeps the client waiting", async () => {
    await waitFor(
      "the holding router to see etcd gone",
      async () => (await holding.metric("router_etcd_watch_up")) === 0,
      {
        timeoutMs: 30_000,
        intervalMs: 200,
      },
    );
    await assertHeld(holding);
    assert.equal(await holding.metric("router_clients_closed_total", { outcome: "rejected" }), 0);
  });
});
