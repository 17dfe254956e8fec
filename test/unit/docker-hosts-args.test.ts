import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { daemonConfig, dockerdArgs, engineCommand, hostNames } from "../harness/docker-hosts.js";

describe("three Docker hosts on one machine: names and the engines' command lines", () => {
  it("names each host's cgroup and directory after the set's id and its number", () => {
    assert.deepEqual(hostNames("many-0a1b2c", 3), [
      { cgroup: "pgha-hmany-0a1b2c-1", sub: "h1" },
      { cgroup: "pgha-hmany-0a1b2c-2", sub: "h2" },
      { cgroup: "pgha-hmany-0a1b2c-3", sub: "h3" },
    ]);
  });

  it("refuses an id that is not a plain word and a count out of range, naming what is accepted", () => {
    assert.throws(() => hostNames("a/b", 3), /1 to 20 of a-z, 0-9 and '-', got "a\/b"/);
    assert.throws(() => hostNames("", 3), /got ""/);
    assert.throws(() => hostNames("ok", 0), /between 1 and 9 hosts, got 0/);
    assert.throws(() => hostNames("ok", 10), /between 1 and 9 hosts, got 10/);
  });

  it("gives every engine its own data root, config, socket, exec root, pidfile and cgroup parent", () => {
    const args = dockerdArgs({ dir: "/tmp/x/h2", cgroup: "pgha-hq-2" }, "overlay2");
    assert.deepEqual(args, [
      "--config-file=/tmp/x/h2/daemon.json",
      "--host=unix:///run/docker.sock",
      "--data-root=/tmp/x/h2/data",
      "--exec-root=/run/docker",
      "--pidfile=/run/docker.pid",
      "--storage-driver=overlay2",
      "--cgroup-parent=/pgha-hq-2",
      "--label=pgha.test=1",
    ]);
    assert.throws(
      () => dockerdArgs({ dir: "/d", cgroup: "c" }, "overlay2 --debug"),
      /not a storage driver name/,
    );
  });

  it("starts the engine in the host's network namespace, with the host's own /run", () => {
    const cmd = engineCommand({ ns: "pgha-ab1-1", dir: "/tmp/x/h1", cgroup: "pgha-hq-1" }, "vfs");
    assert.deepEqual(cmd.slice(0, 9), [
      "nsenter",
      "--net=/run/netns/pgha-ab1-1",
      "unshare",
      "--mount",
      "--propagation",
      "slave",
      "sh",
      "-c",
      'mount --bind "$0" /run && exec dockerd "$@"',
    ]);
    assert.equal(cmd[9], "/tmp/x/h1/run");
    assert.deepEqual(cmd.slice(10), dockerdArgs({ dir: "/tmp/x/h1", cgroup: "pgha-hq-1" }, "vfs"));
  });

  it("configures no registry mirror and no DNS server but the host's own address", () => {
    assert.deepEqual(JSON.parse(daemonConfig("10.201.3.12")), { dns: ["10.201.3.12"] });
  });
});
