/**
 * Several Docker hosts on this one machine, each as close to a machine of its own as a test
 * can make it: a network namespace on a bridge the test creates (NetLab), and in it a dockerd
 * of its own with its own data root, its own /run (so its own /var/run/docker.sock, exec root,
 * containerd and pidfile, as a host has), an empty config file, the machine's storage driver,
 * and iptables rules of its own (they live in the host's namespace). The project's images are
 * copied in from the machine's daemon once per run (`docker save` into one tar per set of image
 * ids, `docker load` on every host); nothing is ever pulled.
 *
 *   const dh = await DockerHosts.create({ images: ["pgha/agent:dev", …] });
 *   dh.hosts[0].ip, dh.hosts[0].dockerHost            // unix://…/run/docker.sock, for DOCKER_HOST
 *   await dh.docker(dh.hosts[0], ["ps"])
 *   await dh.kill(h); await dh.restart(h)              // the whole host at once, and back
 *   await dh.isolate(h); await dh.heal(h)              // cut off from the other hosts, and back
 *   await dh.destroy()                                 // always, in after()
 *
 * Inside a host, its own view of the filesystem has `<dir>/run` mounted on /run: what a
 * container binds from /var/run/docker.sock is that host's engine. Everything else of the
 * machine's filesystem is seen as it is. Only loopback, the test's bridge and these
 * namespaces are addressed: the engines get the host's own address as their only DNS server
 * (nothing answers there), and the bridge forwards nothing but between the hosts. Ports
 * Docker Swarm uses between engines (2377, 7946, 4789) are not filtered.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type LabHost, NetLab } from "./netns.js";
import { pingDocker, removeCgroups, withDescendants } from "./private-dockerd.js";
import { run, type Spawned, startProcess, waitFor } from "./proc.js";

const CGROUP_ROOT = "/sys/fs/cgroup";

export interface DockerHostsOptions {
  /** How many hosts (3 by default). */
  readonly count?: number;
  /** Images of the machine's daemon to load on every host (names or ids). */
  readonly images?: readonly string[];
  /** A short word in the hosts' names (`pgha-<word>-<hex>-1`…), for reading `ip netns list`. */
  readonly label?: string;
}

/** One host: a namespace on the test's bridge with its own dockerd. */
export interface DockerHost extends LabHost {
  readonly index: number;
  /** Everything of this host on the machine's filesystem: data root, its /run, the daemon's log. */
  readonly dir: string;
  /** The cgroup parent of its containers (`/<name>` under every hierarchy). */
  readonly cgroup: string;
  /** `unix://…/run/docker.sock`: DOCKER_HOST for docker and docker-compose commands. */
  readonly dockerHost: string;
}

/** Names of the n hosts of a set: their cgroups and directories under one unique id. */
export function hostNames(id: string, n: number): { cgroup: string; sub: string }[] {
  if (!/^[a-z0-9-]{1,20}$/.test(id)) {
    throw new Error(`a host set's id must be 1 to 20 of a-z, 0-9 and '-', got ${JSON.stringify(id)}`);
  }
  if (!Number.isInteger(n) || n < 1 || n > 9) throw new Error(`between 1 and 9 hosts, got ${n}`);
  return Array.from({ length: n }, (_, i) => ({ cgroup: `pgha-h${id}-${i + 1}`, sub: `h${i + 1}` }));
}

/** The daemon's configuration file: empty of everything but the host's address as its DNS (no mirrors, nothing to pull). */
export function daemonConfig(hostIp: string): string {
  return `${JSON.stringify({ dns: [hostIp] }, null, 2)}\n`;
}

/**
 * dockerd's arguments for a host. Paths under /run are the host's own /run (its `<dir>/run`);
 * the data root and the config file are the machine's paths.
 */
