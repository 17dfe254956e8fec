/**
 * Several clusters through one router: two real Patroni clusters sharing one etcd,
 * routed by repeatable --route, and the live route table in etcd
 * (/routing/allocation/<scope> = PORT[,REPLICA_PORT]) adding and removing a
 * cluster without a restart.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { routingKeys } from "../../shared/keys.js";
import { EtcdServer } from "../harness/etcd.js";
import { PatroniCluster } from "../harness/patroni.js";
import { freePort } from "../harness/ports.js";
import { waitFor } from "../harness/proc.js";
import { RouterProcess, rawConnect, whoServes } from "../harness/router.js";

describe("router: two clusters in one process", () => {
  let etcd: EtcdServer;
  let a: PatroniCluster;
  let b: PatroniCluster;

  before(async () => {
    etcd = await EtcdServer.start();
    [a, b] = await Promise.all([
      PatroniCluster.start({ nodes: 2, etcd, scope: "alpha" }),
      PatroniCluster.start({ nodes: 2, etcd, scope: "beta" }),
    ]);
  });
  after(async () => {
    await Promise.all([a?.destroy(), b?.destroy()]);
    await etcd?.destroy();
  });

  it("repeatable --route: each port reaches its own cluster's leader", async () => {
    const [pa, pb, pbr] = [await freePort(), await freePort(), await freePort()];
    const r = await RouterProcess.start({
      etcd: etcd.endpoint,
      replica: false,
      routes: [`alpha=127.0.0.1:${pa}`, `beta=127.0.0.1:${pb},127.0.0.1:${pbr}`],
    });
    try {
      await r.waitReady();
      const wa = await whoServes(a, pa);
      const wb = await whoServes(b, pb);
      assert.equal(wa.member, await a.leader());
      assert.equal(wb.member, await b.leader());
      assert.equal(a.node(wa.member).pgPort !== b.node(wb.member).pgPort, true);
      assert.equal(wa.standby || wb.standby, false);
      const replica = await waitFor("beta's replica port", async () => {
        const w = await whoServes(b, pbr);
        return w.standby ? w : null;
      });
      assert.notEqual(replica.member, await b.leader());
    } finally {
      await r.destroy();
    }
  });

  it("live route table: a cluster is added, moved and removed without a restart", async () => {
    const r = await RouterProcess.start({ etcd: etcd.endpoint, replica: false, args: ["--route-table"] });
    const kv = etcd.client();
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    try {
      assert.equal((await r.get("/readyz")).status, 200, "nothing to route yet is ready");
      await kv.put(routingKeys.allocation("alpha")).value(String(p1)).exec();
      await kv.put(routingKeys.allocation("beta")).value(`${p2}`).exec();
      await kv.put(routingKeys.allocation("bogus")).value("not a port").exec();
      await waitFor(
        "alpha through the table",
        async () => (await whoServes(a, p1)).member === (await a.leader()),
        {
          timeoutMs: 30_000,
          intervalMs: 200,
        },
      );
      await waitFor(
        "beta through the table",
        async () => (await whoServes(b, p2)).member === (await b.leader()),
        {
          timeoutMs: 30_000,
          intervalMs: 200,
        },
      );
      assert.match(r.tail(100), /route table entries ignored/);
      // Move alpha to another port.
      await kv.put(routingKeys.allocation("alpha")).value(String(p3)).exec();
      await waitFor(
        "alpha on its new port",
        async () => (await whoServes(a, p3)).member === (await a.leader()),
        {
          timeoutMs: 30_000,
          intervalMs: 200,
        },
      );
      await assert.rejects(rawConnect(p1), /ECONNREFUSED/);
      // Remove beta.
      await kv.delete().key(routingKeys.allocation("beta")).exec();
      await waitFor(
        "beta's port closed",
        () =>
          rawConnect(p2).then(
            (s) => {
              s.destroy();
              return false;
            },
            () => true,
          ),
        {
          timeoutMs: 30_000,
        },
      );
      const scopes = ((await r.get("/routes")).body as { routes: { scope: string }[] }).routes.map(
        (x) => x.scope,
      );
      assert.deepEqual(scopes, ["alpha"]);
      assert.equal((await whoServes(a, p3)).member, await a.leader(), "alpha unaffected");
    } finally {
      await kv.delete().prefix(routingKeys.allocationPrefix).exec();
      await r.destroy();
    }
  });
});
