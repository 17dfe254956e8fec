/**
 * Declarative command-line + environment configuration.
 *
 * Each option is declared once (flag, env var, default, parser). Flags win over
 * the environment, the environment over defaults. Unknown flags are errors. A bad
 * value produces one line that names the option, the value given and what is
 * accepted; `loadConfigOrExit` prints it and exits with code 2.
 */
import { readFileSync } from "node:fs";
import { ConfigError, ParseFailure } from "./errors.js";
import { type HostPort, parseHostPort } from "./host-port.js";

interface OptionBase<T> {
  readonly flag: string;
  readonly env?: string | undefined;
  /** Older spellings of the flag, still accepted (not shown as the option's name). */
  readonly aliases?: readonly string[] | undefined;
  /** Older environment names, read when `env` is unset. */
  readonly envAliases?: readonly string[] | undefined;
  readonly description: string;
  readonly accepted: string;
  readonly metavar: string;
  readonly secret: boolean;
  readonly required: boolean;
  readonly defaultValue: T;
  readonly defaultLabel: string | undefined;
}

export interface ValueOption<T> extends OptionBase<T> {
  readonly kind: "value";
  readonly parse: (raw: string) => T;
}
export interface BoolOption extends OptionBase<boolean> {
  readonly kind: "bool";
}
export interface RepeatOption<T> extends OptionBase<readonly T[]> {
  readonly kind: "repeat";
  readonly parseItem: (raw: string) => T;
  /** The environment variable carries several items separated by this. */
  readonly envSeparator: string;
}

// biome-ignore lint/suspicious/noExplicitAny: the option table is heterogeneous by design
export type OptionTable = Record<string, ValueOption<any> | BoolOption | RepeatOption<any>>;
export type ConfigOf<S extends OptionTable> = {
  readonly [K in keyof S]: S[K] extends ValueOption<infer T>
    ? T
    : S[K] extends BoolOption
      ? boolean
      : S[K] extends RepeatOption<infer I>
        ? readonly I[]
        : never;
};

interface Common {
  flag: string;
  env?: string;
  aliases?: readonly string[];
  envAliases?: readonly string[];
  description: string;
  secret?: boolean;
}

function base<T>(
  c: Common,
  accepted: string,
  metavar: string,
  defaultValue: T,
  defaultLabel: string | undefined,
  required = false,
): OptionBase<T> {
  return {
    flag: c.flag,
    env: c.env,
    ...(c.aliases ? { aliases: c.aliases } : {}),
    ...(c.envAliases ? { envAliases: c.envAliases } : {}),
    description: c.description,
    accepted,
    metavar,
    secret: c.secret ?? false,
    required,
    defaultValue,
    defaultLabel,
  };
}

/** Parses the whole raw value with `parse`, or fails with the accepted form. */
export function valueOption<T>(
  c: Common & { accepted: string; metavar?: string; default: T; defaultLabel?: string },
  parse: (raw: string) => T,
): ValueOption<T> {
  const label = c.defaultLabel ?? (c.default === undefined ? undefined : String(c.default));
  return { ...base(c, c.accepted, c.metavar ?? "VALUE", c.default, label), kind: "value", parse };
}

