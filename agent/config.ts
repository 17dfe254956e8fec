/**
 * The agent's configuration: `parseAgentConfig` parses the option table
 * (options.ts) against the command line and the environment, resolves
 * `<NAME>_FILE` secrets (Docker secrets), and applies the rules that tie
 * options together (an etcd endpoint, where the public addresses come from,
 * distinct roles, the WAL segment size, the DCS timings, the namespace).
 *
 * Pure: environment in, a frozen AgentConfig out, or a ConfigError whose
 * message is the one line printed to the operator. The AgentConfig goes to
 * the start-up sequence (startup.ts) and from there to every part.
 */
import { envNames, parseArgs, resolveFileSecrets } from "../shared/config.js";
import { ConfigError } from "../shared/errors.js";
import { checkEtcdCertKey } from "../shared/etcd-options.js";
import { type HostPort, parseHostPort } from "../shared/host-port.js";
import type { LogLevel } from "../shared/logger.js";
import { BACKUP_FILE_BACKED, type BackupConfig, buildBackupConfig } from "./backup/index.js";
import { agentSpec, PROGRAM, type SynchronousMode } from "./options.js";

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

/** The files given to the agent (TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE). */
export interface NodeTls {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
}

export interface AgentConfig {
  readonly name: string;
  readonly scope: string;
  readonly namespace: string;
  /** How the agent and its Patroni reach etcd (TLS on when `caFile` is set, as in shared/etcd.ts). */
  readonly etcd: {
    readonly hosts: readonly HostPort[];
    readonly username: string | undefined;
    readonly password: string | undefined;
    /** PEM files; TLS to etcd is on when `caFile` is set. */
    readonly caFile: string | undefined;
    readonly certFile: string | undefined;
    readonly keyFile: string | undefined;
  };
  /** This node's certificate for PostgreSQL and Patroni's REST API; null: neither speaks TLS. */
  readonly tls: NodeTls | null;
  readonly addresses: AddressSource;
  readonly admin: Credentials;
  readonly replication: Credentials;
  readonly superuser: Credentials;
  readonly restapi: Credentials;
  readonly dcs: {
    readonly ttl: number;
    readonly loopWait: number;
    readonly retryTimeout: number;
    readonly synchronousMode: SynchronousMode;
    readonly synchronousModeStrict: boolean;
    readonly failsafeMode: boolean;
  };
  /** initdb --wal-segsize (MB): a power of 2; used only when this node creates the cluster. */
  readonly walSegmentSizeMb: number;
  readonly stop: {
    readonly switchover: boolean;
    readonly timeoutSeconds: number;
    readonly gracePeriodSeconds: number;
  };
  /** The PostgreSQL major version of the image's binaries (the image's PG_MAJOR). */
  readonly pgMajor: number;
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
 * Every environment name the agent reads itself: each option's (the backup
 * options' included) and the `<NAME>_FILE` of each secret. Derived from the
 * option table, so a new option is in it at once. Patroni's environment leaves
 * these out (supervisor.ts): Patroni's environment wins over its file.
 */
export const AGENT_ENV_NAMES: ReadonlySet<string> = new Set([
  ...Object.values(agentSpec.options).flatMap(envNames),
  ...FILE_BACKED.map((name) => `${name}_FILE`),
]);

/** Resolves `<NAME>_FILE` into `<NAME>` for the agent's secrets (shared/config.ts). */
export function resolveAgentFileSecrets(
  env: Readonly<Record<string, string | undefined>>,
  read?: (path: string) => string,
): Record<string, string | undefined> {
  return resolveFileSecrets(PROGRAM, FILE_BACKED, env, read);
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
  const env = resolveAgentFileSecrets(rawEnv, read);
  const parsed = parseArgs(agentSpec, argv, env);
  if (parsed.kind === "help") return parsed;
  const c = parsed.config;

  const hosts = c.etcdHosts ?? (c.etcdHostPort ? [c.etcdHostPort] : undefined);
  if (!hosts) fail("etcd", "missing ETCD_HOST_PORT or ETCD_HOSTS: expected HOST:PORT of etcd");
  checkEtcdCertKey(PROGRAM, c);

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

  // Patroni writes these into PostgreSQL's password file (.pgpass) for replication and
  // pg_rewind: one entry per line, so a line break would cut the password in two.
  for (const [name, value] of [
    ["REPLICATION_PASSWORD", c.replicationPassword],
    ["SUPERUSER_PASSWORD", c.superuserPassword],
  ] as const) {
    if (/[\r\n]/.test(value)) {
      fail(
        name.toLowerCase().replace("_", "-"),
        `${name} holds a line break, which PostgreSQL's password file (.pgpass, written by Patroni for replication and pg_rewind) cannot hold: expected a password without line breaks`,
      );
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
  if (c.etcdCert !== undefined && c.etcdCa === undefined) {
    fail("etcd-ca", "ETCD_CERT needs ETCD_CA: the CA that signed etcd's certificate");
  }
  let tls: NodeTls | null = null;
  if (c.tlsCertFile !== undefined || c.tlsKeyFile !== undefined || c.tlsCaFile !== undefined) {
    if (c.tlsCertFile === undefined || c.tlsKeyFile === undefined || c.tlsCaFile === undefined) {
      fail(
        "tls-cert-file",
        "TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE go together: expected all three (or none, and no TLS)",
      );
    }
    tls = Object.freeze({ caFile: c.tlsCaFile, certFile: c.tlsCertFile, keyFile: c.tlsKeyFile });
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
    etcd: Object.freeze({
      hosts,
      username: c.etcdUser,
      password: c.etcdPassword,
      caFile: c.etcdCa,
      certFile: c.etcdCert,
      keyFile: c.etcdKey,
    }),
    tls,
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
      failsafeMode: c.failsafeMode,
    }),
    walSegmentSizeMb: c.walSegmentSize,
    stop: Object.freeze({
      switchover: c.switchoverOnStop,
      timeoutSeconds: c.switchoverTimeout,
      gracePeriodSeconds: c.stopGracePeriod,
    }),
    pgMajor: c.pgMajor,
    dataDir: c.dataDir,
    configFile: c.configFile,
    logLevel: c.logLevel,
    backup: buildBackupConfig(c, c.scope),
    metricsListen: c.metricsListen,
  };
  return { kind: "config", config: Object.freeze(config) };
}
