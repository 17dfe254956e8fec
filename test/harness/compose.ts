/**
 * The repository's docker-compose.yml as a test fixture: one compose project
 * per test file (unique name, its own env file with random passwords and free
 * host ports), brought up with the real images and torn down with its volumes.
 *
 *   const stack = await ComposeStack.up("restops");
 *   await stack.waitReady();                 // a leader, two streaming replicas, the router ready
 *   await stack.destroy();                   // always, in after()
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  docker,
  dockerExec,
  dockerSocketGid,
  imageOf,
  logsTail,
  REPO_ROOT,
  randomSecret,
  uniquePrefix,
} from "./docker.js";
import { freePort } from "./ports.js";
import { run, waitFor } from "./proc.js";

export interface StackOptions {
  /** Compose profiles to enable (e.g. monitoring). */
  readonly profiles?: readonly string[];
  /** Compose files layered on docker-compose.yml (e.g. docker-compose.multihost.yml). */
  readonly overrides?: readonly string[];
  /** Services to start (all by default). */
  readonly services?: readonly string[];
  /** Start only those services, not what they depend on (as the multi-host steps do). */
  readonly noDeps?: boolean;
  /** Extra settings for the env file (they win over the defaults). */
  readonly env?: Readonly<Record<string, string>>;
  /** The Compose CLI: v2 (`docker compose`) or v1 (Debian's `docker-compose` 1.29). The stack must work with both. */
  readonly cli: ComposeCli;
}

export type ComposeCli = "v1" | "v2";

/** A member as Patroni's REST /cluster reports it. */
export interface ClusterMember {
  readonly name: string;
  readonly role: string;
  readonly state: string;
  readonly timeline?: number;
  readonly lag?: number | string;
}

export const AGENTS = ["pg1", "pg2", "pg3"] as const;
/**
 * A synchronous replica's role in Patroni's GET /cluster: `sync_standby`, or `quorum_standby` with
 * Patroni 4's `synchronous_mode: quorum`.
 */
export const SYNC_ROLES: readonly string[] = ["sync_standby", "quorum_standby"];
export const REPLICA_ROLES: readonly string[] = ["replica", ...SYNC_ROLES];
export const ETCD_MEMBERS = ["etcd1", "etcd2", "etcd3"] as const;
/** Patroni's REST API inside an agent container, and curl's arguments to check it with the stack's CA. */
export const IN_AGENT_REST = "https://127.0.0.1:8008";
export const IN_AGENT_CA = ["--cacert", "/etc/pgha/tls/ca.crt"] as const;
export type Agent = (typeof AGENTS)[number];

export class ComposeStack {
  private constructor(
    readonly project: string,
    private readonly dir: string,
    readonly envFile: string,
    readonly settings: Readonly<Record<string, string>>,
    readonly profiles: readonly string[],
    readonly files: readonly string[],
    readonly cli: ComposeCli,
  ) {}