export function dockerdArgs(h: { dir: string; cgroup: string }, driver: string): string[] {
  if (!/^[a-z0-9_]+$/.test(driver)) throw new Error(`not a storage driver name: ${JSON.stringify(driver)}`);
  return [
    `--config-file=${join(h.dir, "daemon.json")}`,
    "--host=unix:///run/docker.sock",
    `--data-root=${join(h.dir, "data")}`,
    "--exec-root=/run/docker",
    "--pidfile=/run/docker.pid",
    `--storage-driver=${driver}`,
    `--cgroup-parent=/${h.cgroup}`,
    "--label=pgha.test=1",
  ];
}

/**
 * The command that starts a host's dockerd: in the host's network namespace, in a mount
 * namespace of its own (a slave of the machine's) with `<dir>/run` on /run.
 */
export function engineCommand(h: { ns: string; dir: string; cgroup: string }, driver: string): string[] {
  return [
    "nsenter",
    `--net=/run/netns/${h.ns}`,
    "unshare",
    "--mount",
    "--propagation",
    "slave",
    "sh",
    "-c",
    'mount --bind "$0" /run && exec dockerd "$@"',
    join(h.dir, "run"),
    ...dockerdArgs(h, driver),
  ];
}

/** FORWARD rules (after -I or -D) that drop a host's forwarded traffic from and to these addresses. */
export function forwardRules(ips: readonly string[]): string[][] {
  return ips.flatMap((ip) => [
    ["FORWARD", "-s", ip, "-j", "DROP"],
    ["FORWARD", "-d", ip, "-j", "DROP"],
  ]);
}

/** The images' tar, saved once per set of image ids in this process. */
const saved = new Map<string, Promise<string>>();
let saveDir: string | null = null;

async function imageTar(images: readonly string[]): Promise<string> {
  const ids = (await run("docker", ["image", "inspect", "-f", "{{.Id}}", ...images])).stdout.trim();
  const key = ids.split("\n").sort().join(",");
  let p = saved.get(key);
  if (!p) {
    if (!saveDir) {
      const dir = mkdtempSync(join(tmpdir(), "pgha-images-"));
      saveDir = dir;
      process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    }
    const file = join(saveDir, `${saved.size}.tar`);
    p = run("docker", ["save", "-o", file, ...images], { timeoutMs: 10 * 60_000 }).then(() => file);
    saved.set(key, p);
    p.catch(() => saved.delete(key));
  }
  return p;
}

interface Engine {
  proc: Spawned | null;
  /** The engine's mount namespace (`mnt:[…]`), to find every process the host ran. */
  mntNs: string | null;
}

export class DockerHosts {
  private readonly engines: Engine[];
  private destroyed = false;
  private readonly onExit = () => this.cleanupSync();

  private constructor(
    readonly lab: NetLab,
    readonly dir: string,
    readonly driver: string,
    readonly hosts: readonly DockerHost[],
  ) {
    this.engines = hosts.map(() => ({ proc: null, mntNs: null }));
  }

  static async create(opts: DockerHostsOptions = {}): Promise<DockerHosts> {
    const n = opts.count ?? 3;
    const id = `${opts.label ?? ""}${opts.label ? "-" : ""}${randomBytes(3).toString("hex")}`;
    const names = hostNames(id, n);
    const driver = (await run("docker", ["info", "-f", "{{.Driver}}"])).stdout.trim();
    const lab = await NetLab.create(n, "host");
    const dir = mkdtempSync(join(tmpdir(), `pgha-hosts-${id}-`));
    const hosts = lab.hosts.map((h, i) => {
      const hostDir = join(dir, names[i]!.sub);
      return {
        ...h,
        index: i,
        dir: hostDir,
        cgroup: names[i]!.cgroup,
        dockerHost: `unix://${join(hostDir, "run", "docker.sock")}`,
      };
    });
    const set = new DockerHosts(lab, dir, driver, hosts);
    process.on("exit", set.onExit);
    try {
      for (const h of hosts) {
        mkdirSync(join(h.dir, "run"), { recursive: true });
        mkdirSync(join(h.dir, "data"), { recursive: true });
        writeFileSync(join(h.dir, "daemon.json"), daemonConfig(h.ip));
      }
      const tar = opts.images && opts.images.length > 0 ? imageTar(opts.images) : null;
      await Promise.all(hosts.map((h) => set.startEngine(h)));
      if (tar) {
        const file = await tar;
        await Promise.all(
          hosts.map((h) =>
            run("docker", ["-H", h.dockerHost, "load", "-q", "-i", file], { timeoutMs: 15 * 60_000 }),
          ),
        );
      }
      return set;
    } catch (err) {
      await set.destroy();
      throw err;
    }
  }

