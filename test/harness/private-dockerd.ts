/**
 * A private dockerd for tests that stop and start Docker itself, beside the
 * machine's daemon (which other tests share and which this never touches).
 *
 * Everything it owns lives in one temp directory or carries one unique name
 * `pgha-t<hex>`: its socket, data root, exec root (so its own containerd),
 * pidfile and an empty config file; its own bridge interface with a private /24
 * that no route on the machine overlaps (instead of docker0); its own cgroup
 * parent. It writes no iptables rules and leaves IP forwarding alone: published
 * ports go through Docker's userland proxy.
 *
 * stop() and start() keep the data root, as restarting a daemon does. destroy()
 * (call it in after()) removes containers, the daemon, what is left of its
 * processes, mounts and cgroups, the bridge and the directory; a synchronous
 * best-effort version of it runs if the test process exits first.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, type Spawned, startProcess, stopProcess, waitFor } from "./proc.js";

export interface DaemonOptions {
  /** --live-restore: containers keep running while the daemon is down. */
  readonly liveRestore?: boolean;
}

const CGROUP_ROOT = "/sys/fs/cgroup";
const SUBNET_BASE = [10, 213] as const;

export class PrivateDockerd {
  private proc: Spawned | null = null;
  private options: DaemonOptions = {};
  private destroyed = false;
  private readonly onExit = () => this.cleanupSync();

  private constructor(
    readonly name: string,
    readonly dir: string,
    readonly driver: string,
  ) {}

  /** Creates the bridge and directories and starts the daemon. */
  static async create(options: DaemonOptions = {}): Promise<PrivateDockerd> {
    const driver = (await run("docker", ["info", "-f", "{{.Driver}}"])).stdout.trim();
    const name = `pgha-t${randomBytes(3).toString("hex")}`;
    const d = new PrivateDockerd(name, mkdtempSync(join(tmpdir(), `${name}-`)), driver);
    process.on("exit", d.onExit);
    try {
      writeFileSync(join(d.dir, "daemon.json"), "{}\n");
      await d.createBridge();
      await d.start(options);
      return d;
    } catch (err) {
      await d.destroy();
      throw err;
    }
  }

  get socketPath(): string {
    return join(this.dir, "docker.sock");
  }

  /** For DOCKER_HOST and `docker -H`. */
  get host(): string {
    return `unix://${this.socketPath}`;
  }

  get running(): boolean {
    return this.proc !== null && this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }

