/**
 * What the router's supervisor (supervisor.ts) and its workers say to each other
 * over Node's IPC channel ("advanced" serialization: Maps cross as Maps):
 * - supervisor → worker: each route's plan after each evaluation of the control plane
 *   (`route`, see RoutePlan), a closed route (`unroute`), a query with an id, "shut down";
 * - worker → supervisor: `hello` once it can take plans (answered with every current
 *   plan), and the answers to queries.
 * A message a worker cannot use is logged, counted (router_ipc_bad_messages_total) and
 * ignored. The worker side lives here too.
 */
import type { MetricObjectWithValues, MetricValue } from "prom-client";
import type { Readiness } from "../shared/admin.js";
import type { Logger } from "../shared/logger.js";
import type { JsonRegistry } from "./metrics.js";
import type { RouteSpec } from "./options.js";
import type { RoutePlan } from "./route.js";
import type { RoutesView } from "./route-status.js";

export type Query = "metrics" | "routes" | "readiness";

export type RouteMessage = { readonly t: "pgha:route"; readonly spec: RouteSpec; readonly plan: RoutePlan };

export type ToWorker =
  | { readonly t: "pgha:query"; readonly id: number; readonly what: Query }
  | RouteMessage
  | { readonly t: "pgha:unroute"; readonly scope: string }
  | { readonly t: "pgha:shutdown" };

export type ToSupervisor =
  | { readonly t: "pgha:answer"; readonly id: number; readonly body: unknown }
  | { readonly t: "pgha:hello" };

export type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];

export interface WorkerSide {
  /** prom-client's Registry or a worker's LiteRegistry: both give prom-client's JSON. */
  readonly registry: JsonRegistry;
  readiness(): Readiness;
  routesView(): RoutesView;
  /** A route's plan, or a closed route (null). */
  route(scope: string, m: RouteMessage | null): void;
  /** Counts a message that could not be used. */
  bad(): void;
  /** Runs the worker's graceful shutdown (stop accepting, drain, close, exit). */
  shutdown(reason: string): void;
  /** The supervisor is gone (called before Node's cluster module ends the worker). */
  orphaned(): void;
}

/** The IPC channel of a worker: `process` (a test hands in its own). */
export interface Channel {
  on(event: "message", listener: (m: unknown) => void): unknown;
  prependListener(event: "disconnect", listener: () => void): unknown;
  send?(m: ToSupervisor): unknown;
}

export function isAnswer(m: unknown): m is Extract<ToSupervisor, { t: "pgha:answer" }> {
  return (m as { t?: unknown } | null)?.t === "pgha:answer" && typeof (m as { id?: unknown }).id === "number";
}

export function isHello(m: unknown): boolean {
  return (m as { t?: unknown } | null)?.t === "pgha:hello";
}

const ACTIONS = new Set(["route", "pause", "none"]);
const STATES = new Set(["connecting", "live", "disconnected", "closed"]);
const QUERIES = new Set(["metrics", "routes", "readiness"]);

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null;
const isTarget = (x: unknown): boolean =>
  isObject(x) &&
  typeof x["name"] === "string" &&
  typeof x["host"] === "string" &&
  typeof x["port"] === "number";
const isHostPort = (x: unknown): boolean =>
  isObject(x) && typeof x["host"] === "string" && typeof x["port"] === "number";

/** Why a message from the supervisor cannot be used, or null when it can. */
export function messageProblem(m: unknown): string | null {
  if (!isObject(m)) return "not an object";
  switch (m["t"]) {
    case "pgha:shutdown":
      return null;
    case "pgha:query":
      return typeof m["id"] === "number" && QUERIES.has(m["what"] as string)
        ? null
        : "query without id or what";
    case "pgha:unroute":
      return typeof m["scope"] === "string" ? null : "unroute without scope";
    case "pgha:route":
      return routeProblem(m);
    default:
      return `unknown type ${JSON.stringify(String(m["t"])).slice(0, 40)}`;
  }
}

function routeProblem(m: Record<string, unknown>): string | null {
  const spec = m["spec"];
  if (!isObject(spec) || typeof spec["scope"] !== "string" || !isHostPort(spec["listen"])) {
    return "route without a spec (scope, listen)";
  }
  if (spec["replicaListen"] !== null && !isHostPort(spec["replicaListen"]))
    return "route with a bad replicaListen";
  const plan = m["plan"];
  if (!isObject(plan)) return "route without a plan";
  const snap = plan["snapshot"];
  if (!isObject(snap) || typeof snap["revision"] !== "number" || !(snap["kvs"] instanceof Map)) {
    return "plan without an etcd snapshot";
  }
  if (!STATES.has(plan["state"] as string)) return "plan with an unknown watch state";
  if (!(plan["health"] instanceof Map)) return "plan without REST health";
  const d = plan["decided"];
  if (!isObject(d)) return "plan without decisions";
  const p = d["primary"];
  if (!isObject(p) || !ACTIONS.has(p["action"] as string) || typeof p["reason"] !== "string") {
    return "plan with a bad primary decision";
  }
  if (p["target"] !== null && !isTarget(p["target"])) return "plan with a bad primary target";
  if (p["action"] === "route" && p["target"] === null) return "plan routes to no target";
  const r = d["replicas"];
  if (!isObject(r) || !Array.isArray(r["eligible"]) || !r["eligible"].every(isTarget)) {
    return "plan with a bad replica decision";
  }
  if (!Array.isArray(r["excluded"]) || typeof r["reason"] !== "string")
    return "plan with a bad replica decision";
  if (!Array.isArray(d["awaiting"]) || !d["awaiting"].every((x) => typeof x === "string")) {
    return "plan with a bad awaiting list";
  }
  return null;
}

/** In a worker: takes the supervisor's plans, answers its queries and obeys its shutdown. */
export function serveSupervisor(w: WorkerSide, log: Logger, channel: Channel = process as Channel): void {
  channel.on("message", (m: unknown) => {
    const problem = messageProblem(m);
    if (problem !== null) {
      w.bad();
      log.error({ problem }, "bad message from the router supervisor; ignored");
      return;
    }
    const msg = m as ToWorker;
    switch (msg.t) {
      case "pgha:shutdown":
        w.shutdown("the supervisor asked");
        return;
      case "pgha:route":
        w.route(msg.spec.scope, msg);
        return;
      case "pgha:unroute":
        w.route(msg.scope, null);
        return;
      case "pgha:query":
        void answer(w, msg.what).then(
          (body) => channel.send?.({ t: "pgha:answer", id: msg.id, body }),
          () => channel.send?.({ t: "pgha:answer", id: msg.id, body: null }),
        );
        return;
    }
  });
  // The supervisor gone (its IPC channel closed): nobody decides routes for us any more. Node's
  // cluster module then exits the worker at once (its own listener, after this one).
  channel.prependListener("disconnect", () => w.orphaned());
  channel.send?.({ t: "pgha:hello" });
}

async function answer(w: WorkerSide, what: Query): Promise<unknown> {
  switch (what) {
    case "metrics":
      return await w.registry.getMetricsAsJSON();
    case "routes":
      return w.routesView();
    case "readiness":
      return w.readiness();
  }
}
