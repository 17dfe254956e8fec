/**
 * The agent's configuration: the environment names of the original image
 * (NAME, PATRONI_SCOPE, ETCD_HOST_PORT, DOCKER_HOSTNAME, POSTGRES_USERNAME,
 * POSTGRES_PASSWORD) plus credentials, DCS timings and discovery settings.
 *
 * `parseAgentConfig` is pure: environment in, a frozen AgentConfig out, or a
 * ConfigError whose message is the one line printed to the operator. Every
 * secret may also come from a file named by `<NAME>_FILE` (Docker secrets).
 */
import { readFileSync } from "node:fs";
import {
  type HostPort,
  opt,
  ParseFailure,
  type ProgramSpec,
  parseArgs,
  parseHostPort,
  valueOption,
} from "../shared/config.js";
import { ConfigError } from "../shared/errors.js";
import { LOG_LEVELS, type LogLevel } from "../shared/logger.js";
import { BACKUP_FILE_BACKED, type BackupConfig, backupOptions, buildBackupConfig } from "./backup/index.js";

const PROGRAM = "agent";

/** The names the image's labels give the registrator for each port. */
export const DEFAULT_SERVICE_5432 = "postgresql-patroni";
export const DEFAULT_SERVICE_8008 = "postgresql-patroni-api";
/** Patroni's own defaults for the DCS timings. */
export const DEFAULT_TTL = 30;
export const DEFAULT_LOOP_WAIT = 10;
export const DEFAULT_RETRY_TIMEOUT = 10;
export const DEFAULT_DISCOVERY_TIMEOUT_S = 120;
export const DEFAULT_SWITCHOVER_TIMEOUT_S = 20;
/** What the README and the compose stack give a container to stop (`docker stop -t 60`, `stop_grace_period: 60s`). */
export const DEFAULT_STOP_GRACE_PERIOD_S = 60;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
const ROLE_RE = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
const SERVICE_RE = /^[^/\s]+$/;

function pattern(re: RegExp, what: string) {
  return (raw: string): string => {
    if (!re.test(raw)) throw new ParseFailure(what);
    return raw;
  };
}

const memberName = pattern(NAME_RE, "letters, digits, _ . - ; starting with a letter or digit; 63 at most");
const roleName = pattern(ROLE_RE, "a PostgreSQL role name: letters, digits, _ ; 63 at most");

function required(flag: string, env: string, description: string, parse: (raw: string) => string) {
  const o = valueOption<string>(
    { flag, env, description, default: "", defaultLabel: "required", accepted: "a non-empty value" },
    (raw) => {
      if (raw === "") throw new ParseFailure("empty");
      return parse(raw);
    },
  );
  return { ...o, required: true };
}

function secret(flag: string, env: string, description: string) {
  const o = opt.requiredString({ flag, env, description, secret: true, accepted: "a non-empty password" });
  return o;
}

function role(flag: string, env: string, description: string, def: string) {
  return valueOption<string>(
    { flag, env, description, default: def, accepted: "a PostgreSQL role name", metavar: "ROLE" },
    roleName,
  );
}

