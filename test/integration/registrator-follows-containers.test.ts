/**
 * The registrator (a real child process) against the real dockerd and a real etcd:
 * keys follow containers through start, stop, kill, pause, unpause, restart and
 * removal; several ports; -internal on a user-defined network; -deregister
 * on-success; -require-healthy.
 */
// run-tests: heavy (a registrator on this machine's engine: it would see other files' containers)
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { DockerFixture } from "../harness/docker-fixture.js";
import { EtcdServer } from "../harness/etcd.js";
import { waitFor } from "../harness/proc.js";
import { RegistratorProcess } from "../harness/registrator.js";

const WAIT = { timeoutMs: 20_000, intervalMs: 50 };

describe("registrator follows containers", () => {
  let etcd: EtcdServer;
  let reg: RegistratorProcess;
  const docker = new DockerFixture("regf");
  const host = `${docker.prefix}-host`;
  const key = (name: string, container: string, port: number) =>
    `/reg/${name}/${host}:${docker.name(container)}:${port}`;

  /** Our keys only (the daemon may run other people's containers). */
  async function ours(prefix = "/reg/"): Promise<Record<string, string>> {
    const all = await etcd.dump(prefix);
    return Object.fromEntries(Object.entries(all).filter(([k]) => k.includes(`:${docker.prefix}-`)));
  }
  async function currentValue(k: string): Promise<string | undefined> {
    return (await ours())[k];
  }
  async function waitValue(k: string, want: string | undefined, what: string): Promise<void> {
    try {
      await waitFor(what, async () => (await currentValue(k)) === want, WAIT);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nkeys: ${JSON.stringify(await ours())}\n${reg.tail(20)}`);
    }
  }

  before(async () => {
    etcd = await EtcdServer.start();
    reg = await RegistratorProcess.start({ etcd, prefix: "/reg", hostname: host, args: ["-ttl", "10"] });
  });
  after(async () => {
    await reg?.stop();
    await docker.cleanup();
    await etcd?.destroy();
  });

  it("registers a started container and follows stop/start, kill, pause/unpause, restart and removal", async () => {
    await docker.run("a", ["-p", "127.0.0.1::5432"]);
    const k = key("debian", "a", 5432);
    const published = async () => `127.0.0.1:${await docker.hostPort("a", "5432")}`;
    await waitValue(k, await published(), "the key of a started container");

    await docker.docker("stop", "-t", "1", docker.name("a"));
    await waitValue(k, undefined, "the key to go on stop");
    await docker.docker("start", docker.name("a"));
    await waitValue(k, await published(), "the key back on start, with the new host port");

    await docker.docker("kill", docker.name("a"));
    await waitValue(k, undefined, "the key to go on kill");
    await docker.docker("start", docker.name("a"));
    await waitValue(k, await published(), "the key back after kill and start");

    await docker.docker("pause", docker.name("a"));
    await waitValue(k, undefined, "the key to go on pause");
    await docker.docker("unpause", docker.name("a"));
    await waitValue(k, await published(), "the key back on unpause");

    await docker.docker("restart", "-t", "1", docker.name("a"));
    await waitFor("the key after restart", async () => (await currentValue(k)) === (await published()), WAIT);

    await docker.docker("rm", "-f", docker.name("a"));
    await waitValue(k, undefined, "the key to go on removal");
    assert.ok((await reg.metric("registrator_docker_events_total", { action: "pause" })) >= 1);
    assert.ok((await reg.metric("registrator_docker_events_total", { action: "unpause" })) >= 1);
  });

  it("registers every published port: -<port> names, SERVICE_<port>_NAME, udp", async () => {
    await docker.run("b", [
      "-p",
      "127.0.0.1::5432",
      "-p",
      "127.0.0.1::8008",
      "-p",
      "127.0.0.1::5353/udp",
      "-l",
      "SERVICE_8008_NAME=patroni-api",
    ]);
    const want = {
      [key("debian-5432", "b", 5432)]: `127.0.0.1:${await docker.hostPort("b", "5432")}`,
      [key("patroni-api", "b", 8008)]: `127.0.0.1:${await docker.hostPort("b", "8008")}`,
      [`${key("debian-5353", "b", 5353)}:udp`]: `127.0.0.1:${await docker.hostPort("b", "5353/udp")}`,
    };
    await waitFor(
      "three keys",
      async () => {
        const got = await ours();
        return Object.entries(want).every(([k, v]) => got[k] === v);
      },
      WAIT,
    );
    await docker.docker("rm", "-f", docker.name("b"));
    await waitFor(
      "no keys of b",
      async () => Object.keys(await ours()).every((k) => !k.includes("-b:")),
      WAIT,
    );
  });

  it("skips a container with SERVICE_IGNORE and one publishing nothing", async () => {
    await docker.run("ign", ["-p", "127.0.0.1::5432", "-l", "SERVICE_IGNORE=1"]);
    await docker.run("none", ["--expose", "5432"]);
    await docker.run("c", ["-p", "127.0.0.1::5432"]); // a marker started after them
    await waitValue(
      key("debian", "c", 5432),
      `127.0.0.1:${await docker.hostPort("c", "5432")}`,
      "the marker",
    );
    const keys = Object.keys(await ours());
    assert.ok(!keys.some((k) => k.includes(docker.name("ign"))), "ignored");
    assert.ok(!keys.some((k) => k.includes(docker.name("none"))), "nothing published");
    assert.ok((await reg.metric("registrator_skipped_total", { reason: "ignored" })) >= 1);
    assert.ok((await reg.metric("registrator_skipped_total", { reason: "not-published" })) >= 1);
  });

  describe("-internal -deregister on-success -require-healthy", () => {
    let internal: RegistratorProcess;
    const ikey = (name: string, container: string, port: number) =>
      `/int/${name}/${host}:${docker.name(container)}:${port}`;
    const ivalue = async (k: string) => (await ours("/int/"))[k];

    before(async () => {
      internal = await RegistratorProcess.start({
        etcd,
        prefix: "/int",
        hostname: host,
        args: ["-internal", "-deregister", "on-success", "-require-healthy", "-ttl", "10"],
      });
    });
    after(async () => {
      await internal?.stop();
    });

    it("-internal registers the container's IP on the user-defined network it runs on", async () => {
      const net = await docker.network("net-a");
      const other = await docker.network("net-b");
      await docker.run("n", ["--network", net, "--expose", "5432", "--expose", "8008"]);
      await docker.docker("network", "connect", other, docker.name("n"));
      const ip = await docker.ipOn("n", net);
      assert.notEqual(ip, await docker.ipOn("n", other));
      await waitFor(
        "both exposed ports on the network's IP",
        async () =>
          (await ivalue(ikey("debian-5432", "n", 5432))) === `${ip}:5432` &&
          (await ivalue(ikey("debian-8008", "n", 8008))) === `${ip}:8008`,
        WAIT,
      );
      // The user-defined network is the container's NetworkMode, so a re-inspect keeps that IP.
      await docker.docker("restart", "-t", "0", docker.name("n"));
      const ipAfter = await docker.ipOn("n", net);
      await waitFor(
        "same network after restart",
        async () => (await ivalue(ikey("debian-5432", "n", 5432))) === `${ipAfter}:5432`,
        WAIT,
      );
    });

    it("-deregister on-success keeps a crashed container's key and drops a clean exit's", async () => {
      const script = "while [ ! -f /tmp/exit ]; do sleep 0.1; done; exit $(cat /tmp/exit)";
      await docker.run("crash", ["--expose", "5432"], ["sh", "-c", script]);
      await docker.run("clean", ["--expose", "5432"], ["sh", "-c", script]);
      const crashKey = ikey("debian", "crash", 5432);
      const cleanKey = ikey("debian", "clean", 5432);
      await waitFor(
        "both registered",
        async () => !!(await ivalue(crashKey)) && !!(await ivalue(cleanKey)),
        WAIT,
      );
      await docker.docker("exec", docker.name("crash"), "sh", "-c", "echo 3 > /tmp/exit");
      await docker.docker("exec", docker.name("clean"), "sh", "-c", "echo 0 > /tmp/exit");
      await docker.docker("wait", docker.name("crash"));
      await docker.docker("wait", docker.name("clean"));
      await waitFor("the clean exit deregistered", async () => (await ivalue(cleanKey)) === undefined, WAIT);
      await waitFor(
        "the decision to keep the crashed container's key",
        () => internal.tail(400).includes(`"container":"${docker.name("crash")}","action":"keep"`),
        WAIT,
      );
      assert.ok(await ivalue(crashKey), "the crashed container stays registered");
      await docker.docker("rm", docker.name("crash"));
      await waitFor("removal drops the kept key", async () => (await ivalue(crashKey)) === undefined, WAIT);
    });

    it("-require-healthy registers a container only while its HEALTHCHECK says healthy", async () => {
      await docker.run("hc", [
        "--expose",
        "5432",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "1s",
        "--health-retries",
        "1",
      ]);
      const k = ikey("debian", "hc", 5432);
      await waitFor(
        "a health check that failed",
        async () => (await docker.inspect("hc")).State.Health?.Status === "unhealthy",
        WAIT,
      );
      assert.equal(await ivalue(k), undefined, "not registered while unhealthy");
      await docker.docker("exec", docker.name("hc"), "touch", "/tmp/ok");
      await waitFor("registered once healthy", async () => !!(await ivalue(k)), WAIT);
      await docker.docker("exec", docker.name("hc"), "rm", "/tmp/ok");
      await waitFor("deregistered once unhealthy", async () => (await ivalue(k)) === undefined, WAIT);
      assert.ok((await internal.metric("registrator_docker_events_total", { action: "health_status" })) >= 2);
    });
  });
});
