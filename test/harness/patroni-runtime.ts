/**
 * Where a harness member's Patroni runs, with the same rendered patroni.yml either way:
 *
 * - `HostRuntime` (the default, and the integration tests'): a process on this host, Debian
 *   12's Patroni 3.0.2 and PostgreSQL 15, started as the postgres user when we are root;
 * - `ContainerRuntime`: a container of the agent image (Patroni 4 and PostgreSQL 17, what the
 *   images ship) on the host network, its entrypoint replaced by tini running the image's
 *   Patroni launcher on the member's config. The cluster's directory is bind-mounted at the
 *   same path, so the config's data_dir, pgpass and socket directory stay as rendered and
 *   only bin_dir changes; the ports are the same loopback ports, and etcd stays the host's.
 *
 * A member's operations map onto each: stop is SIGTERM to Patroni (`docker stop -t 60`);
 * kill -9 of Patroni and the postmaster is `docker kill -s KILL`, which kills every process
 * of the container at once.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { docker, imageOf, TEST_LABEL, uniquePrefix } from "./docker.js";
import { type Spawned, startProcess, stopProcess } from "./proc.js";

/** What a runtime needs to know of a member. */
export interface RuntimeMember {
  readonly name: string;
  /** The member's directory: config, data, sockets, log. */
  readonly dir: string;
  readonly configFile: string;
  readonly dataDir: string;
  /** The cluster's directory, which holds every member's. */
  readonly clusterDir: string;
  /** What starts Patroni on this host (the agent's launcher copied into the cluster, or PATRONI_BIN). */
  readonly hostPatroniBin: string;
}

export type RuntimeKind = "host" | "container";

export interface PatroniRuntime {
  readonly kind: RuntimeKind;
  /** PostgreSQL's binaries where Patroni runs (the config's bin_dir). */
  readonly binDir: string;
  /** The account that must own the members' directories, or null to leave them as created. */
  readonly owner: { readonly uid: number; readonly gid: number } | null;
  /** One line for reports: what runs the members. */
  describe(): string;
  start(m: RuntimeMember): Spawned;
  /** SIGTERM: Patroni stops PostgreSQL (and releases the leader key if it holds it). */
  stop(m: RuntimeMember, p: Spawned): Promise<void>;
  /** kill -9 of Patroni, the postmaster and every backend. */
  kill9(m: RuntimeMember, p: Spawned | null): Promise<void>;
}

const asRoot = typeof process.getuid === "function" && process.getuid() === 0;

export const HOST_PG_BIN_DIR = process.env.PG_BIN_DIR ?? "/usr/lib/postgresql/15/bin";

/** Patroni as a process of this host, as the integration tests run it. */
export class HostRuntime implements PatroniRuntime {
  readonly kind = "host";
  readonly binDir = HOST_PG_BIN_DIR;
  readonly owner = asRoot ? { uid: idOf("passwd", "postgres"), gid: idOf("group", "postgres") } : null;

  describe(): string {
    return "processes on this host";
  }

  start(m: RuntimeMember): Spawned {
    const env = { ...process.env, HOME: m.dir, PATH: `${this.binDir}:${process.env.PATH ?? ""}` };
    const [cmd, args] = asRoot
      ? ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", m.hostPatroniBin, m.configFile]]
      : [m.hostPatroniBin, [m.configFile]];
    return startProcess(cmd, args, { logFile: join(m.dir, "patroni.log"), env, cwd: m.dir });
  }

  async stop(_m: RuntimeMember, p: Spawned): Promise<void> {
    await stopProcess(p, "SIGTERM", 60_000);
  }

  async kill9(m: RuntimeMember, p: Spawned | null): Promise<void> {
    const postmaster = postmasterPid(m.dataDir);
    if (p) await stopProcess(p, "SIGKILL");
    if (postmaster !== null) {
      try {
        process.kill(postmaster, "SIGKILL");
      } catch {}
    }
  }
}

/** The postmaster's pid from its pid file (in the PID namespace it runs in), or null. */
export function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, "postmaster.pid"), "utf8").split("\n")[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** The agent image's Patroni launcher and init, as its Dockerfile installs them. */
export const IMAGE_PATRONI = "/usr/local/bin/pgha-patroni";
export const IMAGE_TINI = "/usr/bin/tini";

export interface ContainerArgs {
  readonly image: string;
  readonly container: string;
  /** The value of the harness's `pgha.test` label, for removeLabelled(). */
  readonly label: string;
  readonly user: { readonly uid: number; readonly gid: number };
  readonly clusterDir: string;
  readonly memberDir: string;
  readonly configFile: string;
}

/**
 * Pure: `docker run …` for one member: in the foreground (the client lives as long as the
 * container, so the harness waits for it as for a process), on the host network, as the
 * image's postgres account, with the cluster's directory at the same path.
 */
export function containerRunArgs(a: ContainerArgs): string[] {
  return [
    "run",
    "--rm",
    "--name",
    a.container,
    "--label",
    `${TEST_LABEL}=${a.label}`,
    "--network",
    "host",
    "--user",
    `${a.user.uid}:${a.user.gid}`,
    "--env",
    `HOME=${a.memberDir}`,
    // PostgreSQL's dynamic shared memory lives in /dev/shm: Docker's 64 MB default is tight.
    "--shm-size",
    "256m",
    "--volume",
    `${a.clusterDir}:${a.clusterDir}`,
    "--entrypoint",
    IMAGE_TINI,
    a.image,
    "--",
    IMAGE_PATRONI,
    a.configFile,
  ];
}

/** Pure: PG_MAJOR from an image's environment (`docker image inspect … .Config.Env`). */
export function pgMajorOf(env: readonly string[]): string | null {
  const v = env.find((e) => e.startsWith("PG_MAJOR="))?.slice("PG_MAJOR=".length);
  return v && /^\d+$/.test(v) ? v : null;
}

const liveContainers = new Set<string>();
let exitHooked = false;
function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  // The harness kills its child processes when the test process exits; a container outlives
  // its `docker run` client, so remove ours too.
  process.on("exit", () => {
    if (liveContainers.size === 0) return;
    try {
      execFileSync("docker", ["rm", "-f", ...liveContainers], { stdio: "ignore", timeout: 30_000 });
    } catch {}
  });
}

