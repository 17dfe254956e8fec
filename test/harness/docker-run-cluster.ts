/**
 * A Patroni cluster of agent containers started with plain `docker run`, as the
 * agent README's tutorial does it: one etcd and one registrator (shared by
 * every cluster of a test file) publishing on the host's address on Docker's
 * bridge, nodes publishing 5432 and 8008 there, and a router container.
 */
import type { Etcd3 } from "etcd3";
import type { PgTarget } from "./ack-writers.js";
import {
  bridgeGateway,
  docker,
  dockerSocketGid,
  imageOf,
  logsTail,
  publishedPort,
  randomSecret,
  startEtcdContainer,
  TEST_LABEL,
} from "./docker.js";
import { freePort } from "./ports.js";
import { waitFor } from "./proc.js";

export interface MemberRecord {
  readonly conn_url: string;
  readonly api_url: string;
  readonly role: string;
  readonly state: string;
  readonly timeline?: number;
  readonly xlog_location?: number;
}

/** etcd and a registrator on the bridge, as the tutorial's first two commands start them. */
export class DockerRunHost {
  private constructor(
    readonly label: string,
    readonly prefix: string,
    readonly hostIp: string,
    readonly etcdPort: number,
    readonly etcd: Etcd3,
  ) {}

  static async start(prefix: string, label: string): Promise<DockerRunHost> {
    const hostIp = await bridgeGateway();
    const { client, port } = await startEtcdContainer(`${prefix}etcd`, label, hostIp);
    await docker([
      "run",
      "-d",
      "--name",
      `${prefix}registrator`,
      "--label",
      `${TEST_LABEL}=${label}`,
      "--group-add",
      await dockerSocketGid(),
      "-v",
      "/var/run/docker.sock:/var/run/docker.sock:ro",
      imageOf("registrator"),
      "-ip",
      hostIp,
      "-hostname",
      hostIp,
      "-ttl",
      "15",
      `etcd://${hostIp}:${port}`,
    ]);
    return new DockerRunHost(label, prefix, hostIp, port, client);
  }

  close(): void {
    this.etcd.close();
  }
}

export class DockerRunCluster {
  readonly secrets: Readonly<Record<string, string>>;
  routerPort = 0;

  constructor(
    readonly host: DockerRunHost,
    readonly scope: string,
    /** Extra environment of every node (the documented settings a test uses). */
    readonly env: Readonly<Record<string, string>>,
  ) {
    this.secrets = {
      POSTGRES_USERNAME: "admin",
      POSTGRES_PASSWORD: randomSecret(),
      REPLICATION_PASSWORD: randomSecret(),
      SUPERUSER_PASSWORD: randomSecret(),
      RESTAPI_PASSWORD: randomSecret(),
    };
  }

  container(name: string): string {
    return `${this.scope}-${name}`;
  }

  /** The tutorial's `docker run` of a node: both ports published on the host's IP. */
  async runNode(name: string): Promise<void> {
    const env = {
      NAME: name,
      CONTAINER_NAME: this.container(name),
      PATRONI_SCOPE: this.scope,
      ETCD_HOST_PORT: `${this.host.hostIp}:${this.host.etcdPort}`,
      DOCKER_HOSTNAME: this.host.hostIp,
      ...this.secrets,
      ...this.env,
    };
    await docker([
      "run",
      "-d",
      "--name",
      this.container(name),
      "--label",
      `${TEST_LABEL}=${this.host.label}`,
      "-p",
      `${this.host.hostIp}::5432`,
      "-p",
      `${this.host.hostIp}::8008`,
      ...Object.entries(env).flatMap(([k, v]) => ["-e", `${k}=${v}`]),
      imageOf("agent"),
    ]);
  }

  async runRouter(): Promise<void> {
    this.routerPort = await freePort();
    await docker([
      "run",
      "-d",
      "--name",
      this.container("router"),
      "--label",
      `${TEST_LABEL}=${this.host.label}`,
      "-p",
      `127.0.0.1:${this.routerPort}:5432`,
      imageOf("router"),
      "--etcd",
      `${this.host.hostIp}:${this.host.etcdPort}`,
      "--scope",
      this.scope,
    ]);
  }

  async member(name: string): Promise<MemberRecord | null> {
    const v = await this.host.etcd.get(`/service/${this.scope}/members/${name}`).string();
    return v === null ? null : (JSON.parse(v) as MemberRecord);
  }

  async leader(): Promise<string | null> {
    return this.host.etcd.get(`/service/${this.scope}/leader`).string();
  }

  /** The leader, once it holds the lock and its record says it runs as primary. */
  async runningLeader(): Promise<string | null> {
    const l = await this.leader();
    if (!l) return null;
    const m = await this.member(l);
    return m && (m.role === "master" || m.role === "primary") && m.state === "running" ? l : null;
  }

  /** Straight to one node's PostgreSQL (its published port). */
  async direct(name: string): Promise<PgTarget> {
    const p = await publishedPort(this.container(name), 5432);
    return { host: p.host, port: p.port, user: "admin", password: this.secrets["POSTGRES_PASSWORD"]! };
  }

  /** Through the router. */
  viaRouter(): PgTarget {
    return {
      host: "127.0.0.1",
      port: this.routerPort,
      user: "admin",
      password: this.secrets["POSTGRES_PASSWORD"]!,
    };
  }

  /** Waits until `name` streams from the leader (its walreceiver in the leader's pg_stat_replication). */
  async waitStreaming(name: string, timeoutMs = 180_000): Promise<void> {
    await waitFor(
      `${name} streaming`,
      async () => {
        const leader = await this.runningLeader();
        if (!leader || leader === name) return false;
        const out = await docker([
          "exec",
          this.container(leader),
          "psql",
          "-Atc",
          "select application_name || ' ' || state from pg_stat_replication",
        ]);
        return out.split("\n").includes(`${name} streaming`);
      },
      { timeoutMs, intervalMs: 1000 },
    );
  }

  async logs(names: readonly string[], lines = 30): Promise<string> {
    const parts = await Promise.all(names.map((n) => logsTail(this.container(n), lines)));
    return parts.join("\n");
  }
}
