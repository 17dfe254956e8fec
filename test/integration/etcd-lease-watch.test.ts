import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { createEtcdClient } from "../../shared/etcd.js";
import { KeptLease } from "../../shared/lease.js";
import { createLogger } from "../../shared/logger.js";
import { type PrefixSnapshot, PrefixWatch } from "../../shared/watch.js";
import { EtcdServer } from "../harness/etcd.js";
import { waitFor } from "../harness/proc.js";
import { FaultProxy } from "../harness/tcp-proxy.js";

const log = createLogger({ name: "test", level: process.env.TEST_LOG_LEVEL ?? "silent" });

describe("etcd helpers against a real etcd", () => {
  let etcd: EtcdServer;
  before(async () => {
    etcd = await EtcdServer.start();
  });
  after(async () => {
    await etcd?.destroy();
  });

  describe("KeptLease", () => {
    it("keeps keys alive past the TTL and revokes them at once", async () => {
      const client = etcd.client();
      const lease = new KeptLease(client, 2, log);
      await lease.start();
      await lease.lease!.put("/lease-test/a").value("1");
      await new Promise((r) => setTimeout(r, 3500));
      assert.equal(await client.get("/lease-test/a").string(), "1", "kept alive beyond the 2 s TTL");
      assert.equal(lease.held, true);
      await lease.revoke();
      assert.equal(await client.get("/lease-test/a").string(), null, "revoke removes the key at once");
    });

    it("grants a new lease after it is revoked behind its back", async () => {
      const client = etcd.client();
      const lease = new KeptLease(client, 2, log);
      const granted: string[] = [];
      lease.on("granted", (id) => granted.push(id));
      await lease.start();
      const first = lease.id!;
      const lost = new Promise((r) => lease.once("lost", r));
      await etcd.ctl("lease", "revoke", BigInt(first).toString(16));
      await lost;
      await waitFor("a new lease", () => lease.id !== null && lease.id !== first);
      assert.equal(granted.length, 2);
      lease.close();
    });

    it("reports loss when etcd is unreachable past the TTL and is re-granted within a second of etcd answering", async () => {
      const proxy = await FaultProxy.start("127.0.0.1", etcd.clientPort);
      const client = createEtcdClient({ hosts: [{ host: "127.0.0.1", port: proxy.port }] });
      const lease = new KeptLease(client, 2, log);
      await lease.start();
      const first = lease.id;
      const lost = new Promise((r) => lease.once("lost", r));
      proxy.cut("refuse");
      const cutAt = Date.now();
      await lost;
      const lostAfter = Date.now() - cutAt;
      assert.ok(lostAfter < 3500, `loss reported within the TTL and a margin (took ${lostAfter} ms)`);
      assert.equal(lease.held, false);
      const regranted = new Promise((r) => lease.once("granted", r));
      proxy.heal();
      const healedAt = Date.now();
      await regranted;
      const back = Date.now() - healedAt;
      assert.notEqual(lease.id, first);
      assert.ok(back < 1500, `new lease within ~1 s of etcd answering (took ${back} ms)`);
      lease.close();
      client.close();
      await proxy.close();
    });
  });

  describe("PrefixWatch", () => {
    it("reads the prefix, then follows puts and deletes in order", async () => {
      const client = etcd.client();
      await client.put("/w1/a").value("1");
      const w = new PrefixWatch(client, "/w1/", log);
      await w.start();
      assert.equal(w.snapshot.kvs.get("/w1/a")?.value, "1");
      const seen: string[] = [];
      w.on("change", (_s, changes) => {
        for (const c of changes) seen.push(`${c.type} ${c.key} ${c.value ?? ""}`);
      });
      await waitFor("live", () => w.state === "live");
      await client.put("/w1/b").value("2");
      await client.delete().key("/w1/a");
      await client.put("/w1/b").value("3");
      await waitFor("three changes", () => seen.length >= 3);
      assert.deepEqual(seen, ["put /w1/b 2", "delete /w1/a ", "put /w1/b 3"]);
      assert.deepEqual([...w.snapshot.kvs.keys()], ["/w1/b"]);
      await w.close();
    });

    it("resumes from the last revision across a broken stream without losing events", async () => {
      const proxy = await FaultProxy.start("127.0.0.1", etcd.clientPort);
      const client = createEtcdClient({ hosts: [{ host: "127.0.0.1", port: proxy.port }] });
      const direct = etcd.client();
      const w = new PrefixWatch(client, "/w2/", log);
      const puts: string[] = [];
      const reasons: string[] = [];
      w.on("change", (_s, changes) => {
        for (const c of changes) puts.push(`${c.type}:${c.key}=${c.value ?? ""}`);
      });
      w.on("snapshot", (_s, reason) => reasons.push(reason));
      await w.start();
      await waitFor("live", () => w.state === "live");
      proxy.cut("refuse");
      await waitFor("disconnected", () => w.state === "disconnected");
      // Changes while the watch is down, including one that is later overwritten.
      await direct.put("/w2/x").value("1");
      await direct.put("/w2/x").value("2");
      await direct.put("/w2/y").value("1");
      await direct.delete().key("/w2/y");
      proxy.heal();
      await waitFor("replayed events", () => puts.length >= 4, { timeoutMs: 10_000 });
      assert.deepEqual(puts, ["put:/w2/x=1", "put:/w2/x=2", "put:/w2/y=1", "delete:/w2/y="]);
      assert.deepEqual(reasons, ["initial"], "resumed, no re-read needed");
      assert.equal(w.snapshot.kvs.get("/w2/x")?.value, "2");
      await w.close();
      client.close();
      await proxy.close();
    });

    it("re-reads the prefix and reports a resync when its revision was compacted", async () => {
      const proxy = await FaultProxy.start("127.0.0.1", etcd.clientPort);
      const client = createEtcdClient({ hosts: [{ host: "127.0.0.1", port: proxy.port }] });
      const direct = etcd.client();
      await direct.put("/w3/keep").value("old");
      const w = new PrefixWatch(client, "/w3/", log);
      const snapshots: [string, PrefixSnapshot][] = [];
      w.on("snapshot", (s, reason) => snapshots.push([reason, s]));
      await w.start();
      await waitFor("live", () => w.state === "live");
      proxy.cut("refuse");
      await waitFor("disconnected", () => w.state === "disconnected");
      await direct.put("/w3/keep").value("new");
      await direct.put("/w3/added").value("1");
      await direct.delete().key("/w3/nothing");
      await etcd.compact();
      proxy.heal();
      await waitFor("a compacted re-read", () => snapshots.some(([r]) => r === "compacted"), {
        timeoutMs: 10_000,
      });
      assert.equal(w.snapshot.kvs.get("/w3/keep")?.value, "new");
      assert.equal(w.snapshot.kvs.get("/w3/added")?.value, "1");
      await waitFor("live again", () => w.state === "live");
      await direct.put("/w3/after").value("ok");
      await waitFor("watching again", () => w.snapshot.kvs.get("/w3/after")?.value === "ok");
      await w.close();
      client.close();
      await proxy.close();
    });

    it("keeps the last snapshot while etcd is stopped and catches up after a restart", async () => {
      const client = etcd.client();
      await client.put("/w4/a").value("1");
      const w = new PrefixWatch(client, "/w4/", log);
      await w.start();
      await waitFor("live", () => w.state === "live");
      await etcd.stop();
      await waitFor("disconnected", () => w.state === "disconnected", { timeoutMs: 15_000 });
      assert.equal(w.snapshot.kvs.get("/w4/a")?.value, "1", "last view kept");
      await etcd.start();
      await etcd.client().put("/w4/a").value("2");
      await waitFor("caught up", () => w.snapshot.kvs.get("/w4/a")?.value === "2", { timeoutMs: 15_000 });
      assert.equal(w.state, "live");
      await w.close();
    });
  });
});
