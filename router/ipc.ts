/**
 * What the router's supervisor (supervisor.ts) and its workers say to each other
 * over Node's IPC channel: a query with an id and its answer, and "shut down".
 * The worker side lives here too: it answers from the Router it runs.
 */
import type { MetricObjectWithValues, MetricValue, Registry } from "prom-client";
import type { Readiness } from "../shared/admin.js";
import type { RoutesView } from "./route-status.js";

export type Query = "metrics" | "routes" | "readiness";

export type ToWorker =
  | { readonly t: "pgha:query"; readonly id: number; readonly what: Query }
  | { readonly t: "pgha:shutdown" };

export type ToSupervisor = { readonly t: "pgha:answer"; readonly id: number; readonly body: unknown };

export type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];

export interface WorkerSide {
  readonly registry: Registry;
  readiness(): Readiness;
  routesView(): RoutesView;
  /** Runs the worker's graceful shutdown (stop accepting, drain, close, exit). */
  shutdown(reason: string): void;
}

export function isToWorker(m: unknown): m is ToWorker {
  const t = (m as { t?: unknown } | null)?.t;
  return t === "pgha:query" || t === "pgha:shutdown";
}

export function isAnswer(m: unknown): m is ToSupervisor {
  return (m as { t?: unknown } | null)?.t === "pgha:answer" && typeof (m as { id?: unknown }).id === "number";
}

/** In a worker: answers the supervisor's queries and obeys its shutdown. */
export function serveSupervisor(w: WorkerSide): void {
  process.on("message", (m: unknown) => {
    if (!isToWorker(m)) return;
    if (m.t === "pgha:shutdown") {
      w.shutdown("the supervisor asked");
      return;
    }
    void answer(w, m.what).then(
      (body) => process.send?.({ t: "pgha:answer", id: m.id, body } satisfies ToSupervisor),
      () => process.send?.({ t: "pgha:answer", id: m.id, body: null } satisfies ToSupervisor),
    );
  });
  // The supervisor gone (its IPC channel closed): nobody restarts or watches us; stop.
  process.on("disconnect", () => w.shutdown("the supervisor went away"));
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
