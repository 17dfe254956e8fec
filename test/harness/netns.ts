/**
 * Hosts of our own on this machine: network namespaces joined by a bridge the
 * test creates, each with one address on a private /24. The test process (in
 * the root namespace) reaches every host through the bridge; a host can be cut
 * off from some or all of the others with iptables in its own namespace, which
 * leaves the rest untouched. Needs root, iproute2 and iptables. Nothing here
 * addresses anything but loopback and these namespaces.
 *
 *   const lab = await NetLab.create(3);          // hosts lab.hosts[0..2]
 *   lab.spawn(h, "etcd", [...])                 // a process inside h's namespace
 *   await lab.isolate(h, others)                // h no longer reaches the others, nor they h
 *   await lab.heal(h)
 *   await lab.destroy()                         // always, in after()
 */
import { randomBytes } from "node:crypto";
import { run, type Spawned, startProcess } from "./proc.js";

export interface LabHost {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
  /** The root namespace's end of the host's link to the bridge (down: the host is off the network). */
  readonly veth: string;
}

let labs = 0;

async function ip(...args: string[]): Promise<void> {
  await run("ip", args, { timeoutMs: 20_000 });
}

export class NetLab {
  private readonly cleanups: (() => Promise<void>)[] = [];
  private readonly isolated = new Set<string>();

  private constructor(
    readonly id: string,
    readonly bridge: string,
    readonly gateway: string,
    readonly hosts: readonly LabHost[],
  ) {}

  /**
   * `n` hosts on 10.<a>.<b>.0/24 with a random /24 in 10.200–10.249 (the bridge is .1, hosts
   * .11, .12, …), so that several labs (and runs) do not collide.
   */
  static async create(n: number, prefix = "lab"): Promise<NetLab> {
    const id = `${randomBytes(2).toString("hex")}${labs++}`;
    const a = 200 + (Number.parseInt(id.slice(0, 2), 16) % 50);
    const b = Number.parseInt(id.slice(2, 4), 16);
    const net = `10.${a}.${b}`;
    const bridge = `pb${id}`.slice(0, 15);
    const hosts = Array.from({ length: n }, (_, i) => ({
      name: `${prefix}${i + 1}`,
      ns: `pgha-${id}-${i + 1}`,
      ip: `${net}.${11 + i}`,
      veth: `pv${id}${i + 1}`.slice(0, 15),
    }));
    const lab = new NetLab(id, bridge, `${net}.1`, hosts);
    try {
      await ip("link", "add", bridge, "type", "bridge");
      lab.cleanups.push(() => ip("link", "del", bridge));
      await ip("addr", "add", `${net}.1/24`, "dev", bridge);
      await ip("link", "set", bridge, "up");
      // Docker sets the FORWARD policy to DROP, and with br_netfilter loaded, traffic bridged
      // between our namespaces passes through it.
      const fwd = ["FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"];
      await run("iptables", ["-I", ...fwd]);
      lab.cleanups.push(() => run("iptables", ["-D", ...fwd]).then(() => undefined));
      for (const h of hosts) {
        const veth = h.veth;
        await ip("netns", "add", h.ns);
        lab.cleanups.push(() => ip("netns", "del", h.ns));
        await ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns);
        await ip("link", "set", veth, "master", bridge, "up");
        await ip("-n", h.ns, "addr", "add", `${h.ip}/24`, "dev", "eth0");
        await ip("-n", h.ns, "link", "set", "eth0", "up");
        await ip("-n", h.ns, "link", "set", "lo", "up");
        await ip("-n", h.ns, "route", "add", "default", "via", `${net}.1`);
      }
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  /** Runs a command inside a host's namespace to completion. */
  exec(
    h: LabHost,
    cmd: string,
    args: readonly string[],
    timeoutMs = 60_000,
  ): Promise<{ stdout: string; stderr: string }> {
    return run("ip", ["netns", "exec", h.ns, cmd, ...args], { timeoutMs });
  }

  /** Starts a long-running process inside a host's namespace. */
  spawn(
    h: LabHost,
    cmd: string,
    args: readonly string[],
    opts: { logFile: string; env?: NodeJS.ProcessEnv },
  ): Spawned {
    return startProcess("ip", ["netns", "exec", h.ns, cmd, ...args], opts);
  }

  /** Cuts `h` off from `from` (both directions); the root namespace still reaches it. */
  async isolate(h: LabHost, from: readonly LabHost[]): Promise<void> {
    for (const o of from) {
      await this.exec(h, "iptables", ["-A", "INPUT", "-s", o.ip, "-j", "DROP"]);
      await this.exec(h, "iptables", ["-A", "OUTPUT", "-d", o.ip, "-j", "DROP"]);
    }
    this.isolated.add(h.ns);
  }

  /** Cuts `h` off from everything: the other hosts and the root namespace (the test, the clients). */
  async isolateFully(h: LabHost): Promise<void> {
    await this.exec(h, "iptables", ["-A", "INPUT", "!", "-i", "lo", "-j", "DROP"]);
    await this.exec(h, "iptables", ["-A", "OUTPUT", "!", "-o", "lo", "-j", "DROP"]);
    this.isolated.add(h.ns);
  }

  async heal(h: LabHost): Promise<void> {
    await this.exec(h, "iptables", ["-F", "INPUT"]);
    await this.exec(h, "iptables", ["-F", "OUTPUT"]);
    this.isolated.delete(h.ns);
  }

  async destroy(): Promise<void> {
    for (const c of this.cleanups.reverse()) await c().catch(() => undefined);
    this.cleanups.length = 0;
  }
}
