/**
 * Routing decisions: pure functions of a frozen cluster view (from etcd), the
 * latest REST health results and the clock. No I/O, no mutation of inputs.
 *
 * A primary decision is one of
 *   route  new clients go to `target`;
 *   pause  new clients are held, sessions already on `target` stay (a switchover is
 *          announced, or the target's REST API missed a check or two);
 *   none   no primary: new clients are held and sessions on the previous target are
 *          closed (fenced) by the caller.
 */
import type { ClusterView, MemberRole, ValidMember } from "../shared/patroni.js";
import type { CheckMode } from "./options.js";
import type { Target } from "./target.js";

/** One REST check: the HTTP status, or null when the API did not answer (refused, timeout). */
export interface Probe {
  readonly status: number | null;
  /** Consecutive checks without an answer (0 after any answer). */
  readonly failures: number;
  /**
   * While checks go unanswered: when the last answered one ran (or the first unanswered one,
   * when none answered before); null or absent after an answer.
   */
  readonly silentSince?: number | null;
  readonly at: number;
  /** The API the check went to; a result for another URL does not apply. */
  readonly apiUrl: string;
  /**
   * WAL position from the answer's body: `xlog.location` of a primary, `xlog.replayed_location`
   * of a replica (what its readers see); null when absent.
   */
  readonly lsn?: number | null;
  /**
   * The role in the answer's body, computed by Patroni from pg_is_in_recovery(). Patroni 3
   * answers /primary 200 as soon as it holds the leader lock, before PostgreSQL has left
   * recovery; only a body role of primary (Patroni 3: master) says the server takes writes.
   */
  readonly role?: MemberRole | null;
  /** Patroni's `state` in the body (`running`, `stopping`, ...). */
  readonly state?: string | null;
  /**
   * `failsafe_mode_is_active` in the body: a primary that lost etcd and stays primary because
   * every member it knows confirmed it over REST (Patroni's failsafe mode).
   */
  readonly failsafe?: boolean;
  /** Consecutive answers other than 200 (0 after a 200 or no answer). */
  readonly refusals?: number;
}

export interface MemberHealth {
  readonly primary?: Probe | undefined;
  readonly replica?: Probe | undefined;
}

export type Health = ReadonlyMap<string, MemberHealth>;

export interface DcsStatus {
  /** The etcd watch is live. */
  readonly connected: boolean;
  /** When it last became disconnected (ms), or null while connected. */
  readonly disconnectedSince: number | null;
}

export type PrimaryAction = "route" | "pause" | "none";

export interface PrimaryDecision {
  readonly action: PrimaryAction;
  readonly target: Target | null;
  readonly reason: string;
}

export interface PrimaryContext {
  readonly mode: CheckMode;
  readonly dcs: DcsStatus;
  /** The target new clients went to until now, or null. */
  readonly previous: Target | null;
  /** When the current failover key (by its revision) was first seen, or null when there is none. */
  readonly failoverSeenAt: number | null;
}

/**
 * Consecutive unanswered checks of the routed primary before new clients stop being only
 * held: from here its sessions are fenced unless the leader key still names it (see
 * `keepSessions`).
 */
export const REST_FALL = 2;
/** A REST result older than this counts as no answer. */
export const PROBE_MAX_AGE_MS = 5_000;
/** A switchover request pending longer than this is considered abandoned and ignored. */
export const STALE_FAILOVER_MS = 60_000;
/** With --check etcd: a view this long out of touch with etcd is not trusted (Patroni's ttl when known). */
export const DEFAULT_DCS_TRUST_MS = 30_000;

export function targetOf(m: ValidMember): Target {
  return Object.freeze({ name: m.name, host: m.host, port: m.port, apiUrl: m.apiUrl });
}

export function sameTarget(a: Target | null, b: Target | null): boolean {
  if (a === null || b === null) return a === b;
  return a.name === b.name && a.host === b.host && a.port === b.port;
}

export function sameDecision(a: PrimaryDecision, b: PrimaryDecision): boolean {
  return a.action === b.action && a.reason === b.reason && sameTarget(a.target, b.target);
}

const route = (target: Target, reason: string): PrimaryDecision =>
  Object.freeze({ action: "route", target, reason });
const pause = (target: Target, reason: string): PrimaryDecision =>
  Object.freeze({ action: "pause", target, reason });