  /** `docker -H <host's engine> ARGS…`; resolves with stdout (trimmed). */
  async docker(h: DockerHost, args: readonly string[], timeoutMs = 120_000): Promise<string> {
    return (await run("docker", ["-H", h.dockerHost, ...args], { timeoutMs })).stdout.trim();
  }

  /** The environment for a docker or docker-compose command aimed at `h`: PATH, HOME and DOCKER_HOST. */
  env(h: DockerHost): NodeJS.ProcessEnv {
    return { PATH: process.env["PATH"], HOME: process.env["HOME"], DOCKER_HOST: h.dockerHost };
  }

  /** Whether the host's engine runs (not killed). */
  running(h: DockerHost): boolean {
    const p = this.engines[h.index]!.proc;
    return p !== null && p.child.exitCode === null && p.child.signalCode === null;
  }

  /**
   * The whole host at once, as a power cut: its link goes down and every process it ran
   * (engine, containerd, shims, containers, proxies) gets SIGKILL together.
   */
  async kill(h: DockerHost): Promise<void> {
    await run("ip", ["link", "set", h.veth, "down"]);
    this.killAll(h);
    const proc = this.engines[h.index]!.proc;
    if (proc) await proc.exited;
    await waitFor("every process of the killed host to be gone", () => this.pidsOf(h).length === 0, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    this.engines[h.index] = { proc: null, mntNs: null };
  }

  /**
   * Brings a killed host back: its link up, a fresh /run (as a reboot gives), its engine on the
   * same data root. Containers come back as their restart policy says.
   */
  async restart(h: DockerHost): Promise<void> {
    if (this.running(h)) throw new Error(`${h.name} is running: kill it first`);
    for (const e of readdirSync(join(h.dir, "run"))) {
      if (e !== "pgha") rmSync(join(h.dir, "run", e), { recursive: true, force: true });
    }
    await run("ip", ["link", "set", h.veth, "up"]);
    await this.startEngine(h);
  }

  /**
   * Cuts `h` off from the other hosts, both ways (the test's own namespace still reaches it):
   * NetLab's rules for the host's own processes, and the same in FORWARD for its containers,
   * whose traffic to and from published ports is forwarded (DNAT), not delivered.
   */
  async isolate(h: DockerHost): Promise<void> {
    const others = this.hosts.filter((o) => o !== h);
    await this.lab.isolate(h, others);
    for (const rule of forwardRules(others.map((o) => o.ip)))
      await this.lab.exec(h, "iptables", ["-I", ...rule]);
  }

  async heal(h: DockerHost): Promise<void> {
    const others = this.hosts.filter((o) => o !== h);
    for (const rule of forwardRules(others.map((o) => o.ip))) {
      await this.lab.exec(h, "iptables", ["-D", ...rule]).catch(() => undefined);
    }
    await this.lab.heal(h);
  }

  /** The daemon's last log lines, for failure messages. */
  tail(h: DockerHost, lines = 30): string {
    try {
      return readFileSync(join(h.dir, "dockerd.log"), "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }

  /** Removes every container, kills every host, removes the namespaces, the bridge, its rules and the directories. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    await Promise.all(
      this.hosts.map(async (h) => {
        if (!this.running(h)) return;
        const ids = await this.docker(h, ["ps", "-aq"], 30_000).catch(() => "");
        if (ids) await this.docker(h, ["rm", "-f", "-v", ...ids.split("\n")], 120_000).catch(() => "");
      }),
    );
    this.cleanupSync();
    await this.lab.destroy();
  }

  private async startEngine(h: DockerHost): Promise<void> {
    const [cmd, ...args] = engineCommand(h, this.driver);
    const proc = startProcess(cmd!, args, { logFile: join(h.dir, "dockerd.log") });
    this.engines[h.index] = { proc, mntNs: null };
    await waitFor(
      `${h.name}'s dockerd to answer`,
      async () => {
        if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
          throw new Error(`${h.name}'s dockerd exited: ${proc.tail(20)}`);
        }
        return pingDocker(join(h.dir, "run", "docker.sock"));
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    this.engines[h.index]!.mntNs = nsOf(proc.child.pid!, "mnt");
  }

  /**
   * Every process of a host: in its network namespace, in its engine's mount namespace, in
   * its containers' cgroups, naming its directory, and all their descendants.
   */
  private pidsOf(h: DockerHost): number[] {
    let netIno: number | null = null;
    try {
      netIno = statSync(`/run/netns/${h.ns}`).ino;
    } catch {}
    const mnt = this.engines[h.index]?.mntNs ?? null;
    const roots = new Set<number>(cgroupPids(h.cgroup));
    for (const e of readdirSync("/proc")) {
      if (!/^\d+$/.test(e)) continue;
      const pid = Number(e);
      if (pid === process.pid) continue;
      if (netIno !== null && nsOf(pid, "net") === `net:[${netIno}]`) roots.add(pid);
      else if (mnt !== null && nsOf(pid, "mnt") === mnt) roots.add(pid);
      else {
        try {
          if (readFileSync(`/proc/${e}/cmdline`, "utf8").includes(h.dir)) roots.add(pid);
        } catch {}
      }
    }
    roots.delete(process.pid);
    return withDescendants([...roots]).filter((p) => p !== process.pid);
  }

  private killAll(h: DockerHost): void {
    for (let round = 0; round < 5; round++) {
      const pids = this.pidsOf(h);
      if (pids.length === 0) return;
      for (const pid of pids) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
    }
  }

  /** Kills what is left of every host and removes cgroups and directories. Synchronous, for process exit. */
  private cleanupSync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.off("exit", this.onExit);
    for (const h of this.hosts) {
      spawnSync("ip", ["link", "set", h.veth, "down"]);
      this.killAll(h);
    }
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && this.hosts.some((h) => this.pidsOf(h).length > 0)) {
      spawnSync("sleep", ["0.1"]);
    }
    for (const h of this.hosts) removeCgroups(h.cgroup);
    // Mounts made inside a host's own mount namespace went with its processes; anything a
    // mount left on the machine's side is unmounted before the directory goes.
    const mounts = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((m) => m === this.dir || m.startsWith(`${this.dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) if (spawnSync("umount", [m]).status !== 0) spawnSync("umount", ["-l", m]);
    spawnSync("rm", ["-rf", "--one-file-system", this.dir]);
    // The namespaces, the bridge and its FORWARD rule (NetLab's own cleanup, synchronously).
    for (const h of this.hosts) spawnSync("ip", ["netns", "del", h.ns]);
    spawnSync("ip", ["link", "del", this.lab.bridge]);
    spawnSync("iptables", ["-D", "FORWARD", "-i", this.lab.bridge, "-o", this.lab.bridge, "-j", "ACCEPT"]);
  }
}

function nsOf(pid: number, kind: "mnt" | "net"): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return null;
  }
}

/** The processes in a cgroup parent and below it, under every hierarchy. */
function cgroupPids(name: string): number[] {
  const out = new Set<number>();
  const walk = (dir: string) => {
    try {
      for (const l of readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n")) if (l) out.add(Number(l));
      for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
    } catch {}
  };
  walk(join(CGROUP_ROOT, name));
  try {
    for (const c of readdirSync(CGROUP_ROOT)) walk(join(CGROUP_ROOT, c, name));
  } catch {}
  return [...out];
}
