/**
 * Releasing a dead leader's lock (`-release-dead-leaders`): the decisions, pure.
 *
 * Patroni learns that a leader is gone only when the lock it renews in etcd
 * expires, a ttl after its last renewal. The registrator on the leader's Docker
 * host learns it within milliseconds: a `die` event, and an inspect that finds
 * the container's processes gone. When that container ran the Patroni member
 * that holds `/<namespace>/<scope>/leader`, the registrator deletes the key, and
 * the dead member's record beside it, in one etcd transaction that compares each
 * one's value, revision and lease with what it read; Patroni's replicas watch the
 * key and race at once, by Patroni's own rules (in synchronous mode only the
 * synchronous standby may win), without asking the dead member's address for its
 * WAL position (it would not answer before Patroni's REST timeout).
 *
 * Two steps, each `{ action, code, reason }`; the edge (leader-releaser.ts)
 * reads etcd between them and runs the transaction:
 *
 * 1. `deathNotice(inspect, facts, died, options)` — what Docker says: the container
 *    names a Patroni member of this host, and it is dead for certain (not
 *    running, not paused) and was not stopped on purpose (no stop signal, exit
 *    code not 0: a planned stop hands over by itself).
 * 2. `releaseDecision(notice, tie, read)` — what etcd says: that member holds
 *    the lock, no stop fence and no maintenance mode, and the member record is
 *    this container's (its `conn_url` and `api_url` are addresses this
 *    registrator published for it, its lease is the lock's, and no other live
 *    container claims the member).
 *
 * Anything missing or unreadable keeps the lock: the ttl path, as without the flag.
 */
import { formatHostPort } from "../shared/host-port.js";
import { asObject } from "../shared/json.js";
import { normalizeNamespace, patroniKeys } from "../shared/keys.js";
import { decodeMember } from "../shared/patroni.js";
import type { ContainerFacts } from "./lifecycle.js";
import { KEY_SAFE } from "./names.js";

/** How the container died, as the release counter's `reason` label. */
export const DEATH_CAUSES = ["oom", "killed", "signal", "exited"] as const;
export type DeathCause = (typeof DEATH_CAUSES)[number];

/** Why a lock is kept, as the skip counter's `reason` label. */
export const KEEP_CODES = [
  "not-patroni",
  "other-host",
  "unknown-state",
  "alive",
  "planned-stop",
  "not-leader",
  "fenced",
  "cluster-paused",
  "not-tied",
  "restarted",
  /** Set by the edge: the lock changed between the read and the transaction, which then did nothing. */
  "changed",
] as const;
export type KeepCode = (typeof KEEP_CODES)[number];

/**
 * A `die` event as the daemon emitted it: when (ms since the epoch) and the exit code it
 * carried. After a restart policy has started the container again, the inspect's
 * `ExitCode` and `OOMKilled` are the new run's, so these are what tell how it died.
 */
export interface DieEvent {
  readonly at: number;
  readonly exitCode: number | null;
}

/** A Patroni member as a container's environment names it. */
export interface MemberIdentity {
  /** Normalised: `/service/`. */
  readonly namespace: string;
  readonly scope: string;
  readonly name: string;
  /** `DOCKER_HOSTNAME`: the registrator `-hostname` of the container's host; null when unset. */
  readonly dockerHostname: string | null;
}

export interface Death {
  readonly cause: DeathCause;
  readonly exitCode: number;
  /** Docker's `State.FinishedAt`: one death, whatever number of looks at it. */
  readonly finishedAt: string;
  /**
   * A restart policy's doing: Docker is about to start it again, or has (new processes run,
   * not the ones that held the lock). The processes that died are gone all the same.
   */
  readonly restart: "none" | "restarting" | "restarted";
}

export type DeathNotice =
  | {
      readonly action: "check";
      readonly member: MemberIdentity;
      readonly death: Death;
      readonly reason: string;
    }
  | {
      readonly action: "keep";
      readonly code: KeepCode;
      readonly reason: string;
      readonly member: MemberIdentity | null;
    };

export interface NoticeOptions {
  /** This registrator's `-hostname`. */
  readonly hostname: string;
  /** `-patroni-namespace`: the namespace of a container whose environment names none. */
  readonly namespace: string;
}

