/**
 * Whole hosts failing under writers, on a ManyHostsCluster: the plays the e2e test
 * (test/e2e/many-hosts.test.ts) asserts on and the benchmark's `hosts` part measures.
 *
 * A play waits for the cluster to be healthy, starts one writer of each kind (psql through the
 * one URL naming the three routers; node-postgres through the router of a host the play leaves
 * up), injects the fault, recovers from it, waits until the cluster is healthy again (three
 * members streaming on the leader's timeline) and every writer wrote since, and stops them.
 * What the writers recorded then says what was lost, and what the old leader acknowledged
 * after the next timeline forked off its own.
 */
import { type AckWriter, makeWriters, missing, type PgTarget } from "./ack-writers.js";
import type { DockerHost } from "./docker-hosts.js";
import { type ManyHostsCluster, type Member, ROUTER_PORT } from "./many-hosts-cluster.js";
import { waitFor } from "./proc.js";

export const HOST_FAULTS = ["leader-kill", "leader-partition", "replica-kill", "first-router-kill"] as const;
export type HostFault = (typeof HOST_FAULTS)[number];

/** How long the leader's host stays cut off from the other two. */
export const PARTITION_MS = 60_000;
/** How long a killed replica's host stays down. */
export const REPLICA_DOWN_MS = 10_000;
/** libpq's per-host connect timeout in the clients' URL: a dead or cut-off host costs a new connection at most this. */
export const CONNECT_TIMEOUT_S = 10;

export const HOST_FAULT_LABELS: Readonly<Record<HostFault, string>> = {
  "leader-kill": "the leader's host killed, then restarted",
  "leader-partition": `the leader's host cut off from the others for ${PARTITION_MS / 1000} s, then healed`,
  "replica-kill": "a replica's host killed, then restarted",
  "first-router-kill": "the host of the URL's first router (not the leader's) killed, then restarted",
};

export interface HostFaultRun {
  readonly fault: HostFault;
  /** The host the fault hit, and whether it ran the leader then. */
  readonly target: string;
  readonly targetWasLeader: boolean;
  readonly oldLeader: string;
  /** Who leads once the cluster is whole again. */
  readonly newLeader: string;
  /** For a fault on the leader's host: the leader the other hosts elected while it was gone. */
  readonly elected: string | null;
  /** For a fault on the leader's host: whether the other hosts promoted a new primary (a new timeline in Patroni's history). */
  readonly promoted: boolean;
  /** When the fault began, when it was injected, when the cluster was healthy again (ms since epoch). */
  readonly from: number;
  readonly healthyAt: number;
  readonly writers: readonly AckWriter[];
  /** Acknowledged ids missing on the leader afterwards. */
  readonly lost: readonly number[];
  /** Writes the old leader acknowledged past the fork of the next timeline (`kind id at lsn`). */
  readonly lateAcks: readonly string[];
  /** How many writes the old leader acknowledged in this play (the record tells servers apart). */
  readonly ackedByOldLeader: number;
}

function lsnValue(lsn: string): bigint {
  const [hi = "0", lo = "0"] = lsn.split("/");
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The host a replica's-host fault kills: a synchronous (or quorum) standby's, the replica whose
 * loss could hold commits, and not the URL's first router's host where there is a choice (that
 * is a fault of its own, "first-router-kill").
 */
function replicaTarget(
  cluster: ManyHostsCluster,
  members: readonly Member[],
  leaderHost: DockerHost,
): DockerHost {
  const replicas = cluster.hosts.filter((h) => h !== leaderHost);
  const synchronous = replicas.filter((h) =>
    members.some(
      (m) => (m.role === "sync_standby" || m.role === "quorum_standby") && cluster.hostOfAgent(m.name) === h,
    ),
  );
  const pool = synchronous.length > 0 ? synchronous : replicas;
  return pool.find((h) => h !== cluster.hosts[0]) ?? pool[0]!;
}

/**
 * What the routers decided, what Patroni said of promotion, locks, fences, failsafe mode and
 * etcd, and what etcd said of its elections and peers, on every running host since `from` (ms
 * since epoch, less 2 s), one block per host, each line headed by `tag`: printed when a fault
 * went worse than it should have.
 */
export async function whatThePartsDid(cluster: ManyHostsCluster, from: number, tag: string): Promise<string> {
  const since = (l: string) => {
    const iso = /"time":"([^"]+)"/.exec(l)?.[1] ?? /^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)/.exec(l)?.[1];
    return (
      iso !== undefined && Date.parse(iso.includes("T") ? iso : `${iso.replace(" ", "T")}Z`) >= from - 2000
    );
  };
  const out: string[] = [];
  for (const h of cluster.hosts) {
    if (!cluster.dh.running(h)) continue;
    const router = await cluster.routerLog(h).catch((err: Error) => err.message);
    const agent = await cluster.agentLog(h, 600).catch((err: Error) => err.message);
    const decisions = router.split("\n").filter((l) => l.includes("primary decision") && since(l));
    const agentLines = agent
      .split("\n")
      .filter(
        (l) =>
          /promot|lock|demot|fence|failsafe|leader race|DCS|etcd|error/i.test(l) &&
          !/no action\./.test(l) &&
          since(l),
      );
    const etcd = await cluster.etcdLog(h).catch((err: Error) => err.message);
    const etcdLines = etcd
      .split("\n")
      .filter((l) => /elect|became|lost leader|unreachable|took too long/i.test(l) && since(l));
    out.push(
      `${tag}   ${h.name} router:`,
      ...decisions.slice(-20),
      `${tag}   ${h.name} agent:`,
      ...agentLines.slice(-30),
      `${tag}   ${h.name} etcd:`,
      ...etcdLines.slice(-20),
    );
  }
  return out.join("\n");
}

