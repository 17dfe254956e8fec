/**
 * What one route reports about itself (ClusterRoute.status()): the live view behind
 * /routes, /readyz and the status page. Plain JSON data: it crosses the workers' IPC and
 * HTTP, and status-view.ts reads it back leniently.
 */
import type { FailoverRequest, MemberRole } from "../shared/patroni.js";
import type { Decision } from "./decisions.js";
import type { ReplicaFallback, RouteSpec } from "./options.js";
import type { MemberHealth, PrimaryAction, ReplicaDecision } from "./selection.js";

export interface RouteStatus {
  readonly scope: string;
  readonly source: RouteSpec["source"];
  readonly etcd: { readonly connected: boolean; readonly revision: number };
  readonly leader: string | null;
  readonly primary: {
    readonly action: PrimaryAction;
    /** The target member's name, or null. */
    readonly target: string | null;
    /** `host:port` of the target, or null. */
    readonly address: string | null;
    readonly reason: string;
    readonly sessions: number;
  };
  readonly replicas: {
    readonly eligible: readonly {
      readonly name: string;
      readonly address: string;
      readonly sessions: number;
    }[];
    readonly excluded: ReplicaDecision["excluded"];
    readonly reason: string;
    readonly fallback: ReplicaFallback;
  };
  readonly failover: FailoverRequest | null;
  readonly members: readonly MemberStatus[];
  readonly decisions: readonly Decision[];
}

/** A route as /routes shows it: its status plus its listeners and clients (Router.routesView). */
export interface RouteView extends RouteStatus {
  readonly listen: string | null;
  readonly replicaListen: string | null;
  readonly held: { readonly primary: number; readonly replica: number };
  readonly clients: { readonly primary: number; readonly replica: number };
}

/** What /routes serves for one router process. */
export interface RoutesView {
  readonly routes: readonly RouteView[];
  readonly clients: number;
  readonly maxConnections: number;
}

export type MemberStatus =
  | {
      readonly name: string;
      readonly role: MemberRole;
      readonly state: string;
      readonly address: string;
      readonly timeline: number | null;
      readonly lagBytes: number | null;
      readonly tags: Readonly<Record<string, unknown>>;
      readonly rest: MemberHealth | null;
    }
  | { readonly name: string; readonly invalid: string };
