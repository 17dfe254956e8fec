/**
 * pino JSON logs to stdout. Every object logged and every message string pass
 * through the redactor, so secrets never reach a line whatever a caller logs.
 */
import { type DestinationStream, type Logger, type LoggerOptions, pino } from "pino";
import { redactString, redactValue } from "./redact.js";

export type { Logger } from "pino";

import type { LogLevel } from "./log-levels.js";

export { LOG_LEVELS, type LogLevel } from "./log-levels.js";

export function createLogger(
  opts: { name: string; level?: LogLevel | string },
  destination?: DestinationStream,
): Logger {
  const options: LoggerOptions = {
    name: opts.name,
    level: opts.level ?? "info",
    base: { service: opts.name },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      level: (label) => ({ level: label }),
      // Runs on the merged object of every line, bindings excluded.
      log: (obj) => redactValue(obj) as Record<string, unknown>,
      bindings: (b) => redactValue(b) as Record<string, unknown>,
    },
    // pino's err serializer would bypass the formatter's scrubbing of fields it adds.
    serializers: { err: (e: unknown) => redactValue(e), error: (e: unknown) => redactValue(e) },
    hooks: {
      logMethod(args, method) {
        const scrubbed = args.map((a) => (typeof a === "string" ? redactString(a) : a)) as typeof args;
        return method.apply(this, scrubbed);
      },
    },
  };
  const logger = destination ? pino(options, destination) : pino(options);
  // pino formats a child's bindings without the bindings formatter; scrub them here.
  // Children are created with Object.create(parent), so they inherit this method.
  const child = logger.child;
  logger.child = function (this: Logger, bindings, childOptions) {
    return child.call(this, redactValue(bindings) as typeof bindings, childOptions);
  } as typeof logger.child;
  return logger;
}