const none = (reason: string): PrimaryDecision => Object.freeze({ action: "none", target: null, reason });

type ProbeVerdict = "ok" | "refused" | "unreachable" | "unknown";

/** What a member's REST check says, given the URL it must have gone to and the clock. */
export function probeVerdict(probe: Probe | undefined, apiUrl: string | null, now: number): ProbeVerdict {
  if (probe === undefined || apiUrl === null || probe.apiUrl !== apiUrl) return "unknown";
  if (now - probe.at > PROBE_MAX_AGE_MS) return "unreachable";
  if (probe.status === 200) return "ok";
  if (probe.status === null) return probe.failures === 0 ? "unknown" : "unreachable";
  return "refused";
}

/**
 * probeVerdict for /primary: a 200 whose body says the server is still in recovery (or
 * is not running: stopping, restarting, or Patroni's query failed) does not make a primary
 * yet. Patroni 3 answers /primary 200 as soon as it holds the leader lock; the body's role
 * comes from pg_is_in_recovery(), and when that query fails the body carries Patroni's own
 * role (`promoted` while promoting) and state `unknown`. Such answers are ambiguous, never
 * a refusal: only a status other than 200, or no answer at all, says "not the primary".
 */
export function primaryVerdict(probe: Probe | undefined, apiUrl: string | null, now: number): ProbeVerdict {
  const v = probeVerdict(probe, apiUrl, now);
  if (v !== "ok") return v;
  const role = probe?.role ?? null;
  const state = probe?.state ?? null;
  if (role !== null && role !== "primary") return "unknown";
  if (state !== null && state !== "running") return "unknown";
  return v;
}

/** Why a /primary answer whose verdict is `unknown` does not confirm the member (for reasons). */
function unconfirmed(probe: Probe | undefined, apiUrl: string): string {
  if (probe === undefined || probe.apiUrl !== apiUrl) return "not checked yet";
  if (probe.status !== 200) return "no answer yet";
  const role = probe.role ?? null;
  if (role !== null && role !== "primary") return `answers 200 with role ${role}`;
  return `answers 200 with state ${probe.state ?? "unknown"}`;
}

function isDue(scheduledAt: string | null, now: number): boolean {
  if (scheduledAt === null) return true;
  const t = Date.parse(scheduledAt);
  return Number.isNaN(t) || t <= now;
}

/** A pending switchover/failover that will take the primary away from `leader`, or null. */
export function pendingSwitchover(
  view: ClusterView,
  leader: string,
  failoverSeenAt: number | null,
  now: number,
): string | null {
  // The agent writes its handover fence before it asks Patroni to switch over, and waits a
  // moment: clients in start-up on the leader finish before it stops (agent/stop.ts).
  if (view.handover !== null && view.handover.member === leader) {
    return `${leader} is stopping and hands over to ${view.handover.candidate}`;
  }
  const f = view.failover;
  if (f === null) return null;
  if (f.leader !== null && f.leader !== leader) return null;
  if (f.leader === null && (f.candidate === null || f.candidate === leader)) return null;
  if (f.candidate === leader) return null;
  if (!isDue(f.scheduledAt, now)) return null;
  if (failoverSeenAt !== null && now - failoverSeenAt > STALE_FAILOVER_MS) return null;
  return `switchover from ${leader}${f.candidate ? ` to ${f.candidate}` : ""} pending`;
}

/** Patroni's ttl from the cluster config (ms), or the default. */
export function dcsTrustMs(view: ClusterView): number {
  const ttl = view.config?.["ttl"];
  return typeof ttl === "number" && ttl > 0 ? ttl * 1000 : DEFAULT_DCS_TRUST_MS;
}

/**
 * The member the DCS names as primary, or why there is none. With `roleFromRest`, a
 * leader whose member record says `replica` or `promoting` is accepted here: Patroni
 * rewrites the record up to a loop after the promotion (Patroni 3.0.2 writes `replica`,
 * then `promoted`, then `master`), and REST /primary (checked next) is the node's own word
 * on its role. Any other role (`demoted`, `standby_leader`, unknown) is definitive.
 */
