/**
 * Runs Patroni as a child (as the postgres user when we are root), forwards
 * SIGTERM/SIGINT/SIGHUP, and on a stop signal lets a leader hand over to a
 * healthy replica first. Resolves with the exit code the container should
 * have: Patroni's own, or 128 + the signal that killed it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { constants } from "node:os";
import type { Logger } from "../shared/logger.js";
import type { PatroniRest } from "./rest.js";
import { planStop } from "./stop-plan.js";

/** Installed from agent/bin into the image's /usr/local/bin. */
export const PATRONI_LAUNCHER = "pgha-patroni";

export interface SupervisorOptions {
  readonly command: string;
  readonly args: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly self: string;
  readonly rest: PatroniRest;
  readonly switchoverOnStop: boolean;
  readonly switchoverTimeoutMs: number;
  readonly log: Logger;
}

/** The environment Patroni runs with: the basics plus every PATRONI_* variable; no other secret. */
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
    if (k.startsWith("PATRONI_") && k !== "PATRONI_CONFIGURATION" && v !== undefined) out[k] = v;
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
  private stopping: Promise<void> | null = null;
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
    return new Promise((resolve) => {
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
  }

  /** A stop signal: hand over if we lead, then forward it. A second signal forwards at once. */
  onStopSignal(signal: NodeJS.Signals): void {
    if (this.stopping) {
      this.o.log.warn({ signal }, "second stop signal; stopping Patroni now");
      this.forward("SIGTERM", true);
      return;
    }
    this.stopping = this.stop(signal);
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

  private async stop(signal: NodeJS.Signals): Promise<void> {
    const { log, rest, self } = this.o;
    log.info({ signal }, "stop requested");
    if (this.o.switchoverOnStop) {
      const [cluster, status] = await Promise.all([rest.cluster(), rest.patroni()]);
      const plan = planStop(self, cluster, status, { enabled: true });
      log.info(
        plan,
        plan.action === "switchover" ? "switching over before stopping" : "stopping without switchover",
      );
      if (plan.action === "switchover" && !this.forwarded) {
        const t0 = Date.now();
        try {
          const r = await rest.switchover(self, plan.candidate, this.o.switchoverTimeoutMs);
          const ms = Date.now() - t0;
          if (r.status === 200)
            log.info({ candidate: plan.candidate, ms, patroni: r.text }, "switchover done");
          else
            log.warn(
              { candidate: plan.candidate, status: r.status, patroni: r.text, ms },
              "switchover refused",
            );
        } catch (err) {
          log.warn({ err, candidate: plan.candidate }, "switchover did not finish; stopping anyway");
        }
      }
    }
    // Patroni's graceful path is SIGTERM: stop PostgreSQL (fast), release the leader key, exit 0.
    this.forward("SIGTERM");
  }
}
