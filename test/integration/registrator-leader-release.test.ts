/**
 * -release-dead-leaders against the real dockerd and a real etcd: two registrators
 * (hosts A and B, as two Docker hosts would run them, here on one engine) and
 * containers whose environment names a Patroni member, with the member's lock and record
 * written as Patroni writes them (one lease for both, `conn_url` and `api_url` at the
 * published addresses). No Patroni here: what Patroni does once the key is gone is the
 * e2e tier's (test/e2e/fast-failover.test.ts). This file proves the registrator's part:
 *
 *  - SIGKILL, an OOM kill, and a crash under a restart policy release the lock (and the
 *    dead member's record) at once, and only the registrator of the container's own host acts;
 *  - docker stop (a stop signal first), docker pause, another member's lock, a record
 *    with other addresses leave the lock alone;
 *  - the transaction deletes nothing once the lock was taken again, or the member's record
 *    written again, since the read.
 */
// run-tests: heavy (a registrator on this machine's engine: it would see other files' containers)
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Etcd3 } from "etcd3";
import { deleteIfUnchanged, readCluster } from "../../registrator/leader-releaser.js";
import { patroniKeys } from "../../shared/keys.js";
import { DockerFixture } from "../harness/docker-fixture.js";
import { EtcdServer } from "../harness/etcd.js";
import { waitFor } from "../harness/proc.js";
import { RegistratorProcess } from "../harness/registrator.js";

const WAIT = { timeoutMs: 20_000, intervalMs: 50 };
const NS = "/service/";