export const agentOptions = {
  name: required("name", "NAME", "Patroni member name of this node (the original's NAME)", memberName),
  containerName: valueOption<string | undefined>(
    {
      flag: "container-name",
      env: "CONTAINER_NAME",
      description: "this container's name as the registrator sees it (default: NAME)",
      default: undefined,
      defaultLabel: "NAME",
      accepted: "a container name",
    },
    (raw) => (raw === "" ? undefined : memberName(raw)),
  ),
  scope: required("scope", "PATRONI_SCOPE", "Patroni cluster name", memberName),
  namespace: opt.string({
    flag: "namespace",
    env: "PATRONI_NAMESPACE",
    description: "Patroni's etcd namespace",
    default: "/service/",
  }),
  etcdHostPort: valueOption<HostPort | undefined>(
    {
      flag: "etcd-host-port",
      env: "ETCD_HOST_PORT",
      description: "one etcd endpoint (the original's ETCD_HOST_PORT)",
      default: undefined,
      accepted: "HOST:PORT",
      metavar: "HOST:PORT",
    },
    (raw) => (raw === "" ? undefined : parseHostPort(raw, 2379)),
  ),
  etcdHosts: valueOption<readonly HostPort[] | undefined>(
    {
      flag: "etcd-hosts",
      env: "ETCD_HOSTS",
      description: "etcd endpoints; wins over ETCD_HOST_PORT",
      default: undefined,
      accepted: "a comma-separated list of HOST:PORT",
      metavar: "HOST:PORT[,...]",
    },
    (raw) => {
      const parts = raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "");
      if (parts.length === 0) throw new ParseFailure("empty list");
      return Object.freeze(parts.map((p) => parseHostPort(p, 2379)));
    },
  ),
  etcdUsername: opt.optionalString({ flag: "etcd-username", env: "ETCD_USERNAME", description: "etcd user" }),
  etcdPassword: opt.optionalString({
    flag: "etcd-password",
    env: "ETCD_PASSWORD",
    description: "etcd password",
    secret: true,
  }),
  dockerHostname: opt.optionalString({
    flag: "docker-hostname",
    env: "DOCKER_HOSTNAME",
    description: "the registrator's -hostname on this Docker host (required unless DOCKER_HOST_IP is set)",
  }),
  dockerHostIp: opt.optionalString({
    flag: "docker-host-ip",
    env: "DOCKER_HOST_IP",
    description: "public IP of this node; with it, no registrator lookup",
  }),
  dockerHostPort5432: valueOption<number | undefined>(
    {
      flag: "docker-host-port-5432",
      env: "DOCKER_HOST_PORT_5432",
      description: "public port of PostgreSQL with DOCKER_HOST_IP",
      default: undefined,
      defaultLabel: "5432",
      accepted: "a port from 1 to 65535",
      metavar: "PORT",
    },
    (raw) => (raw === "" ? undefined : parseHostPort(`x:${raw}`).port),
  ),
  dockerHostPort8008: valueOption<number | undefined>(
    {
      flag: "docker-host-port-8008",
      env: "DOCKER_HOST_PORT_8008",
      description: "public port of Patroni's REST API with DOCKER_HOST_IP",
      default: undefined,
      defaultLabel: "8008",
      accepted: "a port from 1 to 65535",
      metavar: "PORT",
    },
    (raw) => (raw === "" ? undefined : parseHostPort(`x:${raw}`).port),
  ),
  registryPrefix: valueOption<string>(
    {
      flag: "registry-prefix",
      env: "REGISTRY_PREFIX",
      description: "path of the registrator's etcd URI (etcd://HOST:PORT/PREFIX)",
      default: "",
      defaultLabel: "none",
      accepted: "a key path such as /services",
    },
    (raw) => {
      if (/\s/.test(raw)) throw new ParseFailure("no whitespace");
      return raw;
    },
  ),
  service5432: valueOption<string>(
    {
      flag: "registry-service-5432",
      env: "REGISTRY_SERVICE_5432",
      description: "registrator service name of port 5432 (the image's SERVICE_5432_NAME label)",
      default: DEFAULT_SERVICE_5432,
      accepted: "a service name without slashes",
    },
    pattern(SERVICE_RE, "no slashes or whitespace"),
  ),
  service8008: valueOption<string>(
    {
      flag: "registry-service-8008",
      env: "REGISTRY_SERVICE_8008",
      description: "registrator service name of port 8008 (the image's SERVICE_8008_NAME label)",
      default: DEFAULT_SERVICE_8008,
      accepted: "a service name without slashes",
    },
    pattern(SERVICE_RE, "no slashes or whitespace"),
  ),
  discoveryTimeout: opt.seconds({
    flag: "discovery-timeout",
    env: "DISCOVERY_TIMEOUT",
    description: "how long to wait for the registrator's keys",
    default: DEFAULT_DISCOVERY_TIMEOUT_S,
    min: 1,
    max: 3600,
  }),
  postgresUsername: required(
    "postgres-username",
    "POSTGRES_USERNAME",
    "admin user created at bootstrap",
    roleName,
  ),
  postgresPassword: secret("postgres-password", "POSTGRES_PASSWORD", "its password"),
  replicationUsername: role("replication-username", "REPLICATION_USERNAME", "replication user", "replicator"),
  replicationPassword: secret("replication-password", "REPLICATION_PASSWORD", "its password"),
  superuserUsername: role("superuser-username", "SUPERUSER_USERNAME", "PostgreSQL superuser", "postgres"),
  superuserPassword: secret("superuser-password", "SUPERUSER_PASSWORD", "its password"),
  restapiUsername: valueOption<string>(
    {
      flag: "restapi-username",
      env: "RESTAPI_USERNAME",
      description: "user for Patroni's unsafe REST endpoints (POST, PATCH, DELETE)",
      default: "patroni",
      accepted: "a user name without ':'",
    },
    pattern(/^[^:\s]+$/, "no ':' or whitespace"),
  ),
  restapiPassword: secret("restapi-password", "RESTAPI_PASSWORD", "its password"),
  synchronousMode: opt.bool({
    flag: "synchronous-mode",
    env: "PATRONI_SYNCHRONOUS_MODE",
    description:
      "commit only once a synchronous standby has the WAL (bootstrap); false opts out into asynchronous replication",
    default: true,
  }),
  synchronousModeStrict: opt.bool({
    flag: "synchronous-mode-strict",
    env: "PATRONI_SYNCHRONOUS_MODE_STRICT",
    description: "refuse writes when no synchronous standby is available (bootstrap)",
  }),
  ttl: opt.int({
    flag: "ttl",
    env: "PATRONI_TTL",
    description: "leader lock TTL in seconds (bootstrap)",
    default: DEFAULT_TTL,
    min: 5,
    max: 3600,
  }),
  loopWait: opt.int({
    flag: "loop-wait",
    env: "PATRONI_LOOP_WAIT",
    description: "seconds between Patroni's HA loops (bootstrap)",
    default: DEFAULT_LOOP_WAIT,
    min: 1,
    max: 3600,
  }),
  retryTimeout: opt.int({
    flag: "retry-timeout",
    env: "PATRONI_RETRY_TIMEOUT",
    description: "seconds to retry DCS and PostgreSQL operations (bootstrap)",
    default: DEFAULT_RETRY_TIMEOUT,
    min: 1,
    max: 3600,
  }),
  walSegmentSize: opt.int({
    flag: "wal-segment-size",
    env: "WAL_SEGMENT_SIZE",
    description:
      "WAL segment size in MB when the cluster is created (initdb --wal-segsize; PostgreSQL's default). Smaller segments make a promotion's timeline switch quicker (it copies one segment) at the cost of more WAL files to archive",
    default: 16,
    min: 1,
    max: 1024,
  }),
  switchoverOnStop: opt.bool({
    flag: "switchover-on-stop",
    env: "SWITCHOVER_ON_STOP",
    description: "on SIGTERM, a leader hands over to a healthy replica before stopping",
    default: true,
  }),
  switchoverTimeout: opt.seconds({
    flag: "switchover-timeout",
    env: "SWITCHOVER_TIMEOUT",
    description: "how long a stop waits for that switchover",
    default: DEFAULT_SWITCHOVER_TIMEOUT_S,
    min: 1,
    max: 600,
  }),
  stopGracePeriod: opt.seconds({
    flag: "stop-grace-period",
    env: "STOP_GRACE_PERIOD",
    description:
      "the time Docker gives this container to stop (docker stop -t, compose stop_grace_period): a stopping leader waits within it for a replica to catch up",
    default: DEFAULT_STOP_GRACE_PERIOD_S,
    min: 1,
    max: 3600,
  }),
  dataDir: opt.string({
    flag: "data-dir",
    env: "PGDATA",
    description: "data directory",
    default: "/data/pgdata",
  }),
  configFile: opt.string({
    flag: "config-file",
    env: "PATRONICTL_CONFIG_FILE",
    description: "where patroni.yml is written",
    default: "/etc/patroni/patroni.yml",
  }),
  logLevel: opt.oneOf({
    flag: "log-level",
    env: "LOG_LEVEL",
    description: "the entrypoint's log level",
    values: LOG_LEVELS,
    default: "info",
  }),
};

