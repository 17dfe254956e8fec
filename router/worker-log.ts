/**
 * A router worker's logger without pino: each line goes to the supervisor over IPC
 * (`pgha:log`), which writes it with its own pino logger (supervisor.ts), so the
 * lines look as the supervisor's do and pass through the same redactor. The worker
 * redacts too, before a line leaves it. Lines below the configured level are dropped
 * here. `fatal` lines, and any line once the channel is gone, are written straight
 * to stderr (synchronously: the worker may be about to exit), as pino would format them.
 *
 * It implements the part of pino's Logger the worker's modules use (child, the level
 * methods, `level`); a worker thus never loads pino (about 3 MB resident per process).
 */
import { writeSync } from "node:fs";
import { format } from "node:util";
import type { Logger } from "../shared/logger.js";
import { redactString, redactValue } from "../shared/redact.js";

const LEVELS = { fatal: 60, error: 50, warn: 40, info: 30, debug: 20, trace: 10, silent: Infinity } as const;
export type LineLevel = Exclude<keyof typeof LEVELS, "silent">;

export type LogMessage = {
  readonly t: "pgha:log";
  readonly level: LineLevel;
  readonly obj: Record<string, unknown>;
  readonly msg: string;
};

export function isLogMessage(m: unknown): m is LogMessage {
  const x = m as Partial<LogMessage> | null;
  return (
    x?.t === "pgha:log" &&
    typeof x.level === "string" &&
    x.level in LEVELS &&
    x.level !== ("silent" as string) &&
    typeof x.obj === "object" &&
    x.obj !== null &&
    typeof x.msg === "string"
  );
}

/** Where lines go: the IPC channel (`process`), and the fallback (stderr). */
export interface LogOutlet {
  send?(m: LogMessage): unknown;
  readonly connected?: boolean;
  stderr(line: string): void;
}

const processOutlet: LogOutlet = {
  send: process.send?.bind(process) as LogOutlet["send"],
  get connected() {
    return process.connected;
  },
  stderr: (line) => {
    try {
      writeSync(2, line);
    } catch {
      // Nowhere left to write.
    }
  },
};

class WorkerLogger {
  readonly level: string;
  private readonly min: number;
  constructor(
    level: string,
    private readonly bindings: Record<string, unknown>,
    private readonly out: LogOutlet,
    private readonly service: string,
  ) {
    this.level = level;
    this.min = LEVELS[level as keyof typeof LEVELS] ?? LEVELS.info;
  }

  child(bindings: Record<string, unknown>): WorkerLogger {
    const merged = { ...this.bindings, ...(redactValue(bindings) as Record<string, unknown>) };
    return new WorkerLogger(this.level, merged, this.out, this.service);
  }

  isLevelEnabled(level: string): boolean {
    return (LEVELS[level as keyof typeof LEVELS] ?? 0) >= this.min;
  }

  fatal = (a?: unknown, ...rest: unknown[]) => this.write("fatal", a, rest);
  error = (a?: unknown, ...rest: unknown[]) => this.write("error", a, rest);
  warn = (a?: unknown, ...rest: unknown[]) => this.write("warn", a, rest);
  info = (a?: unknown, ...rest: unknown[]) => this.write("info", a, rest);
  debug = (a?: unknown, ...rest: unknown[]) => this.write("debug", a, rest);
  trace = (a?: unknown, ...rest: unknown[]) => this.write("trace", a, rest);

  /**
   * pino's calling convention: `(obj, msg?, ...args)` or `(msg, ...args)`, `args` filling
   * the message's `%s`-style placeholders; an Error alone is `{ err }`.
   */
  private write(level: LineLevel, a: unknown, rest: unknown[]): void {
    if (LEVELS[level] < this.min) return;
    let obj: Record<string, unknown> = {};
    let msg = "";
    if (typeof a === "string") {
      msg = rest.length > 0 ? format(a, ...rest) : a;
    } else {
      const [b, ...args] = rest;
      if (a instanceof Error) {
        obj = { err: a };
        msg = typeof b === "string" ? b : a.message;
      } else if (typeof a === "object" && a !== null) obj = a as Record<string, unknown>;
      if (typeof b === "string") msg = args.length > 0 ? format(b, ...args) : b;
    }
    const m: LogMessage = {
      t: "pgha:log",
      level,
      obj: { ...this.bindings, ...(redactValue(obj) as Record<string, unknown>) },
      msg: redactString(msg),
    };
    if (level !== "fatal" && this.out.connected !== false && this.out.send !== undefined) {
      try {
        this.out.send(m);
        return;
      } catch {
        // The channel closed between the check and the send: stderr below.
      }
    }
    const line = {
      level,
      time: new Date().toISOString(),
      service: this.service,
      name: this.service,
      ...m.obj,
    };
    this.out.stderr(`${JSON.stringify({ ...line, msg: m.msg })}\n`);
  }
}

/** The worker's root logger (`service` as the supervisor's logger names itself). */
export function workerLogger(
  o: { service: string; level: string; bindings?: Record<string, unknown> },
  out: LogOutlet = processOutlet,
): Logger {
  return new WorkerLogger(o.level, o.bindings ?? {}, out, o.service) as unknown as Logger;
}
