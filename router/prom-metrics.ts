/**
 * The router's metrics on prom-client, with Node's process metrics: the one-process
 * router's and the supervisor's control plane's (a worker uses lite-metrics.ts).
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { createRegistry } from "../shared/admin.js";
import type { MetricsSetup } from "./metrics.js";

const kinds = { Counter, Gauge, Histogram };

/** A registry with the process metrics prefixed `prefix_`, or `registry` as given. */
export function promMetrics(prefix: string | Registry): MetricsSetup & { readonly registry: Registry } {
  return { registry: typeof prefix === "string" ? createRegistry(prefix) : prefix, kinds };
}
