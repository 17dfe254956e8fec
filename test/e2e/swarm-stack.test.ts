/**
 * README's "Docker Swarm" on three real Docker engines of this machine (each a network
 * namespace with its own dockerd, test/harness/docker-hosts.ts): every block of that section
 * runs as written (the test sets only the nodes' addresses, the directory S, and TOKEN as A
 * printed it), on the node the text names. Then: psql (sslmode=prefer, libpq's default) and
 * node-postgres through a router; the leader's whole node killed (engine, containers and
 * link at once) under writers of four kinds, and psql through a router on a surviving node
 * writes again with no acknowledged write lost; the node back, and `docker stack rm` leaves
 * no service, container, network or secret of the stack on any node.
 */
// run-tests: heavy (three Docker engines, each loaded with every image)
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { ACKED_TABLE_SQL, makeWriters, missing, type PgTarget, summary } from "../harness/ack-writers.js";
import { ensureImages, imageOf, REPO_ROOT } from "../harness/docker.js";
import { type DockerHost, DockerHosts } from "../harness/docker-hosts.js";
import { run, waitFor } from "../harness/proc.js";
import { type ReadmeBlock, readmeBlocks } from "../harness/readme-blocks.js";

const PARTS = ["etcd", "registrator", "router", "agent"] as const;
const ROUTER_PORT = 5432;
const STACK = "pgha";
const CONNECT_TIMEOUT_S = 5;

const blocks = readmeBlocks(readFileSync(join(REPO_ROOT, "README.md"), "utf8"), "swarm");

let dh: DockerHosts;
let nodes: [DockerHost, DockerHost, DockerHost];
let dir: string;
let token = "";
let password = "";
/** The node the failover test killed, until the removal test brings it back. */
let killed: DockerHost | null = null;

/** The variables a reader sets: the three addresses (the block's own line replaced), S, TOKEN. */
function blockEnv(h: DockerHost | null): NodeJS.ProcessEnv {
  const [a, b, c] = nodes;
  return {
    ...process.env,
    ...(h ? { DOCKER_HOST: h.dockerHost } : {}),
    NODE_A: a.ip,
    NODE_B: b.ip,
    NODE_C: c.ip,
    S: dir,
    TOKEN: token,
    // The images this run tests (the stack file reads the same variables as the compose file).
    ...Object.fromEntries(PARTS.map((p) => [`PGHA_${p.toUpperCase()}_IMAGE`, imageOf(p)])),
  };
}

/** Runs a README block on node `h` (null: on this machine, as a client) as a reader pastes it into bash. */
async function runBlock(b: ReadmeBlock, h: DockerHost | null): Promise<string> {
  const [a, bb, c] = nodes;
  const script = b.script
    .replace(/^NODE_A=\S+ NODE_B=\S+ NODE_C=\S+$/m, `NODE_A=${a.ip} NODE_B=${bb.ip} NODE_C=${c.ip}`)
    .replace(/^S=\S+/m, `S=${dir}`);
  const r = await run("bash", ["-e", "-o", "pipefail", "-c", script], {
    cwd: REPO_ROOT,
    env: blockEnv(h),
    timeoutMs: 240_000,
  });
  return r.stdout;
}

async function psql(host: string, sql: string): Promise<string> {
  const r = await run(
    "psql",
    [
      "-X",
      "-Atc",
      sql,
      `postgresql://admin@${host}:${ROUTER_PORT}/postgres?connect_timeout=${CONNECT_TIMEOUT_S}`,
    ],
    { env: { ...process.env, PGPASSWORD: password }, timeoutMs: 60_000 },
  );
  return r.stdout.trim();
}

interface Member {
  readonly name: string;
  readonly role: string;
  readonly state: string;
}

/** patronictl list, from the agent running on `h`. */
async function members(h: DockerHost): Promise<Member[]> {
  const id = await dh.docker(h, [
    "ps",
    "-q",
    "--filter",
    `label=com.docker.swarm.service.name=${STACK}_pg${h.index + 1}`,
  ]);
  if (!id) throw new Error(`no agent runs on ${h.name}`);
  const out = await dh.docker(h, ["exec", id.split("\n")[0]!, "patronictl", "list", "-f", "json"]);
  return (JSON.parse(out) as { Member: string; Role: string; State: string }[]).map((m) => ({
    name: m.Member,
    role: m.Role.toLowerCase(),
    state: m.State,
  }));
}

/**
 * Waits for three members: a leader, its replicas streaming as quorum standbys (the stack's
 * default `synchronous_mode: quorum`: a commit waits for either replica). In synchronous mode
 * only a replica Patroni counts in the quorum may take over, so a leader lost before its
 * replicas joined it is not replaced (by design: nothing acknowledged may be lost).
 */