function dcsPrimary(view: ClusterView, roleFromRest: boolean): ValidMember | string {
  if (view.leader === null) return "no leader key";
  const m = view.members.find((x) => x.name === view.leader);
  if (m === undefined) return `leader ${view.leader} is not among the members`;
  if (!m.valid) return `leader ${view.leader}'s member record is unusable: ${m.reason}`;
  const settling = roleFromRest && (m.role === "replica" || m.role === "promoting");
  if (m.role !== "primary" && !settling) return `leader ${m.name} has role ${m.role}`;
  if (!m.running) return `leader ${m.name} is ${m.state}`;
  return m;
}

function restOnly(view: ClusterView, health: Health, ctx: PrimaryContext, now: number): PrimaryDecision {
  const answering: ValidMember[] = [];
  for (const m of view.members) {
    if (m.valid && primaryVerdict(health.get(m.name)?.primary, m.apiUrl, now) === "ok") answering.push(m);
  }
  if (answering.length > 1) {
    return none(`several members answer /primary (${answering.map((m) => m.name).join(", ")}); routing none`);
  }
  const only = answering[0];
  if (only !== undefined) return route(targetOf(only), `${only.name} answers /primary`);
  const prev = ctx.previous;
  if (prev !== null) {
    const m = view.members.find((x) => x.name === prev.name);
    const verdict = m?.valid ? primaryVerdict(health.get(m.name)?.primary, m.apiUrl, now) : "refused";
    const failures = health.get(prev.name)?.primary?.failures ?? 0;
    if ((verdict === "unreachable" || verdict === "unknown") && failures < REST_FALL) {
      return pause(prev, `${prev.name} /primary did not answer; holding new clients`);
    }
  }
  return none("no member answers /primary");
}

/**
 * Patroni's failsafe mode: a primary that can no longer reach etcd keeps its role while
 * every member it knows answers its REST pings, and its leader key expires meanwhile. With
 * failsafe mode on in the cluster's config and no leader key, the one member that answers
 * /primary 200 as a running primary and says failsafe is active is routed; anything else
 * (none, or several) routes none.
 */
function failsafePrimary(
  view: ClusterView,
  health: Health,
  previous: Target | null,
  now: number,
): PrimaryDecision | null {
  if (view.config?.["failsafe_mode"] !== true) return null;
  const inFailsafe = (name: string, apiUrl: string | null) =>
    primaryVerdict(health.get(name)?.primary, apiUrl, now) === "ok" &&
    health.get(name)?.primary?.failsafe === true;
  const candidates: Target[] = view.members
    .filter((m): m is ValidMember => m.valid && inFailsafe(m.name, m.apiUrl))
    .map(targetOf);
  // Its member record shares the lease of its leader key: the primary routed until now may be
  // known only from before (route.ts keeps checking it).
  if (
    previous !== null &&
    !candidates.some((c) => c.name === previous.name) &&
    inFailsafe(previous.name, previous.apiUrl)
  ) {
    candidates.push(previous);
  }
  if (candidates.length === 1) {
    const only = candidates[0]!;
    return route(
      only,
      `no leader key; ${only.name} stays primary in Patroni's failsafe mode (every member confirmed it over REST)`,
    );
  }
  // The routed primary's key just expired and its last answer predates failsafe mode (or was
  // ambiguous): hold new clients, keep its sessions, and ask it again rather than fence it.
  if (candidates.length === 0 && previous !== null) {
    const probe = health.get(previous.name)?.primary;
    const verdict = primaryVerdict(probe, previous.apiUrl, now);
    const failures = probe?.failures ?? 0;
    if ((verdict === "ok" || verdict === "unknown") && failures < REST_FALL) {
      return pause(
        previous,
        `no leader key; asking ${previous.name} whether Patroni's failsafe mode keeps it primary`,
      );
    }
    // Its REST API silent (a loaded machine): replicas that had its failsafe pings promote
    // nobody for Patroni's ttl after the last one, so its sessions stay for half of that.
    if (verdict === "unreachable" && probe?.failsafe === true) {
      const silent = silentMs(probe, now);
      if (silent !== null && silent < dcsTrustMs(view) / 2) {
        return pause(
          previous,
          `no leader key; ${previous.name} was primary in Patroni's failsafe mode and its REST API has not answered for ${(silent / 1000).toFixed(1)} s; its sessions stay up to half of Patroni's ttl`,
        );
      }
    }
    // As etcd comes back after a failsafe period, Patroni answers 503 while it takes its lock
    // again, its PostgreSQL still a running primary: ask again before fencing. Under load that
    // takes several loops (etcd's members time out while they catch up); while the answer says
    // failsafe mode is still active, its replicas promote nobody, so it may take as long.
    if (verdict === "refused" && healing(view, probe)) {
      return pause(
        previous,
        `no leader key; ${previous.name} answers /primary with ${probe!.status} while still primary${probe?.failsafe === true ? " in Patroni's failsafe mode" : ""}; asking again`,
      );
    }
  }
  return null;
}

