#!/usr/bin/env node
/**
 * The agent's entry point — wiring only: the process's arguments, environment,
 * output and signals, and the real parts (parts.ts), handed to the start-up
 * sequence (startup.ts); its result is the process's exit code.
 */
import { createLogger } from "../shared/logger.js";
import { parseAgentConfig } from "./config.js";
import { dataDirVerdict, readPgVersion } from "./data-dir.js";
import { resolveAddresses } from "./discovery.js";
import { assembleParts, writeNodeFiles } from "./parts.js";
import { HANDLED_SIGNALS, runAgent } from "./startup.js";

runAgent({
  parseConfig: () => parseAgentConfig(process.argv.slice(2), process.env),
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  createLog: (cfg) =>
    createLogger({ name: "agent", level: cfg.logLevel }).child({ member: cfg.name, scope: cfg.scope }),
  checkDataDir: (cfg) => dataDirVerdict(cfg.dataDir, readPgVersion(cfg.dataDir), cfg.pgMajor),
  onSignal: (handler) => {
    for (const signal of HANDLED_SIGNALS) process.on(signal, () => handler(signal));
  },
  discover: (cfg, log, abort) => resolveAddresses(cfg.addresses, cfg.etcd, log, abort),
  writeFiles: writeNodeFiles,
  assemble: (cfg, account, addresses, log) => assembleParts(cfg, account, addresses, log, process.env),
}).then(
  (code) => process.exit(code),
  (err: unknown) => {
    createLogger({ name: "agent" }).fatal({ err }, "agent failed");
    process.exit(1);
  },
);
