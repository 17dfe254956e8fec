/**
 * Losing Docker: the registrator watches the real dockerd through a unix-socket
 * proxy that can cut every connection and refuse new ones (the effect of a dockerd
 * restart, without restarting the dockerd other work on this machine shares).
 * It never exits; once Docker answers again it resubscribes, lists, and
 * reconciles etcd with what changed while it was blind.
 */
// run-tests: heavy (a registrator on this machine's engine: it would see other files' containers)
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { DockerFixture } from "../harness/docker-fixture.js";
import { EtcdServer } from "../harness/etcd.js";
import { waitFor } from "../harness/proc.js";
import { RegistratorProcess } from "../harness/registrator.js";
import { UnixSocketProxy } from "../harness/unix-proxy.js";

const WAIT = { timeoutMs: 30_000, intervalMs: 50 };
const DOCKER_SOCKET = "/var/run/docker.sock";

describe("registrator survives losing Docker", () => {
  let etcd: EtcdServer;
  let proxy: UnixSocketProxy;
  const docker = new DockerFixture("regd");
  const host = `${docker.prefix}-host`;
  const running: RegistratorProcess[] = [];
  const key = (prefix: string, c: string) => `${prefix}/debian/${host}:${docker.name(c)}:5432`;
  const published = async (c: string) => `127.0.0.1:${await docker.hostPort(c, "5432")}`;
  async function value(k: string): Promise<string | undefined> {
    return (await etcd.dump(k))[k];
  }

  before(async () => {
    etcd = await EtcdServer.start();
    proxy = await UnixSocketProxy.start(
      join(mkdtempSync(join(tmpdir(), "docker-proxy-")), "docker.sock"),
      DOCKER_SOCKET,
    );
  });
  after(async () => {
    for (const r of running) await r.stop("SIGKILL");
    await proxy?.close();
    await docker.cleanup();
    await etcd?.destroy();
  });

  it("reconnects after the event stream is cut and reconciles what changed meanwhile", async () => {
    // -resync 0: whatever is repaired is repaired by the reconnect, not by the timer.
    const r = await RegistratorProcess.start({
      etcd,
      prefix: "/dr",
      hostname: host,
      args: ["-resync", "0", "-ttl", "10"],
      env: { DOCKER_HOST: proxy.url },
    });
    running.push(r);
    await docker.run("gone", ["-p", "127.0.0.1::5432"]);
    await docker.run("stays", ["-p", "127.0.0.1::5432"]);
    await waitFor(
      "both registered",
      async () => !!(await value(key("/dr", "gone"))) && !!(await value(key("/dr", "stays"))),
      WAIT,
    );

    proxy.cut();
    await waitFor(
      "not ready while Docker is away",
      async () => (await r.get("/readyz")).status === 503,
      WAIT,
    );
    assert.match((await r.get("/readyz")).body, /"docker": "disconnected"/);
    assert.equal(await r.metric("registrator_docker_connected"), 0);

    // Changes it cannot see: one container removed, one started, one restarted on a new port.
    await docker.docker("rm", "-f", docker.name("gone"));
    await docker.run("new", ["-p", "127.0.0.1::5432"]);
    await docker.docker("restart", "-t", "0", docker.name("stays"));
    await new Promise((resolve) => setTimeout(resolve, 1500)); // a few reconnect attempts against a refusing socket
    assert.ok(r.alive, "still running without Docker");
    assert.ok(await value(key("/dr", "gone")), "blind: the removed container's key is still there");
    assert.equal(await value(key("/dr", "new")), undefined, "blind: the new container is not registered yet");

    proxy.heal();
    await r.waitReady();
    await waitFor(
      "etcd reconciled with Docker",
      async () =>
        (await value(key("/dr", "gone"))) === undefined &&
        (await value(key("/dr", "new"))) === (await published("new")) &&
        (await value(key("/dr", "stays"))) === (await published("stays")),
      WAIT,
    );
    assert.ok((await r.metric("registrator_docker_reconnects_total")) >= 1);

    // And it follows events again on the new stream.
    await docker.docker("stop", "-t", "0", docker.name("new"));
    await waitFor(
      "events followed after the reconnect",
      async () => (await value(key("/dr", "new"))) === undefined,
      WAIT,
    );
  });

  it("starts while Docker is unreachable, waits without exiting, and syncs once it answers", async () => {
    proxy.cut();
    const r = await RegistratorProcess.start({
      etcd,
      prefix: "/late",
      hostname: host,
      env: { DOCKER_HOST: proxy.url },
      waitReady: false,
    });
    running.push(r);
    await waitFor("the admin server", async () => (await r.get("/healthz")).status === 200, WAIT);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.ok(r.alive, "no exit for an unreachable Docker");
    assert.equal((await r.get("/readyz")).status, 503);
    proxy.heal();
    await r.waitReady();
    await waitFor(
      "the running container registered",
      async () => (await value(key("/late", "stays"))) === (await published("stays")),
      WAIT,
    );
  });
});