const allOptions = { ...agentOptions, ...backupOptions };

export const agentSpec: ProgramSpec<typeof allOptions, undefined> = {
  program: PROGRAM,
  summary:
    "Discovers this node's public PostgreSQL and Patroni addresses, renders patroni.yml and runs Patroni.",
  options: allOptions,
  epilog: [
    "Every password and key may instead be read from a file: <NAME>_FILE=/run/secrets/... (e.g. POSTGRES_PASSWORD_FILE, AWS_SECRET_ACCESS_KEY_FILE).",
    "Without BACKUP_S3_BUCKET (WAL_S3_BUCKET) or BACKUP_POSIX_PATH, WAL archiving is off and replicas are cloned with pg_basebackup.",
    "Other PATRONI_* variables reach Patroni unchanged (PATRONI_LOG_LEVEL, PATRONI_RESTAPI_*, ...).",
  ].join("\n"),
};

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** Where the node's public addresses come from. */
export type AddressSource =
  | { readonly kind: "static"; readonly postgres: HostPort; readonly api: HostPort }
  | {
      readonly kind: "registry";
      readonly dockerHostname: string;
      readonly containerName: string;
      readonly prefix: string;
      readonly service5432: string;
      readonly service8008: string;
      readonly timeoutSeconds: number;
    };