/** One key as read: value, mod revision and lease (decimal strings, as etcd3 gives them). */
export interface KeyRead {
  readonly value: string;
  readonly modRevision: string;
  readonly lease: string;
}

/** The keys of the member's cluster, read in one range request. */
export interface ClusterRead {
  readonly revision: string;
  readonly leader: KeyRead | null;
  readonly member: KeyRead | null;
  /** The agent's stop fence (`pgha-fence`). */
  readonly fence: KeyRead | null;
  readonly config: KeyRead | null;
}

/** What ties the container to the member record, from this registrator's own state. */
export interface Tie {
  /** `ip:port` values this registrator published for the container while the processes that died ran. */
  readonly published: readonly string[];
  /** Other live containers (names) whose environment names the same member. */
  readonly twins: readonly string[];
  /**
   * The keys were read when the `die` event arrived, before Docker could start the container
   * again: a lock read then cannot be one its new processes took.
   */
  readonly readAtDeath: boolean;
}

export type ReleaseDecision =
  | {
      readonly action: "release";
      readonly code: DeathCause;
      readonly reason: string;
      /** `/<namespace>/<scope>/leader` */
      readonly key: string;
      /** The transaction deletes the key only if all three still hold. */
      readonly compare: KeyRead;
      /**
       * The dead member's record, `/<namespace>/<scope>/members/<name>`, deleted in the same
       * transaction and on the same condition (its own value, revision and lease as read).
       * Left in place, it names an address that no longer answers: each racing replica asks
       * it for its WAL position and waits out Patroni's REST timeout before it may promote.
       */
      readonly record: { readonly key: string; readonly compare: KeyRead };
    }
  | {
      readonly action: "keep";
      readonly code: KeepCode;
      readonly reason: string;
      /** The member held the lock: worth an info line, not a debug one. */
      readonly leader: boolean;
    };

