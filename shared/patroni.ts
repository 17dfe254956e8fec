/**
 * Patroni's DCS keys decoded into a frozen cluster view.
 *
 * Lenient on the way in, as Patroni's own `Cluster` is: a malformed member
 * record decodes to an invalid member (counted), never to an exception. Roles are
 * normalised while decoding (Patroni 3's `master` and 4's `primary` are both
 * `primary`), so nothing downstream knows both spellings. Unknown fields are
 * ignored.
 */
import { asString, parseJsonObject } from "./json.js";
import { clusterPrefix, splitClusterKey } from "./keys.js";
import type { PrefixSnapshot } from "./watch.js";

/**
 * `promoting` is Patroni's `promoted`: the member took the leader lock and ran `pg_ctl promote`,
 * and PostgreSQL may still be leaving recovery; Patroni writes `master` once it has (up to a loop
 * later, while the server may already take writes).
 */
export type MemberRole = "primary" | "promoting" | "replica" | "standby_leader" | "unknown";

export interface ValidMember {
  readonly valid: true;
  readonly name: string;
  /** PostgreSQL address from `conn_url`. */
  readonly host: string;
  readonly port: number;
  /** Patroni REST base URL (`api_url` without its `/patroni` path), or null when absent. */
  readonly apiUrl: string | null;
  readonly role: MemberRole;
  /** Patroni's state string as written (`running`, `starting`, `stopped`, ...). */
  readonly state: string;
  /** True for a running PostgreSQL (state `running`, or `streaming` as some versions report). */
  readonly running: boolean;
  readonly timeline: number | null;
  /** WAL position in bytes (`xlog_location`). */
  readonly lsn: number | null;
  readonly replayLsn: number | null;
  readonly receiveLsn: number | null;
  readonly tags: Readonly<Record<string, unknown>>;
  readonly nofailover: boolean;
  readonly noloadbalance: boolean;
  readonly nosync: boolean;
  readonly pendingRestart: boolean;
  readonly version: string | null;
  readonly modRevision: number;
}

export interface InvalidMember {
  readonly valid: false;
  readonly name: string;
  readonly reason: string;
  readonly modRevision: number;
}

export type Member = ValidMember | InvalidMember;

export interface FailoverRequest {
  readonly leader: string | null;
  readonly candidate: string | null;
  /** ISO timestamp, or null for "now". */
  readonly scheduledAt: string | null;
  readonly modRevision: number;
}

export interface SyncState {
  readonly leader: string | null;
  readonly syncStandbys: readonly string[];
}

export interface ClusterView {
  readonly scope: string;
  /** The member name the leader key holds, or null when no one holds the lock. */
  readonly leader: string | null;
  readonly leaderModRevision: number;
  /** Members sorted by name. */
  readonly members: readonly Member[];
  readonly invalidMembers: number;
  readonly config: Readonly<Record<string, unknown>> | null;
  readonly paused: boolean;
  readonly sync: SyncState | null;
  readonly failover: FailoverRequest | null;
  /**
   * The agent's stop fence (`pgha-fence`) when it says `handover`: `member`, the leader, is
   * about to hand over to `candidate` (agent/fence.ts). Routers hold new clients from then on.
   */
  readonly handover: { readonly member: string; readonly candidate: string } | null;
  readonly initialize: string | null;
  /** The leader's WAL position: `status.optime`, or the leader member's lsn. */
  readonly leaderLsn: number | null;
  /** Keys under the scope that could not be decoded (members included). */
  readonly malformedKeys: readonly string[];
  readonly revision: number;
}

export interface RawEntry {
  /** Key relative to the cluster prefix: `leader`, `members/pg1`, `config`, ... */
  readonly key: string;
  readonly value: string;
  readonly modRevision?: number;
}

/** A role as Patroni writes it (in DCS records and REST answers), normalised. */
export function normaliseRole(role: unknown): MemberRole {
  switch (role) {
    case "master":
    case "primary":
      return "primary";
    case "promoted":
      return "promoting";
    case "replica":
    case "sync_standby":
    case "standby":
      return "replica";
    case "standby_leader":
    case "standby-leader":
      return "standby_leader";
    default:
      return "unknown";
  }
}

function num(v: unknown): number | null {
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "string" && /^\d+$/.test(v)) return Number(v);
  return null;
}

