/**
 * The agent's start-up sequence, given its parts:
 *
 *   configuration (a bad one: one line, exit 2) → the data directory's PostgreSQL
 *   major (another than the image's: one line, exit 4, the directory untouched) →
 *   this node's public addresses (the registrator's keys never came: exit 3; a stop
 *   signal while waiting: exit 0) → the files Patroni reads → the answer to Patroni's pre_promote
 *   hook, listening before Patroni runs → Patroni, the fence keeper, backups →
 *   Patroni exits → a stop sequence that began is awaited → the parts stop in
 *   reverse order → Patroni's exit code.
 *
 * A stop signal before Patroni runs ends the wait; once it runs, the supervisor
 * takes it (a leader hands over first). main.ts gives this the real parts
 * (parts.ts); test/unit/agent-startup.test.ts gives it small in-memory ones.
 */
import { ConfigError } from "../shared/errors.js";
import type { Logger } from "../shared/logger.js";
import type { RunningBackups } from "./backup/index.js";
import type { AgentConfig } from "./config.js";
import type { DataDirVerdict } from "./data-dir.js";
import { DiscoveryError, type NodeAddresses } from "./discovery.js";
import type { Account } from "./files.js";
import type { PatroniSupervisor } from "./supervisor.js";

export type ParsedConfig =
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "config"; readonly config: AgentConfig };

/** The exit code when the data directory belongs to another PostgreSQL major than the image's. */
export const EXIT_DATA_DIR_VERSION = 4;

/** The signals the agent handles: stop (TERM, INT) and reload (HUP, passed to Patroni). */
export const HANDLED_SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const;
export type HandledSignal = (typeof HANDLED_SIGNALS)[number];

/** What runs once the files are written; made by `StartupDeps.assemble`. */
export interface AgentParts {
  /** The answer to Patroni's pre_promote hook: it must listen before Patroni runs. */
  readonly promotionCheck: { start(): Promise<void>; close(): Promise<void> };
  /** Lifts the stop fence once this node leads. */
  readonly fenceKeeper: { start(): void; stop(): Promise<void> };
  /** Keeps etcd's raft leader off this host while this node leads (multi-host mode). */
  readonly leaderAway: { start(): void; stop(): Promise<void> };
  /** Patroni as a child; its stop sequence begins on a stop signal. */
  readonly supervisor: Pick<PatroniSupervisor, "run" | "settled" | "onStopSignal" | "forward">;
  /** The agent's /metrics and, with a repository, the backup loop. */
  readonly startBackups: () => Promise<RunningBackups>;
  /** Releases what the parts share (the etcd client). */
  readonly close: () => void;
}

export interface StartupDeps {
  /** The command line and environment; throws a ConfigError on a bad value. */
  readonly parseConfig: () => ParsedConfig;
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  readonly createLog: (cfg: AgentConfig) => Logger;
  /** Whether the data directory was created by the image's PostgreSQL major (data-dir.ts); reads, never writes. */
  readonly checkDataDir: (cfg: AgentConfig) => DataDirVerdict;
  /** Calls `handler` with each handled signal the process receives from now on. */
  readonly onSignal: (handler: (signal: HandledSignal) => void) => void;
  /** This node's public addresses; rejects once `abort` fires. */
  readonly discover: (cfg: AgentConfig, log: Logger, abort: AbortSignal) => Promise<NodeAddresses>;
  /** The data directory, patroni.yml and the backup files; the account Patroni runs as, if any. */
  readonly writeFiles: (cfg: AgentConfig, addresses: NodeAddresses, log: Logger) => Account | null;
  readonly assemble: (
    cfg: AgentConfig,
    account: Account | null,
    addresses: NodeAddresses,
    log: Logger,
  ) => AgentParts;
}

/** The whole life of the agent process; resolves with its exit code. */
export async function runAgent(d: StartupDeps): Promise<number> {
  let parsed: ParsedConfig;
  try {
    parsed = d.parseConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    d.stderr(err.message + "\n");
    return 2;
  }
  if (parsed.kind === "help") {
    d.stdout(parsed.text);
    return 0;
  }
  const cfg = parsed.config;
  const dataDir = d.checkDataDir(cfg);
  if (!dataDir.ok) {
    d.stderr(dataDir.message + "\n");
    return EXIT_DATA_DIR_VERSION;
  }
  const log = d.createLog(cfg);

  const early = new AbortController();
  let supervisor: AgentParts["supervisor"] | null = null;
  d.onSignal((signal) => {
    if (signal === "SIGHUP") supervisor?.forward("SIGHUP");
    else if (supervisor) supervisor.onStopSignal(signal);
    else early.abort();
  });

  let addresses: NodeAddresses;
  try {
    addresses = await d.discover(cfg, log, early.signal);
  } catch (err) {
    if (early.signal.aborted) return 0;
    if (err instanceof DiscoveryError) {
      log.error({ keys: err.context["keys"] }, err.message);
      return 3;
    }
    throw err;
  }

  const account = d.writeFiles(cfg, addresses, log);
  const parts = d.assemble(cfg, account, addresses, log);
  await parts.promotionCheck.start();
  supervisor = parts.supervisor;
  if (early.signal.aborted) return 0;
  const exited = supervisor.run();
  parts.fenceKeeper.start();
  parts.leaderAway.start();
  const backups = await parts.startBackups();
  const code = await exited;
  await supervisor.settled();
  await parts.fenceKeeper.stop();
  await parts.leaderAway.stop();
  await backups.stop();
  await parts.promotionCheck.close();
  parts.close();
  return code;
}