/** `Config.Env` as a map; the last of duplicate names wins, as in the process. */
export function envOf(inspect: unknown): ReadonlyMap<string, string> {
  const env = asObject(asObject(inspect)?.["Config"])?.["Env"];
  const out = new Map<string, string>();
  if (!Array.isArray(env)) return out;
  for (const kv of env) {
    if (typeof kv !== "string") continue;
    const eq = kv.indexOf("=");
    if (eq > 0) out.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return out;
}

/**
 * The member a container's environment names: `NAME` (the agent's) or `PATRONI_NAME`
 * (Patroni's own), `PATRONI_SCOPE`, and `PATRONI_NAMESPACE` (both's) or the default.
 */
export function memberOf(
  inspect: unknown,
  defaultNamespace: string,
): { readonly member: MemberIdentity } | { readonly member: null; readonly reason: string } {
  const env = envOf(inspect);
  const get = (k: string) => {
    const v = env.get(k)?.trim();
    return v === undefined || v === "" ? undefined : v;
  };
  const agentName = get("NAME");
  const patroniName = get("PATRONI_NAME");
  const scope = get("PATRONI_SCOPE");
  if (agentName === undefined && patroniName === undefined) {
    return { member: null, reason: "its environment names no Patroni member (NAME or PATRONI_NAME)" };
  }
  if (agentName !== undefined && patroniName !== undefined && agentName !== patroniName) {
    return {
      member: null,
      reason: `NAME ${JSON.stringify(agentName)} and PATRONI_NAME ${JSON.stringify(patroniName)} differ: which member it ran is not certain`,
    };
  }
  if (scope === undefined) return { member: null, reason: "its environment names no PATRONI_SCOPE" };
  const name = (agentName ?? patroniName)!;
  const rawNamespace = get("PATRONI_NAMESPACE") ?? defaultNamespace;
  if (!KEY_SAFE.test(name) || !KEY_SAFE.test(scope) || /[\s\p{Cc}]/u.test(rawNamespace)) {
    return { member: null, reason: "its member name, scope or namespace cannot be part of a key" };
  }
  return {
    member: Object.freeze({
      namespace: normalizeNamespace(rawNamespace),
      scope,
      name,
      dockerHostname: get("DOCKER_HOSTNAME") ?? null,
    }),
  };
}

/** `namespace|scope|name`: one member, whichever container runs it. */
export function memberKey(m: MemberIdentity): string {
  return `${m.namespace}|${m.scope}|${m.name}`;
}

/** `/<namespace>/<scope>/<name>`, for log lines. */
export function memberLabel(m: MemberIdentity): string {
  return `${m.namespace}${m.scope}/${m.name}`;
}

/** `0001-01-01T00:00:00Z` (never) and unparsable times are null. */
function time(v: unknown): number | null {
  const t = typeof v === "string" ? Date.parse(v) : Number.NaN;
  return Number.isFinite(t) && t > 0 ? t : null;
}

/**
 * How the container's processes stand, after a `die` the daemon emitted at `diedAt` (ms;
 * null when no `die` was seen):
 * `alive` (running since before that death, or paused), or dead for certain, as `stopped`,
 * `restarting` (Docker reports a container it is about to start again as Running with
 * Restarting set and no process, Pid 0), or `restarted` (running again, started after
 * that death: the processes that died are gone, new ones run). Undefined without a State.
 */
export function liveness(
  inspect: unknown,
  diedAt: number | null,
):
  | { readonly kind: "alive"; readonly reason: string }
  | { readonly kind: "dead"; readonly restart: "none" | "restarting" | "restarted" }
  | undefined {
  const state = asObject(asObject(inspect)?.["State"]);
  if (!state || typeof state["Running"] !== "boolean") return undefined;
  const restarting = state["Restarting"] === true;
  if (state["Paused"] === true)
    return { kind: "alive", reason: "it is paused: its processes are still there" };
  if (restarting && typeof state["Pid"] === "number" && state["Pid"] !== 0) {
    return { kind: "alive", reason: `it is restarting and has a process (pid ${state["Pid"]})` };
  }
  if (restarting) return { kind: "dead", restart: "restarting" };
  if (state["Running"] !== true) return { kind: "dead", restart: "none" };
  const started = time(state["StartedAt"]);
  if (diedAt !== null && started !== null && started > diedAt) return { kind: "dead", restart: "restarted" };
  return { kind: "alive", reason: "it is running (this look was taken before it died)" };
}

/**
 * Docker's side, for the `die` event `died` (null when none was seen) and the events before
 * it (`facts`): a Patroni member of this host that died, not stopped on purpose? Never throws.
 */
export function deathNotice(
  inspect: unknown,
  facts: ContainerFacts,
  died: DieEvent | null,
  o: NoticeOptions,
): DeathNotice {
  const found = memberOf(inspect, o.namespace);
  if (found.member === null)
    return { action: "keep", code: "not-patroni", reason: found.reason, member: null };
  const member = found.member;
  const keep = (code: KeepCode, reason: string): DeathNotice => ({ action: "keep", code, reason, member });
  const live = liveness(inspect, died?.at ?? null);
  if (live === undefined) return keep("unknown-state", "the inspect has no State");
  if (live.kind === "alive") return keep("alive", live.reason);
  if (member.dockerHostname !== o.hostname) {
    return keep(
      "other-host",
      member.dockerHostname === null
        ? `its environment has no DOCKER_HOSTNAME, so it is not known to be this host's (-hostname ${o.hostname})`
        : `DOCKER_HOSTNAME ${JSON.stringify(member.dockerHostname)} is another host's (this one is ${JSON.stringify(o.hostname)})`,
    );
  }
  const state = asObject(asObject(inspect)?.["State"])!;
  // Started again since: the inspect's exit code and OOMKilled are the new run's; the die's count.
  const again = live.restart === "restarted";
  const exitCode = again
    ? (died?.exitCode ?? -1)
    : typeof state["ExitCode"] === "number"
      ? state["ExitCode"]
      : -1;
  if (facts.stopSignalled) {
    return keep(
      "planned-stop",
      "a stop signal reached it before it died (docker stop or restart): a stopping leader hands over or fences itself",
    );
  }
  if (exitCode === 0) return keep("planned-stop", "it exited with code 0: a clean stop");
  const oom = (!again && state["OOMKilled"] === true) || facts.oom === true;
  const cause: DeathCause = oom
    ? "oom"
    : facts.sigkilled
      ? "killed"
      : exitCode > 128 && exitCode <= 128 + 64
        ? "signal"
        : "exited";
  const how = {
    oom: "killed for memory (OOM)",
    killed: "SIGKILLed (docker kill)",
    signal: `killed by signal ${exitCode - 128}`,
    exited: `exited with code ${exitCode}`,
  }[cause];
  const finishedAt = typeof state["FinishedAt"] === "string" ? state["FinishedAt"] : "";
  return {
    action: "check",
    member,
    death: Object.freeze({ cause, exitCode, finishedAt, restart: live.restart }),
    reason: `${how}${{ none: "", restarting: "; Docker restarts it", restarted: "; Docker has started it again" }[live.restart]}`,
  };
}

/** `http://host:8008/patroni` → `host:8008` (default ports filled in); null when unusable. */
export function apiAddress(raw: unknown): string | null {
  if (typeof raw !== "string") return null;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return null;
  }
  if ((u.protocol !== "http:" && u.protocol !== "https:") || u.hostname === "") return null;
  const port = u.port === "" ? (u.protocol === "https:" ? 443 : 80) : Number(u.port);
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  return formatHostPort({ host, port });
}

