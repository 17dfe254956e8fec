#!/usr/bin/env node
/**
 * The agent entrypoint: configuration, this node's public addresses,
 * patroni.yml, then Patroni itself until it exits.
 */
import { execFile } from "node:child_process";
import { join } from "node:path";
import { createRegistry } from "../shared/admin.js";
import { ConfigError } from "../shared/errors.js";
import { createEtcdClient } from "../shared/etcd.js";
import { createLogger } from "../shared/logger.js";
import { startBackups, writeBackupFiles } from "./backup-setup.js";
import { parseAgentConfig } from "./config.js";
import { DiscoveryError, resolveAddresses } from "./discovery.js";
import { FenceKeeper } from "./fence-keeper.js";
import { FenceStore } from "./fence-store.js";
import { lookupAccount, prepareDataDir, writeSecretFile } from "./files.js";
import {
  bootstrapSql,
  bootstrapSqlPath,
  IMAGE_PATHS,
  RESTAPI_PORT,
  renderPatroniConfig,
  toYaml,
} from "./patroni-config.js";
import { AGENT_SOCKET, PromotionCheckServer } from "./promotion-check.js";
import { ReplicationMetrics } from "./replication-metrics.js";
import { PatroniRest } from "./rest.js";
import { StopSequence } from "./stop.js";
import { PatroniSupervisor, patroniCommand, patroniEnv } from "./supervisor.js";

/** pg_controldata of the data directory (as root, which may read it); null when it fails. */
function controlData(dataDir: string): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(
      join(IMAGE_PATHS.binDir, "pg_controldata"),
      ["-D", dataDir],
      { timeout: 10_000 },
      (err, stdout) => resolve(err ? null : stdout),
    );
  });
}

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
  const registry = createRegistry("pgha_agent");
  new ReplicationMetrics(registry, cfg.scope, rest);
  const etcd = createEtcdClient(cfg.etcd);
  const fence = new FenceStore(etcd, cfg.namespace, cfg.scope);
  // Patroni's pre_promote hook asks this before PostgreSQL is promoted: it must answer first.
  const promotionCheck = new PromotionCheckServer({
    self: cfg.name,
    fence,
    walPosition: () => rest.walPosition(),
    socketPath: AGENT_SOCKET,
    gid: postgres?.gid ?? null,
    registry,
    log: log.child({ part: "pre-promote" }),
  });
  await promotionCheck.start();
  const keeper = new FenceKeeper({
    self: cfg.name,
    fence,
    status: () => rest.status(),
    registry,
    log: log.child({ part: "fence" }),
  });
  supervisor = new PatroniSupervisor({
    command,
    args,
    env: patroniEnv(process.env, home, postgres ? "postgres" : (process.env["USER"] ?? "")),
    cwd: home,
    log,
    stopSequence: (s) => {
      void keeper.stop();
      return new StopSequence(
        {
          self: cfg.name,
          switchoverOnStop: cfg.stop.switchover,
          gracePeriodMs: cfg.stop.gracePeriodSeconds * 1000,
          switchoverTimeoutMs: cfg.stop.timeoutSeconds * 1000,
        },
        {
          rest,
          fence,
          terminatePatroni: () => s.terminate(),
          controlData: () => controlData(cfg.dataDir),
          log: log.child({ part: "stop" }),
        },
      );
    },
  });
  if (early.signal.aborted) return 0;
  const exited = supervisor.run();
  keeper.start();
  const backups = await startBackups(cfg, rest, postgres !== null, registry, log);
  const code = await exited;
  await supervisor.settled();
  await keeper.stop();
  await backups.stop();
  await promotionCheck.close();
  etcd.close();
  return code;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    createLogger({ name: "agent" }).fatal({ err }, "agent failed");
    process.exit(1);
  },
);