/** How long the probe's API has gone unanswered, from its last answer; null when unknown. */
function silentMs(probe: Probe | undefined, now: number): number | null {
  const since = probe?.silentSince ?? null;
  return since === null ? null : Math.max(0, now - since);
}

/**
 * The routed leader's REST API does not answer: why its sessions stay (new clients are held),
 * or null to fence them. A REST API silent for a few seconds is what a loaded machine shows
 * (Patroni answers from Python threads, each check a TLS handshake); the sessions go to a
 * PostgreSQL that may be perfectly well. While a live etcd view names the member leader, no
 * other member can have been promoted: its sessions stay, however long REST is silent, and
 * are fenced when the key goes or moves. With etcd unreachable too the view may be stale:
 * the sessions stay for half of Patroni's ttl of silence (a Patroni that died then has not
 * lost its key yet), then are fenced.
 */
function keepSessions(
  view: ClusterView,
  probe: Probe | undefined,
  dcs: DcsStatus,
  name: string,
  now: number,
): string | null {
  if ((probe?.failures ?? 0) < REST_FALL) return `${name} /primary did not answer; holding new clients`;
  const silent = silentMs(probe, now);
  const forWhat = silent === null ? "" : ` for ${(silent / 1000).toFixed(1)} s`;
  if (dcs.connected) {
    return `${name} /primary has not answered${forWhat}; holding new clients, its sessions stay while etcd names it leader`;
  }
  if (silent !== null && silent < dcsTrustMs(view) / 2) {
    return `${name} /primary has not answered${forWhat} and etcd is unreachable; holding new clients, its sessions stay up to half of Patroni's ttl`;
  }
  return null;
}

/** What a refusal's body said (role, state, failsafe mode), for a decision's reason. */
function bodySays(probe: Probe | undefined): string {
  const facts = [
    probe?.role ? `role ${probe.role}` : null,
    probe?.state ? `state ${probe.state}` : null,
    probe?.failsafe === true ? "failsafe mode active" : null,
  ].filter((f) => f !== null);
  return facts.length === 0 ? "" : ` (${facts.join(", ")})`;
}

/** The probe's body says a running primary (its role normalised: Patroni 3's `master` reads as `primary`). */
function stillPrimary(probe: Probe | undefined): boolean {
  return probe?.role === "primary" && probe?.state === "running";
}

/**
 * A refusal from the routed primary as etcd comes back after Patroni's failsafe mode: its
 * body says a running primary, no switchover or handover is announced, and either it is the
 * first refusal or the body says failsafe mode is still active. Patroni answers 503 from the
 * moment it reads etcd again without its leader key until it has written the key again; its
 * replicas follow it, not racing, while its failsafe pings are younger than the ttl, and the
 * body's flag ends with them.
 */
function healing(view: ClusterView, probe: Probe | undefined): boolean {
  if (view.handover !== null || view.failover !== null || !stillPrimary(probe)) return false;
  return probe?.failsafe === true || (probe?.refusals ?? 1) < REST_FALL;
}

