/**
 * The agent's Patroni launcher (agent/bin/pgha-patroni): Patroni's connections to
 * etcd have Nagle's algorithm off. Without it, each etcd request's JSON body waits
 * for etcd's delayed ACK of its headers, about 40 ms per call; the benchmark's
 * switch-latency part shows what it costs a promotion. Here the kernel is asked
 * directly: the test takes a copy of each of Patroni's etcd sockets (pidfd_getfd, as
 * root) and reads TCP_NODELAY. Patroni's own script, started the same way, is the
 * control: its etcd sockets have Nagle on, which is what the launcher is for.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, readlinkSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { PatroniCluster } from "../harness/patroni.js";
import { run, type Spawned, startProcess, stopProcess, waitFor } from "../harness/proc.js";

/** Reads TCP_NODELAY of file descriptors of another process: {fd: 0|1}. */
const READ_NODELAY = `
import ctypes, json, os, socket, sys
pid, fds = int(sys.argv[1]), [int(x) for x in sys.argv[2:]]
libc = ctypes.CDLL(None, use_errno=True)
pidfd = os.pidfd_open(pid)
out = {}
for fd in fds:
    n = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
    if n < 0:
        sys.exit("pidfd_getfd(%d, %d): errno %d" % (pid, fd, ctypes.get_errno()))
    s = socket.socket(fileno=n)
    out[fd] = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    s.close()
print(json.dumps(out))
`;

/** The descriptors of `pid` that are established TCP connections to `port` on loopback. */
function socketsTo(pid: number, port: number): number[] {
  const inodes = new Set<string>();
  for (const line of readFileSync(`/proc/${pid}/net/tcp`, "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const remotePort = Number.parseInt(f[2]!.split(":")[1]!, 16);
    if (remotePort === port && f[3] === "01") inodes.add(f[9]!);
  }
  const fds: number[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = "";
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && inodes.has(m[1]!)) fds.push(Number(fd));
  }
  return fds;
}

async function nodelayOfEtcdSockets(c: PatroniCluster, pid = c.nodes[0]!.pid): Promise<number[]> {
  assert.ok(pid !== undefined, "the process runs");
  const port = c.etcd.clientPort;
  const fds = await waitFor(
    `process ${pid} connected to etcd on port ${port}`,
    () => {
      const found = socketsTo(pid, port);
      return found.length > 0 && found;
    },
    { timeoutMs: 20_000 },
  );
  const { stdout } = await run("python3", ["-c", READ_NODELAY, String(pid), ...fds.map(String)]);
  const byFd = JSON.parse(stdout) as Record<string, number>;
  return fds.map((fd) => byFd[String(fd)]!);
}

describe("Patroni's etcd connections (as root: pidfd_getfd)", () => {
  let launched: PatroniCluster;
  let plain: PatroniCluster;

  before(async () => {
    [launched, plain] = await Promise.all([
      PatroniCluster.start({ nodes: 1, scope: "nodelay-launcher" }),
      PatroniCluster.start({ nodes: 1, scope: "nodelay-plain", patroniBin: "patroni" }),
    ]);
  });
  after(async () => {
    await Promise.all([launched?.destroy(), plain?.destroy()]);
  });

  it("have TCP_NODELAY on every socket when Patroni runs through the agent's launcher", async () => {
    const values = await nodelayOfEtcdSockets(launched);
    assert.ok(values.length >= 1);
    assert.deepEqual(
      values.filter((v) => v === 0),
      [],
      `etcd sockets with Nagle on: ${values.join(",")}`,
    );
  });

  it("have Nagle on when Patroni's own script starts it (the control)", async () => {
    const values = await nodelayOfEtcdSockets(plain);
    assert.ok(values.length >= 1);
    assert.ok(
      values.every((v) => v === 0),
      `Patroni's own script now sets TCP_NODELAY itself (${values.join(",")}): the launcher may be unnecessary`,
    );
  });
});

/**
 * patronictl opens its etcd connections through the same Patroni function. The image links
 * /usr/local/bin/patronictl to the launcher; run under that name, the launcher runs patronictl.
 * `list -W` refreshes every 2 s and keeps its etcd connection open long enough to be read.
 */
describe("patronictl's etcd connections (as root: pidfd_getfd)", () => {
  let cluster: PatroniCluster;
  const watchers: Spawned[] = [];

  before(async () => {
    cluster = await PatroniCluster.start({ nodes: 1, scope: "nodelay-ctl" });
  });
  after(async () => {
    await Promise.all(watchers.map((w) => stopProcess(w, "SIGKILL")));
    await cluster?.destroy();
  });

  function watchList(bin: string, name: string): Spawned {
    const w = startProcess(bin, ["-c", cluster.nodes[0]!.configFile, "list", "-W"], {
      logFile: join(cluster.dir, `${name}.log`),
    });
    watchers.push(w);
    return w;
  }

  it("have TCP_NODELAY on when patronictl runs through the launcher under its own name", async () => {
    const link = join(cluster.dir, "patronictl");
    symlinkSync(cluster.launcher, link);
    const w = watchList(link, "ctl-launcher");
    await waitFor("patronictl's table", () => w.tail().includes("nodelay-ctl"), { timeoutMs: 20_000 });
    const values = await nodelayOfEtcdSockets(cluster, w.child.pid);
    assert.ok(values.length >= 1);
    assert.deepEqual(
      values.filter((v) => v === 0),
      [],
      `etcd sockets with Nagle on: ${values.join(",")}\n${w.tail()}`,
    );
  });

  it("have Nagle on with Debian's patronictl (the control)", async () => {
    const w = watchList("patronictl", "ctl-plain");
    await waitFor("patronictl's table", () => w.tail().includes("nodelay-ctl"), { timeoutMs: 20_000 });
    const values = await nodelayOfEtcdSockets(cluster, w.child.pid);
    assert.ok(values.length >= 1);
    assert.ok(
      values.every((v) => v === 0),
      `Debian's patronictl now sets TCP_NODELAY itself (${values.join(",")}): the link may be unnecessary`,
    );
  });
});