/** A non-empty string, or null (Patroni writes "" for a field it clears). */
function nonEmpty(v: unknown): string | null {
  return asString(v) || null;
}

function truthy(v: unknown): boolean {
  return v === true || v === "true" || v === 1;
}

function parseUrl(raw: unknown): URL | null {
  if (typeof raw !== "string") return null;
  try {
    return new URL(raw);
  } catch {
    return null;
  }
}

/** `postgres://host:port/db` → host and port; null when unusable (no port included). */
export function parseConnUrl(raw: unknown): { host: string; port: number } | null {
  const u = parseUrl(raw);
  if (u === null) return null;
  if (u.protocol !== "postgres:" && u.protocol !== "postgresql:") return null;
  if (u.port === "" || u.hostname === "") return null;
  const port = Number(u.port);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return null;
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  return { host, port };
}

/** `http://host:8008/patroni` → `http://host:8008`; null when unusable. */
export function parseApiUrl(raw: unknown): string | null {
  const u = parseUrl(raw);
  if (u === null) return null;
  if ((u.protocol !== "http:" && u.protocol !== "https:") || u.hostname === "") return null;
  const path = u.pathname.replace(/\/+$/, "").replace(/\/patroni$/, "");
  return `${u.protocol}//${u.host}${path}`;
}

export function decodeMember(name: string, value: string, modRevision = 0): Member {
  const invalid = (reason: string): InvalidMember =>
    Object.freeze({ valid: false, name, reason, modRevision });
  if (name === "" || name.includes("/")) return invalid("bad member name");
  const data = parseJsonObject(value);
  if (!data) return invalid("member record is not a JSON object");
  const conn = parseConnUrl(data["conn_url"]);
  if (!conn)
    return invalid(
      `unusable conn_url ${JSON.stringify(data["conn_url"] ?? null)} (needs postgres://host:port)`,
    );
  const apiRaw = data["api_url"];
  const apiUrl = apiRaw === undefined || apiRaw === null ? null : parseApiUrl(apiRaw);
  if (apiRaw !== undefined && apiRaw !== null && apiUrl === null) {
    return invalid(`unusable api_url ${JSON.stringify(apiRaw)}`);
  }
  const tagsRaw = data["tags"];
  const tags: Record<string, unknown> =
    tagsRaw !== null && typeof tagsRaw === "object" && !Array.isArray(tagsRaw)
      ? { ...(tagsRaw as object) }
      : {};
  const state = typeof data["state"] === "string" ? data["state"] : "unknown";
  return Object.freeze({
    valid: true,
    name,
    host: conn.host,
    port: conn.port,
    apiUrl,
    role: normaliseRole(data["role"]),
    state,
    running: state === "running" || state === "streaming",
    timeline: num(data["timeline"]),
    lsn: num(data["xlog_location"]),
    replayLsn: num(data["replay_lsn"]),
    receiveLsn: num(data["receive_lsn"]),
    tags: Object.freeze(tags),
    nofailover: truthy(tags["nofailover"]),
    noloadbalance: truthy(tags["noloadbalance"]),
    nosync: truthy(tags["nosync"]),
    pendingRestart: truthy(data["pending_restart"]),
    version: typeof data["version"] === "string" ? data["version"] : null,
    modRevision,
  });
}

/**
 * Whether a failover key's value announces a switchover or failover. Patroni clears the key
 * by writing `{}` (or an empty value); only a leader or a candidate named makes a request.
 */
export function failoverAnnounced(value: string | null): boolean {
  return value !== null && value.trim() !== "" && decodeFailover(value, 0) !== null;
}

function decodeFailover(value: string, modRevision: number): FailoverRequest | null {
  const d = parseJsonObject(value);
  if (!d) return null;
  const leader = nonEmpty(d["leader"]);
  const candidate = nonEmpty(d["member"]) ?? nonEmpty(d["candidate"]);
  if (leader === null && candidate === null) return null;
  return Object.freeze({ leader, candidate, scheduledAt: nonEmpty(d["scheduled_at"]), modRevision });
}

function decodeSync(value: string): SyncState | null {
  const d = parseJsonObject(value);
  if (!d) return null;
  const leader = typeof d["leader"] === "string" ? d["leader"] : null;
  const raw = d["sync_standby"];
  const syncStandbys =
    typeof raw === "string"
      ? raw
          .split(",")
          .map((s) => s.trim())
          .filter((s) => s !== "")
      : [];
  return Object.freeze({ leader, syncStandbys: Object.freeze(syncStandbys) });
}

