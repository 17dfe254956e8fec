/**
 * A container removed while the registrator was down: with -cleanup the new
 * process deletes its key at start (before the old lease's TTL); without it the
 * key stays until that lease expires. Keys of other hosts are never touched.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DockerFixture } from "../harness/docker-fixture.js";
import { EtcdServer } from "../harness/etcd.js";
import { RegistratorProcess } from "../harness/registrator.js";

describe("registrator -cleanup at start", () => {
  let etcd: EtcdServer;
  const docker = new DockerFixture("regc");
  const host = `${docker.prefix}-host`;
  const running: RegistratorProcess[] = [];
  const key = (c: string) => `/cl/debian/${host}:${docker.name(c)}:5432`;
  const otherHost = `/cl/debian/elsewhere:${docker.name("x")}:5432`;

  async function start(args: string[]): Promise<RegistratorProcess> {
    const r = await RegistratorProcess.start({ etcd, prefix: "/cl", hostname: host, args });
    running.push(r);
    return r;
  }
  const value = async (k: string) => (await etcd.dump(k))[k];

  before(async () => {
    etcd = await EtcdServer.start();
    await docker.run("removed", ["-p", "127.0.0.1::5432"]);
    await docker.run("kept", ["-p", "127.0.0.1::5432"]);
    await etcd.ctl("put", otherHost, "192.0.2.1:5432");
  });
  after(async () => {
    for (const r of running) await r.stop("SIGKILL");
    await docker.cleanup();
    await etcd?.destroy();
  });

  it("deletes the key of a container removed while it was down, keeps the rest", async () => {
    const first = await start(["-ttl", "60"]);
    assert.ok(await value(key("removed")));
    assert.ok(await value(key("kept")));
    await first.stop("SIGKILL"); // its keys stay for the 60 s TTL
    await docker.docker("rm", "-f", docker.name("removed"));

    const without = await start(["-ttl", "60"]);
    assert.ok(await value(key("removed")), "without -cleanup the stale key waits for its lease to expire");
    await without.stop("SIGKILL");

    await start(["-ttl", "60", "-cleanup"]);
    // Ready means the first sync, cleanup included, is written to etcd.
    assert.equal(await value(key("removed")), undefined, "deleted at start");
    assert.equal(await value(key("kept")), `127.0.0.1:${await docker.hostPort("kept", "5432")}`);
    assert.equal(await value(otherHost), "192.0.2.1:5432", "another host's key is not ours to clean");
  });
});