/** Where new clients of the primary port go now, and why. */
export function selectPrimary(
  view: ClusterView,
  health: Health,
  ctx: PrimaryContext,
  now: number,
): PrimaryDecision {
  if (ctx.mode === "rest") return restOnly(view, health, ctx, now);

  const m = dcsPrimary(view, ctx.mode === "both");
  if (typeof m === "string") {
    if (ctx.mode === "both" && view.leader === null) {
      const failsafe = failsafePrimary(view, health, ctx.previous, now);
      if (failsafe !== null) return failsafe;
    }
    return none(m);
  }
  const target = targetOf(m);
  const stale = ctx.dcs.disconnectedSince === null ? 0 : now - ctx.dcs.disconnectedSince;

  if (ctx.mode === "etcd") {
    if (!ctx.dcs.connected && stale > dcsTrustMs(view)) {
      return none(`etcd unreachable for longer than Patroni's ttl; ${m.name}'s lock may be gone`);
    }
    const pending = pendingSwitchover(view, m.name, ctx.failoverSeenAt, now);
    if (pending !== null) return pause(target, pending);
    return route(target, `${m.name} holds the leader key`);
  }

  // both: the leader key and REST /primary must agree. Definitive signals (the leader key
  // gone or moved, a record saying demoted, /primary answering non-200, REST_FALL missed
  // checks) fence; an ambiguous answer about the routed primary only pauses it.
  if (m.apiUrl === null) return none(`leader ${m.name} has no api_url to confirm it`);
  const probe = health.get(m.name)?.primary;
  const verdict = primaryVerdict(probe, m.apiUrl, now);
  const wasRouted = sameTarget(ctx.previous, target);
  if (verdict === "refused") {
    // The key written again after a failsafe period, and a 503 whose body still says failsafe
    // mode: Patroni reads etcd again right after writing its key, and while that read lacks
    // the key it answers 503 until its next loop (or this answer predates the key): ask again.
    if (wasRouted && probe?.failsafe === true && healing(view, probe)) {
      return pause(
        target,
        `${m.name} holds its leader key again after Patroni's failsafe mode but answers /primary with ${probe.status}, its body still in failsafe mode; asking again`,
      );
    }
    // A 503 from the routed leader fences at once, even while its body still says primary: in
    // a switchover that is the demotion, and fencing sends the clients still in start-up on it
    // back to be held and replayed on the new primary (a pause here lost some of them).
    return none(`leader ${m.name} answers /primary with ${probe!.status}${bodySays(probe)}`);
  }
  if (verdict === "unreachable") {
    if (wasRouted) {
      const kept = keepSessions(view, probe, ctx.dcs, m.name, now);
      if (kept !== null) return pause(target, kept);
    }
    return none(`leader ${m.name}'s REST API does not answer`);
  }
  if (verdict === "unknown") {
    if (wasRouted) {
      return pause(
        target,
        `${m.name} /primary does not confirm it now (${unconfirmed(probe, m.apiUrl)}); holding new clients`,
      );
    }
    return none(
      m.role === "primary"
        ? `awaiting REST confirmation of ${m.name}`
        : `leader ${m.name} has role ${m.role}; awaiting REST confirmation`,
    );
  }
  const pending = pendingSwitchover(view, m.name, ctx.failoverSeenAt, now);
  if (pending !== null) return pause(target, pending);
  if (!ctx.dcs.connected)
    return route(target, `${m.name} answers /primary (etcd unreachable; last view kept)`);
  return route(target, `${m.name} holds the leader key and answers /primary`);
}

// ---------------------------------------------------------------------------
// Replicas

export interface ReplicaOptions {
  readonly mode: CheckMode;
  /** Bytes of WAL a replica may be behind the leader. */
  readonly maxLag: number;
  /** A replica excluded for lag comes back only below maxLag × (1 − hysteresis). */
  readonly hysteresis: number;
}

/** Fraction of --max-lag a lagging replica must catch up below before it is used again. */
export const LAG_HYSTERESIS = 0.25;

export interface ReplicaCandidate extends Target {
  readonly lag: number | null;
}

export interface ReplicaDecision {
  readonly eligible: readonly ReplicaCandidate[];
  readonly excluded: readonly { readonly name: string; readonly reason: string }[];
  readonly reason: string;
}

/** A probe's WAL position when the probe answered 200 for this API recently. */
function probeLsn(probe: Probe | undefined, apiUrl: string | null, now: number): number | null {
  return probeVerdict(probe, apiUrl, now) === "ok" ? (probe?.lsn ?? null) : null;
}

/**
 * How far a replica's readers are behind the leader, in bytes: the leader's position (the
 * newer of etcd's and its REST answer) minus the replica's replayed position (its REST
 * answer, else what its member record says). Null when either is unknown.
 */