  static async up(what: string, opts: StackOptions): Promise<ComposeStack> {
    const project = uniquePrefix(`e2e-${what}`).slice(0, -1);
    const dir = mkdtempSync(join(tmpdir(), `${project}-`));
    const settings: Record<string, string> = {
      COMPOSE_PROJECT_NAME: project,
      PATRONI_SCOPE: project,
      POSTGRES_USERNAME: "admin",
      POSTGRES_PASSWORD: randomSecret(),
      REPLICATION_PASSWORD: randomSecret(),
      SUPERUSER_PASSWORD: randomSecret(),
      RESTAPI_PASSWORD: randomSecret(),
      PGHA_BIND: "127.0.0.1",
      PGHA_PORT: String(await freePort()),
      PGHA_REPLICA_PORT: String(await freePort()),
      PGHA_ADMIN_PORT: String(await freePort()),
      PGHA_PROMETHEUS_PORT: String(await freePort()),
      PGHA_ALERTMANAGER_PORT: String(await freePort()),
      DOCKER_GID: await dockerSocketGid(),
      // Fast failure detection for tests (ttl >= loop_wait + 2 x retry_timeout; Patroni 4 takes no ttl under 20).
      PATRONI_TTL: "20",
      PATRONI_LOOP_WAIT: "2",
      PATRONI_RETRY_TIMEOUT: "4",
      PGHA_AGENT_IMAGE: imageOf("agent"),
      PGHA_ETCD_IMAGE: imageOf("etcd"),
      PGHA_REGISTRATOR_IMAGE: imageOf("registrator"),
      PGHA_ROUTER_IMAGE: imageOf("router"),
      PGHA_PROMETHEUS_IMAGE: imageOf("prometheus"),
      PGHA_ALERTMANAGER_IMAGE: imageOf("alertmanager"),
      ...(opts.env ?? {}),
    };
    // The stack's private CA and certificates, as ./pgha up makes them (scripts/certs.sh), naming
    // the hosts' addresses of a multi-host layout too.
    settings["PGHA_TLS_DIR"] = join(dir, "tls");
    const ips = [
      ...new Set(["HOST_IP", "ETCD1_IP", "ETCD2_IP", "ETCD3_IP"].flatMap((k) => settings[k] ?? [])),
    ];
    await run(join(REPO_ROOT, "scripts", "certs.sh"), [], {
      cwd: REPO_ROOT,
      env: {
        PATH: process.env["PATH"],
        PGHA_TLS_DIR: settings["PGHA_TLS_DIR"],
        COMPOSE_PROJECT_NAME: project,
        PGHA_TLS_IPS: ips.join(","),
      },
      timeoutMs: 30_000,
    });
    const envFile = join(dir, "stack.env");
    writeFileSync(
      envFile,
      Object.entries(settings)
        .map(([k, v]) => `${k}=${v}\n`)
        .join(""),
      { mode: 0o600 },
    );
    const files = ["docker-compose.yml", ...(opts.overrides ?? [])];
    const stack = new ComposeStack(
      project,
      dir,
      envFile,
      Object.freeze(settings),
      opts.profiles ?? [],
      files,
      opts.cli,
    );
    try {
      // The CLI asked for is the one that runs (scripts/compose.sh picks by PGHA_COMPOSE).
      const version = await stack.compose(["version", "--short"]);
      if (!version.startsWith(opts.cli === "v2" ? "2." : "1.")) {
        throw new Error(`Compose ${opts.cli} was asked for, but ${version} runs`);
      }
      await stack.compose(
        ["up", "-d", "--no-build", ...(opts.noDeps ? ["--no-deps"] : []), ...(opts.services ?? [])],
        5 * 60_000,
      );
    } catch (err) {
      await stack.destroy();
      throw err;
    }
    return stack;
  }

  /** The compose file turns synchronous mode on (true, or quorum) unless the env file says otherwise. */
  get synchronous(): boolean {
    return (this.settings["PATRONI_SYNCHRONOUS_MODE"] ?? "true") !== "false";
  }
  get password(): string {
    return this.settings["POSTGRES_PASSWORD"]!;
  }
  get restAuth(): string {
    return `patroni:${this.settings["RESTAPI_PASSWORD"]}`;
  }
  get routerPort(): number {
    return Number(this.settings["PGHA_PORT"]);
  }
  get replicaPort(): number {
    return Number(this.settings["PGHA_REPLICA_PORT"]);
  }
  get adminUrl(): string {
    return `http://127.0.0.1:${this.settings["PGHA_ADMIN_PORT"]}`;
  }
  get prometheusUrl(): string {
    return `http://127.0.0.1:${this.settings["PGHA_PROMETHEUS_PORT"]}`;
  }
  get alertmanagerUrl(): string {
    return `http://127.0.0.1:${this.settings["PGHA_ALERTMANAGER_PORT"]}`;
  }

  /** node-postgres settings for the router's primary port. */
  pg(port = this.routerPort): {
    host: string;
    port: number;
    user: string;
    password: string;
    database: string;
  } {
    return { host: "127.0.0.1", port, user: "admin", password: this.password, database: "postgres" };
  }

