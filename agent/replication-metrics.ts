/**
 * What Patroni 3.0's own /metrics does not say, read from this node's Patroni
 * REST API when Prometheus scrapes the agent:
 *
 * - `pgha_synchronous_mode{scope}`: the cluster's `synchronous_mode` (GET
 *   /config), on every agent: 1 for `on` and for Patroni 4's `quorum`.
 *   Patroni's `patroni_sync_standby` (`patroni_quorum_standby` in quorum mode)
 *   is 0 on every node both in asynchronous mode and in synchronous mode
 *   without a standby; this tells the two apart.
 * - `pgha_replica_streaming{scope,member}`: on the leader only, 1 for each
 *   replica whose walreceiver is in the leader's pg_stat_replication in state
 *   `streaming` (GET /patroni lists it under `replication`), 0 for a replica
 *   that is not (GET /cluster lists the members). Patroni 3.0's replica metrics
 *   cannot show it: a replica that replays WAL from the archive advances its
 *   `patroni_xlog_received_location` too.
 *
 * Unknown (Patroni does not answer, this node does not lead) means no series.
 */
import { Gauge, type Registry } from "prom-client";
import { decodePatroniStatus, runsAsPrimary } from "../shared/patroni-rest.js";
import type { PatroniRest } from "./rest.js";
import { streamingFrom, synchronousModeOf } from "./stop-plan.js";

export { patroniBool, synchronousModeOf } from "./stop-plan.js";

/** The cluster's synchronous_mode as a boolean (on or quorum), from GET /config; null when missing. */
export function synchronousMode(config: unknown): boolean | null {
  const mode = synchronousModeOf(config);
  return mode === null ? null : mode !== "off";
}

interface RestMember {
  readonly name?: unknown;
  readonly role?: unknown;
  readonly tags?: unknown;
}

const LEADER_ROLES = new Set(["leader", "standby_leader", "master", "primary"]);

/** GET /patroni of a running primary (Patroni 3 says master, 4 says primary). */

/**
 * On the leader: each replica of the cluster and whether it streams from this
 * leader. Null when this node is not a running primary or an answer is
 * missing. A member tagged `replicatefrom` streams from another replica, not
 * from the leader, and is left out.
 */
export function replicaStreaming(status: unknown, cluster: unknown): ReadonlyMap<string, boolean> | null {
  if (!runsAsPrimary(decodePatroniStatus(status))) return null;
  const members = (cluster as { members?: unknown } | null)?.members;
  if (!Array.isArray(members)) return null;
  const streaming = streamingFrom(status) ?? new Set<string>();
  const out = new Map<string, boolean>();
  for (const m of members as RestMember[]) {
    if (typeof m?.name !== "string" || LEADER_ROLES.has(String(m.role))) continue;
    const tags = typeof m.tags === "object" && m.tags !== null ? (m.tags as Record<string, unknown>) : {};
    if (typeof tags["replicatefrom"] === "string") continue;
    out.set(m.name, streaming.has(m.name));
  }
  return out;
}

/** Answers younger than this serve every gauge of one scrape (prom-client collects them in parallel). */
const FRESH_MS = 1000;
const REST_TIMEOUT_MS = 2000;

export class ReplicationMetrics {
  private reading: Promise<void> | null = null;
  private readAt = Number.NEGATIVE_INFINITY;
  private sync: boolean | null = null;
  private streaming: ReadonlyMap<string, boolean> | null = null;

  constructor(
    registry: Registry,
    scope: string,
    private readonly rest: Pick<PatroniRest, "patroni" | "cluster" | "dynamicConfig">,
    private readonly now: () => number = Date.now,
  ) {
    const self = this;
    const registers = [registry];
    new Gauge({
      name: "pgha_synchronous_mode",
      help: "1 when the cluster runs in synchronous mode (Patroni's synchronous_mode), 0 when not",
      labelNames: ["scope"],
      registers,
      async collect() {
        await self.read();
        this.reset();
        if (self.sync !== null) this.set({ scope }, self.sync ? 1 : 0);
      },
    });
    new Gauge({
      name: "pgha_replica_streaming",
      help: "On the leader: 1 for each replica streaming from it (pg_stat_replication), 0 for one that is not",
      labelNames: ["scope", "member"],
      registers,
      async collect() {
        await self.read();
        this.reset();
        for (const [member, on] of self.streaming ?? []) this.set({ scope, member }, on ? 1 : 0);
      },
    });
  }

  private read(): Promise<void> {
    if (this.now() - this.readAt < FRESH_MS) return Promise.resolve();
    this.reading ??= this.fetch().finally(() => {
      this.readAt = this.now();
      this.reading = null;
    });
    return this.reading;
  }

  /** Never throws: a scrape must not fail because Patroni did not answer. */
  private async fetch(): Promise<void> {
    try {
      const [status, config] = await Promise.all([
        this.rest.patroni(REST_TIMEOUT_MS),
        this.rest.dynamicConfig(REST_TIMEOUT_MS),
      ]);
      this.sync = synchronousMode(config);
      // Only the leader asks for the member list (Patroni reads it from etcd for /cluster).
      this.streaming = runsAsPrimary(decodePatroniStatus(status))
        ? replicaStreaming(status, await this.rest.cluster(REST_TIMEOUT_MS))
        : null;
    } catch {
      this.sync = null;
      this.streaming = null;
    }
  }
}