function truthy(v: unknown): boolean {
  return v === true || v === "true";
}

/** etcd's side: does the dead container's member hold the lock, for certain? Never throws. */
export function releaseDecision(
  notice: Extract<DeathNotice, { action: "check" }>,
  tie: Tie,
  read: ClusterRead,
): ReleaseDecision {
  const { member, death } = notice;
  const key = patroniKeys.leader(member.namespace, member.scope);
  const keep = (code: KeepCode, reason: string, leader = true): ReleaseDecision => ({
    action: "keep",
    code,
    reason,
    leader,
  });
  if (read.leader === null) return keep("not-leader", `${key} is absent: no one holds the lock`, false);
  const holder = read.leader.value.trim();
  if (holder !== member.name) return keep("not-leader", `the lock is ${JSON.stringify(holder)}'s`, false);
  if (death.restart === "restarted" && !tie.readAtDeath) {
    return keep(
      "restarted",
      "Docker started it again before its lock was read: the lock could be its new processes'",
    );
  }
  if (read.fence !== null && read.fence.value.trim() !== "") {
    return keep(
      "fenced",
      `the agent's stop fence is in place (${read.fence.value.slice(0, 120)}): its rules decide who may lead`,
    );
  }
  if (read.config !== null) {
    let config: unknown = null;
    try {
      config = JSON.parse(read.config.value);
    } catch {}
    if (truthy(asObject(config)?.["pause"])) {
      return keep("cluster-paused", "the cluster is paused (maintenance mode): Patroni fails nothing over");
    }
  }
  if (read.member === null) return keep("not-tied", `no member record for ${member.name}`);
  const record = decodeMember(member.name, read.member.value);
  if (!record.valid) return keep("not-tied", `its member record is unusable: ${record.reason}`);
  if (read.member.lease !== read.leader.lease) {
    return keep(
      "not-tied",
      `the lock's lease ${read.leader.lease} is not the member record's ${read.member.lease}: not the same Patroni session`,
    );
  }
  const published = new Set(tie.published);
  if (published.size === 0) {
    return keep("not-tied", "this registrator published no address for the container while it ran");
  }
  const list = [...published].sort().join(", ");
  const conn = formatHostPort({ host: record.host, port: record.port });
  if (!published.has(conn)) {
    return keep(
      "not-tied",
      `its conn_url names ${conn}, not an address published for the container (${list})`,
    );
  }
  let apiRaw: unknown = null;
  try {
    apiRaw = (JSON.parse(read.member.value) as Record<string, unknown>)["api_url"];
  } catch {}
  const api = apiAddress(apiRaw);
  if (api === null) return keep("not-tied", "its member record has no usable api_url");
  if (!published.has(api)) {
    return keep("not-tied", `its api_url names ${api}, not an address published for the container (${list})`);
  }
  if (tie.twins.length > 0) {
    return keep(
      "not-tied",
      `another live container also runs as ${member.name} (${[...tie.twins].sort().join(", ")})`,
    );
  }
  return {
    action: "release",
    code: death.cause,
    reason: `${notice.reason}; it held the lock (revision ${read.leader.modRevision}, lease ${read.leader.lease})`,
    key,
    compare: Object.freeze({ ...read.leader }),
    record: Object.freeze({
      key: patroniKeys.member(member.namespace, member.scope, member.name),
      compare: Object.freeze({ ...read.member }),
    }),
  };
}