/** Decodes entries relative to `/<namespace>/<scope>/`. Never throws. */
export function decodeCluster(scope: string, entries: Iterable<RawEntry>, revision = 0): ClusterView {
  let leader: string | null = null;
  let leaderModRevision = 0;
  const members: Member[] = [];
  const malformed: string[] = [];
  let config: Record<string, unknown> | null = null;
  let sync: SyncState | null = null;
  let failover: FailoverRequest | null = null;
  let handover: { member: string; candidate: string } | null = null;
  let initialize: string | null = null;
  let optime: number | null = null;

  for (const e of entries) {
    const rev = e.modRevision ?? 0;
    if (e.key.startsWith("members/")) {
      const m = decodeMember(e.key.slice("members/".length), e.value, rev);
      members.push(m);
      if (!m.valid) malformed.push(e.key);
      continue;
    }
    switch (e.key) {
      case "leader": {
        const name = e.value.trim();
        leader = name === "" ? null : name;
        leaderModRevision = rev;
        break;
      }
      case "config":
        config = parseJsonObject(e.value);
        if (!config) malformed.push(e.key);
        break;
      case "sync":
        sync = decodeSync(e.value);
        if (!sync) malformed.push(e.key);
        break;
      case "failover":
        // Patroni clears a failover key by writing `{}` (an empty value, earlier): none.
        if (e.value.trim() !== "") {
          failover = decodeFailover(e.value, rev);
          if (!failover && parseJsonObject(e.value) === null) malformed.push(e.key);
        }
        break;
      case "initialize":
        initialize = e.value.trim() === "" ? null : e.value.trim();
        break;
      case "pgha-fence": {
        const f = parseJsonObject(e.value);
        const member = f ? nonEmpty(f["member"]) : null;
        const candidate = f ? nonEmpty(f["candidate"]) : null;
        if (f?.["state"] === "handover" && member !== null && candidate !== null) {
          handover = Object.freeze({ member, candidate });
        }
        break;
      }
      case "status": {
        const s = parseJsonObject(e.value);
        optime = s ? num(s["optime"]) : null;
        if (!s) malformed.push(e.key);
        break;
      }
      case "optime/leader":
        optime ??= num(e.value.trim());
        break;
      default:
        break; // history, failsafe, ...: not needed to route
    }
  }
  members.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const leaderMember = members.find((m) => m.name === leader);
  const leaderOwnLsn = leaderMember?.valid ? leaderMember.lsn : null;
  const leaderLsn =
    optime === null ? leaderOwnLsn : leaderOwnLsn === null ? optime : Math.max(optime, leaderOwnLsn);
  return Object.freeze({
    scope,
    leader,
    leaderModRevision,
    members: Object.freeze(members),
    invalidMembers: members.filter((m) => !m.valid).length,
    config: config ? Object.freeze(config) : null,
    paused: config !== null && truthy(config["pause"]),
    sync,
    failover,
    handover,
    initialize,
    leaderLsn,
    malformedKeys: Object.freeze(malformed),
    revision,
  });
}

/** The cluster of one scope out of a watched prefix snapshot. */
export function clusterFromSnapshot(snap: PrefixSnapshot, namespace: string, scope: string): ClusterView {
  const prefix = clusterPrefix(namespace, scope);
  const entries: RawEntry[] = [];
  for (const kv of snap.kvs.values()) {
    if (kv.key.startsWith(prefix)) {
      entries.push({ key: kv.key.slice(prefix.length), value: kv.value, modRevision: kv.modRevision });
    }
  }
  return decodeCluster(scope, entries, snap.revision);
}

/** Every scope that has keys under the namespace. */
export function scopesIn(snap: PrefixSnapshot, namespace: string): string[] {
  const scopes = new Set<string>();
  for (const key of snap.kvs.keys()) {
    const s = splitClusterKey(namespace, key);
    if (s) scopes.add(s.scope);
  }
  return [...scopes].sort();
}

export function memberByName(view: ClusterView, name: string | null): Member | undefined {
  return name === null ? undefined : view.members.find((m) => m.name === name);
}