export interface AgentConfig {
  readonly name: string;
  readonly scope: string;
  readonly namespace: string;
  readonly etcd: {
    readonly hosts: readonly HostPort[];
    readonly username: string | undefined;
    readonly password: string | undefined;
  };
  readonly addresses: AddressSource;
  readonly admin: Credentials;
  readonly replication: Credentials;
  readonly superuser: Credentials;
  readonly restapi: Credentials;
  readonly dcs: {
    readonly ttl: number;
    readonly loopWait: number;
    readonly retryTimeout: number;
    readonly synchronousMode: boolean;
    readonly synchronousModeStrict: boolean;
  };
  /** initdb --wal-segsize (MB): a power of 2; used only when this node creates the cluster. */
  readonly walSegmentSizeMb: number;
  readonly stop: {
    readonly switchover: boolean;
    readonly timeoutSeconds: number;
    readonly gracePeriodSeconds: number;
  };
  readonly dataDir: string;
  readonly configFile: string;
  readonly logLevel: LogLevel;
  /** pgBackRest: null when no repository is configured (archiving off). */
  readonly backup: BackupConfig | null;
  /** The agent's own /metrics; null when off. */
  readonly metricsListen: HostPort | null;
}

/** Env names whose value may come from `<NAME>_FILE`. */
export const FILE_BACKED = [
  "POSTGRES_PASSWORD",
  "REPLICATION_PASSWORD",
  "SUPERUSER_PASSWORD",
  "RESTAPI_PASSWORD",
  "ETCD_PASSWORD",
  ...BACKUP_FILE_BACKED,
] as const;

/**
 * Resolves `<NAME>_FILE` into `<NAME>` (the value itself wins when both are
 * set); a trailing newline in the file is dropped.
 */
export function resolveFileSecrets(
  env: Readonly<Record<string, string | undefined>>,
  read: (path: string) => string = (p) => readFileSync(p, "utf8"),
): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = { ...env };
  for (const name of FILE_BACKED) {
    const path = env[`${name}_FILE`];
    if (path === undefined || path === "" || (env[name] ?? "") !== "") continue;
    let text: string;
    try {
      text = read(path);
    } catch (err) {
      const why = (err as NodeJS.ErrnoException).code ?? "unreadable";
      throw new ConfigError(
        name,
        `${PROGRAM}: cannot read ${name}_FILE ${JSON.stringify(path)} (${why}): expected a readable file`,
      );
    }
    out[name] = text.replace(/\r?\n$/, "");
  }
  return out;
}

function fail(option: string, message: string): never {
  throw new ConfigError(option, `${PROGRAM}: ${message}`);
}

