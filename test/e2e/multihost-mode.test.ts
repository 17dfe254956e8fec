/**
 * The documented multi-host mode (docker-compose.multihost.yml), with this one
 * machine playing every host: one etcd member per host published on the host's
 * IP (here three pairs of ports on one IP), a registrator advertising published
 * ports on that IP, agents publishing 5432, 8008 and 8009 on ephemeral ports and
 * discovering them, and Prometheus finding every agent's Patroni and own metrics through the
 * registrator. The host's IP is this machine's address on Docker's bridge. The agents back up
 * to the stack's posix volume, which the played hosts share (real hosts would mount shared
 * storage there, or use S3).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { Etcd3 } from "etcd3";
import pg from "pg";
import { createEtcdClient } from "../../shared/etcd.js";
import { AGENTS, ComposeStack, type ComposeStack as Stack } from "../harness/compose.js";
import { bridgeGateway, ensureImages, publishedPort } from "../harness/docker.js";
import { freePort } from "../harness/ports.js";
import { run, waitFor } from "../harness/proc.js";

let stack: Stack;
let etcd: Etcd3;
let hostIp = "";

describe("multi-host mode, every host played by this machine", { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    hostIp = await bridgeGateway();
    const env: Record<string, string> = {
      HOST_IP: hostIp,
      BACKUP_POSIX_PATH: "/backup",
      // Replicas read the repository's backups every 10 s instead of 30 (the metrics checked below).
      BACKUP_CHECK_INTERVAL: "10",
    };
    const clientPorts: number[] = [];
    for (const n of [1, 2, 3]) {
      const port = await freePort(hostIp);
      clientPorts.push(port);
      Object.assign(env, {
        [`ETCD${n}_IP`]: hostIp,
        [`ETCD${n}_PORT`]: String(port),
        [`ETCD${n}_PEER_PORT`]: String(await freePort(hostIp)),
      });
    }
    stack = await ComposeStack.up("multihost", {
      overrides: ["docker-compose.multihost.yml"],
      env,
      // Host A, as documented: its etcd member, its registrator, a router and pg1.
      services: ["etcd1", "registrator", "router-ports", "router", "pg1"],
      noDeps: true,
      // The original system's hosts ran the classic docker-compose.
      cli: "v1",
    });
    // Hosts B and C: their etcd members and agents (one registrator serves this one machine).
    await stack.compose(["up", "-d", "--no-deps", "--no-build", "etcd2", "etcd3", "pg2", "pg3"]);
    etcd = createEtcdClient({ hosts: clientPorts.map((port) => ({ host: hostIp, port })), ...stack.etcdTls });
    await stack.waitReady();
  });

  after(async () => {
    etcd?.close();
    await stack?.destroy();
  });

  it("each agent advertises its published ports on the host's IP", async () => {
    for (const agent of AGENTS) {
      const container = `${stack.project}-${agent}`;
      const pgPort = await publishedPort(container, 5432);
      const apiPort = await publishedPort(container, 8008);
      const metricsPort = await publishedPort(container, 8009);
      assert.equal(pgPort.host, hostIp);
      assert.equal(metricsPort.host, hostIp);
      assert.equal(
        await etcd.get(`/postgresql-patroni/${hostIp}:${container}:5432`).string(),
        `${hostIp}:${pgPort.port}`,
      );
      assert.equal(
        await etcd.get(`/pgha-agent-metrics/${hostIp}:${container}:8009`).string(),
        `${hostIp}:${metricsPort.port}`,
      );
      const member = JSON.parse(
        (await etcd.get(`/service/${stack.project}/members/${agent}`).string()) ?? "{}",
      ) as { conn_url?: string; api_url?: string };
      assert.equal(member.conn_url, `postgres://${hostIp}:${pgPort.port}/postgres`);
      assert.equal(member.api_url, `https://${hostIp}:${apiPort.port}/patroni`);
    }
  });

  it("etcd runs as three members, one per host, each advertising its host's address", async () => {
    const members = (await etcd.cluster.memberList({})).members.map((m) => ({
      name: m.name,
      client: m.clientURLs.join(","),
    }));
    assert.equal(members.length, 3, JSON.stringify(members));
    for (const m of members)
      assert.match(m.client, new RegExp(`^https://${hostIp.replaceAll(".", "\\.")}:\\d+$`));
    assert.deepEqual(members.map((m) => m.name).sort(), ["etcd1", "etcd2", "etcd3"]);
  });

  it("Prometheus on host A finds every host's agent by itself (the registrator's service discovery) and scrapes its Patroni and its own metrics", async () => {
    await stack.compose(["--profile", "monitoring", "up", "-d", "--no-deps", "--no-build", "prometheus"]);
    interface Target {
      labels: Record<string, string>;
      scrapeUrl: string;
      health: string;
      lastError: string;
    }
    let last: Target[] = [];
    try {
      await waitFor(
        "a Patroni and an agent target per agent, each up",
        async () => {
          const res = await fetch(`${stack.prometheusUrl}/api/v1/targets?state=active`, {
            signal: AbortSignal.timeout(5000),
          });
          const body = (await res.json()) as { data: { activeTargets: Target[] } };
          last = body.data.activeTargets.filter((t) => ["patroni", "agent"].includes(t.labels["job"]!));
          return last.length === 6 && last.every((t) => t.health === "up");
        },
        { timeoutMs: 120_000, intervalMs: 1000 },
      );
    } catch (err) {
      (err as Error).message += `\n${JSON.stringify(last, null, 2)}`;
      throw err;
    }
    // Each is scraped at its host's address and published port, with no list anywhere to edit,
    // and named as the alerts name it (pg1:8008, pg1:8009).
    for (const a of AGENTS) {
      for (const [job, port] of [
        ["patroni", 8008],
        ["agent", 8009],
      ] as const) {
        const published = await publishedPort(`${stack.project}-${a}`, port);
        const target = last.find((t) => t.labels["job"] === job && t.labels["instance"] === `${a}:${port}`);
        assert.ok(target, `${job} ${a}:${port} in ${last.map((t) => t.labels["instance"]).join(", ")}`);
        // Patroni's REST API speaks https (TLS); the agent's metrics port stays plain.
        const scheme = job === "patroni" ? "https" : "http";
        assert.equal(target.scrapeUrl, `${scheme}://${hostIp}:${published.port}/metrics`);
        assert.equal(target.labels["host"], hostIp);
        assert.equal(target.labels["container"], `${stack.project}-${a}`);
      }
    }
  });

  it("Prometheus has every host's agent's backup metrics: the repository checked, the last good backup's age", async () => {
    const raw = async (q: string) => {
      const res = await fetch(`${stack.prometheusUrl}/api/v1/query?query=${encodeURIComponent(q)}`, {
        signal: AbortSignal.timeout(5000),
      });
      const body = (await res.json()) as {
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      return body.data.result;
    };
    // `<instance> <host> <value>` of each series, sorted.
    const query = async (q: string) =>
      (await raw(q)).map((r) => `${r.metric["instance"]} ${r.metric["host"]} ${r.value[1]}`).sort();
    const want = (value: string) => AGENTS.map((a) => `${a}:8009 ${hostIp} ${value}`).sort();
    let last: string[] = [];
    try {
      await waitFor(
        "each agent to report the repository ok",
        async () => {
          last = await query('pgha_backup_repository_ok{job="agent"}');
          return JSON.stringify(last) === JSON.stringify(want("1"));
        },
        { timeoutMs: 120_000, intervalMs: 1000 },
      );
      await waitFor(
        "each agent to report the last good backup's age",
        async () => {
          last = await query('pgha_backup_last_good_age_seconds{job="agent"} >= bool 0');
          return JSON.stringify(last) === JSON.stringify(want("1"));
        },
        { timeoutMs: 120_000, intervalMs: 1000 },
      );
    } catch (err) {
      (err as Error).message += `\n${JSON.stringify(last, null, 2)}`;
      throw err;
    }
    const schedulers = await raw('sum(pgha_backup_scheduler_active{job="agent"})');
    assert.equal(schedulers[0]?.value[1], "1", "one node, the leader, runs the schedule");
  });

  it("replicas stream from the leader through the published addresses, and the router reaches it", async () => {
    const leader = (await stack.leader())!;
    const rows = await stack.exec(leader, [
      "psql",
      "-Atc",
      "select count(*) from pg_stat_replication where state = 'streaming'",
    ]);
    assert.equal(rows, "2");
    const c = new pg.Client({ ...stack.pg(), connectionTimeoutMillis: 20_000 });
    await c.connect();
    try {
      await c.query("create table across_hosts (v text)");
      await c.query("insert into across_hosts values ('hello')");
    } finally {
      await c.end();
    }
    for (const replica of AGENTS.filter((a) => a !== leader)) {
      await waitFor(`the row on ${replica}`, async () => {
        return (await stack.exec(replica, ["psql", "-Atc", "select v from across_hosts"])) === "hello";
      });
    }
  });

  it("what the hosts publish speaks TLS: etcd wants a certificate of the CA, replication and clients are encrypted, verify-full holds on the host's IP", async () => {
    const etcdPort = stack.settings["ETCD1_PORT"]!;
    const etcdctl = (args: string[]) =>
      run(
        "etcdctl",
        [
          `--endpoints=https://${hostIp}:${etcdPort}`,
          "--dial-timeout=3s",
          "--command-timeout=5s",
          ...args,
          "get",
          "--prefix",
          "--keys-only",
          "/service/",
        ],
        { env: { PATH: process.env["PATH"], ETCDCTL_API: "3" } },
      );
    const { caFile, certFile, keyFile } = stack.etcdTls;
    assert.match(
      (await etcdctl([`--cacert=${caFile}`, `--cert=${certFile}`, `--key=${keyFile}`])).stdout,
      /\/leader/,
    );
    await assert.rejects(etcdctl([`--cacert=${caFile}`]));
    // Replication between the hosts runs over TLS.
    const leader = (await stack.leader())!;
    const ssl = await stack.exec(leader, [
      "psql",
      "-Atc",
      "select count(*) from pg_stat_replication r join pg_stat_ssl s using (pid) where s.ssl",
    ]);
    assert.equal(ssl, "2");
    // A client checks the member's certificate on the host's IP.
    const pgPort = (await publishedPort(`${stack.project}-${leader}`, 5432)).port;
    const q = await run(
      "psql",
      [
        `host=${hostIp} port=${pgPort} user=admin dbname=postgres sslmode=verify-full sslrootcert=${stack.caFile}`,
        "-Atc",
        "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
      ],
      { env: { ...process.env, PGPASSWORD: stack.password, PGCONNECT_TIMEOUT: "10" } },
    );
    assert.equal(q.stdout.trim(), "t");
  });
});
