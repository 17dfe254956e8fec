/**
 * A real dockerd restart: the registrator (a real child process, DOCKER_HOST at a
 * private dockerd this file starts, stops and starts again) and a real etcd.
 * While Docker is down (stopped cleanly, or killed) the registrator keeps
 * running, reports not ready and counts its reconnect attempts; once Docker is
 * back it reconnects and etcd matches Docker again: a container with
 * --restart=always on its new host port, nothing for a container that stayed
 * stopped or that Docker removed (--rm), and, with --live-restore, the
 * containers that kept running keep their keys while one whose process died
 * during the outage loses its own.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { after, before, describe, it } from "node:test";
import { DockerFixture, TEST_IMAGE } from "../harness/docker-fixture.js";
import { EtcdServer } from "../harness/etcd.js";
import { PrivateDockerd } from "../harness/private-dockerd.js";
import { waitFor } from "../harness/proc.js";
import { RegistratorProcess } from "../harness/registrator.js";

const WAIT = { timeoutMs: 60_000, intervalMs: 100 };
/** --init: the container's process ends on SIGTERM, so a daemon stop does not wait out the stop timeout. */
const PUBLISHED = ["--init", "-p", "127.0.0.1::5432"];
const RECONNECTS = "registrator_docker_reconnects_total";