/** Pure: argv + env → AgentConfig, or a ConfigError with the operator's one line. */
export function parseAgentConfig(
  argv: readonly string[],
  rawEnv: Readonly<Record<string, string | undefined>>,
  read?: (path: string) => string,
): { kind: "help"; text: string } | { kind: "config"; config: AgentConfig } {
  const env = resolveFileSecrets(rawEnv, read);
  const parsed = parseArgs(agentSpec, argv, env);
  if (parsed.kind === "help") return parsed;
  const c = parsed.config;

  const hosts = c.etcdHosts ?? (c.etcdHostPort ? [c.etcdHostPort] : undefined);
  if (!hosts) fail("etcd", "missing ETCD_HOST_PORT or ETCD_HOSTS: expected HOST:PORT of etcd");

  let addresses: AddressSource;
  if (c.dockerHostIp !== undefined) {
    let ip: string;
    try {
      ip = parseHostPort(c.dockerHostIp, 1).host;
    } catch {
      fail(
        "docker-host-ip",
        `invalid DOCKER_HOST_IP ${JSON.stringify(c.dockerHostIp)}: expected an IP or host name`,
      );
    }
    addresses = {
      kind: "static",
      postgres: Object.freeze({ host: ip, port: c.dockerHostPort5432 ?? 5432 }),
      api: Object.freeze({ host: ip, port: c.dockerHostPort8008 ?? 8008 }),
    };
  } else {
    if (c.dockerHostPort5432 !== undefined || c.dockerHostPort8008 !== undefined) {
      fail("docker-host-ip", "DOCKER_HOST_PORT_5432/_8008 need DOCKER_HOST_IP: expected DOCKER_HOST_IP too");
    }
    if (c.dockerHostname === undefined) {
      fail(
        "docker-hostname",
        "missing DOCKER_HOSTNAME: expected the registrator's -hostname (or DOCKER_HOST_IP to skip discovery)",
      );
    }
    if (c.dockerHostname.includes("/")) {
      fail("docker-hostname", `invalid DOCKER_HOSTNAME ${JSON.stringify(c.dockerHostname)}: expected no '/'`);
    }
    addresses = {
      kind: "registry",
      dockerHostname: c.dockerHostname,
      containerName: c.containerName ?? c.name,
      prefix: c.registryPrefix,
      service5432: c.service5432,
      service8008: c.service8008,
      timeoutSeconds: c.discoveryTimeout,
    };
  }

  const names = [
    ["POSTGRES_USERNAME", c.postgresUsername],
    ["REPLICATION_USERNAME", c.replicationUsername],
    ["SUPERUSER_USERNAME", c.superuserUsername],
  ] as const;
  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      if (names[i]![1] === names[j]![1]) {
        fail(
          names[i]![0].toLowerCase(),
          `${names[i]![0]} and ${names[j]![0]} are both ${JSON.stringify(names[i]![1])}: expected different roles`,
        );
      }
    }
  }

  if ((c.walSegmentSize & (c.walSegmentSize - 1)) !== 0) {
    fail(
      "wal-segment-size",
      `invalid WAL_SEGMENT_SIZE ${c.walSegmentSize}: expected a power of 2 from 1 to 1024 (MB)`,
    );
  }
  if (c.loopWait + 2 * c.retryTimeout > c.ttl) {
    fail(
      "ttl",
      `PATRONI_TTL ${c.ttl} is too short for PATRONI_LOOP_WAIT ${c.loopWait} and PATRONI_RETRY_TIMEOUT ${c.retryTimeout}: expected TTL >= LOOP_WAIT + 2 x RETRY_TIMEOUT`,
    );
  }
  if (!c.namespace.startsWith("/")) {
    fail(
      "namespace",
      `invalid PATRONI_NAMESPACE ${JSON.stringify(c.namespace)}: expected a path such as /service/`,
    );
  }

  const config: AgentConfig = {
    name: c.name,
    scope: c.scope,
    namespace: c.namespace,
    etcd: Object.freeze({ hosts, username: c.etcdUsername, password: c.etcdPassword }),
    addresses: Object.freeze(addresses),
    admin: Object.freeze({ username: c.postgresUsername, password: c.postgresPassword }),
    replication: Object.freeze({ username: c.replicationUsername, password: c.replicationPassword }),
    superuser: Object.freeze({ username: c.superuserUsername, password: c.superuserPassword }),
    restapi: Object.freeze({ username: c.restapiUsername, password: c.restapiPassword }),
    dcs: Object.freeze({
      ttl: c.ttl,
      loopWait: c.loopWait,
      retryTimeout: c.retryTimeout,
      synchronousMode: c.synchronousMode,
      synchronousModeStrict: c.synchronousModeStrict,
    }),
    walSegmentSizeMb: c.walSegmentSize,
    stop: Object.freeze({
      switchover: c.switchoverOnStop,
      timeoutSeconds: c.switchoverTimeout,
      gracePeriodSeconds: c.stopGracePeriod,
    }),
    dataDir: c.dataDir,
    configFile: c.configFile,
    logLevel: c.logLevel,
    backup: buildBackupConfig(c, c.scope),
    metricsListen: c.metricsListen,
  };
  return { kind: "config", config: Object.freeze(config) };
}
