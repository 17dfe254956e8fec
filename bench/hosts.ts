/**
 * The `hosts` part: whole Docker hosts failing under writers, on three Docker hosts of this
 * machine (each a network namespace with its own dockerd) running the documented multi-host
 * mode (test/harness/many-hosts-cluster.ts), with the e2e tier's plays
 * (test/harness/host-faults.ts): the leader's host killed, the leader's host cut off from the
 * other two for 60 s, a replica's host killed, the host of the URL's first router killed, each
 * followed by its recovery and a wait for three streaming members. psql writes through the one
 * URL naming the three routers, node-postgres through a router on a host the play leaves up.
 */
import { ACKED_TABLE_SQL, WRITER_KINDS } from "../test/harness/ack-writers.js";
import { ensureImages } from "../test/harness/docker.js";
import {
  CONNECT_TIMEOUT_S,
  HOST_FAULT_LABELS,
  HOST_FAULTS,
  playHostFault,
  whatThePartsDid,
} from "../test/harness/host-faults.js";
import { ManyHostsCluster } from "../test/harness/many-hosts-cluster.js";
import { run } from "../test/harness/proc.js";
import { type HostFaultFigures, type HostsResult, hostFaultFigures } from "./host-figures.js";

/** Patroni's ttl of the cluster (the e2e stacks'): Patroni 4 takes no ttl under 20 s. */
const TTL_S = 20;
const PACE_MS = 100;

export async function runHosts(log: (m: string) => void): Promise<HostsResult> {
  await ensureImages(["agent", "etcd", "registrator", "router"]);
  const t0 = Date.now();
  log("hosts: three Docker hosts, the multi-host stack on them");
  const cluster = await ManyHostsCluster.create();
  const startupMs = Date.now() - t0;
  const runs: HostFaultFigures[] = [];
  try {
    await run("psql", ["-X", "-qc", ACKED_TABLE_SQL, cluster.url()], {
      env: { ...process.env, PGPASSWORD: cluster.password },
    });
    for (const fault of HOST_FAULTS) {
      try {
        const r = await playHostFault(cluster, fault, {
          label: `bench-${fault}`,
          log: (m) => log(`hosts: ${m}`),
        });
        const x = hostFaultFigures(
          {
            fault,
            label: HOST_FAULT_LABELS[fault],
            target: r.target,
            leader: `${r.oldLeader} -> ${r.elected !== null && r.elected !== r.newLeader ? `${r.elected} -> ` : ""}${r.newLeader}`,
            from: r.from,
            healedAt: r.healthyAt,
          },
          r.writers.map((w) => ({ kind: w.kind, ackTimes: w.acks.map((a) => a.at), failures: w.failures })),
          r.lost.length,
          r.lateAcks.length,
        );
        log(
          `hosts: ${fault}: writes stopped ${(x.writesStoppedMs / 1000).toFixed(1)} s, ${x.failedConnections} failed connections, ${x.lost} lost, ${x.ackedByDemotedLeader} acked by a demoted leader`,
        );
        runs.push(x);
        // A fault that went worse than it should: what the routers and Patroni did, in the log.
        const slow = r.targetWasLeader
          ? x.writesStoppedMs > (TTL_S + 2) * 1000
          : x.writesStoppedMs > (TTL_S / 2) * 1000;
        if (slow || x.failedConnections > 0) log(await whatThePartsDid(cluster, r.from, `hosts: ${fault}:`));
      } catch (err) {
        log(`hosts: ${fault} FAILED: ${(err as Error).message.split("\n")[0]}`);
        runs.push({
          ...hostFaultFigures(
            { fault, label: HOST_FAULT_LABELS[fault], target: "", leader: "", from: 0, healedAt: 0 },
            [],
            0,
            0,
          ),
          error: (err as Error).message.split("\n")[0] ?? "failed",
        });
      }
    }
  } finally {
    await cluster.destroy();
  }
  return {
    ttl: TTL_S,
    writers: [...WRITER_KINDS],
    paceMs: PACE_MS,
    connectTimeoutS: CONNECT_TIMEOUT_S,
    startupMs,
    runs,
  };
}
