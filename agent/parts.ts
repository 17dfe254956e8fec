/**
 * The agent's real parts, made from its configuration once the node's public
 * addresses are known: `writeNodeFiles` prepares the data directory and writes
 * patroni.yml, bootstrap.sql and the backup files; `assembleParts` makes the
 * etcd client and the stop fence, the answer to Patroni's pre_promote hook,
 * the fence keeper, Patroni's supervisor with a leader's stop sequence, and
 * the backups. main.ts hands both to the start-up sequence (startup.ts), which
 * runs them in order.
 */
import { execFile } from "node:child_process";
import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { createRegistry } from "../shared/admin.js";
import { createEtcdClient } from "../shared/etcd.js";
import { formatHostPort } from "../shared/host-port.js";
import type { Logger } from "../shared/logger.js";
import { runsAsPrimary } from "../shared/patroni-rest.js";
import { sleep } from "../shared/time.js";
import { readPemFile } from "../shared/tls.js";
import { startBackups, writeBackupFiles } from "./backup/index.js";
import type { AgentConfig } from "./config.js";
import type { NodeAddresses } from "./discovery.js";
import { EtcdLeaderAway, etcdMemberCalls } from "./etcd-leader-away.js";
import { FenceKeeper } from "./fence-keeper.js";
import { FenceStore } from "./fence-store.js";
import { type Account, ensureRootDir, lookupAccount, prepareDataDir, writeSecretFile } from "./files.js";
import { AGENT_SOCKET, IMAGE_PATHS, localRestApiUrl, pgBinDir } from "./image.js";
import { bootstrapSql, bootstrapSqlPath, renderPatroniConfig, tlsPaths, toYaml } from "./patroni-config.js";
import { PromotionCheckServer } from "./promotion-check.js";
import { ReplicationMetrics } from "./replication-metrics.js";
import { PatroniRest } from "./rest.js";
import type { AgentParts } from "./startup.js";
import { ANNOUNCEMENT_DEADLINE_MS, drainStartUps, pgProcesses, withinDeadline } from "./startup-drain.js";
import { StopSequence } from "./stop.js";
import { PatroniSupervisor, patroniCommand, patroniEnv } from "./supervisor.js";

/** pg_controldata of the data directory (as root, which may read it); null when it fails. */
function controlData(binDir: string, dataDir: string): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(join(binDir, "pg_controldata"), ["-D", dataDir], { timeout: 10_000 }, (err, stdout) =>
      resolve(err ? null : stdout),
    );
  });
}

/** Everything Patroni and pgBackRest read, owned by postgres when we are root; returns that account. */
export function writeNodeFiles(cfg: AgentConfig, addresses: NodeAddresses, log: Logger): Account | null {
  const postgres = process.getuid?.() === 0 ? lookupAccount("postgres") : null;
  prepareDataDir(cfg.dataDir, postgres, log);
  if (postgres) removeStaleSockets(IMAGE_PATHS.socketDir, log);
  // What root writes lives in directories only root may write: nothing can be planted there.
  if (postgres) ensureRootDir(dirname(cfg.configFile));
  writeTlsFiles(cfg, postgres);
  writeSecretFile(cfg.configFile, toYaml(renderPatroniConfig(cfg, addresses)), postgres);
  writeBootstrapSql(cfg, postgres);
  writeBackupFiles(
    cfg.backup,
    {
      dataDir: cfg.dataDir,
      superuser: cfg.superuser.username,
      restCaFile: cfg.tls ? tlsPaths(cfg.configFile).ca : null,
    },
    {
      owner: postgres,
      writeSecret: (path, content, mode) => writeSecretFile(path, content, postgres, mode),
      ensureRootDir: (dir) => (postgres ? ensureRootDir(dir) : mkdirSync(dir, { recursive: true })),
      log,
    },
  );
  log.info(
    { configFile: cfg.configFile, etcd: cfg.etcd.hosts, sync: cfg.dcs.synchronousMode },
    "patroni.yml written",
  );
  return postgres;
}

/** PostgreSQL's socket and its lock file in the socket directory: `.s.PGSQL.5432`, `.s.PGSQL.5432.lock`. */
export const SOCKET_FILE = /^\.s\.PGSQL\.\d+(\.lock)?$/;

/**
 * Removes what a PostgreSQL of this container's previous run left in the socket directory. The
 * directory is in the container's own filesystem, which outlives a kill: after the host or the
 * engine died, the container starts again with the old `.s.PGSQL.5432.lock`, whose PID is
 * likely that of another process of the new run (PIDs in a container start from 1 again), and
 * PostgreSQL then refuses to start ("lock file … already exists") on every attempt. Nothing
 * else runs PostgreSQL in this container, and Patroni has not started yet.
 */
function removeStaleSockets(dir: string, log: Logger): void {
  let names: string[];
  try {
    names = readdirSync(dir).filter((n) => SOCKET_FILE.test(n));
  } catch {
    return;
  }
  for (const n of names) rmSync(join(dir, n), { force: true });
  if (names.length > 0)
    log.info({ dir, removed: names }, "removed the previous run's PostgreSQL socket files");
}

/**
 * Copies of the mounted TLS files for Patroni and PostgreSQL, which run as postgres: the mounted
 * keys are root's (mode 0600). Certificates 0644, keys 0600 owned by postgres, in a root-owned
 * directory; a file that cannot be read is a ConfigError naming its variable. Files of a
 * setting that is off are removed, so that no stale key stays behind.
 */
