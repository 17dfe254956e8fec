/**
 * The bench's setup: a 3-node Patroni cluster on loopback (the test harness), its members
 * processes of this host (Patroni 3.0.2, PostgreSQL 15) or containers of the agent image on
 * the host network (Patroni 4, PostgreSQL 17), and in front of it HAProxy (two listeners:
 * Patroni's template checks and the tighter ones) and our router, each a child process.
 */

import { uniquePrefix } from "../test/harness/docker.js";
import { PatroniCluster, type PatroniNode } from "../test/harness/patroni.js";
import { ContainerRuntime, HostRuntime, type RuntimeKind } from "../test/harness/patroni-runtime.js";
import { freePort } from "../test/harness/ports.js";
import { waitFor } from "../test/harness/proc.js";
import { RouterProc } from "./endpoints.js";
import { Haproxy, haproxyConfig } from "./haproxy.js";
import type { LabRecord } from "./lab-versions.js";
import { type PgConn, pgbenchInit } from "./pgbench.js";
import { newClient, serverPort } from "./pgclient.js";

export interface LabOptions {
  /** Patroni's ttl (s); unplanned failover is judged against ttl + 1 s. */
  readonly ttl: number;
  readonly loopWait: number;
  /** initdb --wal-segsize (MB), as the agent's WAL_SEGMENT_SIZE. */
  readonly walSegmentSizeMb: number;
  /** Where Patroni and PostgreSQL run: this host's packages, or containers of the agent image. */
  readonly runtime: RuntimeKind;
}

export class Lab {
  private pgbenchScale = 0;

  private constructor(
    readonly cluster: PatroniCluster,
    readonly haproxy: Haproxy,
    readonly haproxyDocsPort: number,
    readonly haproxyFastPort: number,
    readonly router: RouterProc,
    readonly opts: LabOptions,
    readonly haproxyCfg: string,
  ) {}

  static async start(opts: LabOptions): Promise<Lab> {
    const runtime =
      opts.runtime === "container"
        ? await ContainerRuntime.create({ prefix: uniquePrefix("pgha-bench") })
        : new HostRuntime();
    const cluster = await PatroniCluster.start({
      nodes: 3,
      ttl: opts.ttl,
      loopWait: opts.loopWait,
      scope: `bench${process.pid}${opts.runtime === "container" ? "c" : ""}`,
      walSegmentSizeMb: opts.walSegmentSizeMb,
      runtime,
    });
    try {
      const docs = await freePort();
      const fast = await freePort();
      const servers = cluster.nodes.map((n) => ({
        name: n.name,
        host: "127.0.0.1",
        port: n.pgPort,
        restPort: n.restPort,
      }));
      const cfg = haproxyConfig({
        maxconn: 1000,
        listens: [
          { name: "pg_docs", port: docs, profile: "docs", servers },
          { name: "pg_fast", port: fast, profile: "fast", servers },
        ],
      });
      const haproxy = await Haproxy.start(cfg, [docs, fast]);
      const router = await RouterProc.start({
        etcd: cluster.etcd.endpoint,
        scope: cluster.scope,
        logLevel: "info",
      });
      const lab = new Lab(cluster, haproxy, docs, fast, router, opts, cfg);
      await lab.waitAllServePrimary();
      return lab;
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
  }

  /** pgbench's tables at this scale, made once per run on the primary. */
  async pgbenchTables(scale: number): Promise<void> {
    if (this.pgbenchScale === scale) return;
    const primary = await this.primary();
    await pgbenchInit(this.pg(primary.pgPort), scale);
    this.pgbenchScale = scale;
  }

  /** Connection settings of the cluster's superuser through `port`. */
  pg(port: number): PgConn {
    const p = this.cluster.nodes[0]!.pg();
    return { host: "127.0.0.1", port, user: p.user, password: p.password, database: p.database };
  }

  async primary(): Promise<PatroniNode> {
    const name = await waitFor("a leader", () => this.cluster.leader(), { timeoutMs: 60_000 });
    return this.cluster.node(name);
  }

  /** The member after `from` in order that is running: switchovers go round all members. */
  nextCandidate(from: string): PatroniNode {
    const nodes = this.cluster.nodes;
    const i = nodes.findIndex((n) => n.name === from);
    for (let k = 1; k < nodes.length; k++) {
      const n = nodes[(i + k) % nodes.length]!;
      if (n.running) return n;
    }
    throw new Error(`no running member besides ${from}`);
  }

  /** Every proxy reaches the current leader (after a switchover HAProxy needs `rise` checks). */
  async waitAllServePrimary(timeoutMs = 60_000): Promise<void> {
    const leader = await this.cluster.waitReady({ timeoutMs });
    const want = this.cluster.node(leader).pgPort;
    for (const port of [this.router.port, this.haproxyDocsPort, this.haproxyFastPort]) {
      await waitFor(
        `port ${port} to reach the primary ${leader}`,
        async () => {
          // Several in a row: HAProxy balances over every server it still believes up.
          for (let i = 0; i < 6; i++) if ((await serverPort(this.pg(port))) !== want) return false;
          return true;
        },
        { timeoutMs, intervalMs: 200 },
      );
    }
  }

  /** Patroni's version (REST /patroni of the leader) and PostgreSQL's server_version (SQL). */
  async versions(parts: readonly string[]): Promise<LabRecord> {
    const leader = await this.primary();
    const patroni = (await leader.versions().catch(() => null))?.patroni ?? null;
    const c = newClient(this.pg(leader.pgPort));
    let postgres: string | null = null;
    try {
      await c.connect();
      const r = await c.query<{ server_version: string }>("SHOW server_version");
      postgres = r.rows[0]?.server_version ?? null;
    } catch {
    } finally {
      await c.end().catch(() => undefined);
    }
    return {
      parts,
      runtime: this.cluster.runtime.kind,
      where: this.cluster.runtime.describe(),
      patroni,
      postgres,
      ttl: this.opts.ttl,
      loopWait: this.opts.loopWait,
    };
  }

  /** What the JSON records about the setup. */
  describe(): Record<string, unknown> {
    return {
      patroni: {
        runtime: this.cluster.runtime.describe(),
        nodes: this.cluster.nodes.length,
        ttl: this.opts.ttl,
        loopWait: this.opts.loopWait,
        walSegmentSizeMb: this.opts.walSegmentSizeMb,
      },
      router:
        "node dist/router/main.js --scope S --listen 127.0.0.1:P --replica-listen off --log-level info (defaults otherwise: --check both)",
      haproxyConfig: this.haproxyCfg,
    };
  }

  async destroy(): Promise<void> {
    await this.router.stop().catch(() => undefined);
    await this.haproxy.stop().catch(() => undefined);
    await this.cluster.destroy();
  }
}