export const opt = {
  string(c: Common & { default: string; metavar?: string; accepted?: string }): ValueOption<string> {
    return valueOption({ ...c, accepted: c.accepted ?? "a non-empty string" }, (raw) => {
      if (raw === "") throw new ParseFailure("empty");
      return raw;
    });
  },

  optionalString(c: Common & { metavar?: string; accepted?: string }): ValueOption<string | undefined> {
    return valueOption({ ...c, default: undefined, accepted: c.accepted ?? "a string" }, (raw) =>
      raw === "" ? undefined : raw,
    );
  },

  requiredString(c: Common & { metavar?: string; accepted?: string }): ValueOption<string> {
    const o = valueOption<string>(
      { ...c, default: "", defaultLabel: "required", accepted: c.accepted ?? "a non-empty string" },
      (raw) => {
        if (raw === "") throw new ParseFailure("empty");
        return raw;
      },
    );
    return { ...o, required: true };
  },

  int(c: Common & { default: number; min?: number; max?: number; metavar?: string }): ValueOption<number> {
    const min = c.min ?? Number.MIN_SAFE_INTEGER;
    const max = c.max ?? Number.MAX_SAFE_INTEGER;
    const accepted =
      c.min !== undefined && c.max !== undefined
        ? `an integer from ${min} to ${max}`
        : c.min !== undefined
          ? `an integer >= ${min}`
          : "an integer";
    return valueOption({ ...c, accepted, metavar: c.metavar ?? "N" }, (raw) => parseInteger(raw, min, max));
  },

  /** Seconds as a number; accepts `30`, `30s`, `1.5s`, `500ms`, `2m`. */
  seconds(c: Common & { default: number; min?: number; max?: number }): ValueOption<number> {
    const min = c.min ?? 0;
    const max = c.max ?? 86_400 * 365;
    return valueOption(
      {
        ...c,
        accepted: `a duration from ${min}s to ${max}s such as 30, 30s, 500ms, 2m`,
        metavar: "DURATION",
      },
      (raw) => parseDurationSeconds(raw, min, max),
    );
  },

  bool(c: Common & { default?: boolean }): BoolOption {
    return { ...base(c, "true or false", "", c.default ?? false, String(c.default ?? false)), kind: "bool" };
  },

  oneOf<const V extends string>(c: Common & { values: readonly V[]; default: V }): ValueOption<V> {
    const accepted = `one of ${c.values.join(", ")}`;
    return valueOption({ ...c, accepted, metavar: c.values.join("|") }, (raw) => {
      if ((c.values as readonly string[]).includes(raw)) return raw as V;
      throw new ParseFailure();
    });
  },

  /** HOST:PORT; `off` gives null when `allowOff`. */
  hostPort<const Off extends boolean = false>(
    c: Common & { default: string | (Off extends true ? null : never); allowOff?: Off; defaultPort?: number },
  ): ValueOption<HostPort | (Off extends true ? null : never)> {
    const accepted = `HOST:PORT with a port from 1 to 65535${c.allowOff ? ", or off" : ""}`;
    const parse = (raw: string): HostPort | (Off extends true ? null : never) => {
      if (c.allowOff && raw === "off") return null as Off extends true ? null : never;
      return parseHostPort(raw, c.defaultPort);
    };
    const def = c.default === null ? null : parse(c.default);
    return valueOption(
      {
        ...c,
        default: def as HostPort | (Off extends true ? null : never),
        defaultLabel: c.default ?? "off",
        accepted,
        metavar: "HOST:PORT",
      },
      parse,
    );
  },

  hostPortList(c: Common & { default: string; defaultPort?: number }): ValueOption<readonly HostPort[]> {
    const parse = (raw: string): readonly HostPort[] => {
      const parts = raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
      if (parts.length === 0) throw new ParseFailure("empty list");
      return Object.freeze(parts.map((p) => parseHostPort(p, c.defaultPort)));
    };
    return valueOption(
      {
        ...c,
        default: parse(c.default),
        defaultLabel: c.default,
        accepted: "a comma-separated list of HOST:PORT",
        metavar: "HOST:PORT[,...]",
      },
      parse,
    );
  },

  /** Repeatable flag; the env var holds items separated by `envSeparator` (default `;`). */
  repeat<T>(
    c: Common & { accepted: string; metavar?: string; envSeparator?: string },
    parseItem: (raw: string) => T,
  ): RepeatOption<T> {
    return {
      ...base<readonly T[]>(c, c.accepted, c.metavar ?? "VALUE", Object.freeze([]), undefined),
      kind: "repeat",
      parseItem,
      envSeparator: c.envSeparator ?? ";",
    };
  },
};

export function parseInteger(raw: string, min: number, max: number): number {
  if (!/^[+-]?\d+$/.test(raw.trim())) throw new ParseFailure();
  const n = Number(raw.trim());
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ParseFailure();
  return n;
}

export function parseDurationSeconds(raw: string, min: number, max: number): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(raw.trim());
  if (!m) throw new ParseFailure();
  const n = Number(m[1]);
  const unit = m[2] ?? "s";
  const seconds = unit === "ms" ? n / 1000 : unit === "m" ? n * 60 : unit === "h" ? n * 3600 : n;
  if (!Number.isFinite(seconds) || seconds < min || seconds > max) throw new ParseFailure();
  return seconds;
}

const TRUE = new Set(["1", "true", "yes", "on", "t"]);
const FALSE = new Set(["0", "false", "no", "off", "f", ""]);

function parseBool(raw: string): boolean {
  const v = raw.trim().toLowerCase();
  if (TRUE.has(v)) return true;
  if (FALSE.has(v)) return false;
  throw new ParseFailure();
}

export interface Positional<T> {
  readonly name: string;
  readonly description: string;
  readonly accepted: string;
  readonly required: boolean;
  readonly parse: (raw: string) => T;
  readonly defaultValue: T;
}

export interface ProgramSpec<S extends OptionTable, P> {
  readonly program: string;
  readonly summary: string;
  readonly options: S;
  readonly positional?: Positional<P>;
  /** Extra text appended to --help (examples, notes). */
  readonly epilog?: string;
}