describe("registrator across a real dockerd restart", () => {
  let etcd: EtcdServer;
  let dockerd: PrivateDockerd;
  const fixtures: DockerFixture[] = [];
  const registrators: RegistratorProcess[] = [];

  before(async () => {
    etcd = await EtcdServer.start();
    dockerd = await PrivateDockerd.create();
    await dockerd.loadImage(TEST_IMAGE);
  });
  after(async () => {
    for (const r of registrators) await r.stop("SIGKILL");
    for (const f of fixtures) if (dockerd?.running) await f.cleanup();
    await dockerd?.destroy();
    await etcd?.destroy();
  });

  function fixture(tag: string): DockerFixture {
    const f = new DockerFixture(tag, { host: dockerd.host });
    fixtures.push(f);
    return f;
  }

  async function registrator(prefix: string, hostname: string): Promise<RegistratorProcess> {
    // -resync 0: what gets repaired is repaired by the reconnect, not by the timer.
    const r = await RegistratorProcess.start({
      etcd,
      prefix,
      hostname,
      args: ["-resync", "0", "-ttl", "10"],
      env: { DOCKER_HOST: dockerd.host },
    });
    registrators.push(r);
    return r;
  }

  const published = async (f: DockerFixture, c: string) => `127.0.0.1:${await f.hostPort(c, "5432")}`;
  const state = (f: DockerFixture, c: string) =>
    f.docker("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", f.name(c)).catch(() => "absent");

  /** Waits until the keys under `prefix` are exactly `want`; the message shows what etcd holds. */
  async function waitKeys(r: RegistratorProcess, prefix: string, want: Record<string, string>, what: string) {
    let last: Record<string, string> = {};
    try {
      await waitFor(
        what,
        async () => {
          last = await etcd.dump(`${prefix}/`);
          return JSON.stringify(sorted(last)) === JSON.stringify(sorted(want));
        },
        WAIT,
      );
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\nwant ${JSON.stringify(want)}\netcd ${JSON.stringify(last)}\n${r.tail(20)}\n${dockerd.tail(10)}`,
      );
    }
  }

  async function waitNotReady(r: RegistratorProcess): Promise<void> {
    await waitFor("/readyz to say not ready", async () => (await r.get("/readyz")).status === 503, WAIT);
    assert.match((await r.get("/readyz")).body, /"docker": "disconnected"/);
    assert.equal(await r.metric("registrator_docker_connected"), 0);
  }

  /**
   * Three containers registered, dockerd goes down (SIGTERM: a clean stop, as
   * `systemctl restart docker` does; SIGKILL: a crash, after which no event tells
   * the registrator anything), the port `always` had is taken meanwhile, dockerd
   * starts again: etcd must end up as Docker is.
   */
  async function restartScenario(signal: "SIGTERM" | "SIGKILL", prefix: string, tag: string): Promise<void> {
    const docker = fixture(tag);
    const host = `${docker.prefix}-host`;
    const key = (c: string) => `${prefix}/debian/${host}:${docker.name(c)}:5432`;
    const r = await registrator(prefix, host);
    await docker.run("always", ["--restart=always", ...PUBLISHED]);
    await docker.run("plain", PUBLISHED);
    await docker.run("autorm", ["--rm", ...PUBLISHED]);
    const old = {
      always: await published(docker, "always"),
      plain: await published(docker, "plain"),
      autorm: await published(docker, "autorm"),
    };
    const oldKeys = { [key("always")]: old.always, [key("plain")]: old.plain, [key("autorm")]: old.autorm };
    await waitKeys(r, prefix, oldKeys, "the three containers registered");
    const reconnects = await r.metric(RECONNECTS);

    await dockerd.stop(signal);
    await waitNotReady(r);
    await waitFor(
      "reconnect attempts counted while dockerd is down",
      async () => (await r.metric(RECONNECTS)) >= reconnects + 2,
      WAIT,
    );
    assert.ok(r.alive, "the registrator keeps running without Docker");
    if (signal === "SIGKILL") {
      assert.deepEqual(
        await etcd.dump(`${prefix}/`),
        oldKeys,
        "a crashed daemon sends no events: keys unchanged",
      );
    }

    // The port `always` had is taken while Docker is down, so Docker must publish it on another.
    const holder = await holdPort(Number(old.always.split(":")[1]));
    try {
      await dockerd.start();
      await waitFor(
        "Docker to restart `always`",
        async () => (await state(docker, "always")).startsWith("running"),
        WAIT,
      );
      await waitFor(
        "Docker to remove `autorm`",
        async () => (await state(docker, "autorm")) === "absent",
        WAIT,
      );
      await waitFor(
        "Docker to show `plain` exited",
        async () => (await state(docker, "plain")).startsWith("exited"),
        WAIT,
      );
      const now = await published(docker, "always");
      assert.notEqual(now, old.always);

      await r.waitReady(WAIT.timeoutMs);
      await waitKeys(r, prefix, { [key("always")]: now }, "etcd to match Docker after the restart");
      assert.ok((await r.metric(RECONNECTS)) > reconnects);
      assert.equal(await r.metric("registrator_docker_connected"), 1);

      // Events are followed on the new daemon's stream.
      await docker.docker("start", docker.name("plain"));
      await waitKeys(
        r,
        prefix,
        { [key("always")]: now, [key("plain")]: await published(docker, "plain") },
        "a container started after the restart registered",
      );
    } finally {
      await close(holder);
    }
    await r.stop();
    await docker.cleanup();
  }

  it("dockerd stopped and started: restart=always back on a new port, stopped and removed containers unregistered", async () => {
    await restartScenario("SIGTERM", "/rs", "rds");
  });

  it("dockerd crashed (SIGKILL) and started: keys stay while blind, then the same reconciliation", async () => {
    await restartScenario("SIGKILL", "/rk", "rdk");
  });

  it("--live-restore: running containers keep their keys; one that died while dockerd was down loses its key", async () => {
    await dockerd.stop();
    await dockerd.start({ liveRestore: true });
    assert.equal(await dockerd.docker("info", "-f", "{{.LiveRestoreEnabled}}"), "true");
    const docker = fixture("rdl");
    const host = `${docker.prefix}-host`;
    const key = (c: string) => `/lr/debian/${host}:${docker.name(c)}:5432`;
    const r = await registrator("/lr", host);
    await docker.run("keeps", PUBLISHED);
    await docker.run("dies", PUBLISHED);
    const keys = {
      [key("keeps")]: await published(docker, "keeps"),
      [key("dies")]: await published(docker, "dies"),
    };
    await waitKeys(r, "/lr", keys, "both containers registered");
    const keepsState = await state(docker, "keeps");
    const diesPid = Number((await state(docker, "dies")).split(" ")[1]);
    const reconnects = await r.metric(RECONNECTS);

    await dockerd.stop();
    await waitNotReady(r);
    assert.ok(
      processAlive(Number(keepsState.split(" ")[1])),
      "live restore: the container outlives its daemon",
    );
    assert.deepEqual(await etcd.dump("/lr/"), keys, "nothing changes while Docker says nothing");

    process.kill(diesPid, "SIGKILL");
    await waitFor("the killed container's process to be gone", () => !processAlive(diesPid), WAIT);

    await dockerd.start();
    await waitFor(
      "Docker to see `dies` exited",
      async () => (await state(docker, "dies")).startsWith("exited"),
      WAIT,
    );
    assert.equal(await state(docker, "keeps"), keepsState, "the same process, still running");

    await r.waitReady(WAIT.timeoutMs);
    await waitKeys(r, "/lr", { [key("keeps")]: await published(docker, "keeps") }, "etcd to match Docker");
    assert.equal((await etcd.dump("/lr/"))[key("keeps")], keys[key("keeps")], "the same port as before");
    assert.ok((await r.metric(RECONNECTS)) > reconnects);
    await r.stop();
  });
});

function sorted(o: Record<string, string>): [string, string][] {
  return Object.entries(o).sort(([a], [b]) => a.localeCompare(b));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Listens on 127.0.0.1:port; null when something else already holds it (it is taken either way). */
async function holdPort(port: number): Promise<Server | null> {
  const server = createServer((s) => s.destroy());
  return new Promise((resolve) => {
    server.once("error", () => resolve(null));
    server.listen(port, "127.0.0.1", () => resolve(server));
  });
}

async function close(server: Server | null): Promise<void> {
  if (server) await new Promise((resolve) => server.close(resolve));
}
