/**
 * The documented multi-host mode (README "Multi-host mode", docker-compose.multihost.yml) on
 * three Docker hosts of our own (docker-hosts.ts), set up as an operator sets up real hosts:
 *
 *  - on host A, `./pgha certs --ip A --ip B --ip C` into PGHA_TLS_DIR, then the directory
 *    copied to B and C without the CA's key (`tar --exclude ./ca.key --numeric-owner`);
 *  - on every host a checkout (the two compose files) with the same `.env`;
 *  - on host N, with DOCKER_HOST at its engine and HOST_IP its address:
 *    `docker-compose -f docker-compose.yml -f docker-compose.multihost.yml up -d --no-deps
 *     etcdN registrator router-ports router pgN`.
 *
 * PGHA_TLS_DIR is /run/pgha/tls on every host (each host's own /run, see docker-hosts.ts).
 * Clients reach the three routers on the hosts' IPs, port 5432.
 */
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dockerSocketGidOf, imageOf, REPO_ROOT, randomSecret, uniquePrefix } from "./docker.js";
import { type DockerHost, DockerHosts } from "./docker-hosts.js";
import { run, waitFor } from "./proc.js";

export const HOLDER_IMAGE = process.env["PGHA_HOLDER_IMAGE"] ?? "debian:trixie-slim";
export const ROUTER_PORT = 5432;
/** Where every host keeps the stack's certificates (its own /run/pgha/tls). */
const TLS_DIR = "/run/pgha/tls";
const COMPOSE = ["-f", "docker-compose.yml", "-f", "docker-compose.multihost.yml"];

export interface Member {
  readonly name: string;
  readonly role: string;
  readonly state: string;
  readonly host?: string;
  readonly timeline?: number;
  readonly lag?: number | string;
}

export class ManyHostsCluster {
  private constructor(
    readonly dh: DockerHosts,
    readonly project: string,
    readonly settings: Readonly<Record<string, string>>,
  ) {}

  get hosts(): readonly DockerHost[] {
    return this.dh.hosts;
  }
  get password(): string {
    return this.settings["POSTGRES_PASSWORD"]!;
  }
  /** The agent service (pg1…pg3) that runs on host `h`. */
  agentOf(h: DockerHost): string {
    return `pg${h.index + 1}`;
  }
  hostOfAgent(agent: string): DockerHost {
    const h = this.hosts[Number(agent.replace(/^pg/, "")) - 1];
    if (!h) throw new Error(`no host runs ${agent}`);
    return h;
  }

  /**
   * One libpq URL naming the three routers, the primary wherever it is:
   * `postgresql://admin@A:5432,B:5432,C:5432/postgres?target_session_attrs=read-write`.
   */
  url(query = ""): string {
    const hosts = this.hosts.map((h) => `${h.ip}:${ROUTER_PORT}`).join(",");
    return `postgresql://admin@${hosts}/postgres?target_session_attrs=read-write${query ? `&${query}` : ""}`;
  }

  /** Starts three hosts and the stack on them, as documented; resolves once it is healthy. */
  static async create(opts: { env?: Record<string, string> } = {}): Promise<ManyHostsCluster> {
    const images = ["agent", "etcd", "registrator", "router"].map((n) => imageOf(n as "agent"));
    const dh = await DockerHosts.create({ images: [...images, HOLDER_IMAGE], label: "many" });
    try {
      const project = uniquePrefix("many").slice(0, -1);
      const [a, b, c] = dh.hosts as [DockerHost, DockerHost, DockerHost];
      const settings: Record<string, string> = {
        COMPOSE_PROJECT_NAME: project,
        PATRONI_SCOPE: project,
        POSTGRES_USERNAME: "admin",
        POSTGRES_PASSWORD: randomSecret(),
        REPLICATION_PASSWORD: randomSecret(),
        SUPERUSER_PASSWORD: randomSecret(),
        RESTAPI_PASSWORD: randomSecret(),
        DOCKER_GID: await dockerSocketGidOf(join(a.dir, "run", "docker.sock")),
        ETCD1_IP: a.ip,
        ETCD2_IP: b.ip,
        ETCD3_IP: c.ip,
        PGHA_TLS_DIR: TLS_DIR,
        // As the other e2e stacks: fast failure detection (Patroni 4 takes no ttl under 20).
        PATRONI_TTL: "20",
        PATRONI_LOOP_WAIT: "2",
        PATRONI_RETRY_TIMEOUT: "4",
        PGHA_AGENT_IMAGE: images[0]!,
        PGHA_ETCD_IMAGE: images[1]!,
        PGHA_REGISTRATOR_IMAGE: images[2]!,
        PGHA_ROUTER_IMAGE: images[3]!,
        PGHA_HOLDER_IMAGE: HOLDER_IMAGE,
        ...(opts.env ?? {}),
      };
      const cluster = new ManyHostsCluster(dh, project, Object.freeze(settings));
      await cluster.makeCertificates();
      for (const h of dh.hosts) cluster.checkout(h);
      await Promise.all(dh.hosts.map((h) => cluster.up(h)));
      await cluster.waitHealthy();
      return cluster;
    } catch (err) {
      await dh.destroy();
      throw err;
    }
  }

