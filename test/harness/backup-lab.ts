/**
 * Agents with a pgBackRest repository on real Docker: an etcd container, agent
 * containers started with `docker run` (static public addresses on this
 * host's bridge IP, no registrator), and either an S3 endpoint (s3rver over
 * HTTPS on loopback, reached by the containers through a FaultProxy on the
 * bridge IP, so that a test can make it disappear) or a posix repository on a
 * shared volume.
 *
 *   const lab = await BackupLab.start("bk", { repo: "s3" });
 *   await lab.runNode("pg1"); await lab.waitLeader("pg1");
 *   await lab.wipeCluster();            // every node, its data and the cluster's etcd keys
 *   await lab.destroy();                // always, in after()
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import {
  bridgeGateway,
  docker,
  dockerExec,
  imageOf,
  logsTail,
  REPO_ROOT,
  randomSecret,
  removeLabelled,
  startEtcdContainer,
  TEST_LABEL,
  uniquePrefix,
} from "./docker.js";
import { freePort } from "./ports.js";
import { run, waitFor } from "./proc.js";
import { S3_ACCESS_KEY, S3_HOST_NAME, S3_SECRET_KEY, S3Fixture } from "./s3.js";
import { FaultProxy } from "./tcp-proxy.js";

export const S3_BUCKET = "pgha-backups";
const CA_IN_CONTAINER = "/etc/pgha-test/s3-ca.crt";
const POSIX_REPO = "/backup";

export interface LabOptions {
  readonly repo: "s3" | "posix";
}

export interface ListedBackup {
  readonly label: string;
  readonly type: string;
  readonly error: boolean;
  readonly timestamp: { readonly start: number; readonly stop: number };
  readonly info: { readonly size: number; readonly repository: { readonly size: number } };
}

interface NodeInfo {
  readonly container: string;
  readonly pgPort: number;
  readonly apiPort: number;
}

export class BackupLab {
  readonly nodes = new Map<string, NodeInfo>();
  readonly admin = { user: "admin", password: randomSecret() };
  private readonly secrets: Record<string, string>;

  private constructor(
    readonly prefix: string,
    readonly label: string,
    readonly scope: string,
    readonly hostIp: string,
    readonly etcdEndpoint: string,
    readonly etcd: Etcd3,
    readonly repo: "s3" | "posix",
    readonly s3: S3Fixture | null,
    readonly s3Proxy: FaultProxy | null,
  ) {
    this.secrets = {
      POSTGRES_USERNAME: this.admin.user,
      POSTGRES_PASSWORD: this.admin.password,
      REPLICATION_PASSWORD: randomSecret(),
      SUPERUSER_PASSWORD: randomSecret(),
      RESTAPI_PASSWORD: randomSecret(),
    };
  }

  static async start(what: string, opts: LabOptions): Promise<BackupLab> {
    const prefix = uniquePrefix(what);
    const label = prefix.slice(0, -1);
    const hostIp = await bridgeGateway();
    let s3: S3Fixture | null = null;
    let proxy: FaultProxy | null = null;
    let etcd: Etcd3 | null = null;
    try {
      if (opts.repo === "s3") {
        s3 = await S3Fixture.start({ host: "127.0.0.1", buckets: [S3_BUCKET] });
        proxy = await FaultProxy.start("127.0.0.1", s3.port, hostIp);
      } else {
        await docker(["volume", "create", "--label", `${TEST_LABEL}=${label}`, `${prefix}repo`]);
      }
      const started = await startEtcdContainer(`${prefix}etcd`, label, hostIp);
      etcd = started.client;
      return new BackupLab(
        prefix,
        label,
        `${prefix}cluster`,
        hostIp,
        `${hostIp}:${started.port}`,
        started.client,
        opts.repo,
        s3,
        proxy,
      );
    } catch (err) {
      etcd?.close();
      await proxy?.close();
      await s3?.stop();
      await removeLabelled(label);
      throw err;
    }
  }

  /** The repository settings every node gets (the original WAL-E names for S3). */
  repoEnv(): Record<string, string> {
    if (this.repo === "posix") return { BACKUP_POSIX_PATH: POSIX_REPO };
    return {
      AWS_ACCESS_KEY_ID: S3_ACCESS_KEY,
      AWS_SECRET_ACCESS_KEY: S3_SECRET_KEY,
      WAL_S3_BUCKET: S3_BUCKET,
      WALE_S3_ENDPOINT: `https+path://${S3_HOST_NAME}:${this.s3Proxy!.port}`,
      BACKUP_S3_CA_FILE: CA_IN_CONTAINER,
      // An endpoint that vanishes is noticed in seconds, not minutes.
      BACKUP_ARCHIVE_TIMEOUT: "20",
      BACKUP_IO_TIMEOUT: "10",
    };
  }

  container(name: string): string {
    return `${this.prefix}${name}`;
  }

  /** `docker run` of an agent named `name`; `env` adds to (or overrides) the defaults. */
  async runNode(name: string, env: Record<string, string> = {}, scope = this.scope): Promise<void> {
    const container = this.container(name);
    const pgPort = await freePort(this.hostIp);
    const apiPort = await freePort(this.hostIp);
    const all: Record<string, string> = {
      NAME: name,
      PATRONI_SCOPE: scope,
      ETCD_HOST_PORT: this.etcdEndpoint,
      DOCKER_HOST_IP: this.hostIp,
      DOCKER_HOST_PORT_5432: String(pgPort),
      DOCKER_HOST_PORT_8008: String(apiPort),
      ...this.secrets,
      PATRONI_TTL: "20",
      PATRONI_LOOP_WAIT: "2",
      PATRONI_RETRY_TIMEOUT: "4",
      BACKUP_CHECK_INTERVAL: "2",
      ...this.repoEnv(),
      ...env,
    };
    const mounts =
      this.repo === "posix"
        ? ["-v", `${this.prefix}repo:${POSIX_REPO}`]
        : ["-v", `${this.s3!.caFile}:${CA_IN_CONTAINER}:ro`, "--add-host", `${S3_HOST_NAME}:${this.hostIp}`];
    await docker([
      "run",
      "-d",
      "--name",
      container,
      "--label",
      `${TEST_LABEL}=${this.label}`,
      "-p",
      `${this.hostIp}:${pgPort}:5432`,
      "-p",
      `${this.hostIp}:${apiPort}:8008`,
      ...mounts,
      ...Object.entries(all).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
      imageOf("agent"),
    ]);
    this.nodes.set(name, { container, pgPort, apiPort });
  }

  /** Removes a node's container and its data volume. */
  async removeNode(name: string): Promise<void> {
    await docker(["rm", "-f", "-v", this.container(name)]).catch(() => undefined);
    this.nodes.delete(name);
  }

  /** Every node gone, with its data, and every etcd key of the cluster. */
  async wipeCluster(scope = this.scope): Promise<void> {
    for (const name of [...this.nodes.keys()]) await this.removeNode(name);
    await this.etcd.delete().prefix(`/service/${scope}/`);
  }

  async leader(scope = this.scope): Promise<string | null> {
    return this.etcd.get(`/service/${scope}/leader`).string();
  }

  async member(name: string, scope = this.scope): Promise<{ role: string; state: string } | null> {
    const v = await this.etcd.get(`/service/${scope}/members/${name}`).string();
    return v === null ? null : (JSON.parse(v) as { role: string; state: string });
  }

  /** Waits until `name` holds the leader key and runs as a writable primary. */
  async waitLeader(name: string, timeoutMs = 120_000, scope = this.scope): Promise<void> {
    await this.step(() =>
      waitFor(
        `${name} to lead`,
        async () =>
          (await this.leader(scope)) === name &&
          (await this.member(name, scope))?.state === "running" &&
          (await this.psql(name, "SELECT NOT pg_is_in_recovery()")) === "t",
        { timeoutMs, intervalMs: 500 },
      ),
    );
  }

  /** psql in the node's container (root maps to the superuser over the socket); unaligned output. */
  psql(name: string, sql: string): Promise<string> {
    return dockerExec(this.container(name), ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-Atqc", sql]);
  }

  exec(name: string, cmd: readonly string[], timeoutMs = 120_000): Promise<string> {
    return dockerExec(this.container(name), cmd, { timeoutMs });
  }

  /** `backup-list --json` in the node, decoded. */
  async backups(name: string): Promise<ListedBackup[]> {
    const out = JSON.parse(await this.exec(name, ["backup-list", "--json"])) as { backup?: ListedBackup[] }[];
    return out[0]?.backup ?? [];
  }

  /** The agent's /metrics as name{labels} → value. */
  async metrics(name: string): Promise<Map<string, number>> {
    const text = await this.exec(name, ["curl", "-fsS", "http://127.0.0.1:8009/metrics"]);
    const out = new Map<string, number>();
    for (const line of text.split("\n")) {
      const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
      if (m) out.set(m[1]!, Number(m[2]));
    }
    return out;
  }

  /** The container's whole log, stdout (the agent's JSON lines) and stderr (Patroni, PostgreSQL). */
  async logs(name: string): Promise<string> {
    const r = await run("docker", ["logs", this.container(name)], { timeoutMs: 30_000 }).catch(() => null);
    return r ? r.stdout + r.stderr : "";
  }

  /** Runs a step; on failure adds the nodes' last log lines to the error. */
  async step<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const tails = await Promise.all([...this.nodes.values()].map((n) => logsTail(n.container, 30)));
      (err as Error).message += `\n${tails.join("\n")}`;
      throw err;
    }
  }

  /** Keeps every node's log in .cache/e2e-logs/<label>/ (git-ignored), for a failure's post-mortem. */
  async saveLogs(): Promise<void> {
    const dir = join(REPO_ROOT, ".cache", "e2e-logs", this.label);
    mkdirSync(dir, { recursive: true });
    const out = await docker([
      "ps",
      "-a",
      "--filter",
      `label=${TEST_LABEL}=${this.label}`,
      "--format",
      "{{.Names}}",
    ]);
    for (const name of out.split("\n").filter(Boolean)) {
      const r = await run("docker", ["logs", "-t", name], { timeoutMs: 30_000 }).catch(() => null);
      if (r) writeFileSync(join(dir, `${name}.log`), r.stdout + r.stderr);
    }
  }

  async destroy(): Promise<void> {
    await this.saveLogs().catch(() => undefined);
    this.etcd.close();
    await removeLabelled(this.label);
    await this.s3Proxy?.close();
    await this.s3?.stop();
  }
}
