/**
 * Graceful shutdown: on SIGTERM or SIGINT, stop accepting, drain up to a
 * deadline, close what is left, exit 0. A second signal exits at once.
 */
import type { Logger } from "./logger.js";

export interface ShutdownSteps {
  /** Stop taking new work (close listeners, stop loops). */
  readonly stopAccepting: () => Promise<void> | void;
  /** Resolve when in-flight work has finished; raced against the deadline. */
  readonly drain?: () => Promise<void>;
  /** Close whatever is left (clients, etcd, revoke leases). */
  readonly close: () => Promise<void> | void;
}

export const DEFAULT_DRAIN_DEADLINE_MS = 10_000;

export async function runShutdown(
  steps: ShutdownSteps,
  log: Logger,
  deadlineMs = DEFAULT_DRAIN_DEADLINE_MS,
): Promise<void> {
  await steps.stopAccepting();
  if (steps.drain) {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<"deadline">((resolve) => {
      timer = setTimeout(() => resolve("deadline"), deadlineMs);
    });
    const outcome = await Promise.race([steps.drain().then(() => "drained" as const), deadline]);
    clearTimeout(timer);
    log.info({ outcome, deadlineMs }, "drain finished");
  }
  await steps.close();
}

/** Installs the signal handlers; returns a function that triggers the same shutdown (for tests and fatal paths). */
export function installShutdown(
  steps: ShutdownSteps,
  log: Logger,
  opts: { deadlineMs?: number; exit?: (code: number) => void } = {},
): (reason: string) => Promise<void> {
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let running: Promise<void> | null = null;
  const shutdown = (reason: string): Promise<void> => {
    if (running) return running;
    log.info({ reason }, "shutting down");
    running = runShutdown(steps, log, opts.deadlineMs)
      .then(() => {
        log.info("bye");
        exit(0);
      })
      .catch((err: unknown) => {
        log.error({ err }, "shutdown failed");
        exit(1);
      });
    return running;
  };
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => {
      if (running) {
        log.warn({ signal: sig }, "second signal; exiting now");
        exit(1);
        return;
      }
      void shutdown(sig);
    });
  }
  return shutdown;
}