function writeTlsFiles(cfg: AgentConfig, postgres: Account | null): void {
  const paths = tlsPaths(cfg.configFile);
  const copies: [string, string | undefined, string, string, number][] = [
    [paths.ca, cfg.tls?.caFile, "CA file", "TLS_CA_FILE", 0o644],
    [paths.cert, cfg.tls?.certFile, "certificate", "TLS_CERT_FILE", 0o644],
    [paths.key, cfg.tls?.keyFile, "private key", "TLS_KEY_FILE", 0o600],
    [paths.etcdCa, cfg.etcd.caFile, "etcd CA file", "ETCD_CA", 0o644],
    [paths.etcdCert, cfg.etcd.certFile, "etcd client certificate", "ETCD_CERT", 0o644],
    [paths.etcdKey, cfg.etcd.keyFile, "etcd client key", "ETCD_KEY", 0o600],
  ];
  if (copies.every(([, from]) => from === undefined)) {
    rmSync(paths.dir, { recursive: true, force: true });
    return;
  }
  if (postgres) ensureRootDir(paths.dir);
  else mkdirSync(paths.dir, { recursive: true });
  for (const [to, from, what, env, mode] of copies) {
    if (from === undefined) rmSync(to, { force: true });
    else writeSecretFile(to, readPemFile(from, what, env).toString("utf8"), postgres, mode);
  }
}

/**
 * The admin role's SQL for Patroni's post_bootstrap, in a directory of postgres's own (the
 * hook runs as postgres and deletes the file once it ran: agent/bin/pgha-post-bootstrap).
 * Written only while the data directory holds no cluster; once one exists the file is never
 * needed again, and a leftover is removed.
 */
function writeBootstrapSql(cfg: AgentConfig, postgres: Account | null): void {
  const file = bootstrapSqlPath(cfg.configFile);
  if (existsSync(join(cfg.dataDir, "PG_VERSION"))) {
    rmSync(file, { force: true });
    return;
  }
  const dir = dirname(file);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (postgres) {
    const st = lstatSync(dir);
    if (!st.isDirectory()) throw new Error(`${dir}: expected a directory, found another kind of file`);
    if (st.uid !== postgres.uid) chownSync(dir, postgres.uid, postgres.gid);
  }
  writeSecretFile(file, bootstrapSql(cfg.admin), postgres);
}

export function assembleParts(
  cfg: AgentConfig,
  postgres: Account | null,
  addresses: NodeAddresses,
  log: Logger,
  env: Readonly<Record<string, string | undefined>>,
): AgentParts {
  const home = postgres?.home ?? env["HOME"] ?? "/tmp";
  const [command, args] = patroniCommand(postgres, cfg.configFile);
  const tls = cfg.tls !== null;
  const rest = new PatroniRest(localRestApiUrl(tls), cfg.restapi, tls ? tlsPaths(cfg.configFile).ca : null);
  const registry = createRegistry("pgha_agent");
  // Read from this node's Patroni at each scrape: synchronous mode, and on the leader its replicas' streaming.
  new ReplicationMetrics(registry, cfg.scope, rest);
  const etcd = createEtcdClient(cfg.etcd);
  const fence = new FenceStore(etcd, cfg.namespace, cfg.scope);
  // Set below: the before_stop hook skips its notice while the agent's own stop sequence runs.
  let stopRequested = () => false;
  const promotionCheck = new PromotionCheckServer({
    self: cfg.name,
    fence,
    walPosition: () => rest.walPosition(),
    socketPath: AGENT_SOCKET,
    gid: postgres?.gid ?? null,
    registry,
    log: log.child({ part: "pre-promote" }),
    beforeStop: () =>
      drainStartUps({
        primary: () => !existsSync(join(cfg.dataDir, "standby.signal")),
        stopSequenceRunning: () => stopRequested(),
        switchoverAnnounced: () =>
          withinDeadline(() => fence.switchoverAnnounced(), ANNOUNCEMENT_DEADLINE_MS),
        processes: pgProcesses,
        now: () => Date.now(),
        sleep,
      }),
  });
  const keeper = new FenceKeeper({
    self: cfg.name,
    apiUrl: `${tls ? "https" : "http"}://${formatHostPort(addresses.api)}/patroni`,
    fence,
    status: () => rest.status(),
    registry,
    log: log.child({ part: "fence" }),
  });
  const members = etcdMemberCalls(cfg.etcd);
  const leaderAway = new EtcdLeaderAway({
    localHost: addresses.postgres.host,
    endpoints: cfg.etcd.hosts,
    leads: async () => runsAsPrimary(await rest.status()) && (await fence.leader()) === cfg.name,
    status: members.status,
    moveLeader: members.moveLeader,
    registry,
    log: log.child({ part: "etcd-leader" }),
  });
  const supervisor = new PatroniSupervisor({
    command,
    args,
    env: patroniEnv(env, home, postgres ? "postgres" : (env["USER"] ?? "")),
    cwd: home,
    log,
    stopSequence: (s) => {
      void keeper.stop();
      void leaderAway.stop();
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
          controlData: () => controlData(pgBinDir(cfg.pgMajor), cfg.dataDir),
          log: log.child({ part: "stop" }),
        },
      );
    },
  });
  stopRequested = () => supervisor.stopRequested;
  return {
    promotionCheck,
    fenceKeeper: keeper,
    leaderAway,
    supervisor,
    startBackups: () =>
      startBackups({
        backup: cfg.backup,
        superuser: cfg.superuser.username,
        metricsListen: cfg.metricsListen,
        patroniStatus: () => rest.status(),
        asPostgres: postgres !== null,
        registry,
        log,
      }),
    close: () => {
      members.close();
      etcd.close();
    },
  };
}
