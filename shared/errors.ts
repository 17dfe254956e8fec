/**
 * Typed errors: one base class with a stable `code` and context fields.
 * Library errors are converted where the library is called, so callers
 * branch on the class (`instanceof ConfigError`) instead of parsing messages.
 * A code is listed only if some class raises it. (A compacted watch is not an
 * error of ours: shared/etcd.ts's isCompactedError recognises the library's.)
 */
export type ErrorCode = "E_CONFIG" | "E_ETCD" | "E_DOCKER" | "E_TIMEOUT" | "E_UPSTREAM";

export class PgHaError extends Error {
  readonly code: ErrorCode;
  readonly context: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, context: Record<string, unknown> = {}, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    this.code = code;
    this.context = Object.freeze({ ...context });
  }
}

/** A bad or missing configuration value. The message is the one line printed to the operator. */
export class ConfigError extends PgHaError {
  readonly option: string;
  constructor(option: string, message: string) {
    super("E_CONFIG", message, { option });
    this.option = option;
  }
}

export class EtcdError extends PgHaError {
  constructor(message: string, context: Record<string, unknown> = {}, cause?: unknown) {
    super("E_ETCD", message, context, cause);
  }
}

export class TimeoutError extends PgHaError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super("E_TIMEOUT", message, context);
  }
}

/**
 * Thrown by a value parser (an option's, an address's); the message (if any) adds detail to
 * "expected <accepted>". config.ts turns it into a ConfigError that names the option.
 */
export class ParseFailure extends Error {}

/** Converts anything thrown into an Error, keeping Errors as they are. */
export function asError(value: unknown): Error {
  if (value instanceof Error) return value;
  return new Error(typeof value === "string" ? value : JSON.stringify(value));
}
