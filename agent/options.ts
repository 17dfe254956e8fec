/**
 * The agent's option table: every flag with its environment name, default and
 * parser, in the declarative form of shared/config.ts (flags win over the
 * environment). The original image's names keep working: NAME, PATRONI_SCOPE,
 * ETCD_HOST_PORT, DOCKER_HOSTNAME, POSTGRES_USERNAME, POSTGRES_PASSWORD; the
 * backup options come from backup/options.ts. Each option parses alone here;
 * config.ts applies the rules that tie several together into an AgentConfig.
 */
import { opt, type ProgramSpec, parseInteger, valueOption } from "../shared/config.js";
import { ParseFailure } from "../shared/errors.js";
import { etcdConnectionOptions } from "../shared/etcd-options.js";
import { type HostPort, parseHostPort } from "../shared/host-port.js";
import { LOG_LEVELS } from "../shared/logger.js";
import { backupOptions } from "./backup/index.js";
import { PG_MAJOR_ENV } from "./image.js";

export const PROGRAM = "agent";

/** The names the image's labels give the registrator for each port. */
export const DEFAULT_SERVICE_5432 = "postgresql-patroni";
export const DEFAULT_SERVICE_8008 = "postgresql-patroni-api";
/** Patroni's own defaults for the DCS timings. */
export const DEFAULT_TTL = 30;
export const DEFAULT_LOOP_WAIT = 10;
export const DEFAULT_RETRY_TIMEOUT = 10;
/**
 * Patroni 4's lower bounds: it raises a smaller ttl, loop_wait or retry_timeout to these (with a
 * warning in its log), so a smaller value would be rendered into patroni.yml and not be used.
 */
export const MIN_TTL = 20;
export const MIN_LOOP_WAIT = 1;
export const MIN_RETRY_TIMEOUT = 3;
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

/**
 * Patroni's `synchronous_mode`: `off` (asynchronous), `on` (one synchronous standby at a time) or
 * `quorum` (Patroni 4's quorum commit: `ANY n (...)` over the replicas).
 */
export const SYNCHRONOUS_MODES = ["off", "on", "quorum"] as const;
export type SynchronousMode = (typeof SYNCHRONOUS_MODES)[number];

/** true/on/yes/1 → on, false/off/no/0 → off, quorum → quorum (any case). */
export function parseSynchronousMode(raw: string): SynchronousMode {
  const v = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on", "t"].includes(v)) return "on";
  if (["0", "false", "no", "off", "f"].includes(v)) return "off";
  if (v === "quorum") return "quorum";
  throw new ParseFailure();
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
  // -etcd-user and ETCD_USER as in the other services; the agent's first spellings stay valid.
  ...etcdConnectionOptions({
    envPrefix: "ETCD_",
    userAliases: { flags: ["etcd-username"], env: ["ETCD_USERNAME"] },
  }),
  tlsCertFile: opt.optionalString({
    flag: "tls-cert-file",
    env: "TLS_CERT_FILE",
    description:
      "this node's certificate (PEM file): PostgreSQL turns ssl on and Patroni's REST API speaks https; with TLS_KEY_FILE",
    metavar: "FILE",
  }),
  tlsKeyFile: opt.optionalString({
    flag: "tls-key-file",
    env: "TLS_KEY_FILE",
    description: "the key of TLS_CERT_FILE (PEM file; copied for the postgres account, mode 0600)",
    metavar: "FILE",
  }),
  tlsCaFile: opt.optionalString({
    flag: "tls-ca-file",
    env: "TLS_CA_FILE",
    description:
      "CA bundle (PEM file) that signed the members' certificates: Patroni, patronictl and the agent check the REST API with it (required with TLS_CERT_FILE)",
    metavar: "FILE",
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
  synchronousMode: valueOption<SynchronousMode>(
    {
      flag: "synchronous-mode",
      env: "PATRONI_SYNCHRONOUS_MODE",
      description:
        "commit only once a synchronous standby has the WAL (bootstrap): true (one synchronous standby), quorum (any of the replicas, Patroni's quorum commit) or false (asynchronous replication)",
      default: "on",
      defaultLabel: "true",
      accepted: "true, false or quorum",
      metavar: "true|false|quorum",
    },
    parseSynchronousMode,
  ),
  synchronousModeStrict: opt.bool({
    flag: "synchronous-mode-strict",
    env: "PATRONI_SYNCHRONOUS_MODE_STRICT",
    description: "refuse writes when no synchronous standby is available (bootstrap)",
  }),
  failsafeMode: opt.bool({
    flag: "failsafe-mode",
    env: "PATRONI_FAILSAFE_MODE",
    description:
      "a leader that loses etcd stays primary while it reaches every other member (bootstrap); false demotes it",
    default: true,
  }),
  ttl: opt.int({
    flag: "ttl",
    env: "PATRONI_TTL",
    description: "leader lock TTL in seconds (bootstrap); Patroni 4 uses no less than 20",
    default: DEFAULT_TTL,
    min: MIN_TTL,
    max: 3600,
  }),
  loopWait: opt.int({
    flag: "loop-wait",
    env: "PATRONI_LOOP_WAIT",
    description: "seconds between Patroni's HA loops (bootstrap)",
    default: DEFAULT_LOOP_WAIT,
    min: MIN_LOOP_WAIT,
    max: 3600,
  }),
  retryTimeout: opt.int({
    flag: "retry-timeout",
    env: "PATRONI_RETRY_TIMEOUT",
    description: "seconds to retry DCS and PostgreSQL operations (bootstrap)",
    default: DEFAULT_RETRY_TIMEOUT,
    min: MIN_RETRY_TIMEOUT,
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
  pgMajor: {
    ...valueOption<number>(
      {
        flag: "pg-major",
        env: PG_MAJOR_ENV,
        description:
          "the PostgreSQL major version of the image's binaries, set by the image (agent/Dockerfile's PG_MAJOR); a data directory created by another major is refused",
        default: 0,
        defaultLabel: "set by the image",
        accepted: "a PostgreSQL major version such as 17",
        metavar: "N",
      },
      (raw) => parseInteger(raw, 10, 99),
    ),
    required: true,
  },
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

/** The whole table: the agent's own options, then the backup options. */
export const allOptions = { ...agentOptions, ...backupOptions };

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
