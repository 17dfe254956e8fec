/**
 * What a lab measured: Patroni's and PostgreSQL's versions as the running cluster reports
 * them (REST /patroni, SQL `SHOW server_version`), where the members ran, and which parts
 * ran on it. Pure: the report prints one line per lab from this record.
 */
import type { RuntimeKind } from "../test/harness/patroni-runtime.js";

export interface LabRecord {
  /** The parts that ran on this lab, in order. */
  readonly parts: readonly string[];
  readonly runtime: RuntimeKind;
  /** "processes on this host" or "containers of pgha/agent:dev on the host network". */
  readonly where: string;
  /** Patroni's version from its REST /patroni (`patroni.version`), or null when it did not say. */
  readonly patroni: string | null;
  /** PostgreSQL's `server_version`, or null. */
  readonly postgres: string | null;
  readonly ttl: number;
  readonly loopWait: number;
}

/** Pure: "17.12 (Debian 17.12-0+deb13u1)" → "17.12"; anything unexpected is kept as it is. */
export function shortServerVersion(v: string): string {
  return /^\d+(\.\d+)*/.exec(v.trim())?.[0] ?? v.trim();
}

/** Pure: the report's line for a lab. */
export function labLine(l: LabRecord): string {
  const patroni = l.patroni ?? "unknown";
  const postgres = l.postgres === null ? "unknown" : shortServerVersion(l.postgres);
  return (
    `${l.parts.join(", ")}: Patroni ${patroni}, PostgreSQL ${postgres} (${l.where}; ` +
    `ttl ${l.ttl} s, loop_wait ${l.loopWait} s)`
  );
}

/**
 * Pure: Patroni refuses a ttl under 20 s from version 4 on (the agent refuses it too), and
 * wants ttl >= loop_wait + 2 x retry_timeout; the host's 3.0.2 takes the bench's 10 s.
 */
export function ttlFor(runtime: RuntimeKind, ttl: number): number {
  return runtime === "container" ? Math.max(20, ttl) : ttl;
}
