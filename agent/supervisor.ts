/**
 * Runs Patroni as a child (as the postgres user when we are root), forwards
 * SIGTERM/SIGINT/SIGHUP, and on a stop signal lets a leader hand over to a
 * healthy replica first. Resolves with the exit code the container should
 * have: Patroni's own, or 128 + the signal that killed it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import type { Logger } from "../shared/logger.js";
import { AGENT_ENV_NAMES } from "./config.js";
import { PATRONI_LAUNCHER } from "./image.js";
import { renderedByAgent } from "./patroni-config.js";
import type { StopOutcome, StopSequence } from "./stop.js";

export interface SupervisorOptions {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly log: Logger;
  /** What a stop signal starts: a leader's handover or fenced stop (agent/stop.ts). */
  readonly stopSequence: (supervisor: PatroniSupervisor) => StopSequence;
}

/**
 * The environment Patroni runs with: the basics plus every PATRONI_* variable the agent does not
 * read itself; no other secret. Patroni's environment wins over patroni.yml (PATRONI_SCOPE,
 * PATRONI_NAMESPACE, ...), so a name the agent reads, and renders into the file, stays out:
 * otherwise `--scope x` with PATRONI_SCOPE=y would write x into the file and run Patroni on y.
 */
export function patroniEnv(
  env: Readonly<Record<string, string | undefined>>,
  home: string,
  user: string,
): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { HOME: home, USER: user, LOGNAME: user };
  for (const k of ["PATH", "LANG", "LC_ALL", "TZ", "PGDATA"]) {
    const v = env[k];
    if (v !== undefined) out[k] = v;
  }
  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith("PATRONI_") || k === "PATRONI_CONFIGURATION" || AGENT_ENV_NAMES.has(k)) continue;
    if (renderedByAgent(k)) continue;
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/**
 * Patroni's command line: `pgha-patroni` (agent/bin: Patroni's own entry point with Nagle off
 * on its etcd connections), through setpriv to the postgres account when we are root.
 */
export function patroniCommand(
  account: { readonly uid: number } | null,
  configFile: string,
): [command: string, args: string[]] {
  return account
    ? ["setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", PATRONI_LAUNCHER, configFile]]
    : [PATRONI_LAUNCHER, [configFile]];
}

export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  if (signal !== null) return 128 + (constants.signals[signal] ?? 1);
  return 1;
}

export class PatroniSupervisor {
  private child: ChildProcess | null = null;
  private exited: Promise<number> | null = null;
  private stopping: Promise<StopOutcome | null> | null = null;
  private sequence: StopSequence | null = null;
  private forwarded = false;

  constructor(private readonly o: SupervisorOptions) {}

  /** Starts Patroni; the promise settles when it has exited. */
  run(): Promise<number> {
    const { log } = this.o;
    const child = spawn(this.o.command, [...this.o.args], {
      env: this.o.env,
      cwd: this.o.cwd,
      stdio: ["ignore", "inherit", "inherit"],
    });
    this.child = child;
    log.info({ pid: child.pid, command: this.o.command }, "Patroni started");
    this.exited = new Promise((resolve) => {
      child.once("error", (err) => {
        log.error({ err }, "could not start Patroni");
        resolve(127);
      });
      child.once("exit", (code, signal) => {
        const exitCode = exitCodeOf(code, signal);
        log.info({ code, signal, exitCode }, "Patroni exited");
        resolve(exitCode);
      });
    });
    return this.exited;
  }

  /** True once a stop signal started the stop sequence. */
  get stopRequested(): boolean {
    return this.stopping !== null;
  }

  /** Resolves once a stop sequence that began has finished its work after Patroni's exit. */
  async settled(): Promise<void> {
    await this.stopping?.catch(() => null);
  }

  /** A stop signal: a leader hands over or stops behind its fence. A second signal hurries it. */
  onStopSignal(signal: NodeJS.Signals): void {
    if (this.stopping) {
      this.o.log.warn({ signal }, "second stop signal; stopping Patroni now");
      this.sequence?.hurry();
      return;
    }
    this.o.log.info({ signal }, "stop requested");
    const startedAt = Date.now();
    this.sequence = this.o.stopSequence(this);
    this.stopping = this.sequence.run(startedAt).catch((err: unknown) => {
      this.o.log.error({ err }, "stop sequence failed; stopping Patroni");
      this.forward("SIGTERM");
      return null;
    });
  }

  /**
   * Patroni's graceful path: SIGTERM stops PostgreSQL (fast), releases the leader key, exits 0.
   * Resolves with Patroni's exit code.
   */
  terminate(): Promise<number> {
    this.forward("SIGTERM");
    return this.exited ?? Promise.resolve(0);
  }

  forward(signal: NodeJS.Signals, force = false): void {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    if (signal === "SIGTERM") {
      if (this.forwarded && !force) return;
      this.forwarded = true;
    }
    try {
      child.kill(signal);
    } catch {}
  }
}
