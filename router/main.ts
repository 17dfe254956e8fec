#!/usr/bin/env node
/** The router's entry point: configuration, logger, the Router, signals. */
import { loadConfigOrExit } from "../shared/config.js";
import { ConfigError } from "../shared/errors.js";
import { createLogger } from "../shared/logger.js";
import { installShutdown } from "../shared/shutdown.js";
import { routerSpec, staticRoutes } from "./options.js";
import { Router } from "./router.js";

const { config } = loadConfigOrExit(routerSpec);
try {
  staticRoutes(config);
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(err.message + "\n");
  process.exit(2);
}
const log = createLogger({ name: "router", level: config.logLevel });
const router = new Router(config, log);
installShutdown(router.shutdownSteps(), log, { deadlineMs: config.drainTimeout * 1000 });
router.start().catch((err: unknown) => {
  log.fatal({ err }, "router failed to start");
  process.exit(1);
});
