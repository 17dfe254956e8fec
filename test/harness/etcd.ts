/**
 * A real etcd (Debian's etcd-server) on loopback, on free ports, in a temp dir.
 * Can be stopped, killed and started again with its data kept.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createEtcdClient, type Etcd3 } from "../../shared/etcd.js";
import { freePort } from "./ports.js";
import { run, type Spawned, startProcess, stopProcess, waitFor } from "./proc.js";

export const ETCD_BIN = process.env.ETCD_BIN ?? "etcd";
export const ETCDCTL_BIN = process.env.ETCDCTL_BIN ?? "etcdctl";

/** The command line of one etcd member (plain http, quiet logs) in a new cluster. */
export function etcdMemberArgs(m: {
  name: string;
  dataDir: string;
  clientUrl: string;
  peerUrl: string;
  /** `name=peerUrl,…` of every member. */
  cluster: string;
}): string[] {
  return [
    "--name",
    m.name,
    "--data-dir",
    m.dataDir,
    "--listen-client-urls",
    m.clientUrl,
    "--advertise-client-urls",
    m.clientUrl,
    "--listen-peer-urls",
    m.peerUrl,
    "--initial-advertise-peer-urls",
    m.peerUrl,
    "--initial-cluster",
    m.cluster,
    "--initial-cluster-state",
    "new",
    "--logger",
    "zap",
    "--log-level",
    "warn",
  ];
}

export class EtcdServer {
  private proc: Spawned | null = null;
  private clients: Etcd3[] = [];

  private constructor(
    readonly dir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly host: string,
  ) {}

  /** Starts etcd; `host` may be an address on Docker's bridge so that containers reach it. */
  static async start(opts: { host?: string } = {}): Promise<EtcdServer> {
    const host = opts.host ?? "127.0.0.1";
    const dir = mkdtempSync(join(tmpdir(), "etcd-"));
    const s = new EtcdServer(dir, await freePort(host), await freePort(host), host);
    await s.start();
    return s;
  }

  get endpoint(): string {
    return `${this.host}:${this.clientPort}`;
  }
  get url(): string {
    return `http://${this.endpoint}`;
  }
  get running(): boolean {
    return this.proc !== null;
  }

  async start(): Promise<void> {
    if (this.proc) return;
    const peer = `http://${this.host}:${this.peerPort}`;
    this.proc = startProcess(
      ETCD_BIN,
      etcdMemberArgs({
        name: "test",
        dataDir: join(this.dir, "data"),
        clientUrl: this.url,
        peerUrl: peer,
        cluster: `test=${peer}`,
      }),
      { logFile: join(this.dir, "etcd.log") },
    );
    const proc = this.proc;
    await waitFor(
      "etcd to answer",
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`etcd exited: ${proc.tail(20)}`);
        await this.ctl("endpoint", "health");
        return true;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
  }

  /** Graceful stop (SIGTERM); data is kept for start(). */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (p) await stopProcess(p, "SIGTERM");
  }

  /** SIGKILL; data is kept. */
  async kill(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (p) await stopProcess(p, "SIGKILL");
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Runs etcdctl (v3 API) against this server. */
  async ctl(...args: string[]): Promise<string> {
    const r = await run(
      ETCDCTL_BIN,
      ["--endpoints", this.url, "--dial-timeout", "1s", "--command-timeout", "3s", ...args],
      {
        env: { ...process.env, ETCDCTL_API: "3" },
        timeoutMs: 10_000,
      },
    );
    return r.stdout;
  }

  /** A client for tests; closed by destroy(). */
  client(): Etcd3 {
    const c = createEtcdClient({ hosts: [{ host: this.host, port: this.clientPort }] });
    this.clients.push(c);
    return c;
  }

  /** All keys under a prefix as an object. */
  async dump(prefix: string): Promise<Record<string, string>> {
    const c = this.client();
    return c.getAll().prefix(prefix).strings();
  }

  async compact(): Promise<number> {
    const c = this.client();
    const r = await c.getAll().prefix("\0").exec();
    const rev = Number(r.header.revision);
    await this.ctl("compaction", String(rev));
    return rev;
  }

  tail(lines = 40): string {
    return this.proc?.tail(lines) ?? "";
  }

  async destroy(): Promise<void> {
    for (const c of this.clients) c.close();
    this.clients = [];
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