/** Patroni and PostgreSQL in containers of the agent image, on the host network. */
export class ContainerRuntime implements PatroniRuntime {
  readonly kind = "container";

  private constructor(
    /** The image as named (for reports). */
    readonly image: string,
    /** Its ID when the runtime was made: a member started again later runs the same image even if the name moved meanwhile. */
    readonly imageId: string,
    readonly binDir: string,
    readonly owner: { readonly uid: number; readonly gid: number },
    /** Container names are this plus the member's name; it is also their `pgha.test` label. */
    readonly prefix: string,
  ) {}

  /** Reads the image's PostgreSQL major and its postgres account. */
  static async create(opts: { image?: string; prefix?: string } = {}): Promise<ContainerRuntime> {
    const image = opts.image ?? imageOf("agent");
    const [imageId, envJson] = (
      await docker(["image", "inspect", "--format", "{{.Id}} {{json .Config.Env}}", image])
    ).split(/ (.*)/s) as [string, string];
    const env = JSON.parse(envJson) as string[];
    const major = pgMajorOf(env);
    if (major === null) throw new Error(`${image} has no PG_MAJOR in its environment`);
    const id = async (flag: string) =>
      Number(
        await docker(["run", "--rm", "--network", "none", "--entrypoint", "id", imageId, flag, "postgres"]),
      );
    const owner = { uid: await id("-u"), gid: await id("-g") };
    if (!Number.isInteger(owner.uid) || !Number.isInteger(owner.gid))
      throw new Error(`${image}: no postgres account`);
    return new ContainerRuntime(
      image,
      imageId,
      `/usr/lib/postgresql/${major}/bin`,
      owner,
      opts.prefix ?? uniquePrefix("pgha-harness"),
    );
  }

  describe(): string {
    return `containers of ${this.image} (${this.imageId.replace(/^sha256:/, "").slice(0, 12)}) on the host network`;
  }

  containerOf(m: RuntimeMember): string {
    return `${this.prefix}${m.name}`;
  }

  start(m: RuntimeMember): Spawned {
    hookExit();
    const name = this.containerOf(m);
    liveContainers.add(name);
    const args = containerRunArgs({
      image: this.imageId,
      container: name,
      label: this.prefix,
      user: this.owner,
      clusterDir: m.clusterDir,
      memberDir: m.dir,
      configFile: m.configFile,
    });
    // A container removed by --rm a moment ago may still hold the name: remove it first.
    return startProcess("sh", ["-c", 'docker rm -f "$0" >/dev/null 2>&1; exec docker "$@"', name, ...args], {
      logFile: join(m.dir, "patroni.log"),
      cwd: m.dir,
    });
  }

  async stop(m: RuntimeMember, p: Spawned): Promise<void> {
    await docker(["stop", "-t", "60", this.containerOf(m)], { timeoutMs: 90_000 }).catch(() => undefined);
    await this.settle(m, p);
  }

  async kill9(m: RuntimeMember, p: Spawned | null): Promise<void> {
    await docker(["kill", "--signal", "KILL", this.containerOf(m)]).catch(() => undefined);
    await this.settle(m, p);
  }

  /** Waits for the `docker run` client to return; ends it (and the container) if it does not. */
  private async settle(m: RuntimeMember, p: Spawned | null): Promise<void> {
    if (p) {
      const timer = new Promise<void>((r) => setTimeout(r, 15_000).unref());
      await Promise.race([p.exited, timer]);
      await stopProcess(p, "SIGKILL");
    }
    await docker(["rm", "-f", this.containerOf(m)]).catch(() => undefined);
    liveContainers.delete(this.containerOf(m));
  }
}

function idOf(db: "passwd" | "group", name: string): number {
  const line = readFileSync(`/etc/${db}`, "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${name}:`));
  const id = line ? Number(line.split(":")[2]) : Number.NaN;
  if (!Number.isInteger(id)) throw new Error(`no ${db} entry for ${name}`);
  return id;
}