export function replicaLag(view: ClusterView, m: ValidMember, health: Health, now: number): number | null {
  const leader = view.members.find((x) => x.name === view.leader);
  // The leader's position only grows: a REST answer that has aged past PROBE_MAX_AGE_MS (or
  // whose next check failed) is still a lower bound, so it keeps counting. Dropping it would
  // fall back to etcd's older optime and bring a lagging replica back for a moment.
  const leaderProbe = leader?.valid === true ? health.get(leader.name)?.primary : undefined;
  const leaderRest =
    leader?.valid === true && leaderProbe?.apiUrl === leader.apiUrl ? (leaderProbe.lsn ?? null) : null;
  const leaderLsn =
    view.leaderLsn === null
      ? leaderRest
      : leaderRest === null
        ? view.leaderLsn
        : Math.max(view.leaderLsn, leaderRest);
  const position = probeLsn(health.get(m.name)?.replica, m.apiUrl, now) ?? m.replayLsn ?? m.lsn;
  if (leaderLsn === null || position === null) return null;
  return Math.max(0, leaderLsn - position);
}

function replicaExclusion(
  view: ClusterView,
  health: Health,
  m: ValidMember,
  opts: ReplicaOptions,
  wasEligible: boolean,
  now: number,
): string | null {
  if (m.name === view.leader) return "is the leader";
  if (opts.mode !== "rest") {
    if (m.role !== "replica") return `has role ${m.role}`;
    if (!m.running) return `is ${m.state}`;
  }
  if (m.noloadbalance) return "is tagged noloadbalance";
  if (opts.mode !== "etcd") {
    const verdict = probeVerdict(health.get(m.name)?.replica, m.apiUrl, now);
    if (verdict !== "ok") return verdict === "refused" ? "refuses /replica" : "/replica not confirmed";
  }
  if (opts.mode === "rest") return null; // Patroni applies the lag limit itself (/replica?lag=)
  const lag = replicaLag(view, m, health, now);
  if (lag === null) return "lag unknown";
  const limit = wasEligible ? opts.maxLag : opts.maxLag * (1 - opts.hysteresis);
  if (lag > limit) return wasEligible ? "lags past --max-lag" : "lags past the --max-lag return threshold";
  return null;
}

/** The replicas new clients of the replica port may use. `previous`: names eligible until now. */
export function selectReplicas(
  view: ClusterView,
  health: Health,
  opts: ReplicaOptions,
  previous: ReadonlySet<string>,
  now: number,
): ReplicaDecision {
  const eligible: ReplicaCandidate[] = [];
  const excluded: { name: string; reason: string }[] = [];
  for (const m of view.members) {
    if (!m.valid) {
      excluded.push(Object.freeze({ name: m.name, reason: "unusable member record" }));
      continue;
    }
    const why = replicaExclusion(view, health, m, opts, previous.has(m.name), now);
    if (why === null) eligible.push(Object.freeze({ ...targetOf(m), lag: replicaLag(view, m, health, now) }));
    else excluded.push(Object.freeze({ name: m.name, reason: why }));
  }
  const reason =
    eligible.length === 0
      ? "no eligible replica"
      : `replicas ${eligible.map((r) => r.name).join(", ")} eligible`;
  return Object.freeze({ eligible: Object.freeze(eligible), excluded: Object.freeze(excluded), reason });
}

export function sameReplicaDecision(a: ReplicaDecision, b: ReplicaDecision): boolean {
  if (a.eligible.length !== b.eligible.length || a.excluded.length !== b.excluded.length) return false;
  for (let i = 0; i < a.eligible.length; i++) if (!sameTarget(a.eligible[i]!, b.eligible[i]!)) return false;
  for (let i = 0; i < a.excluded.length; i++) {
    if (a.excluded[i]!.name !== b.excluded[i]!.name || a.excluded[i]!.reason !== b.excluded[i]!.reason)
      return false;
  }
  return true;
}

/**
 * Fewest active connections first; between equals, round-robin by `turn` (a counter the
 * caller increments per pick). Null when `eligible` is empty.
 */
export function pickReplica<T extends Target>(
  eligible: readonly T[],
  active: (name: string) => number,
  turn: number,
): T | null {
  if (eligible.length === 0) return null;
  let min = Number.POSITIVE_INFINITY;
  for (const r of eligible) min = Math.min(min, active(r.name));
  const least = eligible.filter((r) => active(r.name) === min);
  return least[turn % least.length]!;
}