  /** The certificates, made once on host A for every host's IP, copied to B and C without the CA's key. */
  private async makeCertificates(): Promise<void> {
    const [a, ...others] = this.hosts as [DockerHost, ...DockerHost[]];
    const tlsOf = (h: DockerHost) => join(h.dir, "run", "pgha", "tls");
    await run(join(REPO_ROOT, "pgha"), ["certs", ...this.hosts.flatMap((h) => ["--ip", h.ip])], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env["PATH"],
        HOME: process.env["HOME"],
        PGHA_TLS_DIR: tlsOf(a),
        COMPOSE_PROJECT_NAME: this.project,
      },
      timeoutMs: 60_000,
    });
    for (const h of others) {
      mkdirSync(tlsOf(h), { recursive: true });
      await run("bash", [
        "-o",
        "pipefail",
        "-c",
        'tar -C "$1" --exclude ./ca.key --numeric-owner -cf - . | tar -C "$2" -xpf -',
        "copy",
        tlsOf(a),
        tlsOf(h),
      ]);
    }
  }

  /** A host's checkout: the two compose files and the shared .env. */
  private checkout(h: DockerHost): void {
    const dir = join(h.dir, "pgha");
    mkdirSync(dir, { recursive: true });
    for (const f of ["docker-compose.yml", "docker-compose.multihost.yml"]) {
      copyFileSync(join(REPO_ROOT, f), join(dir, f));
    }
    writeFileSync(
      join(dir, ".env"),
      Object.entries(this.settings)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(""),
      { mode: 0o600 },
    );
  }

  /** docker-compose (the documented v1 CLI) in host h's checkout, at its engine, with its HOST_IP. */
  async compose(h: DockerHost, args: readonly string[], timeoutMs = 5 * 60_000): Promise<string> {
    const r = await run("docker-compose", [...COMPOSE, ...args], {
      cwd: join(h.dir, "pgha"),
      env: { ...this.dh.env(h), HOST_IP: h.ip },
      timeoutMs,
    });
    return r.stdout.trim();
  }

  /** The documented command for host N: its etcd member, registrator, router and agent. */
  up(h: DockerHost): Promise<string> {
    const n = h.index + 1;
    return this.compose(h, [
      "up",
      "-d",
      "--no-deps",
      `etcd${n}`,
      "registrator",
      "router-ports",
      "router",
      `pg${n}`,
    ]);
  }

  /** `docker exec` in host h's agent container. */
  async execAgent(h: DockerHost, cmd: readonly string[], timeoutMs = 30_000): Promise<string> {
    return this.dh.docker(h, ["exec", `${this.project}-${this.agentOf(h)}`, ...cmd], timeoutMs);
  }

  /** etcdctl in the etcd container of the first running host, against every member. */
  private async etcdctl(args: readonly string[]): Promise<string> {
    const h = this.hosts.find((x) => this.dh.running(x));
    if (!h) throw new Error("no host runs");
    const name = await this.containerOf(h, "etcd");
    if (!name) throw new Error(`no etcd container runs on ${h.name}`);
    const endpoints = this.hosts
      .filter((x) => this.dh.running(x))
      .map((x) => `https://${x.ip}:2379`)
      .join(",");
    return this.dh.docker(h, ["exec", name, "etcdctl", `--endpoints=${endpoints}`, ...args]);
  }

  /** Each running member's host, id (hex), whether it leads etcd, its raft term and its raft index. */
  async etcdMembers(): Promise<
    { host: DockerHost; id: string; leads: boolean; term: number; index: number }[]
  > {
    // `-w simple`: endpoint, ID, version, DB size, is leader, is learner, term, index, applied, errors.
    const out = await this.etcdctl(["endpoint", "status", "-w", "simple"]);
    return out
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split(", "))
      .map(([endpoint = "", id = "", , , leads = "", , term = "", index = ""]) => ({
        host: this.hosts.find((x) => endpoint.includes(`//${x.ip}:`))!,
        id,
        leads: leads === "true",
        term: Number(term),
        index: Number(index),
      }));
  }

  /**
   * Whether etcd is whole: every host's member answers, one of them leads, and the others are
   * on its term and no more than a few entries behind it. A member on a host whose cut-off has
   * just healed could stay behind for tens of seconds (its peer connections waiting out TCP's
   * retransmission back-off); until it is back, losing one more host loses etcd's quorum.
   * `seen`: each member as `host leader|follower term T index I`.
   */
  async etcdState(): Promise<{ whole: boolean; seen: string }> {
    if (!this.hosts.every((h) => this.dh.running(h))) return { whole: false, seen: "a host is down" };
    const members = await this.etcdMembers();
    const leader = members.find((m) => m.leads);
    const seen = members
      .map((m) => `${m.host?.name ?? "?"} ${m.leads ? "leader" : "follower"} term ${m.term} index ${m.index}`)
      .join(", ");
    const whole =
      members.length === this.hosts.length &&
      leader !== undefined &&
      members.every((m) => m.term === leader.term && leader.index - m.index <= 10);
    return { whole, seen };
  }

  /** The host whose etcd member leads etcd, or null. */
  async etcdLeaderHost(): Promise<DockerHost | null> {
    return (await this.etcdMembers()).find((m) => m.leads)?.host ?? null;
  }

  /**
   * Makes the member on host `h` lead etcd (etcdctl move-leader). On a loaded machine etcd
   * may give up a transfer ("leader transfer took too long"), or one the agent started runs:
   * tried up to three times, reading the members again before each.
   */
  async moveEtcdLeader(h: DockerHost): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const m = (await this.etcdMembers()).find((x) => x.host === h);
      if (!m) throw new Error(`no etcd member answered on ${h.name}`);
      if (m.leads) return;
      try {
        await this.etcdctl(["move-leader", m.id]);
        return;
      } catch (err) {
        if (attempt >= 3) throw err;
        console.log(
          `[many-hosts] move-leader to ${h.name} failed (attempt ${attempt}), again: ${(err as Error).message.split("\n").at(-1)}`,
        );
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  /** A planned switchover from `leader` to `candidate`, as an operator types it on the leader's host. */
  async switchover(leader: string, candidate: string): Promise<string> {
    return this.execAgent(
      this.hostOfAgent(leader),
      ["patronictl", "switchover", "--leader", leader, "--candidate", candidate, "--force"],
      90_000,
    );
  }

  /** The first container on host h whose name contains `part` (not the router's port holder). */
  private async containerOf(h: DockerHost, part: string): Promise<string | undefined> {
    return (await this.dh.docker(h, ["ps", "-a", "--filter", `name=${part}`, "--format", "{{.Names}}"]))
      .split("\n")
      .find((n) => n !== "" && !n.includes("router-ports"));
  }

  /** The last `lines` lines of a container's log on host h, stdout and stderr. */
  private async containerLog(h: DockerHost, name: string, lines: number): Promise<string> {
    const r = await run("docker", ["-H", h.dockerHost, "logs", "--tail", String(lines), name], {
      timeoutMs: 30_000,
    });
    return `${r.stdout}\n${r.stderr}`;
  }

  /** The last `lines` lines of host h's agent's log (the agent's and Patroni's: both write to stderr too). */
  agentLog(h: DockerHost, lines = 300): Promise<string> {
    return this.containerLog(h, `${this.project}-${this.agentOf(h)}`, lines);
  }

  /** The last `lines` lines of host h's etcd member's log. */
  async etcdLog(h: DockerHost, lines = 300): Promise<string> {
    const name = await this.containerOf(h, "etcd");
    return name ? this.containerLog(h, name, lines) : "";
  }

  /** The last `lines` lines of host h's router's log. */
  async routerLog(h: DockerHost, lines = 400): Promise<string> {
    const name = await this.containerOf(h, "router");
    return name ? this.containerLog(h, name, lines) : "";
  }

  /** Patroni's GET /cluster as host h's agent answers it. */
  async membersFrom(h: DockerHost): Promise<Member[]> {
    const out = await this.execAgent(h, [
      "curl",
      "-sS",
      "--max-time",
      "5",
      "--cacert",
      "/etc/pgha/tls/ca.crt",
      "https://127.0.0.1:8008/cluster",
    ]);
    return (JSON.parse(out) as { members: Member[] }).members;
  }

  /** Patroni's view from the first host (of `from`, all by default) whose agent answers. */
  async members(from: readonly DockerHost[] = this.hosts): Promise<Member[]> {
    let last: unknown;
    for (const h of from) {
      if (!this.dh.running(h)) continue;
      try {
        return await this.membersFrom(h);
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`no agent answered /cluster: ${(last as Error)?.message}`);
  }

  /** The running leader's agent as seen from `from`, or null. */
  async leader(from: readonly DockerHost[] = this.hosts): Promise<string | null> {
    const m = (await this.members(from)).find((x) => x.role === "leader" && x.state === "running");
    return m?.name ?? null;
  }

  /** Patroni's timeline history: [timeline, switch LSN, reason, time, new leader] per promotion. */
  async history(
    from: readonly DockerHost[] = this.hosts,
  ): Promise<[number, number, string, string, string][]> {
    for (const h of from) {
      if (!this.dh.running(h)) continue;
      try {
        return JSON.parse(
          await this.execAgent(h, [
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            "/etc/pgha/tls/ca.crt",
            "https://127.0.0.1:8008/history",
          ]),
        ) as [number, number, string, string, string][];
      } catch {}
    }
    throw new Error("no agent answered /history");
  }

  /**
   * Waits for the whole cluster: a running leader and two replicas streaming on its timeline
   * (one synchronous), as every host's agent sees it (all three views alike), and every host's
   * router ready on its admin port.
   *
   * One agent's view is not enough: an old leader that was cut off keeps answering /cluster
   * from its last view while its demotion runs (PostgreSQL's fast shutdown waits up to
   * wal_sender_timeout, 60 s, for walsenders whose replicas it cannot reach), so after a heal
   * it can still report itself leading while the others elected and promoted someone else.
   */
  async waitHealthy(
    timeoutMs = 300_000,
  ): Promise<{ leader: string; members: Member[]; etcdWaitMs: number; etcdSeen: string }> {
    let last: Member[] = [];
    try {
      const got = await waitFor(
        "a leader and two streaming replicas on its timeline, alike in every host's view",
        async () => {
          const views = await Promise.all(this.hosts.map((h) => this.membersFrom(h).catch(() => null)));
          if (views.some((v) => v === null)) return null;
          const shape = (v: Member[]) =>
            JSON.stringify(v.map((m) => [m.name, m.role, m.state, m.timeline ?? null]).sort());
          last = views[0]!;
          if (new Set(views.map((v) => shape(v!))).size !== 1) return null;
          const l = last.find((m) => m.role === "leader" && m.state === "running");
          if (!l) return null;
          const replicas = last.filter(
            (m) => m.name !== l.name && m.state === "streaming" && m.timeline === l.timeline,
          );
          if (
            replicas.length !== 2 ||
            !replicas.some((m) => m.role === "sync_standby" || m.role === "quorum_standby")
          )
            return null;
          return { leader: l.name, members: last };
        },
        { timeoutMs, intervalMs: 1000 },
      );
      const t0 = Date.now();
      let etcdSeen = "";
      await waitFor(
        "every host's etcd member caught up with etcd's leader",
        async () => {
          const state = await this.etcdState().catch((err: Error) => ({
            whole: false,
            seen: err.message.split("\n").slice(-2).join(" "),
          }));
          if (!state.whole) etcdSeen = state.seen;
          return state.whole;
        },
        { timeoutMs, intervalMs: 1000 },
      );
      const etcdWaitMs = Date.now() - t0;
      for (const h of this.hosts) {
        await waitFor(
          `${h.name}'s router to be ready`,
          async () => {
            const out = await this.dh.lab
              .exec(h, "curl", [
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
                "http://127.0.0.1:8080/readyz",
              ])
              .then((r) => r.stdout.trim())
              .catch(() => "");
            return out === "200";
          },
          { timeoutMs: 60_000, intervalMs: 500 },
        );
      }
      return { ...got, etcdWaitMs, etcdSeen };
    } catch (err) {
      (err as Error).message += `\nlast /cluster: ${JSON.stringify(last)}\n${await this.diagnostics()}`;
      throw err;
    }
  }

  /** The last lines of every service's log on every running host. */
  async diagnostics(lines = 15): Promise<string> {
    const parts: string[] = [];
    for (const h of this.hosts) {
      if (!this.dh.running(h)) {
        parts.push(`=== ${h.name}: down`);
        continue;
      }
      const names = (
        await this.dh.docker(h, ["ps", "-a", "--format", "{{.Names}} {{.Status}}"]).catch(() => "")
      )
        .split("\n")
        .filter(Boolean);
      parts.push(`=== ${h.name} (${h.ip}): ${names.join("; ")}`);
      for (const n of names.map((x) => x.split(" ")[0]!)) {
        const r = await run("docker", ["-H", h.dockerHost, "logs", "--tail", String(lines), n], {
          timeoutMs: 10_000,
        }).catch(() => null);
        if (r) parts.push(`--- ${h.name} ${n}\n${r.stdout}${r.stderr}`);
      }
    }
    return parts.join("\n");
  }

  async destroy(): Promise<void> {
    await this.dh.destroy();
  }
}
