/**
 * A real Patroni 3.0.2 + PostgreSQL 15 cluster on loopback, on free ports, in a
 * temp dir, against a real etcd: the backbone of the router's tests.
 *
 *   const c = await PatroniCluster.start({ nodes: 3 });   // leader + 2 streaming replicas
 *   await c.switchover("pg2"); await c.kill9("pg2"); await c.etcd.stop(); ...
 *   await c.destroy();                                     // always, in after()
 *
 * PostgreSQL refuses to run as root, so when the tests run as root Patroni is
 * started as the postgres user with setpriv. With `runtime: ContainerRuntime` the members
 * run in containers of the agent image on the host network instead (patroni-runtime.ts).
 */
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { stringify } from "yaml";
import { streamingFrom } from "../../agent/stop-plan.js";
import { EtcdServer } from "./etcd.js";
import { HOST_PG_BIN_DIR, HostRuntime, type PatroniRuntime, postmasterPid } from "./patroni-runtime.js";
import { freePort } from "./ports.js";
import { run, type Spawned, waitFor } from "./proc.js";

export const PG_BIN_DIR = HOST_PG_BIN_DIR;
/**
 * What starts Patroni: the agent's launcher (Patroni with Nagle off on its etcd connections),
 * copied into each cluster's directory so that the postgres account can run it wherever the
 * checkout is; `PATRONI_BIN=patroni` runs Patroni's own script instead.
 */
export const PATRONI_BIN = process.env.PATRONI_BIN ?? null;
const PATRONI_LAUNCHER_SRC = fileURLToPath(new URL("../../../agent/bin/pgha-patroni", import.meta.url));
export const PATRONICTL_BIN = process.env.PATRONICTL_BIN ?? "patronictl";

const SUPERUSER = { username: "postgres", password: "harness-superuser-pw" };
const REPLICATION = { username: "replicator", password: "harness-replication-pw" };

export interface ClusterOptions {
  readonly nodes?: number;
  readonly scope?: string;
  readonly namespace?: string;
  /** An etcd to use (not destroyed with the cluster); one is started otherwise. */
  readonly etcd?: EtcdServer;
  readonly ttl?: number;
  readonly loopWait?: number;
  readonly retryTimeout?: number;
  readonly synchronousMode?: boolean;
  /** Patroni tags per member name, e.g. { pg3: { noloadbalance: true } }. */
  readonly tags?: Readonly<Record<string, Record<string, unknown>>>;
  /** Extra dynamic configuration (bootstrap.dcs), e.g. { failsafe_mode: true }. */
  readonly dcs?: Readonly<Record<string, unknown>>;
  /** initdb --wal-segsize (MB), as the agent's WAL_SEGMENT_SIZE; PostgreSQL's 16 by default. */
  readonly walSegmentSizeMb?: number;
  /** Extra PostgreSQL parameters. */
  readonly parameters?: Readonly<Record<string, string | number | boolean>>;
  /** Wait for a leader and all replicas streaming (default true). */
  readonly waitReady?: boolean;
  /** What starts Patroni: the agent's launcher unless `PATRONI_BIN` or this says otherwise. */
  readonly patroniBin?: string;
  /** Where the members run: processes of this host (the default) or containers of the agent image. */
  readonly runtime?: PatroniRuntime;
}

/** One member as Patroni's REST /cluster reports it. */
export interface RestMember {
  readonly name: string;
  readonly role: string;
  readonly state: string;
  readonly host: string;
  readonly port: number;
  readonly timeline?: number;
  readonly lag?: number | string;
}

/** Patroni's default maximum_lag_on_failover (bytes). */
const MAX_LAG_ON_FAILOVER = 1_048_576;

export class PatroniNode {
  private proc: Spawned | null = null;

  constructor(
    readonly cluster: PatroniCluster,
    readonly name: string,
    readonly pgPort: number,
    readonly restPort: number,
    readonly dir: string,
  ) {}

  get configFile(): string {
    return join(this.dir, "patroni.yml");
  }
  get dataDir(): string {
    return join(this.dir, "data");
  }
  get restUrl(): string {
    return `http://127.0.0.1:${this.restPort}`;
  }
  get running(): boolean {
    return this.proc !== null && this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }
  get pid(): number | undefined {
    return this.proc?.child.pid;
  }

