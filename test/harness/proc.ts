/**
 * Child processes for tests: started with their output in a log file, killed
 * when the test process exits for any reason, and waited for.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { openSync, readFileSync } from "node:fs";
import { promisify } from "node:util";

const live = new Set<ChildProcess>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  const killAll = () => {
    for (const p of live) {
      try {
        if (p.pid) process.kill(-p.pid, "SIGKILL");
      } catch {
        try {
          p.kill("SIGKILL");
        } catch {}
      }
    }
  };
  process.on("exit", killAll);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      killAll();
      process.exit(130);
    });
  }
}

export interface Spawned {
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  readonly tail: (lines?: number) => string;
}

/**
 * Starts a process in its own process group (so a kill reaches its children),
 * stdout and stderr appended to `logFile`.
 */
export function startProcess(
  cmd: string,
  args: readonly string[],
  opts: { logFile: string; env?: NodeJS.ProcessEnv; cwd?: string },
): Spawned {
  hookExit();
  const fd = openSync(opts.logFile, "a");
  const child = spawn(cmd, args, {
    stdio: ["ignore", fd, fd],
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    detached: true,
  });
  live.add(child);
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(child);
      resolve(code ?? signal ?? "unknown");
    });
    child.once("error", (err) => {
      live.delete(child);
      resolve(`error: ${err.message}`);
    });
  });
  const tail = (lines = 40) => {
    try {
      return readFileSync(opts.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "";
    }
  };
  return { child, logFile: opts.logFile, exited, tail };
}

/** Sends a signal to the process group; resolves when the leader has exited (or after timeoutMs, then SIGKILL). */
export async function stopProcess(
  p: Spawned,
  signal: NodeJS.Signals = "SIGTERM",
  timeoutMs = 15_000,
): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  const pid = p.child.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    return;
  }
  const timer = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), timeoutMs).unref());
  if ((await Promise.race([p.exited, timer])) === "timeout") {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {}
    await p.exited;
  }
}

export const execFileP = promisify(execFile);

/** Runs a command to completion; rejects with its output on a non-zero exit. */
export async function run(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  try {
    const r = await execFileP(cmd, args, {
      env: opts.env ?? process.env,
      timeout: opts.timeoutMs ?? 60_000,
      cwd: opts.cwd,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${e.message}\n${e.stdout ?? ""}\n${e.stderr ?? ""}`);
  }
}

/** Polls `fn` until it returns a truthy value or the timeout passes. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const why = lastErr instanceof Error ? `: ${lastErr.message}` : "";
      throw new Error(`timed out after ${opts.timeoutMs ?? 30_000} ms waiting for ${what}${why}`);
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}
