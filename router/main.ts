#!/usr/bin/env node
/**
 * The router's entry point: configuration, logger, then one of three roles.
 * With --workers N (default 2) this process is the supervisor (supervisor.ts):
 * the one control plane (etcd watch, REST checks, decisions) and the admin port,
 * and it forks N workers, which run the data path on the supervisor's plans
 * (ipc.ts, ipc-source.ts); with --workers 0 it is the whole Router itself. Each
 * role loads only its own modules: a worker never loads etcd3 or undici.
 */
import cluster from "node:cluster";
import { loadConfigOrExit } from "../shared/config.js";
import { ConfigError } from "../shared/errors.js";
import { installShutdown } from "../shared/shutdown.js";
import { checkPemFiles } from "../shared/tls.js";
import { routerSpec, staticRoutes } from "./options.js";

const { config } = loadConfigOrExit(routerSpec);
try {
  staticRoutes(config);
  // The TLS files, read now: a missing or unreadable one is one line and exit 2, not a retry loop.
  if (config.etcdCert !== undefined && config.etcdCa === undefined) {
    throw new ConfigError(
      "etcd-ca",
      "router: --etcd-cert needs --etcd-ca (ROUTER_ETCD_CA): the CA that signed etcd's certificate",
    );
  }
  for (const [cert, key, names] of [
    [config.etcdCert, config.etcdKey, "--etcd-cert and --etcd-key"],
    [config.restCert, config.restKey, "--rest-cert and --rest-key"],
  ] as const) {
    if ((cert === undefined) !== (key === undefined))
      throw new ConfigError("tls", `router: ${names} must be given together`);
  }
  checkPemFiles([
    { path: config.etcdCa, what: "etcd CA file", option: "--etcd-ca / ROUTER_ETCD_CA" },
    { path: config.etcdCert, what: "etcd client certificate", option: "--etcd-cert / ROUTER_ETCD_CERT" },
    { path: config.etcdKey, what: "etcd client key", option: "--etcd-key / ROUTER_ETCD_KEY" },
    { path: config.restCa, what: "REST API CA file", option: "--rest-ca / ROUTER_REST_CA" },
    { path: config.restCert, what: "REST API client certificate", option: "--rest-cert / ROUTER_REST_CERT" },
    { path: config.restKey, what: "REST API client key", option: "--rest-key / ROUTER_REST_KEY" },
  ]);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`${err.message.startsWith("router:") ? "" : "router: "}${err.message}\n`);
  process.exit(2);
}
// A worker loads neither pino nor prom-client: its lines and metrics go to the supervisor.
const createLogger = async () =>
  (await import("../shared/logger.js")).createLogger({ name: "router", level: config.logLevel });

if (config.workers > 0 && cluster.isPrimary) {
  const [{ RouterSupervisor }, base] = await Promise.all([import("./supervisor.js"), createLogger()]);
  const supervisor = new RouterSupervisor(config, base);
  installShutdown(
    {
      stopAccepting: () => supervisor.shutdown("signal", config.drainTimeout * 1000),
      close: () => undefined,
    },
    base,
    { deadlineMs: config.drainTimeout * 1000 + 10_000 },
  );
  supervisor.start().catch((err: unknown) => {
    base.fatal({ err }, "router supervisor failed to start");
    process.exit(1);
  });
} else if (cluster.isWorker) {
  // A worker: the data path only, fed by the supervisor's plans (no etcd3, no undici).
  const [{ Router }, { IpcRoutes, workerSide }, { serveSupervisor }, { liteMetrics }, { workerLogger }] =
    await Promise.all([
      import("./router.js"),
      import("./ipc-source.js"),
      import("./ipc.js"),
      import("./lite-metrics.js"),
      import("./worker-log.js"),
    ]);
  const worker = Number(process.env["ROUTER_WORKER_INDEX"] ?? cluster.worker?.id ?? 0);
  const log = workerLogger({ service: "router", level: config.logLevel, bindings: { worker } });
  const source = new IpcRoutes(log);
  const router = new Router(config, log, liteMetrics(), { admin: false, source });
  const shutdown = installShutdown(router.shutdownSteps(), log, { deadlineMs: config.drainTimeout * 1000 });
  try {
    await router.start();
  } catch (err) {
    log.fatal({ err }, "router worker failed to start");
    process.exit(1);
  }
  serveSupervisor(
    workerSide(router, source, {
      shutdown: (reason) => void shutdown(reason),
      // Fail closed: without the supervisor nobody follows a failover or fences a stepped-down
      // primary, so this worker's routes would go stale. Node's cluster module ends the worker
      // right after this line (every session closes); clients reconnect to the router that
      // replaces it (in a container the supervisor is PID 1: the container ends with it).
      orphaned: () => log.error("router supervisor gone; every session closes and this worker exits"),
    }),
    log,
  );
} else {
  const [{ Router }, { promMetrics }, base] = await Promise.all([
    import("./router.js"),
    import("./prom-metrics.js"),
    createLogger(),
  ]);
  const router = new Router(config, base, promMetrics("router"));
  installShutdown(router.shutdownSteps(), base, { deadlineMs: config.drainTimeout * 1000 });
  router.start().catch((err: unknown) => {
    base.fatal({ err }, "router failed to start");
    process.exit(1);
  });
}