async function healthy(h: DockerHost): Promise<Member[]> {
  let last: Member[] = [];
  await waitFor(
    "three members: a leader and two quorum standbys streaming",
    async () => {
      last = await members(h).catch(() => []);
      return (
        last.length === 3 &&
        last.some((m) => m.role === "leader" && m.state === "running") &&
        last.every((m) => m.role === "leader" || (m.role === "quorum standby" && m.state === "streaming"))
      );
    },
    { timeoutMs: 300_000, intervalMs: 2000 },
  ).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(last)}`);
  });
  return last;
}

/** Restarts the node the failover test killed and waits until every node is Ready in the swarm. */
async function bringBack(): Promise<void> {
  if (!killed) return;
  const back = killed;
  await dh.restart(back);
  killed = null;
  const other = nodes.find((h) => h !== back)!;
  await waitFor(
    `${back.name} back in the swarm`,
    async () =>
      (await dh.docker(other, ["node", "ls", "--format", "{{.Status}}"]))
        .split("\n")
        .every((x) => x === "Ready"),
    { timeoutMs: 180_000, intervalMs: 2000 },
  );
}

/** What is left of the stack on `h`: services (on a manager), containers, networks, secrets. */
async function leftOf(h: DockerHost): Promise<string[]> {
  const label = `label=com.docker.stack.namespace=${STACK}`;
  const left: string[] = [];
  for (const [what, args] of [
    ["container", ["ps", "-a", "--filter", label, "--format", "{{.Names}}"]],
    ["network", ["network", "ls", "--filter", label, "--format", "{{.Name}}"]],
    ["service", ["service", "ls", "--filter", label, "--format", "{{.Name}}"]],
    ["secret", ["secret", "ls", "--format", "{{.Name}}"]],
  ] as const) {
    const out = await dh.docker(h, args);
    for (const name of out.split("\n").filter(Boolean)) left.push(`${what} ${name} on ${h.name}`);
  }
  return left;
}

describe("README's Docker Swarm: docker stack deploy on three engines, a whole node lost", {
  timeout: 20 * 60_000,
}, () => {
  before(async () => {
    await ensureImages(PARTS);
    dh = await DockerHosts.create({ images: PARTS.map(imageOf), label: "swarm" });
    nodes = dh.hosts as [DockerHost, DockerHost, DockerHost];
    dir = await mkdtemp(join(tmpdir(), "pgha-swarm-"));
  });

  after(async () => {
    await dh?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("the README's blocks: a swarm of three managers, labels, certificates, secrets, the stack", async () => {
    assert.equal(blocks.length, 5, "init, join, deploy, check, remove");
    const [init, joinBlock, deploy, check] = blocks as [ReadmeBlock, ReadmeBlock, ReadmeBlock, ReadmeBlock];
    const [a, b, c] = nodes;
    token = (await runBlock(init, a)).trim().split("\n").at(-1) ?? "";
    assert.match(token, /^SWMTKN-/);
    await runBlock(joinBlock, b);
    await runBlock(joinBlock, c);
    const managers = await dh.docker(a, ["node", "ls", "--format", "{{.ManagerStatus}}"]);
    assert.equal(managers.split("\n").filter((s) => /Leader|Reachable/.test(s)).length, 3, managers);
    await runBlock(deploy, a);
    password = readFileSync(join(dir, "postgres.password"), "utf8").trim();
    // Every member pinned where its label says.
    for (const [i, h] of nodes.entries()) {
      const labels = await dh.docker(a, [
        "node",
        "inspect",
        "-f",
        "{{json .Spec.Labels}}",
        await dh.docker(h, ["info", "-f", "{{.Swarm.NodeID}}"]),
      ]);
      assert.deepEqual(JSON.parse(labels), { "pgha.member": String(i + 1) }, `${h.name}'s labels`);
    }
    // Each etcd member's peer connections give up after about 13 s (the stack's sysctls).
    for (const [i, h] of nodes.entries()) {
      const id = await waitFor(
        `etcd${i + 1}'s task on ${h.name}`,
        () =>
          dh.docker(h, ["ps", "-q", "--filter", `label=com.docker.swarm.service.name=${STACK}_etcd${i + 1}`]),
        { timeoutMs: 120_000, intervalMs: 1000 },
      );
      const retries = await dh.docker(h, [
        "exec",
        id.split("\n")[0]!,
        "cat",
        "/proc/sys/net/ipv4/tcp_retries2",
      ]);
      assert.equal(retries.trim(), "5", `etcd${i + 1}'s tcp_retries2 on ${h.name}`);
    }
    await waitFor(
      "the README's check to show the primary through the routers",
      async () => check.expect!.test(await runBlock(check, null).catch(() => "")),
      { timeoutMs: 300_000, intervalMs: 3000 },
    );
  });

  it("psql (sslmode=prefer) and node-postgres reach the primary through every node's router", async () => {
    for (const h of nodes) {
      // Each node's router starts at its own pace (its image, its node's load).
      await waitFor(
        `${h.name}'s router to answer`,
        () =>
          psql(h.ip, "select 1").then(
            () => true,
            () => false,
          ),
        {
          timeoutMs: 180_000,
          intervalMs: 2000,
        },
      );
      assert.equal(
        await psql(h.ip, "select pg_is_in_recovery()::text || ' ' || current_setting('ssl')"),
        "false on",
      );
      const client = new pg.Client({
        host: h.ip,
        port: ROUTER_PORT,
        user: "admin",
        password,
        database: "postgres",
      });
      await client.connect();
      try {
        const r = await client.query<{ r: boolean }>("select pg_is_in_recovery() as r");
        assert.equal(r.rows[0]?.r, false, `node-postgres through ${h.name}`);
      } finally {
        await client.end();
      }
    }
    // The registrators advertised each agent on its own node's address (an agent whose task swarm
    // restarted has no patroni.yml until it has discovered its ports again: wait for all three).
    const list = await healthy(nodes[0]);
    assert.equal(list.length, 3, JSON.stringify(list));
    const hostsOf = await dh.docker(nodes[0], [
      "exec",
      (
        await dh.docker(nodes[0], [
          "ps",
          "-q",
          "--filter",
          `label=com.docker.swarm.service.name=${STACK}_pg1`,
        ])
      ).split("\n")[0]!,
      "patronictl",
      "list",
      "-f",
      "json",
    ]);
    for (const h of nodes) assert.ok(hostsOf.includes(`"${h.ip}:`), `a member on ${h.ip}: ${hostsOf}`);
  });

  it("the leader's whole node killed: a surviving node's router writes again, nothing acknowledged lost; the node back as a replica", async () => {
    await psql(nodes[0].ip, ACKED_TABLE_SQL);
    const before = await healthy(nodes[0]);
    const leader = before.find((m) => m.role === "leader")?.name;
    assert.ok(leader, JSON.stringify(before));
    const victim = nodes[Number(leader.slice(2)) - 1]!;
    const safe = nodes.find((h) => h !== victim)!;
    const url = `postgresql://admin@${nodes.map((h) => `${h.ip}:${ROUTER_PORT}`).join(",")}/postgres?target_session_attrs=read-write&connect_timeout=${CONNECT_TIMEOUT_S}`;
    const target = (): PgTarget => ({ host: safe.ip, port: ROUTER_PORT, user: "admin", password, url });
    const writers = makeWriters(target, "swarm");
    for (const w of writers) w.start();
    try {
      await waitFor(
        "every writer's first acknowledged writes",
        () => writers.every((w) => w.acks.length >= 3),
        {
          timeoutMs: 90_000,
          intervalMs: 200,
        },
      );
      const from = Date.now();
      await dh.kill(victim);
      killed = victim;
      await waitFor(
        `psql through ${safe.name}'s router to write again`,
        async () => {
          const out = await psql(
            safe.ip,
            "with w as (insert into acked (id, writer) values ((extract(epoch from clock_timestamp()) * 1000000)::bigint, 'swarm-check') returning 1) select 'written' from w",
          ).catch(() => "");
          return out === "written";
        },
        { timeoutMs: 180_000, intervalMs: 1000 },
      );
      const resumed = Date.now();
      await waitFor(
        "every writer to write again",
        () => writers.every((w) => w.acks.some((x) => x.at > resumed)),
        {
          timeoutMs: 120_000,
          intervalMs: 200,
        },
      );
      await Promise.all(writers.map((w) => w.stop()));
      console.log(`[swarm] leader ${leader} on ${victim.name} killed: ${summary(writers, from)}`);
      const now = await members(safe);
      const newLeader = now.find((m) => m.role === "leader")?.name;
      assert.ok(newLeader && newLeader !== leader, `a new leader: ${JSON.stringify(now)}`);
      const lost = await missing({ host: safe.ip, port: ROUTER_PORT, user: "admin", password }, writers);
      assert.deepEqual(lost, [], "acknowledged writes missing after the failover");
      assert.ok(writers.reduce((n, w) => n + w.acks.length, 0) > 0);
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
    }
    // The node back: its engine rejoins the swarm, and its agent the cluster as a replica.
    await bringBack();
    const healed = await healthy(safe);
    assert.ok(
      healed.some((m) => m.name === leader && m.role !== "leader"),
      `${leader} back, following: ${JSON.stringify(healed)}`,
    );
  });

  it("the README's removal: no service, container, network or secret of the stack left on any node", async () => {
    await bringBack();
    const remove = blocks[4]!;
    await runBlock(remove, nodes[0]);
    await waitFor(
      "nothing of the stack on any node",
      async () => {
        const left = (await Promise.all(nodes.map((h) => leftOf(h)))).flat();
        if (left.length > 0) console.log(`[swarm] left: ${left.join(", ")}`);
        return left.length === 0;
      },
      { timeoutMs: 240_000, intervalMs: 5000 },
    );
  });
});
