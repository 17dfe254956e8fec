/**
 * The keys live exactly as long as the registrator: one lease per process, so
 * SIGKILL leaves them to expire after the TTL, SIGTERM revokes them at once, a
 * restarted etcd or a lost lease gets everything written again, and the resync
 * repairs keys changed behind the registrator's back.
 */
// run-tests: heavy (a registrator on this machine's engine: it would see other files' containers)
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DockerFixture } from "../harness/docker-fixture.js";
import { EtcdServer } from "../harness/etcd.js";
import { waitFor } from "../harness/proc.js";
import { RegistratorProcess } from "../harness/registrator.js";

const WAIT = { timeoutMs: 30_000, intervalMs: 50 };

describe("registrator keys live as long as its lease", () => {
  let etcd: EtcdServer;
  const docker = new DockerFixture("regl");
  const host = `${docker.prefix}-host`;
  const running: RegistratorProcess[] = [];
  let k1: string;
  let v1: string;

  async function start(prefix: string, args: string[]): Promise<RegistratorProcess> {
    const r = await RegistratorProcess.start({ etcd, prefix, hostname: host, args });
    running.push(r);
    return r;
  }
  const keyIn = (prefix: string) => `${prefix}/debian/${host}:${docker.name("a")}:5432`;
  /** The key's value and lease (hex, as etcdctl prints it), or null. */
  async function read(key: string): Promise<{ value: string; lease: string } | null> {
    const raw = await etcd.ctl("get", key, "-w", "json");
    const kv = JSON.parse(raw).kvs?.[0];
    if (!kv) return null;
    // Lease IDs are 64-bit: read them from the text, not through a JS number.
    const lease = /"lease":(\d+)/.exec(raw)?.[1] ?? "0";
    return { value: Buffer.from(kv.value, "base64").toString(), lease: BigInt(lease).toString(16) };
  }

  before(async () => {
    etcd = await EtcdServer.start();
    await docker.run("a", ["-p", "127.0.0.1::5432"]);
    v1 = `127.0.0.1:${await docker.hostPort("a", "5432")}`;
  });
  after(async () => {
    for (const r of running) await r.stop("SIGKILL");
    await docker.cleanup();
    await etcd?.destroy();
  });

  it("SIGTERM revokes the lease: the keys are gone as soon as the process has exited", async () => {
    const r = await start("/term", ["-ttl", "30"]);
    k1 = keyIn("/term");
    assert.equal((await read(k1))?.value, v1);
    await r.stop("SIGTERM");
    assert.equal(await r.proc.exited, 0, "exits 0");
    assert.equal(await read(k1), null, "no key left behind, without waiting for the 30 s TTL");
  });

  it("SIGKILL leaves the keys on the lease, which expires after the TTL", async () => {
    const r = await start("/kill", ["-ttl", "3"]);
    const k = keyIn("/kill");
    const before = await read(k);
    assert.equal(before?.value, v1);
    assert.notEqual(before?.lease, "0", "attached to a lease");
    const ttl = await etcd.ctl("lease", "timetolive", before!.lease);
    assert.match(ttl, /granted with TTL\(3s\)/);
    await r.stop("SIGKILL");
    const killedAt = Date.now();
    assert.equal((await read(k))?.value, v1, "still there right after the kill");
    await waitFor("the key to expire", async () => (await read(k)) === null, WAIT);
    const after = Date.now() - killedAt;
    assert.ok(after <= 3000 + 5000, `expired ${after} ms after the kill, within the TTL plus etcd's slack`);
  });

  it("-ttl 0 writes plain keys, and SIGTERM deletes them", async () => {
    const r = await start("/plain", ["-ttl", "0"]);
    const k = keyIn("/plain");
    assert.deepEqual(await read(k), { value: v1, lease: "0" });
    await r.stop("SIGTERM");
    assert.equal(await read(k), null);
  });

  describe("with etcd faults", () => {
    let r: RegistratorProcess;
    let k: string;
    before(async () => {
      r = await start("/fault", ["-ttl", "3", "-resync", "1"]);
      k = keyIn("/fault");
    });

    it("a lease revoked behind its back: a new lease, every key written again", async () => {
      const first = (await read(k))!;
      await etcd.ctl("lease", "revoke", first.lease);
      await waitFor(
        "the key back on a new lease",
        async () => {
          const now = await read(k);
          return now !== null && now.lease !== first.lease && now.value === v1;
        },
        WAIT,
      );
      assert.ok((await r.metric("registrator_lease_grants_total")) >= 2);
    });

    it("keys deleted or changed behind its back are repaired by the resync", async () => {
      await etcd.ctl("del", k);
      await waitFor("the deleted key rewritten", async () => (await read(k))?.value === v1, WAIT);
      await etcd.ctl("put", k, "10.0.0.1:1");
      await waitFor("the changed key rewritten", async () => (await read(k))?.value === v1, WAIT);
      assert.ok((await r.metric("registrator_reconcile_actions_total", { action: "put" })) >= 3);
    });

    it("etcd stopped past the TTL and started again: everything republished on a live lease", async () => {
      const before = (await read(k))!;
      await etcd.stop();
      await waitFor("the registrator to notice", async () => (await r.get("/readyz")).status === 503, WAIT);
      assert.equal(await r.metric("registrator_lease_held"), 0, "no keepalive answered for a whole TTL");
      await etcd.start();
      await waitFor(
        "the key on a new lease",
        async () => {
          const now = await read(k).catch(() => null);
          return now !== null && now.lease !== before.lease && now.value === v1;
        },
        WAIT,
      );
      await r.waitReady();
      // On a kept lease: still there well past another TTL.
      const now = (await read(k))!;
      await new Promise((resolve) => setTimeout(resolve, 4000));
      assert.deepEqual(await read(k), now, "kept alive past the TTL");
      assert.ok(r.alive, "the registrator never exited");
    });
  });
});
