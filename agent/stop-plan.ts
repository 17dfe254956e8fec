/**
 * What a stopping node does next: a leader with a replica ready to take over
 * hands over (a planned switchover instead of a failover); a leader whose
 * replicas are not ready yet waits for one (agent/stop.ts bounds the wait by
 * the stop's grace period); anything else just stops. Pure: Patroni's REST
 * /cluster and the leader's own /patroni answers in, a decision with its
 * reason out. Asked again every half second while the answer is "wait".
 *
 * A candidate must be streaming from this leader (its walreceiver in the leader's
 * pg_stat_replication, which /patroni lists under `replication`): a clean shutdown
 * sends every WAL record to connected walreceivers before it ends, so such a
 * replica has all of it. /cluster's `lag` alone is not enough: it is computed from
 * positions Patroni writes to etcd once per loop, so a replica that has not
 * connected yet (after its basebackup, before its slot exists) shows lag 0 while
 * the leader has moved on; Patroni would promote it and lose those writes.
 */

export type StopPlan =
  | { readonly action: "switchover"; readonly candidate: string; readonly reason: string }
  | { readonly action: "wait"; readonly reason: string }
  | { readonly action: "stop"; readonly leader: boolean; readonly reason: string };

export interface StopPlanOptions {
  /** SWITCHOVER_ON_STOP: off means a leader stops at once (behind its fence). */
  readonly enabled: boolean;
  readonly maxLagBytes?: number;
  /**
   * The cluster's synchronous_mode (Patroni's GET /config); null when unknown. With `on` Patroni
   * accepts only a synchronous standby as a switchover candidate; with Patroni 4's `quorum` it
   * accepts any replica (4.0.6 and later check no quorum when a candidate is named), and a quorum
   * standby is preferred.
   */
  readonly synchronousMode?: "off" | "on" | "quorum" | null;
}

/**
 * A member as Patroni's GET /cluster reports it: role leader | sync_standby | quorum_standby
 * (Patroni 4, quorum mode) | replica | standby_leader; a replica's state is its replication state
 * in Patroni 4 (`streaming`, `in archive recovery`), its Patroni state in 3.0 (`running`).
 */
interface RestMember {
  readonly name?: unknown;
  readonly role?: unknown;
  readonly state?: unknown;
  readonly lag?: unknown;
  readonly timeline?: unknown;
  readonly tags?: unknown;
}

const ROLE_WORDS: Readonly<Record<string, string>> = {
  sync_standby: "synchronous standby",
  quorum_standby: "quorum standby",
};

/** Patroni's default maximum_lag_on_failover: a replica further behind is not a candidate. */
export const DEFAULT_MAX_LAG_BYTES = 1_048_576;

const HEALTHY_STATES = new Set(["running", "streaming"]);
/** The roles of a replica in GET /cluster; the synchronous ones first. */
const SYNC_ROLES = new Set(["sync_standby", "quorum_standby"]);
const REPLICA_ROLES = new Set(["replica", ...SYNC_ROLES]);

function tagTrue(tags: unknown, name: string): boolean {
  return typeof tags === "object" && tags !== null && (tags as Record<string, unknown>)[name] === true;
}

/** Patroni's parse_bool: on/true/yes/1 and off/false/no/0, any case; anything else is unknown. */
export function patroniBool(value: unknown): boolean | null {
  const s = String(value).toLowerCase();
  if (["on", "true", "yes", "1"].includes(s)) return true;
  if (["off", "false", "no", "0"].includes(s)) return false;
  return null;
}

/**
 * The cluster's synchronous_mode from GET /config: `on`, `quorum` (Patroni 4) or `off`; null when
 * the answer is missing. Patroni: `quorum` in any case, else bool(parse_bool(value)), so an absent
 * or unparsable value is off.
 */
export function synchronousModeOf(config: unknown): "off" | "on" | "quorum" | null {
  if (typeof config !== "object" || config === null) return null;
  const v = (config as { synchronous_mode?: unknown }).synchronous_mode;
  if (String(v).toLowerCase() === "quorum") return "quorum";
  return patroniBool(v) === true ? "on" : "off";
}

