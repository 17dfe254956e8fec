/**
 * Patroni's REST status: the body of GET /patroni (and of /primary, /replica, /health,
 * which answer the same document), decoded leniently, as the DCS records are in
 * patroni.ts: a field of the wrong type reads as absent, and the role is normalised on
 * the way in (Patroni 3's `master` and Patroni 4's `primary` are both `primary`). Used by
 * the router's health checks and selection and by the agent (backups, stop fence,
 * replication metrics).
 */
import { asNumber, asString, fields, parseJsonObject } from "./json.js";
import { type MemberRole, normaliseRole } from "./patroni.js";

export interface PatroniStatus {
  /** From pg_is_in_recovery(), normalised; null when the body has none. */
  readonly role: MemberRole | null;
  /** Patroni's state as written (`running`, `starting`, `stopping`, ...), or null. */
  readonly state: string | null;
  /** `xlog.location`: a primary's current WAL position. */
  readonly location: number | null;
  /** `xlog.received_location` of a replica. */
  readonly receivedLocation: number | null;
  /** `xlog.replayed_location` of a replica (what its readers see). */
  readonly replayedLocation: number | null;
  /**
   * `failsafe_mode_is_active`: a primary that lost etcd and stays primary because every
   * member it knows confirmed it over REST (Patroni's failsafe mode).
   */
  readonly failsafe: boolean;
}

const NOTHING: PatroniStatus = Object.freeze({
  role: null,
  state: null,
  location: null,
  receivedLocation: null,
  replayedLocation: null,
  failsafe: false,
});

/** The status from a decoded JSON body (anything: what is not an object reads as nothing known). */
export function decodePatroniStatus(body: unknown): PatroniStatus {
  const d = fields(body);
  const role = asString(d["role"]);
  const xlog = fields(d["xlog"]);
  return Object.freeze({
    role: role === undefined ? null : normaliseRole(role),
    state: asString(d["state"]) ?? null,
    location: asNumber(xlog["location"]) ?? null,
    receivedLocation: asNumber(xlog["received_location"]) ?? null,
    replayedLocation: asNumber(xlog["replayed_location"]) ?? null,
    failsafe: d["failsafe_mode_is_active"] === true,
  });
}

/** The status from the body's text; nothing known when it is not a JSON object. */
export function parsePatroniStatus(text: string): PatroniStatus {
  const d = parseJsonObject(text);
  return d === null ? NOTHING : decodePatroniStatus(d);
}

/** A running PostgreSQL out of recovery: the server takes writes. */
export function runsAsPrimary(s: PatroniStatus | null): boolean {
  return s !== null && s.role === "primary" && s.state === "running";
}