  /** node-postgres connection settings for this member. */
  pg(database = "postgres"): {
    host: string;
    port: number;
    user: string;
    password: string;
    database: string;
  } {
    return {
      host: "127.0.0.1",
      port: this.pgPort,
      user: SUPERUSER.username,
      password: SUPERUSER.password,
      database,
    };
  }

  /** What the runtime needs to run this member. */
  private get member() {
    return {
      name: this.name,
      dir: this.dir,
      configFile: this.configFile,
      dataDir: this.dataDir,
      clusterDir: this.cluster.dir,
      hostPatroniBin: this.cluster.opts.patroniBin ?? PATRONI_BIN ?? this.cluster.launcher,
    };
  }

  start(): void {
    if (this.running) return;
    this.proc = this.cluster.runtime.start(this.member);
  }

  /** SIGTERM: Patroni stops PostgreSQL and releases the leader key if it holds it. */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (p) await this.cluster.runtime.stop(this.member, p);
  }

  /** kill -9 of Patroni, the postmaster and every backend (the whole process group, or the container). */
  async kill9(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    await this.cluster.runtime.kill9(this.member, p);
  }

  /** The postmaster's pid (in the container's PID namespace when the member runs in one). */
  postmasterPid(): number | null {
    return postmasterPid(this.dataDir);
  }

  /** Patroni's version (REST /patroni) and PostgreSQL's server_version as Patroni reports it. */
  async versions(): Promise<{ patroni: string | null; postgresNum: number | null }> {
    const body = (await this.rest("/patroni")).body as {
      patroni?: { version?: unknown };
      server_version?: unknown;
    } | null;
    const v = body?.patroni?.version;
    const n = body?.server_version;
    return { patroni: typeof v === "string" ? v : null, postgresNum: typeof n === "number" ? n : null };
  }

  /** GET a Patroni REST path; returns status and parsed JSON (or null). */
  async rest(path: string, timeoutMs = 2000): Promise<{ status: number; body: unknown }> {
    const res = await fetch(this.restUrl + path, { signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {}
    return { status: res.status, body };
  }

  async restPost(path: string, body: unknown, timeoutMs = 30_000): Promise<{ status: number; text: string }> {
    const res = await fetch(this.restUrl + path, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(timeoutMs),
    });
    return { status: res.status, text: await res.text() };
  }

  tail(lines = 40): string {
    try {
      return readFileSync(join(this.dir, "patroni.log"), "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  }
}

export class PatroniCluster {
  readonly nodes: PatroniNode[] = [];

  private constructor(
    readonly dir: string,
    readonly etcd: EtcdServer,
    private readonly ownsEtcd: boolean,
    readonly scope: string,
    readonly namespace: string,
    readonly opts: ClusterOptions,
    readonly runtime: PatroniRuntime,
  ) {}

  static async start(opts: ClusterOptions = {}): Promise<PatroniCluster> {
    const dir = mkdtempSync(join(tmpdir(), "patroni-"));
    const etcd = opts.etcd ?? (await EtcdServer.start());
    const scope = opts.scope ?? `demo${Math.floor(Math.random() * 1e6)}`;
    const c = new PatroniCluster(
      dir,
      etcd,
      opts.etcd === undefined,
      scope,
      opts.namespace ?? "/service/",
      opts,
      opts.runtime ?? new HostRuntime(),
    );
    copyFileSync(PATRONI_LAUNCHER_SRC, c.launcher);
    chmodSync(c.launcher, 0o755);
    const owner = c.runtime.owner;
    if (owner) chownSync(dir, owner.uid, owner.gid);
    try {
      for (let i = 1; i <= (opts.nodes ?? 3); i++) await c.addNode(`pg${i}`);
      for (const n of c.nodes) n.start();
      if (opts.waitReady !== false) await c.waitReady();
    } catch (err) {
      const logs = c.nodes.map((n) => `--- ${n.name} ---\n${n.tail(15)}`).join("\n");
      await c.destroy();
      throw new Error(`Patroni cluster did not come up: ${(err as Error).message}\n${logs}`);
    }
    return c;
  }

  /** The agent's Patroni launcher, copied into the cluster's directory. */
  get launcher(): string {
    return join(this.dir, "pgha-patroni");
  }

  /** Adds a member (not started) with its own ports, dir and config. */
  async addNode(name: string): Promise<PatroniNode> {
    const nodeDir = join(this.dir, name);
    mkdirSync(nodeDir, { mode: 0o700 });
    const node = new PatroniNode(this, name, await freePort(), await freePort(), nodeDir);
    writeFileSync(node.configFile, stringify(this.config(node)), { mode: 0o600 });
    const owner = this.runtime.owner;
    if (owner) {
      chownSync(nodeDir, owner.uid, owner.gid);
      chownSync(node.configFile, owner.uid, owner.gid);
    }
    this.nodes.push(node);
    return node;
  }

  node(name: string): PatroniNode {
    const n = this.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no member ${name} in ${this.nodes.map((x) => x.name).join(", ")}`);
    return n;
  }

  private config(node: PatroniNode): Record<string, unknown> {
    const o = this.opts;
    return {
      scope: this.scope,
      namespace: this.namespace,
      name: node.name,
      log: { level: "INFO" },
      restapi: { listen: `127.0.0.1:${node.restPort}`, connect_address: `127.0.0.1:${node.restPort}` },
      etcd3: { hosts: [this.etcd.endpoint] },
      bootstrap: {
        dcs: {
          ttl: o.ttl ?? 10,
          loop_wait: o.loopWait ?? 2,
          retry_timeout: o.retryTimeout ?? 5,
          maximum_lag_on_failover: 1048576,
          synchronous_mode: o.synchronousMode ?? false,
          ...(o.dcs ?? {}),
          postgresql: {
            use_pg_rewind: true,
            use_slots: true,
            parameters: {
              wal_level: "replica",
              hot_standby: "on",
              max_wal_senders: 10,
              max_replication_slots: 10,
              wal_keep_size: "128MB",
              max_connections: 300,
              wal_log_hints: "on",
            },
          },
        },
        initdb: [
          { encoding: "UTF8" },
          { locale: "C" },
          "data-checksums",
          { "wal-segsize": String(o.walSegmentSizeMb ?? 16) },
        ],
      },
      postgresql: {
        listen: `127.0.0.1:${node.pgPort}`,
        connect_address: `127.0.0.1:${node.pgPort}`,
        data_dir: node.dataDir,
        bin_dir: this.runtime.binDir,
        pgpass: join(node.dir, "pgpass"),
        authentication: { superuser: SUPERUSER, replication: REPLICATION, rewind: SUPERUSER },
        // As in the agent: Patroni's own replication connection (IDENTIFY_SYSTEM, the timeline a
        // replica's REST status reports) goes over the socket, not through SCRAM over TCP.
        use_unix_socket_repl: true,
        pg_hba: [
          "local all all trust",
          "local replication all trust",
          "host all all 127.0.0.1/32 scram-sha-256",
          "host replication replicator 127.0.0.1/32 scram-sha-256",
        ],
        parameters: {
          unix_socket_directories: node.dir,
          shared_buffers: "32MB",
          fsync: "off",
          synchronous_commit: o.synchronousMode ? "on" : "local",
          ...(o.parameters ?? {}),
        },
      },
      tags: {
        nofailover: false,
        noloadbalance: false,
        clonefrom: false,
        nosync: false,
        ...(o.tags?.[node.name] ?? {}),
      },
    };
  }

  /** Patroni's own view (REST /cluster), from the first member that answers. */
  async restCluster(): Promise<RestMember[]> {
    let lastErr: unknown;
    for (const n of this.nodes) {
      if (!n.running) continue;
      try {
        const r = await n.rest("/cluster");
        if (r.status === 200) return ((r.body as { members?: RestMember[] }).members ?? []) as RestMember[];
      } catch (err) {
        lastErr = err;
      }
    }
    throw new Error(`no member answered /cluster${lastErr instanceof Error ? `: ${lastErr.message}` : ""}`);
  }

  /** Waits for one leader and `replicas` streaming replicas on the leader's timeline; returns the leader's name. */
  async waitReady(opts: { replicas?: number; timeoutMs?: number; leaderNot?: string } = {}): Promise<string> {
    const want = opts.replicas ?? this.nodes.filter((n) => n.running).length - 1;
    let lastView = "";
    const ready = waitFor(
      `a leader and ${want} streaming replica(s)`,
      async () => {
        const members = await this.restCluster();
        lastView = JSON.stringify(members.map((m) => [m.name, m.role, m.state, m.timeline, m.lag]));
        const leader = members.find((m) => m.role === "leader" && m.state === "running");
        if (!leader || leader.name === opts.leaderNot) return null;
        const leaderNode = this.node(leader.name);
        if ((await leaderNode.rest("/primary")).status !== 200) return null;
        const replicas = members.filter(
          (m) =>
            (m.role === "replica" || m.role === "sync_standby" || m.role === "quorum_standby") &&
            (m.state === "streaming" || m.state === "running") &&
            typeof m.lag === "number" &&
            m.timeline === leader.timeline,
        );
        if (replicas.length < want) return null;
        for (const r of replicas) {
          if ((await this.node(r.name).rest("/replica")).status !== 200) return null;
        }
        // Streaming from the leader, not only "running" with a lag from positions in etcd.
        const streaming = streamingFrom((await leaderNode.rest("/patroni")).body);
        if (replicas.filter((r) => streaming?.has(r.name)).length < want) return null;
        return leader.name;
      },
      { timeoutMs: opts.timeoutMs ?? 60_000, intervalMs: 250 },
    );
    try {
      return await ready;
    } catch (err) {
      // Say what the cluster looked like and what each member last logged.
      const logs = this.nodes.map(
        (n) => `--- ${n.name} (${n.running ? "running" : "stopped"}) ---\n${n.tail(12)}`,
      );
      throw new Error(`${(err as Error).message}\nlast /cluster view: ${lastView}\n${logs.join("\n")}`);
    }
  }

  /** The current leader by Patroni's REST API. */
  async leader(): Promise<string | null> {
    const members = await this.restCluster();
    return members.find((m) => m.role === "leader")?.name ?? null;
  }

  /**
   * Waits until a switchover to `candidate` is accepted and loses nothing: on the leader's
   * timeline, within maximum_lag_on_failover of the leader's last position in etcd (else
   * Patroni answers 503 "Switchover failed"), and streaming from the leader. Patroni 3.0 checks
   * only the lag, from positions written to etcd once per loop: a replica that has not
   * connected yet after its basebackup shows lag 0, and promoting it loses what the leader
   * wrote since (agent/stop-plan.ts makes the same check before a stopping leader hands over).
   */
  async waitSwitchoverPossible(candidate: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      `${candidate} within ${MAX_LAG_ON_FAILOVER} bytes of the leader (a switchover to it accepted)`,
      async () => {
        const members = await this.restCluster();
        const leader = members.find((m) => m.role === "leader");
        const c = members.find((m) => m.name === candidate);
        if (leader === undefined || c === undefined || c.timeline !== leader.timeline) return false;
        if (typeof c.lag !== "number" || c.lag > MAX_LAG_ON_FAILOVER) return false;
        const streaming = streamingFrom((await this.node(leader.name).rest("/patroni")).body);
        return streaming?.has(candidate) === true;
      },
      { timeoutMs, intervalMs: 100 },
    );
  }

  /** Planned switchover through the leader's REST API; resolves when Patroni reports it done. */
  async switchover(candidate?: string): Promise<{ from: string; to: string }> {
    const from = await waitFor("a leader", () => this.leader());
    const to = candidate ?? this.nodes.find((n) => n.name !== from && n.running)?.name;
    if (!to) throw new Error("no switchover candidate");
    await this.waitSwitchoverPossible(to);
    const r = await this.node(from).restPost("/switchover", { leader: from, candidate: to });
    if (r.status !== 200) throw new Error(`switchover ${from} -> ${to} failed: ${r.status} ${r.text}`);
    return { from, to };
  }

  async kill9(name: string): Promise<void> {
    await this.node(name).kill9();
  }

  /** Runs patronictl with this cluster's config. */
  async patronictl(...args: string[]): Promise<string> {
    const n = this.nodes[0]!;
    const r = await run(PATRONICTL_BIN, ["-c", n.configFile, ...args], { timeoutMs: 30_000 });
    return r.stdout;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.kill9()));
    if (this.ownsEtcd) await this.etcd.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
