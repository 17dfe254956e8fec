#!/usr/bin/env node
/**
 * The agent entrypoint: configuration, this node's public addresses,
 * patroni.yml, then Patroni itself until it exits.
 */
import { ConfigError } from "../shared/errors.js";
import { createLogger } from "../shared/logger.js";
import { startBackups, writeBackupFiles } from "./backup-setup.js";
import { parseAgentConfig } from "./config.js";
import { DiscoveryError, resolveAddresses } from "./discovery.js";
import { lookupAccount, prepareDataDir, writeSecretFile } from "./files.js";
import {
  bootstrapSql,
  bootstrapSqlPath,
  RESTAPI_PORT,
  renderPatroniConfig,
  toYaml,
} from "./patroni-config.js";
import { PatroniRest } from "./rest.js";
import { PatroniSupervisor, patroniCommand, patroniEnv } from "./supervisor.js";

async function main(): Promise<number> {
  let parsed: ReturnType<typeof parseAgentConfig>;
  try {
    parsed = parseAgentConfig(process.argv.slice(2), process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(err.message + "\n");
    return 2;
  }
  if (parsed.kind === "help") {
    process.stdout.write(parsed.text);
    return 0;
  }
  const cfg = parsed.config;
  const log = createLogger({ name: "agent", level: cfg.logLevel }).child({
    member: cfg.name,
    scope: cfg.scope,
  });

  // A stop signal before Patroni runs ends the wait; once it runs, the supervisor handles it.
  const early = new AbortController();
  let supervisor: PatroniSupervisor | null = null;
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => (supervisor ? supervisor.onStopSignal(sig) : early.abort()));
  }
  process.on("SIGHUP", () => supervisor?.forward("SIGHUP"));

  let addresses: Awaited<ReturnType<typeof resolveAddresses>>;
  try {
    addresses = await resolveAddresses(cfg.addresses, cfg.etcd, log, early.signal);
  } catch (err) {
    if (early.signal.aborted) return 0;
    if (err instanceof DiscoveryError) {
      log.error({ keys: err.context["keys"] }, err.message);
      return 3;
    }
    throw err;
  }

  const postgres = process.getuid?.() === 0 ? lookupAccount("postgres") : null;
  prepareDataDir(cfg.dataDir, postgres, log);
  writeSecretFile(cfg.configFile, toYaml(renderPatroniConfig(cfg, addresses)), postgres);
  writeSecretFile(bootstrapSqlPath(cfg.configFile), bootstrapSql(cfg.admin), postgres);
  writeBackupFiles(cfg, postgres, log);
  log.info(
    { configFile: cfg.configFile, etcd: cfg.etcd.hosts, sync: cfg.dcs.synchronousMode },
    "patroni.yml written",
  );

  const home = postgres?.home ?? process.env["HOME"] ?? "/tmp";
  const [command, args] = patroniCommand(postgres, cfg.configFile);
  const rest = new PatroniRest(`http://127.0.0.1:${RESTAPI_PORT}`, cfg.restapi);
  supervisor = new PatroniSupervisor({
    command,
    args,
    env: patroniEnv(process.env, home, postgres ? "postgres" : (process.env["USER"] ?? "")),
    cwd: home,
    self: cfg.name,
    rest,
    switchoverOnStop: cfg.stop.switchover,
    switchoverTimeoutMs: cfg.stop.timeoutSeconds * 1000,
    log,
  });
  if (early.signal.aborted) return 0;
  const exited = supervisor.run();
  const backups = await startBackups(cfg, rest, postgres !== null, log);
  const code = await exited;
  await backups.stop();
  return code;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    createLogger({ name: "agent" }).fatal({ err }, "agent failed");
    process.exit(1);
  },
);
