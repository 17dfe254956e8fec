#!/usr/bin/env node
/**
 * The router's entry point: configuration, logger, then one of three roles.
 * With --workers N (default 2) this process is the supervisor (supervisor.ts)
 * and forks N workers, which run the Router and answer it over IPC (ipc.ts);
 * with --workers 0 it is the Router itself. Each role loads only its own
 * modules: the supervisor never loads etcd or the proxy.
 */
import cluster from "node:cluster";
import { loadConfigOrExit } from "../shared/config.js";
import { ConfigError } from "../shared/errors.js";
import { createLogger } from "../shared/logger.js";
import { installShutdown } from "../shared/shutdown.js";
import { routerSpec, staticRoutes } from "./options.js";

const { config } = loadConfigOrExit(routerSpec);
try {
  staticRoutes(config);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(err.message + "\n");
  process.exit(2);
}
const base = createLogger({ name: "router", level: config.logLevel });

if (config.workers > 0 && cluster.isPrimary) {
  const { RouterSupervisor } = await import("./supervisor.js");
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
} else {
  const { Router } = await import("./router.js");
  const worker = cluster.isWorker
    ? Number(process.env["ROUTER_WORKER_INDEX"] ?? cluster.worker?.id ?? 0)
    : null;
  const log = worker === null ? base : base.child({ worker });
  const router = new Router(config, log, undefined, { admin: worker === null });
  const shutdown = installShutdown(router.shutdownSteps(), log, { deadlineMs: config.drainTimeout * 1000 });
  if (worker !== null) {
    const { serveSupervisor } = await import("./ipc.js");
    serveSupervisor({
      registry: router.registry,
      readiness: () => router.readiness(),
      routesView: () => router.routesView(),
      shutdown: (reason) => void shutdown(reason),
    });
  }
  router.start().catch((err: unknown) => {
    log.fatal({ err }, "router failed to start");
    process.exit(1);
  });
}