  /** Runs the compose CLI (`cli`: v2 or 1.29) on this project, with nothing of the caller's environment but PATH and HOME. */
  async compose(args: readonly string[], timeoutMs = 120_000): Promise<string> {
    const profileArgs = this.profiles.flatMap((p) => ["--profile", p]);
    const fileArgs = this.files.flatMap((f) => ["-f", f]);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env["PATH"],
      HOME: process.env["HOME"],
      PGHA_COMPOSE: this.cli,
    };
    if (process.env["DOCKER_HOST"]) env["DOCKER_HOST"] = process.env["DOCKER_HOST"];
    const r = await run(
      join(REPO_ROOT, "scripts", "compose.sh"),
      ["--env-file", this.envFile, "-p", this.project, ...fileArgs, ...profileArgs, ...args],
      { cwd: REPO_ROOT, env, timeoutMs },
    );
    return r.stdout.trim();
  }

  /** The container of a service: agents have fixed names, others compose's. */
  async container(service: string): Promise<string> {
    if ((AGENTS as readonly string[]).includes(service)) return `${this.project}-${service}`;
    const id = await docker([
      "ps",
      "-aq",
      "--filter",
      `label=com.docker.compose.project=${this.project}`,
      "--filter",
      `label=com.docker.compose.service=${service}`,
    ]);
    if (!id) throw new Error(`no container for service ${service} in ${this.project}`);
    return id.split("\n")[0]!;
  }

  async exec(service: string, cmd: readonly string[], timeoutMs = 60_000): Promise<string> {
    return dockerExec(await this.container(service), cmd, { timeoutMs });
  }

  /** TLS files for a test's own etcd client on the host (the agents' client certificate; tests run as root). */
  get etcdTls(): { caFile: string; certFile: string; keyFile: string } {
    const d = join(this.settings["PGHA_TLS_DIR"]!, "agent");
    return { caFile: join(d, "ca.crt"), certFile: join(d, "tls.crt"), keyFile: join(d, "tls.key") };
  }

  /** The stack's CA certificate on the host (scripts/certs.sh). */
  get caFile(): string {
    return join(this.settings["PGHA_TLS_DIR"]!, "ca.crt");
  }

  /** GET a Patroni REST path inside an agent container (the REST API is not published), over https. */
  async rest<T = unknown>(agent: Agent, path: string): Promise<T> {
    return JSON.parse(
      await this.exec(agent, ["curl", "-sS", "--max-time", "5", ...IN_AGENT_CA, `${IN_AGENT_REST}${path}`]),
    ) as T;
  }

  /** POST to a Patroni REST path with the REST credentials; returns status and body. */
  async restPost(
    agent: Agent,
    path: string,
    body: unknown,
    auth: string | null = this.restAuth,
  ): Promise<{ status: number; text: string }> {
    const out = await this.exec(
      agent,
      [
        "curl",
        "-sS",
        "--max-time",
        "60",
        "-w",
        "\n%{http_code}",
        ...(auth === null ? [] : ["-u", auth]),
        "-H",
        "content-type: application/json",
        "-XPOST",
        "-d",
        JSON.stringify(body),
        ...IN_AGENT_CA,
        `${IN_AGENT_REST}${path}`,
      ],
      90_000,
    );
    const lines = out.split("\n");
    const status = Number(lines.pop());
    return { status, text: lines.join("\n").trim() };
  }

  /** Patroni's view of the cluster, from the first agent that answers. */
  async members(): Promise<ClusterMember[]> {
    let last: unknown;
    for (const a of AGENTS) {
      try {
        return (await this.rest<{ members: ClusterMember[] }>(a, "/cluster")).members;
      } catch (err) {
        last = err;
      }
    }
    throw new Error(`no agent answered /cluster: ${(last as Error)?.message}`);
  }

  /** The etcd member that leads the raft group now (etcdctl in each member until one answers). */
  async etcdLeader(): Promise<string> {
    const endpoints = ETCD_MEMBERS.map((m) => `https://${m}:2379`).join(",");
    for (const m of ETCD_MEMBERS) {
      try {
        const out = await this.exec(m, [
          "etcdctl",
          `--endpoints=${endpoints}`,
          "endpoint",
          "status",
          "-w",
          "json",
        ]);
        const rows = JSON.parse(out) as {
          Endpoint: string;
          Status: { header: { member_id: number }; leader: number };
        }[];
        const leader = rows.find((r) => r.Status.header.member_id === r.Status.leader);
        const name = /https?:\/\/(etcd\d):/.exec(leader?.Endpoint ?? "")?.[1];
        if (name) return name;
      } catch {}
    }
    throw new Error("no etcd member leads");
  }

  async leader(): Promise<Agent | null> {
    const m = (await this.members()).find((x) => x.role === "leader" && x.state === "running");
    return (m?.name as Agent | undefined) ?? null;
  }

  /**
   * Waits for a running leader, `replicas` running replicas on its timeline (one
   * of them the synchronous standby when the stack runs in synchronous mode),
   * and the router's /readyz.
   */
  async waitReady(opts: { replicas?: number; timeoutMs?: number } = {}): Promise<Agent> {
    const want = opts.replicas ?? AGENTS.length - 1;
    try {
      const leader = await waitFor(
        `a leader and ${want} streaming replicas`,
        async () => {
          const members = await this.members();
          const l = members.find((m) => m.role === "leader" && m.state === "running");
          if (!l) return null;
          const replicas = members.filter(
            (m) =>
              REPLICA_ROLES.includes(m.role) &&
              (m.state === "running" || m.state === "streaming") &&
              typeof m.lag === "number" &&
              m.timeline === l.timeline,
          );
          if (this.synchronous && want > 0 && !replicas.some((m) => SYNC_ROLES.includes(m.role))) return null;
          return replicas.length >= want ? (l.name as Agent) : null;
        },
        { timeoutMs: opts.timeoutMs ?? 240_000, intervalMs: 1000 },
      );
      await waitFor(
        "the router to be ready",
        async () =>
          (await fetch(`${this.adminUrl}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200,
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      return leader;
    } catch (err) {
      (err as Error).message += `\n${await this.diagnostics()}`;
      throw err;
    }
  }

  /** IP of an agent on the stack's network (where the router reaches it in -internal mode). */
  async ipOf(agent: Agent): Promise<string> {
    return docker([
      "inspect",
      "-f",
      "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
      `${this.project}-${agent}`,
    ]);
  }

  async diagnostics(lines = 25): Promise<string> {
    const services = [...ETCD_MEMBERS, "registrator", "router", ...AGENTS];
    const parts: string[] = [];
    for (const s of services) {
      try {
        parts.push(await logsTail(await this.container(s), lines));
      } catch (err) {
        parts.push(`--- ${s}: ${(err as Error).message}`);
      }
    }
    // Every decision an agent logged about stopping, the fence and promotions, whenever it was.
    for (const a of AGENTS) {
      const all = await run("docker", ["logs", `${this.project}-${a}`], { timeoutMs: 30_000 }).catch(
        () => null,
      );
      const text = all ? all.stdout + all.stderr : "";
      const decisions = text
        .split("\n")
        .filter((l) =>
          /stop plan|fence|promotion|switchover|without a handover|pre_promote|acquired session lock|promoted self/.test(
            l,
          ),
        );
      parts.push(`--- ${a}: decisions ---\n${decisions.join("\n")}`);
    }
    return parts.join("\n");
  }

  /** compose down with volumes; then anything left with the project's label. */
  async destroy(): Promise<void> {
    await this.compose(["down", "--volumes", "--remove-orphans", "--timeout", "5"], 180_000).catch(
      () => undefined,
    );
    const filter = `label=com.docker.compose.project=${this.project}`;
    const ids = (await docker(["ps", "-aq", "--filter", filter]).catch(() => "")).split("\n").filter(Boolean);
    if (ids.length > 0) await docker(["rm", "-f", "-v", ...ids]).catch(() => undefined);
    for (const kind of ["network", "volume"]) {
      const left = (await docker([kind, "ls", "-q", "--filter", filter]).catch(() => ""))
        .split("\n")
        .filter(Boolean);
      for (const x of left) await docker([kind, "rm", x]).catch(() => undefined);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