describe("registrator -release-dead-leaders: a dead leader's lock goes at once, and nothing else does", () => {
  let etcd: EtcdServer;
  let client: Etcd3;
  const docker = new DockerFixture("rel");
  const hostA = `${docker.prefix}-a`;
  const hostB = `${docker.prefix}-b`;
  let a: RegistratorProcess;
  let b: RegistratorProcess;

  before(async () => {
    etcd = await EtcdServer.start();
    client = etcd.client();
    const args = ["-ip", "127.0.0.1", "-release-dead-leaders"];
    a = await RegistratorProcess.start({ etcd, prefix: "/reg", hostname: hostA, args });
    b = await RegistratorProcess.start({ etcd, prefix: "/reg", hostname: hostB, args });
  });
  after(async () => {
    await a?.stop("SIGKILL");
    await b?.stop("SIGKILL");
    await docker.cleanup();
    await etcd?.destroy();
  });

  /**
   * Runs a container naming member `pg1` of `scope` on `host`, waits until it is registered,
   * and writes what a leading Patroni would: the member record at its published addresses
   * and the lock, on one lease. Returns the container's name.
   */
  async function leader(
    scope: string,
    o: {
      host?: string;
      args?: string[];
      command?: string[];
      record?: (pg: string, api: string) => { conn_url: string; api_url: string };
      lock?: string;
    } = {},
  ): Promise<string> {
    const short = scope;
    await docker.run(
      short,
      [
        "-p",
        "127.0.0.1::5432",
        "-p",
        "127.0.0.1::8008",
        "-e",
        "NAME=pg1",
        "-e",
        `PATRONI_SCOPE=${scope}`,
        "-e",
        `DOCKER_HOSTNAME=${o.host ?? hostA}`,
        ...(o.args ?? []),
      ],
      o.command,
    );
    const pg = `127.0.0.1:${await docker.hostPort(short, "5432")}`;
    const api = `127.0.0.1:${await docker.hostPort(short, "8008")}`;
    const name = docker.name(short);
    for (const host of [hostA, hostB]) {
      await waitFor(
        `${host} registers ${name}`,
        async () => (await client.get(`/reg/debian-5432/${host}:${name}:5432`).string()) === pg,
        WAIT,
      );
    }
    const lease = client.lease(120, { autoKeepAlive: false });
    const id = await lease.grant();
    const record = o.record?.(pg, api) ?? {
      conn_url: `postgres://${pg}/postgres`,
      api_url: `http://${api}/patroni`,
    };
    await client
      .put(patroniKeys.member(NS, scope, "pg1"))
      .value(JSON.stringify({ ...record, state: "running", role: "master", version: "3.0.2" }))
      .lease(id);
    await client
      .put(patroniKeys.leader(NS, scope))
      .value(o.lock ?? "pg1")
      .lease(id);
    return name;
  }

  const lock = (scope: string) => client.get(patroniKeys.leader(NS, scope)).string();
  const releases = (r: RegistratorProcess, reason?: string) =>
    r.metric("registrator_leader_releases_total", reason ? { reason } : {});
  const skips = (r: RegistratorProcess, reason: string) =>
    r.metric("registrator_leader_release_skips_total", { reason });

  it("docker kill of the leader's container: its host's registrator releases the lock at once", async () => {
    const name = await leader("killed");
    const before = { a: await releases(a), otherHost: await skips(b, "other-host") };
    const t0 = Date.now();
    await docker.docker("kill", name);
    await waitFor("the lock to go", async () => (await lock("killed")) === null, WAIT);
    const ms = Date.now() - t0;
    assert.ok(ms < 5000, `released in ${ms} ms`);
    assert.equal(await releases(a, "killed"), before.a + 1);
    assert.equal(await releases(b), 0, "host B's registrator released nothing");
    await waitFor(
      "host B to say why not",
      async () => (await skips(b, "other-host")) > before.otherHost,
      WAIT,
    );
    assert.equal(
      await client.get(patroniKeys.member(NS, "killed", "pg1")).string(),
      null,
      "the dead member's record went with its lock (no replica waits on its address)",
    );
    const line = a
      .tail(200)
      .split("\n")
      .find((l) => l.includes("released the lock of a dead leader"));
    assert.ok(line, "one log line for the release");
    const logged = JSON.parse(line) as Record<string, unknown>;
    assert.equal(logged["member"], "/service/killed/pg1");
    assert.equal(logged["container"], name);
    assert.equal(logged["reason"], "killed");
    assert.match(String(logged["revision"]), /^\d+$/);
    console.log(
      `docker kill -> lock seen gone by the test: ${ms} ms (the lease had 120 s left); the registrator: ` +
        `${logged["afterDeathMs"]} ms from Docker's FinishedAt to the deletion, ${logged["ms"]} ms of it in etcd`,
    );
  });

  it("a container of host B: only host B's registrator acts", async () => {
    const name = await leader("hostb", { host: hostB });
    const before = await skips(a, "other-host");
    await docker.docker("kill", name);
    await waitFor("the lock to go", async () => (await lock("hostb")) === null, WAIT);
    assert.equal(await releases(b, "killed"), 1);
    await waitFor("host A to leave it", async () => (await skips(a, "other-host")) > before, WAIT);
    assert.equal(await releases(a, "killed"), 1, "host A's count is its own kill's only");
  });

  it("an OOM kill releases the lock, with reason oom", async () => {
    const name = await leader("oom", {
      args: ["--memory", "32m", "--memory-swap", "32m"],
      // tail reads a line that never ends until the kernel kills it; exec: it is PID 1.
      command: ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; exec tail /dev/zero"],
    });
    await docker.docker("exec", name, "touch", "/tmp/go");
    await waitFor("the lock to go", async () => (await lock("oom")) === null, WAIT);
    assert.equal(await docker.docker("inspect", "-f", "{{.State.OOMKilled}}", name), "true");
    assert.equal(await releases(a, "oom"), 1);
  });

  it("a crash under a restart policy releases the lock while Docker restarts the container", async () => {
    const name = await leader("crash", {
      args: ["--restart", "on-failure:1"],
      command: ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.1; done; exit 3"],
    });
    await docker.docker("exec", name, "touch", "/tmp/go");
    await waitFor("the lock to go", async () => (await lock("crash")) === null, WAIT);
    assert.equal(await releases(a, "exited"), 1);
  });

  it("docker stop sends a stop signal first: the lock stays (a stopping leader hands over itself)", async () => {
    // sleep as PID 1 ignores SIGTERM: Docker SIGKILLs it after the timeout, exit 137.
    const name = await leader("stopped");
    const before = await skips(a, "planned-stop");
    await docker.docker("stop", "-t", "1", name);
    await waitFor("the decision", async () => (await skips(a, "planned-stop")) > before, WAIT);
    assert.equal(await lock("stopped"), "pg1");
  });

  it("docker pause: the lock stays, and nothing is even considered", async () => {
    const name = await leader("paused");
    const total = async () =>
      (await releases(a)) + (await skips(a, "planned-stop")) + (await skips(a, "not-tied"));
    const before = await total();
    await docker.docker("pause", name);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await lock("paused"), "pg1");
    assert.equal(await total(), before);
    await docker.docker("unpause", name);
  });

  it("another member holds the lock: it survives the container's death", async () => {
    const name = await leader("other", { lock: "pg2" });
    const before = await skips(a, "not-leader");
    await docker.docker("kill", name);
    await waitFor("the decision", async () => (await skips(a, "not-leader")) > before, WAIT);
    assert.equal(await lock("other"), "pg2");
  });

  it("a member record at other addresses is not this container's: the lock stays", async () => {
    const name = await leader("untied", {
      record: (_pg, api) => ({
        conn_url: "postgres://127.0.0.1:1/postgres",
        api_url: `http://${api}/patroni`,
      }),
    });
    const before = await skips(a, "not-tied");
    await docker.docker("kill", name);
    await waitFor("the decision", async () => (await skips(a, "not-tied")) > before, WAIT);
    assert.equal(await lock("untied"), "pg1");
  });

  it("the transaction deletes nothing once the lock was taken again, or the record written again, since the read", async () => {
    const key = patroniKeys.leader(NS, "race");
    const memberKey = patroniKeys.member(NS, "race", "pg1");
    const member = { namespace: NS, scope: "race", name: "pg1", dockerHostname: hostA };
    const both = (r: Awaited<ReturnType<typeof readCluster>>) => [
      { key, compare: r.leader! },
      { key: memberKey, compare: r.member! },
    ];
    const l1 = await client.lease(120, { autoKeepAlive: false }).grant();
    await client.put(key).value("pg1").lease(l1);
    await client.put(memberKey).value('{"conn_url":"postgres://10.0.0.1:5432/postgres"}').lease(l1);
    const read = await readCluster(client, member);
    assert.ok(read.leader && read.member);

    // The same member's restarted Patroni takes its lock again, on a new lease.
    const l2 = await client.lease(120, { autoKeepAlive: false }).grant();
    await client.put(key).value("pg1").lease(l2);
    assert.equal((await deleteIfUnchanged(client, both(read))).succeeded, false);
    assert.equal(await client.get(key).string(), "pg1");
    assert.notEqual(await client.get(memberKey).string(), null, "the record stays with the lock");

    // A new leader, elected between the read and the transaction.
    const again = await readCluster(client, member);
    await client.delete().key(key);
    await client.put(key).value("pg2").lease(l2);
    assert.equal((await deleteIfUnchanged(client, both(again))).succeeded, false);
    assert.equal(await client.get(key).string(), "pg2");

    // The same value and lease, written again (a new revision): still not what was read.
    await client.put(key).value("pg1").lease(l1);
    const third = await readCluster(client, member);
    await client.put(key).value("pg1").lease(l1);
    assert.equal((await deleteIfUnchanged(client, both(third))).succeeded, false);
    assert.equal(await client.get(key).string(), "pg1");

    // The lock as read, but the member's record written since (a Patroni that lives): neither goes.
    const fourth = await readCluster(client, member);
    await client.put(memberKey).value('{"conn_url":"postgres://10.0.0.1:5432/postgres"}').lease(l1);
    assert.equal((await deleteIfUnchanged(client, both(fourth))).succeeded, false);
    assert.equal(await client.get(key).string(), "pg1");
    assert.notEqual(await client.get(memberKey).string(), null);

    // Both unchanged since the read: both deleted, by the one transaction.
    const fifth = await readCluster(client, member);
    const r = await deleteIfUnchanged(client, both(fifth));
    assert.equal(r.succeeded, true);
    assert.equal(await client.get(key).string(), null);
    assert.equal(await client.get(memberKey).string(), null);
    assert.ok(BigInt(r.revision) > BigInt(fifth.revision));
  });
});
