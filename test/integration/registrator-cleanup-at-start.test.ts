/**
 * What a registrator deletes, against a real etcd and Docker engine: only keys on its own
 * lease, and with -cleanup plain keys (a -ttl 0 run's) of its own host, each in a
 * transaction that checks the key is still what was read. A crashed registrator's keys go
 * with its lease; another registrator's keys survive even when both use the same -hostname
 * (two stacks on one etcd); a SERVICE_ID that names another host is refused. Without
 * -hostname the registrator names itself after the Docker engine.
 */
// run-tests: heavy (a registrator on this machine's engine: it would see other files' containers)
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { engineHostname } from "../../registrator/options.js";
import { DockerFixture } from "../harness/docker-fixture.js";
import { EtcdServer } from "../harness/etcd.js";
import { run, waitFor } from "../harness/proc.js";
import { RegistratorProcess } from "../harness/registrator.js";

describe("registrator: what it may delete or overwrite", { timeout: 180_000 }, () => {
  let etcd: EtcdServer;
  const docker = new DockerFixture("regc");
  const host = `${docker.prefix}-host`;
  const running: RegistratorProcess[] = [];
  const key = (c: string, h = host) => `/cl/debian/${h}:${docker.name(c)}:5432`;
  const otherHost = `/cl/debian/elsewhere:${docker.name("x")}:5432`;
  const plainStale = `/cl/debian/${host}:${docker.name("gone-long-ago")}:5432`;

  /** `hostname` null: no -hostname, the registrator's own default. */
  async function start(args: string[], hostname: string | null = host): Promise<RegistratorProcess> {
    const r = await RegistratorProcess.start({ etcd, prefix: "/cl", hostname: hostname ?? undefined, args });
    running.push(r);
    return r;
  }
  const value = async (k: string) => (await etcd.dump(k))[k];

  before(async () => {
    etcd = await EtcdServer.start();
    await docker.run("removed", ["-p", "127.0.0.1::5432"]);
    await docker.run("kept", ["-p", "127.0.0.1::5432"]);
    await etcd.ctl("put", otherHost, "192.0.2.1:5432");
    await etcd.ctl("put", plainStale, "192.0.2.2:5432");
  });
  after(async () => {
    for (const r of running) await r.stop("SIGKILL").catch(() => undefined);
    await docker.cleanup();
    await etcd?.destroy();
  });

  it("a crashed registrator's keys go with its lease; -cleanup deletes only plain keys of this host", async () => {
    const first = await start(["-ttl", "30"]);
    assert.ok(await value(key("removed")));
    await first.stop("SIGKILL"); // its keys stay until its 30 s lease runs out
    await docker.docker("rm", "-f", docker.name("removed"));

    await start(["-ttl", "5", "-cleanup"]);
    // Ready means the first sync, cleanup included, is written to etcd.
    assert.equal(
      await value(plainStale),
      undefined,
      "a plain key of this host that no container wants: deleted",
    );
    assert.equal(await value(otherHost), "192.0.2.1:5432", "another host's key is not ours to clean");
    assert.equal(await value(key("kept")), `127.0.0.1:${await docker.hostPort("kept", "5432")}`);
    assert.ok(await value(key("removed")), "the crashed process's key is on its lease, not ours");
    await waitFor(
      "the crashed registrator's lease to expire",
      async () => (await value(key("removed"))) === undefined,
      {
        timeoutMs: 45_000,
        intervalMs: 250,
      },
    );
    assert.equal(
      await value(key("kept")),
      `127.0.0.1:${await docker.hostPort("kept", "5432")}`,
      "kept re-put",
    );
  });

  it("two stacks with one -hostname on one etcd: neither deletes the other's keys", async () => {
    // A second registrator, same -hostname and -cleanup, on a prefix's key it does not want:
    // the first one's key for `kept`, on the first one's lease, must survive the second's sync.
    const foreignKey = key("only-in-stack-a");
    const stackA = running.at(-1)!;
    await etcd.ctl("put", foreignKey, "192.0.2.3:5432", `--lease=${await leaseOf(key("kept"))}`);
    const stackB = await start(["-ttl", "5", "-cleanup", "-resync", "1"]);
    await new Promise((r) => setTimeout(r, 2500)); // two resyncs of B
    assert.equal(
      await value(foreignKey),
      "192.0.2.3:5432",
      "a key on the other registrator's lease survives",
    );
    assert.ok(stackA.alive && stackB.alive);
  });

  it("a container whose SERVICE_ID names another host is refused, and that host's key stays", async () => {
    const victim = `/cl/debian/elsewhere:${docker.name("victim")}:5432`;
    await etcd.ctl("put", victim, "192.0.2.9:5432");
    await docker.run("thief", [
      "-p",
      "127.0.0.1::5432",
      "-l",
      `SERVICE_ID=elsewhere:${docker.name("victim")}:5432`,
    ]);
    const r = running.at(-1)!;
    await waitFor(
      "the registrator to refuse the thief's ID",
      async () => (await r.metric("registrator_skipped_total", { reason: "foreign-id" })) > 0,
      { timeoutMs: 15_000, intervalMs: 200 },
    );
    await new Promise((res) => setTimeout(res, 1500)); // a resync (-resync 1) after it
    assert.equal(await value(victim), "192.0.2.9:5432", "the other host's key is untouched");
  });

  it("without -hostname its keys are named after the Docker engine", async () => {
    const info = JSON.parse((await run("docker", ["info", "--format", "{{json .}}"])).stdout) as {
      Name: string;
      ID: string;
    };
    const name = engineHostname(info)!;
    const r = await start(["-ttl", "5"], null);
    const keys = Object.keys(await etcd.dump("/cl/"));
    assert.equal(
      await value(key("kept", name)),
      `127.0.0.1:${await docker.hostPort("kept", "5432")}`,
      `${name}: keys ${keys.join(", ")}\n${r.tail(20)}`,
    );
  });

  async function leaseOf(k: string): Promise<string> {
    // The lease is an int64: read its digits from the text, not through a JS number.
    const out = await etcd.ctl("get", k, "-w", "json");
    const m = /"lease":(\d+)/.exec(out);
    if (!m) throw new Error(`${k} has no lease: ${out}`);
    return BigInt(m[1]!).toString(16);
  }
});