  /** Starts the daemon on the existing data root; resolves once its API answers. */
  async start(options: DaemonOptions = this.options): Promise<void> {
    if (this.running) throw new Error("the private dockerd is already running");
    this.options = options;
    const proc = startProcess(
      "dockerd",
      [
        `--config-file=${join(this.dir, "daemon.json")}`,
        `--host=${this.host}`,
        `--data-root=${join(this.dir, "data")}`,
        `--exec-root=${join(this.dir, "exec")}`,
        `--pidfile=${join(this.dir, "docker.pid")}`,
        `--storage-driver=${this.driver}`,
        `--bridge=${this.name}`,
        `--cgroup-parent=/${this.name}`,
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        "--label=pgha.test=1",
        ...(options.liveRestore ? ["--live-restore"] : []),
      ],
      { logFile: join(this.dir, "dockerd.log") },
    );
    this.proc = proc;
    await waitFor(
      "the private dockerd to answer",
      async () => {
        if (proc.child.exitCode !== null || proc.child.signalCode !== null) {
          throw new Error(`dockerd exited: ${proc.tail(20)}`);
        }
        return this.ping();
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
  }

  /**
   * Stops the daemon (SIGTERM: a clean stop, as `systemctl restart docker` does) and
   * waits until it and its containerd have exited.
   */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    if (this.proc) await stopProcess(this.proc, signal, 60_000);
    await waitFor(
      "the private containerd to exit",
      () =>
        this.pids((cmd) => cmd.includes(join(this.dir, "exec", "containerd", "containerd.toml"))).length ===
        0,
      { timeoutMs: 30_000, intervalMs: 100 },
    );
    // Both have exited, but a SIGKILLed daemon leaves its and containerd's pid files behind. The
    // next dockerd takes a live process under a reused pid for its containerd ("containerd is
    // still running") and waits for a socket nobody serves: a host's reboot clears them with /run.
    for (const f of [join(this.dir, "docker.pid"), join(this.dir, "exec", "containerd", "containerd.pid")]) {
      rmSync(f, { force: true });
    }
  }

  /** `docker -H <this daemon> ARGS…`; resolves with stdout (trimmed). */
  async docker(...args: string[]): Promise<string> {
    return (await run("docker", ["-H", this.host, ...args], { timeoutMs: 60_000 })).stdout.trim();
  }

  /** Copies an image from the machine's daemon into this one. */
  async loadImage(image: string): Promise<void> {
    await run(
      "bash",
      ["-o", "pipefail", "-c", 'docker save "$1" | docker -H "$2" load', "load", image, this.host],
      {
        timeoutMs: 300_000,
      },
    );
  }

  tail(lines = 40): string {
    return this.proc?.tail(lines) ?? "";
  }

  /** Removes every container, stops the daemon and removes everything it left. */
  async destroy(): Promise<void> {
    if (this.destroyed) return;
    try {
      if (this.running) {
        const ids = await this.docker("ps", "-aq").catch(() => "");
        if (ids) await this.docker("rm", "-f", ...ids.split("\n")).catch(() => "");
      }
      await this.stop().catch(() => undefined);
    } finally {
      this.cleanupSync();
    }
  }

  private ping(): Promise<boolean> {
    return pingDocker(this.socketPath);
  }

  private async createBridge(): Promise<void> {
    const taken = await routedCidrs();
    const third = pickFreeThirdOctet(taken);
    await run("ip", ["link", "add", "name", this.name, "type", "bridge"]);
    await run("ip", ["link", "set", "dev", this.name, "alias", `pgha.test=1 private dockerd ${this.dir}`]);
    await run("ip", ["addr", "add", `${SUBNET_BASE.join(".")}.${third}.1/24`, "dev", this.name]);
    await run("ip", ["link", "set", "dev", this.name, "up"]);
  }

  /** Processes whose command line matches (this daemon's dir is unique, so its own processes). */
  private pids(match: (cmdline: string) => boolean): number[] {
    const out: number[] = [];
    for (const e of readdirSync("/proc")) {
      if (!/^\d+$/.test(e)) continue;
      try {
        if (match(readFileSync(`/proc/${e}/cmdline`, "utf8").replaceAll("\0", " "))) out.push(Number(e));
      } catch {}
    }
    return out;
  }

  /**
   * Kills what is left (the daemon, containerd, shims and the containers under them,
   * e.g. after a failed test with --live-restore), unmounts, removes cgroups, the
   * bridge and the directory. Synchronous so that it can run at process exit.
   */
  private cleanupSync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    process.off("exit", this.onExit);
    const roots = this.pids((cmd) => cmd.includes(this.dir));
    for (const pid of withDescendants(roots)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
    const mounts = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[4] ?? "")
      .filter((m) => m === this.dir || m.startsWith(`${this.dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const m of mounts) {
      if (spawnSync("umount", [m]).status !== 0) spawnSync("umount", ["-l", m]);
    }
    removeCgroups(this.name);
    spawnSync("ip", ["link", "del", "dev", this.name]);
    // --one-file-system: never delete through a mount that could not be removed.
    spawnSync("rm", ["-rf", "--one-file-system", this.dir]);
  }
}

/** Every IPv4 destination the machine routes (all tables), as CIDRs. */
async function routedCidrs(): Promise<string[]> {
  const { stdout } = await run("ip", ["-j", "-4", "route", "show", "table", "all"]);
  return (JSON.parse(stdout) as { dst?: string }[])
    .map((r) => r.dst ?? "")
    .filter((d) => d !== "" && d !== "default")
    .map((d) => (d.includes("/") ? d : `${d}/32`));
}

/** A third octet X such that 10.213.X.0/24 overlaps none of `taken`. */
export function pickFreeThirdOctet(taken: readonly string[], random = Math.random): number {
  const ranges = taken.map(cidrRange);
  for (let i = 0; i < 100; i++) {
    const x = Math.floor(random() * 254) + 1;
    const [lo, hi] = cidrRange(`${SUBNET_BASE.join(".")}.${x}.0/24`);
    if (ranges.every(([a, b]) => b < lo || a > hi)) return x;
  }
  throw new Error(`no free /24 in ${SUBNET_BASE.join(".")}.0.0/16 for a private bridge`);
}

function cidrRange(cidr: string): [number, number] {
  const [ip = "", bits = "32"] = cidr.split("/");
  const n = ip.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
  const size = 2 ** (32 - Number(bits));
  const lo = n - (n % size);
  return [lo, lo + size - 1];
}

/** These processes and all their descendants (from /proc). */
export function withDescendants(pids: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(e)]);
    } catch {}
  }
  const out = new Set<number>();
  const visit = (p: number) => {
    if (out.has(p)) return;
    out.add(p);
    for (const c of children.get(p) ?? []) visit(c);
  };
  for (const p of pids) visit(p);
  return [...out];
}

/** Removes this daemon's cgroup parent (empty once its containers are gone) under every hierarchy. */
export function removeCgroups(name: string): void {
  const tops = [join(CGROUP_ROOT, name)];
  try {
    for (const c of readdirSync(CGROUP_ROOT)) tops.push(join(CGROUP_ROOT, c, name));
  } catch {}
  const removeTree = (dir: string) => {
    try {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) removeTree(join(dir, e.name));
      }
      rmdirSync(dir);
    } catch {}
  };
  for (const t of tops) if (existsSync(t)) removeTree(t);
}

/** True when the Docker engine on this unix socket answers `/_ping`. */
export function pingDocker(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: "/_ping", timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
    req.end();
  });
}
