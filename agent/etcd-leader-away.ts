/**
 * Keeps etcd's raft leader off the host of the Patroni leader (multi-host mode: one etcd member
 * per host, reached on the host's own address).
 *
 * Patroni's leader lock is an etcd key on a lease with the ttl. When the leader's host dies,
 * the lock goes a ttl after its last renewal — unless that host also ran etcd's raft leader:
 * the other members first elect a new raft leader, and a new raft leader renews every lease
 * by its whole TTL plus an election timeout. The lock then outlives the dead host by 2.6 to
 * 3.7 s more than the ttl (3 runs each with etcd 3.5 on this machine, TTL 20 s kept alive just
 * before the kill: 20.2–20.3 s when a follower died, 22.6–23.7 s when the raft leader died),
 * and no replica may take it before. The same holds when the leader's host is cut off.
 *
 * So while this node leads and runs as primary, it checks every few seconds which member
 * leads etcd; when it is the member on this node's own host, it asks it to hand leadership
 * to the most advanced member that agrees on who leads (etcd's MoveLeader, answered by the
 * leader). Nothing happens where no configured etcd endpoint is on this node's host (the
 * single-host compose stack, whose members are reached by container name).
 */
import { Counter, type Registry } from "prom-client";
import { createEtcdClient, type Etcd3, type EtcdOptions } from "../shared/etcd.js";
import type { HostPort } from "../shared/host-port.js";
import type { Logger } from "../shared/logger.js";

export const LEADER_AWAY_INTERVAL_MS = 3000;
/** The deadline of each status and move call. */
export const LEADER_AWAY_CALL_TIMEOUT_MS = 1500;

/** One member's answer to etcd's Status call. */
export interface MemberStatus {
  readonly endpoint: HostPort;
  /** The answering member's id. */
  readonly memberId: string;
  /** Who it believes leads ("0" when nobody does). */
  readonly leaderId: string;
  readonly raftIndex: bigint;
}

export type LeaderAwayPlan =
  | { readonly action: "none"; readonly reason: string }
  | {
      readonly action: "move";
      readonly reason: string;
      readonly from: MemberStatus;
      readonly to: MemberStatus;
    };

/**
 * What to do, from the members' answers (null: did not answer) and this node's host: move
 * etcd's leadership only when the member on this host leads, to a member that answered and
 * agrees, the most advanced one first.
 */
export function planLeaderAway(
  statuses: readonly (MemberStatus | null)[],
  localHost: string,
): LeaderAwayPlan {
  const answered = statuses.filter((s): s is MemberStatus => s !== null);
  const local = answered.find((s) => s.endpoint.host === localHost);
  if (!local) return { action: "none", reason: "the etcd member on this host did not answer" };
  if (local.leaderId !== local.memberId)
    return { action: "none", reason: "etcd's leader is on another host" };
  const others = answered
    .filter((s) => s.memberId !== local.memberId && s.leaderId === local.memberId)
    .sort((a, b) => (a.raftIndex === b.raftIndex ? 0 : a.raftIndex > b.raftIndex ? -1 : 1));
  const to = others[0];
  if (!to) return { action: "none", reason: "no other member answered that follows this host's" };
  return { action: "move", reason: "etcd's leader runs on the Patroni leader's host", from: local, to };
}

export interface LeaderAwayDeps {
  /** This node's host as the other hosts reach it (its published PostgreSQL address). */
  readonly localHost: string;
  readonly endpoints: readonly HostPort[];
  /** Whether this node holds Patroni's leader lock and runs as primary. */
  readonly leads: () => Promise<boolean>;
  readonly status: (endpoint: HostPort) => Promise<MemberStatus>;
  /** MoveLeader, sent to `from` (only etcd's leader answers it). */
  readonly moveLeader: (from: HostPort, targetId: string) => Promise<void>;
  readonly registry: Registry;
  readonly log: Logger;
  readonly intervalMs?: number;
}

export class EtcdLeaderAway {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private running: Promise<unknown> = Promise.resolve();
  private readonly moves: Counter<"outcome">;

  constructor(private readonly d: LeaderAwayDeps) {
    this.moves = new Counter({
      name: "pgha_etcd_leader_moves_total",
      help: "Times this node, leading Patroni, asked the etcd member on its own host to hand etcd's leadership to another member, by outcome (moved, failed)",
      labelNames: ["outcome"],
      registers: [d.registry],
    });
    for (const outcome of ["moved", "failed"]) this.moves.inc({ outcome }, 0);
  }

  /** Whether any configured endpoint is on this node's host: without one there is nothing to do. */
  get applies(): boolean {
    return this.d.endpoints.some((e) => e.host === this.d.localHost);
  }

  start(): void {
    if (!this.applies) return;
    const tick = () => {
      if (this.stopped) return;
      this.running = this.check().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.d.intervalMs ?? LEADER_AWAY_INTERVAL_MS);
      });
    };
    this.timer = setTimeout(tick, this.d.intervalMs ?? LEADER_AWAY_INTERVAL_MS);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  /** One check; returns what it decided. */
  async check(): Promise<LeaderAwayPlan> {
    const { d } = this;
    if (!(await d.leads().catch(() => false))) return { action: "none", reason: "this node does not lead" };
    const statuses = await Promise.all(d.endpoints.map((e) => d.status(e).catch(() => null)));
    const plan = planLeaderAway(statuses, d.localHost);
    if (plan.action !== "move" || this.stopped) return plan;
    try {
      await d.moveLeader(plan.from.endpoint, plan.to.memberId);
      this.moves.inc({ outcome: "moved" });
      d.log.info(
        { from: plan.from.endpoint, to: plan.to.endpoint },
        `${plan.reason}: handed etcd's leadership to the member at ${plan.to.endpoint.host}:${plan.to.endpoint.port}`,
      );
    } catch (err) {
      this.moves.inc({ outcome: "failed" });
      d.log.warn({ err, from: plan.from.endpoint, to: plan.to.endpoint }, `${plan.reason}: moving it failed`);
    }
    return plan;
  }
}

/** Status and MoveLeader over one etcd client per endpoint, with the agent's etcd options. */
export function etcdMemberCalls(opts: EtcdOptions): {
  status: (endpoint: HostPort) => Promise<MemberStatus>;
  moveLeader: (from: HostPort, targetId: string) => Promise<void>;
  close: () => void;
} {
  const clients = new Map<string, Etcd3>();
  const clientOf = (e: HostPort): Etcd3 => {
    const key = `${e.host}:${e.port}`;
    let c = clients.get(key);
    if (!c) {
      c = createEtcdClient({ ...opts, hosts: [e], callTimeoutMs: LEADER_AWAY_CALL_TIMEOUT_MS });
      clients.set(key, c);
    }
    return c;
  };
  const deadline = () => ({ deadline: Date.now() + LEADER_AWAY_CALL_TIMEOUT_MS });
  return {
    status: async (endpoint) => {
      const r = await clientOf(endpoint).maintenance.status(deadline());
      return {
        endpoint,
        memberId: String(r.header.member_id),
        leaderId: String(r.leader),
        raftIndex: BigInt(r.raftIndex),
      };
    },
    moveLeader: async (from, targetId) => {
      await clientOf(from).maintenance.moveLeader({ targetID: targetId }, deadline());
    },
    close: () => {
      for (const c of clients.values()) c.close();
      clients.clear();
    },
  };
}