/** Names of the members streaming from the leader, from its own GET /patroni; null if unknown. */
export function streamingFrom(leaderStatus: unknown): ReadonlySet<string> | null {
  if (typeof leaderStatus !== "object" || leaderStatus === null) return null;
  const replication = (leaderStatus as { replication?: unknown }).replication;
  const names = new Set<string>();
  if (!Array.isArray(replication)) return names; // Patroni leaves it out when nobody streams
  for (const r of replication as { application_name?: unknown; state?: unknown }[]) {
    if (typeof r?.application_name === "string" && r.state === "streaming") names.add(r.application_name);
  }
  return names;
}

/**
 * `isLeader` is what etcd says (the leader key names this node), null when etcd did not
 * answer; then Patroni's /cluster decides.
 */
export function planStop(
  self: string,
  cluster: unknown,
  leaderStatus: unknown,
  opts: StopPlanOptions,
  isLeader: boolean | null = null,
): StopPlan {
  const known =
    typeof cluster === "object" &&
    cluster !== null &&
    Array.isArray((cluster as { members?: unknown }).members);
  const members = known ? (cluster as { members: RestMember[] }).members : [];
  const me = members.find((m) => m.name === self);
  const leads = isLeader ?? (known ? me?.role === "leader" : null);
  if (leads === false) {
    return {
      action: "stop",
      leader: false,
      reason: `not the leader (role ${String(me?.role ?? "unknown")})`,
    };
  }
  if (known && (cluster as { pause?: unknown }).pause === true) {
    // Patroni leaves PostgreSQL running and the lock held in maintenance mode; nobody promotes.
    return { action: "stop", leader: false, reason: "cluster is paused (maintenance mode)" };
  }
  if (!opts.enabled) return { action: "stop", leader: true, reason: "switchover on stop is disabled" };
  if (!known || leads === null) {
    return { action: "wait", reason: "cluster state unknown (Patroni's REST API did not answer)" };
  }
  const others = members.filter((m) => typeof m.name === "string" && m.name !== self);
  if (others.length === 0) {
    return { action: "stop", leader: true, reason: "no replica to hand over to" };
  }
  const streaming = streamingFrom(leaderStatus);
  if (streaming === null) {
    return { action: "wait", reason: "replication state unknown (Patroni's REST /patroni did not answer)" };
  }
  const maxLag = opts.maxLagBytes ?? DEFAULT_MAX_LAG_BYTES;
  const candidates = members.filter(
    (m): m is RestMember & { name: string; lag: number } =>
      typeof m.name === "string" &&
      m.name !== self &&
      typeof m.role === "string" &&
      REPLICA_ROLES.has(m.role) &&
      typeof m.state === "string" &&
      HEALTHY_STATES.has(m.state) &&
      typeof m.lag === "number" &&
      m.lag <= maxLag &&
      streaming.has(m.name) &&
      (typeof me?.timeline !== "number" || typeof m.timeline !== "number" || m.timeline === me.timeline) &&
      !tagTrue(m.tags, "nofailover") &&
      (opts.synchronousMode !== "on" || m.role === "sync_standby"),
  );
  if (candidates.length === 0) {
    if (others.every((m) => tagTrue(m.tags, "nofailover"))) {
      return { action: "stop", leader: true, reason: "every replica is tagged nofailover" };
    }
    return {
      action: "wait",
      reason:
        opts.synchronousMode === "on"
          ? "no synchronous standby streaming from this leader yet"
          : "no healthy replica streaming from this leader yet",
    };
  }
  // In synchronous mode Patroni accepts only a synchronous standby; it is also the one surely
  // caught up. In quorum mode a quorum standby is preferred for the same reason.
  const sorted = [...candidates].sort(
    (a, b) =>
      Number(SYNC_ROLES.has(String(b.role))) - Number(SYNC_ROLES.has(String(a.role))) ||
      a.lag - b.lag ||
      a.name.localeCompare(b.name),
  );
  const best = sorted[0]!;
  return {
    action: "switchover",
    candidate: best.name,
    reason: `leader stopping; ${best.name} is a healthy ${ROLE_WORDS[String(best.role)] ?? "replica"} (lag ${best.lag} bytes)`,
  };
}