export type Parsed<S extends OptionTable, P> =
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "config"; readonly config: ConfigOf<S>; readonly positional: P };

function describeValue(o: OptionBase<unknown>, raw: string): string {
  return o.secret ? "(hidden)" : JSON.stringify(raw);
}

function failure(
  program: string,
  o: OptionBase<unknown>,
  raw: string,
  source: string,
  detail?: string,
): ConfigError {
  const extra = detail ? ` (${detail})` : "";
  return new ConfigError(
    o.flag,
    `${program}: invalid value ${describeValue(o, raw)} for -${o.flag}${source}: expected ${o.accepted}${extra}`,
  );
}

function runParser<T>(
  program: string,
  o: OptionBase<unknown>,
  raw: string,
  source: string,
  parse: (raw: string) => T,
): T {
  try {
    return parse(raw);
  } catch (err) {
    if (err instanceof ParseFailure) throw failure(program, o, raw, source, err.message || undefined);
    throw err;
  }
}

/** Pure: parses argv + env against a spec. Throws ConfigError. */
export function parseArgs<S extends OptionTable, P = undefined>(
  spec: ProgramSpec<S, P>,
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Parsed<S, P> {
  const { program, options } = spec;
  const byFlag = new Map<string, [string, S[keyof S]]>();
  for (const [key, o] of Object.entries(options)) {
    for (const flag of [o.flag, ...(o.aliases ?? [])]) byFlag.set(flag, [key, o as S[keyof S]]);
  }

  const fromFlags = new Map<string, unknown>();
  const positionals: string[] = [];
  let onlyPositionals = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (onlyPositionals || !arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    if (arg === "--") {
      onlyPositionals = true;
      continue;
    }
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq === -1 ? body : body.slice(0, eq);
    const inline = eq === -1 ? undefined : body.slice(eq + 1);
    if (name === "help" || name === "h") return { kind: "help", text: helpText(spec) };
    const entry = byFlag.get(name);
    if (!entry) {
      // Never echo an inline value: a mistyped secret flag (--etcd-pasword=…) carries a secret.
      const shown = eq === -1 ? arg : `${arg.slice(0, arg.indexOf("="))}=…`;
      throw new ConfigError(
        name,
        `${program}: unknown option ${JSON.stringify(shown)} (see ${program} --help)`,
      );
    }
    const [key, o] = entry;
    if (o.kind === "bool") {
      fromFlags.set(key, inline === undefined ? true : runParser(program, o, inline, "", parseBool));
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      if (i + 1 >= argv.length) {
        throw new ConfigError(o.flag, `${program}: option -${o.flag} needs a value: expected ${o.accepted}`);
      }
      raw = argv[++i]!;
    }
    if (o.kind === "repeat") {
      const prev = (fromFlags.get(key) as unknown[] | undefined) ?? [];
      prev.push(runParser(program, o, raw, "", o.parseItem));
      fromFlags.set(key, prev);
    } else {
      fromFlags.set(key, runParser(program, o, raw, "", o.parse));
    }
  }

  const config: Record<string, unknown> = {};
  for (const [key, o] of Object.entries(options)) {
    if (fromFlags.has(key)) {
      const v = fromFlags.get(key);
      config[key] = Array.isArray(v) ? Object.freeze(v) : v;
      continue;
    }
    const envName = envNames(o).find((name) => env[name] !== undefined);
    const envRaw = envName === undefined ? undefined : env[envName];
    if (envRaw !== undefined && !(envRaw === "" && o.kind !== "bool")) {
      const source = ` (from ${envName})`;
      if (o.kind === "bool") config[key] = runParser(program, o, envRaw, source, parseBool);
      else if (o.kind === "repeat") {
        const items = envRaw
          .split(o.envSeparator)
          .map((s) => s.trim())
          .filter((s) => s !== "");
        config[key] = Object.freeze(items.map((item) => runParser(program, o, item, source, o.parseItem)));
      } else config[key] = runParser(program, o, envRaw, source, o.parse);
      continue;
    }
    if (o.required) {
      const via = o.env ? ` or ${o.env}` : "";
      throw new ConfigError(o.flag, `${program}: missing required -${o.flag}${via}: expected ${o.accepted}`);
    }
    config[key] = o.defaultValue;
  }

  let positional: unknown = spec.positional?.defaultValue;
  const p = spec.positional;
  if (positionals.length > (p ? 1 : 0)) {
    const extra = positionals[p ? 1 : 0]!;
    throw new ConfigError(
      "argument",
      `${program}: unexpected argument ${JSON.stringify(extra)} (see ${program} --help)`,
    );
  }
  if (p) {
    const raw = positionals[0];
    if (raw === undefined) {
      if (p.required) {
        throw new ConfigError(p.name, `${program}: missing argument ${p.name}: expected ${p.accepted}`);
      }
    } else {
      try {
        positional = p.parse(raw);
      } catch (err) {
        if (!(err instanceof ParseFailure)) throw err;
        const extra = err.message ? ` (${err.message})` : "";
        throw new ConfigError(
          p.name,
          `${program}: invalid ${p.name} ${JSON.stringify(raw)}: expected ${p.accepted}${extra}`,
        );
      }
    }
  }
  return { kind: "config", config: Object.freeze(config) as ConfigOf<S>, positional: positional as P };
}

/** Every environment name an option reads, its own first, then its older spellings. */
export function envNames(o: OptionBase<unknown>): string[] {
  return o.env === undefined ? [] : [o.env, ...(o.envAliases ?? [])];
}

/** The environment names of a program's secret options: each may also come from `<NAME>_FILE`. */
export function secretEnvNames<S extends OptionTable, P>(spec: ProgramSpec<S, P>): string[] {
  return Object.values(spec.options).flatMap((o) => (o.secret ? envNames(o) : []));
}

export function helpText<S extends OptionTable, P>(spec: ProgramSpec<S, P>): string {
  const lines: string[] = [];
  const pos = spec.positional
    ? ` ${spec.positional.required ? spec.positional.name : `[${spec.positional.name}]`}`
    : "";
  lines.push(`Usage: ${spec.program} [options]${pos}`, "", spec.summary, "");
  if (spec.positional) {
    lines.push("Arguments:", `  ${spec.positional.name}`, `      ${spec.positional.description}`, "");
  }
  lines.push("Options (flags win over environment variables):");
  for (const o of Object.values(spec.options)) {
    const head = `  -${o.flag}${o.metavar ? ` ${o.metavar}` : ""}`;
    const facts: string[] = [];
    if (o.env) facts.push(`env ${o.env}`);
    const older = [...(o.aliases ?? []).map((a) => `-${a}`), ...(o.envAliases ?? [])];
    if (older.length > 0) facts.push(`also ${older.join(", ")}`);
    if (o.env && o.secret) facts.push(`or a file named by ${o.env}_FILE`);
    if (o.required) facts.push("required");
    else if (o.kind === "repeat") facts.push("repeatable");
    else if (o.defaultLabel === undefined) facts.push("default unset");
    // A secret's default is not shown, but that it has one is.
    else facts.push(o.secret ? "default hidden" : `default ${o.defaultLabel}`);
    lines.push(head, `      ${o.description} [${facts.join("; ")}]`);
  }
  lines.push("  -help", "      Show this help and exit.");
  if (spec.epilog) lines.push("", spec.epilog);
  return lines.join("\n") + "\n";
}

/**
 * For a main(): prints help and exits 0, or prints the one-line error and exits 2.
 */
export function loadConfigOrExit<S extends OptionTable, P = undefined>(
  spec: ProgramSpec<S, P>,
  argv: readonly string[] = process.argv.slice(2),
  env: Readonly<Record<string, string | undefined>> = process.env,
): { config: ConfigOf<S>; positional: P } {
  let parsed: Parsed<S, P>;
  try {
    parsed = parseArgs(spec, argv, resolveFileSecrets(spec.program, secretEnvNames(spec), env));
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(err.message + "\n");
      process.exit(2);
    }
    throw err;
  }
  if (parsed.kind === "help") {
    process.stdout.write(parsed.text);
    process.exit(0);
  }
  return { config: parsed.config, positional: parsed.positional };
}

/**
 * Resolves `<NAME>_FILE` into `<NAME>` for each of `names` (Docker secrets: a password read
 * from a file, never on a command line or in `docker inspect`). The value itself wins when
 * both are set; a trailing newline in the file is dropped. An unreadable file is a
 * ConfigError naming the variable, the path and why.
 */
export function resolveFileSecrets(
  program: string,
  names: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  read: (path: string) => string = (p) => readFileSync(p, "utf8"),
): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...env };
  for (const name of names) {
    const path = env[`${name}_FILE`];
    if (path === undefined || path === "" || (env[name] ?? "") !== "") continue;
    let text: string;
    try {
      text = read(path);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? "unreadable";
      throw new ConfigError(
        name,
        `${program}: cannot read ${name}_FILE ${JSON.stringify(path)} (${why}): expected a readable file`,
      );
    }
    out[name] = text.replace(/\r?\n$/, "");
  }
  return out;
}