/**
 * Plays one fault. `whileDown` runs after the injection and before the recovery (e.g. a check
 * that clients still connect).
 */
export async function playHostFault(
  cluster: ManyHostsCluster,
  fault: HostFault,
  opts: { label?: string; whileDown?: (h: DockerHost) => Promise<void>; log?: (m: string) => void } = {},
): Promise<HostFaultRun> {
  const log = opts.log ?? (() => undefined);
  let before = await cluster.waitHealthy();
  if (fault === "first-router-kill" && cluster.hostOfAgent(before.leader) === cluster.hosts[0]) {
    // This play is about the router: with the leader on the same host it would be a leader's
    // host killed (played above), so the leader moves first, as an operator would before
    // maintenance.
    const candidate = before.members.find((m) => m.role === "sync_standby" || m.role === "quorum_standby");
    if (!candidate)
      throw new Error(`no synchronous standby to switch over to: ${JSON.stringify(before.members)}`);
    log(`${fault}: switching over from ${before.leader} (on ${cluster.hosts[0]!.name}) to ${candidate.name}`);
    await cluster.switchover(before.leader, candidate.name);
    await waitFor(
      `${candidate.name} to lead`,
      async () => (await cluster.leader().catch(() => null)) === candidate.name,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    before = await cluster.waitHealthy();
  }
  const leaderHost = cluster.hostOfAgent(before.leader);
  const oldTimeline = before.members.find((m) => m.name === before.leader)?.timeline ?? 0;
  const oldLeaderServer = await cluster.execAgent(leaderHost, [
    "psql",
    "-Atc",
    "select pg_postmaster_start_time()::text",
  ]);
  const target =
    fault === "leader-kill" || fault === "leader-partition"
      ? leaderHost
      : fault === "replica-kill"
        ? replicaTarget(cluster, before.members, leaderHost)
        : cluster.hosts[0]!;
  const safe = cluster.hosts.find((h) => h !== target)!;
  const url = cluster.url(`connect_timeout=${CONNECT_TIMEOUT_S}`);
  const pgTarget = (): PgTarget => ({
    host: safe.ip,
    port: ROUTER_PORT,
    user: "admin",
    password: cluster.password,
    url,
  });
  const writers = makeWriters(pgTarget, opts.label ?? fault);
  for (const w of writers) w.start();
  let from = 0;
  let healthyAt = 0;
  let newLeader = before.leader;
  let elected: string | null = null;
  try {
    await waitFor(
      "every writer's first acknowledged writes",
      () => writers.every((w) => w.acks.length >= 3),
      {
        timeoutMs: 90_000,
        intervalMs: 200,
      },
    );
    from = Date.now();
    log(`${fault}: ${target.name} (${target.ip}), leader ${before.leader}`);
    if (fault === "leader-partition") await cluster.dh.isolate(target);
    else await cluster.dh.kill(target);
    if (target === leaderHost) {
      const others = cluster.hosts.filter((h) => h !== target);
      elected = await waitFor(
        "a new leader on the other hosts",
        async () => {
          const l = await cluster.leader(others).catch(() => null);
          return l !== null && cluster.hostOfAgent(l) !== target ? l : null;
        },
        { timeoutMs: 180_000, intervalMs: 500 },
      );
    }
    await opts.whileDown?.(target);
    if (fault === "leader-partition") {
      await sleep(Math.max(0, from + PARTITION_MS - Date.now()));
      await cluster.dh.heal(target);
    } else {
      if (fault === "replica-kill") await sleep(Math.max(0, from + REPLICA_DOWN_MS - Date.now()));
      await cluster.dh.restart(target);
    }
    const healthy = await cluster.waitHealthy(420_000);
    newLeader = healthy.leader;
    healthyAt = Date.now();
    if (healthy.etcdWaitMs > 2000)
      opts.log?.(
        `${fault}: every etcd member caught up with etcd's leader ${(healthy.etcdWaitMs / 1000).toFixed(0)} s after Patroni's members were whole again (last seen before: ${healthy.etcdSeen})`,
      );
    await waitFor(
      "every writer to write again after the cluster healed",
      () => writers.every((w) => w.acks.some((a) => a.at > healthyAt)),
      { timeoutMs: 120_000, intervalMs: 200 },
    );
  } finally {
    await Promise.all(writers.map((w) => w.stop()));
  }
  const lost = await missing(
    { host: cluster.hostOfAgent(newLeader).ip, port: ROUTER_PORT, user: "admin", password: cluster.password },
    writers,
  );
  let lateAcks: string[] = [];
  let promoted = false;
  // Without a switch off the old timeline nobody else ever acknowledged a write: the old
  // leader's acknowledged writes are then checked by `lost` alone.
  const fork = elected === null ? undefined : (await cluster.history()).find((e) => e[0] === oldTimeline);
  if (fork) {
    promoted = true;
    const forkLsn = BigInt(fork[1]);
    lateAcks = writers.flatMap((w) =>
      w.acks
        .filter((a) => a.server === oldLeaderServer && lsnValue(a.lsn) >= forkLsn)
        .map((a) => `${w.kind} ${a.id} at ${a.lsn}`),
    );
  }
  const ackedByOldLeader = writers.reduce(
    (n, w) => n + w.acks.filter((a) => a.server === oldLeaderServer).length,
    0,
  );
  return {
    fault,
    target: target.name,
    targetWasLeader: target === leaderHost,
    oldLeader: before.leader,
    newLeader,
    elected,
    promoted,
    from,
    healthyAt,
    writers,
    lost,
    lateAcks,
    ackedByOldLeader,
  };
}
