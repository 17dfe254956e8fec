/**
 * The registrator's command line, gliderlabs-compatible (single-dash flags):
 *
 *   registrator [flags] etcd://HOST:PORT[,HOST:PORT…][/PREFIX]
 *
 * Parsing is pure: `parseOptions(argv, env, osHostname)` gives the options or a
 * help text, or throws a ConfigError whose message is the one line to print.
 */
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import {
  type ConfigOf,
  opt,
  parseArgs,
  resolveFileSecrets,
  secretEnvNames,
  valueOption,
} from "../shared/config.js";
import { ConfigError, ParseFailure } from "../shared/errors.js";
import { checkEtcdCertKey, etcdConnectionOptions } from "../shared/etcd-options.js";
import { formatHostPort, type HostPort, parseHostPort } from "../shared/host-port.js";
import { DEFAULT_PATRONI_NAMESPACE, normalizeNamespace, normalizeRegistryPrefix } from "../shared/keys.js";
import { LOG_LEVELS } from "../shared/logger.js";
import { KEY_SAFE, splitEscapedList } from "./names.js";

export const PROGRAM = "registrator";
export const DEFAULT_ETCD_PORT = 2379;
export const DEFAULT_TTL_SECONDS = 30;
export const DEFAULT_RESYNC_SECONDS = 60;
export const DEFAULT_RETRY_INTERVAL_MS = 2000;
export const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";
export const DEFAULT_METRICS_ADDR = "0.0.0.0:8080";
/** `-ip swarm`: the address this engine advertises to its swarm (main.ts asks Docker). */
export const IP_FROM_SWARM = "swarm";
export const DEREGISTER_MODES = ["always", "on-success"] as const;
export type DeregisterMode = (typeof DEREGISTER_MODES)[number];

const options = {
  ip: valueOption<string | undefined>(
    {
      flag: "ip",
      env: "REGISTRATOR_IP",
      description: `IP registered for published ports, whatever address they are bound to; ${IP_FROM_SWARM}: this node's address in its Docker swarm (the engine's Swarm.NodeAddr)`,
      accepted: `an IPv4 or IPv6 address, or ${IP_FROM_SWARM}`,
      metavar: "IP",
      default: undefined,
    },
    (raw) => {
      if (raw === "") return undefined;
      if (raw === IP_FROM_SWARM) return raw;
      if (isIP(raw) === 0) throw new ParseFailure();
      return raw;
    },
  ),
  hostname: valueOption<string | undefined>(
    {
      flag: "hostname",
      env: "REGISTRATOR_HOSTNAME",
      description: "hostname used in service IDs (<hostname>:<container>:<port>)",
      accepted: "a name without '/', spaces or control characters",
      metavar: "NAME",
      default: undefined,
      defaultLabel: "this Docker engine's name and a hash of its ID",
    },
    (raw) => {
      if (raw === "") return undefined;
      if (!KEY_SAFE.test(raw)) throw new ParseFailure();
      return raw;
    },
  ),
  internal: opt.bool({
    flag: "internal",
    env: "REGISTRATOR_INTERNAL",
    description:
      "register the container's own IP (on its network) and exposed port instead of published ones",
  }),
  explicit: opt.bool({
    flag: "explicit",
    env: "REGISTRATOR_EXPLICIT",
    description: "only register containers that set SERVICE_NAME or SERVICE_<port>_NAME",
  }),
  useIpFromLabel: valueOption<string | undefined>(
    {
      flag: "useIpFromLabel",
      env: "REGISTRATOR_USE_IP_FROM_LABEL",
      description: "take the registered IP from this container label (a /CIDR suffix is dropped)",
      accepted: "a label name",
      metavar: "LABEL",
      default: undefined,
    },
    (raw) => (raw === "" ? undefined : raw),
  ),
  tags: valueOption<readonly string[]>(
    {
      flag: "tags",
      env: "REGISTRATOR_TAGS",
      description: "tags added to every service (comma list; \\, for a literal comma)",
      accepted: "a comma-separated list",
      metavar: "TAG[,TAG...]",
      default: Object.freeze([]),
      defaultLabel: "none",
    },
    (raw) => Object.freeze(splitEscapedList(raw)),
  ),
  ttl: opt.int({
    flag: "ttl",
    env: "REGISTRATOR_TTL",
    description:
      "seconds the keys outlive a dead registrator (all keys share one etcd lease); 0 writes plain keys",
    default: DEFAULT_TTL_SECONDS,
    min: 0,
    max: 86_400,
  }),
  ttlRefresh: opt.int({
    flag: "ttl-refresh",
    env: "REGISTRATOR_TTL_REFRESH",
    description: "accepted for compatibility and ignored: the lease is kept alive every TTL/3",
    default: 0,
    min: 0,
    max: 86_400,
  }),
  resync: opt.int({
    flag: "resync",
    env: "REGISTRATOR_RESYNC",
    description: "seconds between full reconciliations of etcd with Docker; 0 turns them off",
    default: DEFAULT_RESYNC_SECONDS,
    min: 0,
    max: 86_400,
  }),
  deregister: opt.oneOf({
    flag: "deregister",
    env: "REGISTRATOR_DEREGISTER",
    description:
      "when a stopped container's services go: always, or on-success (exit 0 or stopped/killed by a signal)",
    values: DEREGISTER_MODES,
    default: "always",
  }),
  cleanup: opt.bool({
    flag: "cleanup",
    env: "REGISTRATOR_CLEANUP",
    description: "delete keys of this hostname that no running container wants (at start and each resync)",
  }),
  retryAttempts: opt.int({
    flag: "retry-attempts",
    env: "REGISTRATOR_RETRY_ATTEMPTS",
    description: "retries to reach etcd at start before exiting; -1 retries forever",
    default: -1,
    min: -1,
  }),
  retryInterval: opt.int({
    flag: "retry-interval",
    env: "REGISTRATOR_RETRY_INTERVAL",
    description: "milliseconds between those retries",
    default: DEFAULT_RETRY_INTERVAL_MS,
    min: 0,
    max: 3_600_000,
    metavar: "MS",
  }),
  requireHealthy: opt.bool({
    flag: "require-healthy",
    env: "REGISTRATOR_REQUIRE_HEALTHY",
    description: "register a container that has a HEALTHCHECK only while Docker reports it healthy",
  }),
  releaseDeadLeaders: opt.bool({
    flag: "release-dead-leaders",
    env: "REGISTRATOR_RELEASE_DEAD_LEADERS",
    description:
      "when a container of this host that ran the Patroni leader dies (killed or crashed, not stopped), delete its leader key in etcd at once, so a replica takes over without waiting for Patroni's ttl",
  }),
  restartJoined: opt.bool({
    flag: "restart-joined",
    env: "REGISTRATOR_RESTART_JOINED",
    description:
      "start a container that runs in another container's network namespace when Docker could not start it after a daemon restart because that container was not running yet (its restart policy always or unless-stopped)",
  }),
  patroniNamespace: valueOption<string>(
    {
      flag: "patroni-namespace",
      env: "REGISTRATOR_PATRONI_NAMESPACE",
      description:
        "Patroni's etcd namespace of a container whose environment sets no PATRONI_NAMESPACE (-release-dead-leaders)",
      accepted: "a key path such as /service/",
      metavar: "PATH",
      default: DEFAULT_PATRONI_NAMESPACE,
    },
    (raw) => {
      if (!raw.startsWith("/") || /[\s\p{Cc}]/u.test(raw)) throw new ParseFailure();
      return normalizeNamespace(raw);
    },
  ),
  metricsAddr: opt.hostPort({
    flag: "metrics-addr",
    env: "REGISTRATOR_METRICS_ADDR",
    description:
      "admin HTTP address for /metrics, /healthz, /readyz, /services and /containers; off to disable",
    default: DEFAULT_METRICS_ADDR,
    allowOff: true,
  }),
  logLevel: opt.oneOf({
    flag: "log-level",
    env: "REGISTRATOR_LOG_LEVEL",
    description: "log level",
    values: LOG_LEVELS,
    default: "info",
  }),
  dockerHost: valueOption<DockerEndpoint>(
    {
      flag: "docker-host",
      env: "DOCKER_HOST",
      description: "Docker engine to watch",
      accepted: "unix:///PATH or tcp://HOST:PORT",
      metavar: "URL",
      default: parseDockerHost(DEFAULT_DOCKER_HOST),
      defaultLabel: DEFAULT_DOCKER_HOST,
    },
    parseDockerHost,
  ),
  ...etcdConnectionOptions({ envPrefix: "REGISTRATOR_ETCD_" }),
};

export type DockerEndpoint =
  | { readonly kind: "unix"; readonly socketPath: string; readonly url: string }
  | { readonly kind: "tcp"; readonly host: string; readonly port: number; readonly url: string };

export function parseDockerHost(raw: string): DockerEndpoint {
  const s = raw.trim();
  if (s.startsWith("unix://")) {
    const socketPath = s.slice("unix://".length);
    if (!socketPath.startsWith("/")) throw new ParseFailure("the socket path must be absolute");
    return Object.freeze({ kind: "unix", socketPath, url: s });
  }
  const m = /^(?:tcp|http):\/\/([^/]+)\/?$/.exec(s);
  if (m) {
    const hp = parseHostPort(m[1]!, 2375);
    return Object.freeze({ kind: "tcp", host: hp.host, port: hp.port, url: `tcp://${formatHostPort(hp)}` });
  }
  throw new ParseFailure();
}

export interface RegistryUri {
  readonly hosts: readonly HostPort[];
  /** `""` or `/prefix`, no trailing slash. */
  readonly prefix: string;
}

export const REGISTRY_URI_ACCEPTED = "etcd://HOST:PORT[,HOST:PORT...][/PREFIX]";

/** Parses `etcd://h1:2379,h2:2379/prefix`; a host without a port gets 2379; no host means 127.0.0.1:2379. */
export function parseRegistryUri(raw: string): RegistryUri {
  const m = /^etcd:\/\/([^/?#]*)(\/[^?#]*)?$/i.exec(raw.trim());
  if (!m) {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(raw) && !/^etcd:/i.test(raw)) {
      throw new ParseFailure("only the etcd backend is supported");
    }
    throw new ParseFailure();
  }
  const authority = m[1]!;
  if (authority.includes("@")) {
    throw new ParseFailure(
      "credentials do not belong in the URI: use -etcd-user and REGISTRATOR_ETCD_PASSWORD",
    );
  }
  const hosts =
    authority === ""
      ? [{ host: "127.0.0.1", port: DEFAULT_ETCD_PORT }]
      : authority.split(",").map((h) => {
          if (h.trim() === "") throw new ParseFailure("empty host in the list");
          return parseHostPort(h, DEFAULT_ETCD_PORT);
        });
  const path = m[2] ?? "";
  if (/\s|\/\/|\p{Cc}/u.test(path.replace(/\/+$/, ""))) throw new ParseFailure("bad prefix");
  return Object.freeze({ hosts: Object.freeze(hosts), prefix: normalizeRegistryPrefix(path) });
}

const positional = {
  name: "REGISTRY_URI",
  description: `where to register, ${REGISTRY_URI_ACCEPTED} (or env REGISTRATOR_URI); keys go under /PREFIX`,
  accepted: REGISTRY_URI_ACCEPTED,
  required: false,
  parse: parseRegistryUri,
  defaultValue: undefined as RegistryUri | undefined,
};

const EPILOG = `Keys: /<PREFIX>/<service-name>/<hostname>:<container-name>:<exposed-port>[:udp] = <ip>:<port>,
all attached to one etcd lease per registrator (TTL -ttl), revoked on SIGTERM.

Examples:
  registrator -hostname "$(hostname)" -ip 192.0.2.10 etcd://127.0.0.1:2379/services
  registrator -internal -cleanup etcd://etcd1:2379,etcd2:2379
  registrator -internal -cleanup -release-dead-leaders etcd://etcd1:2379,etcd2:2379
  registrator -ip swarm -cleanup etcd://192.0.2.11:2379,192.0.2.12:2379,192.0.2.13:2379`;

export const spec = {
  program: PROGRAM,
  summary: "Registers Docker containers' published ports in etcd v3.",
  options,
  positional,
  epilog: EPILOG,
};

type Raw = ConfigOf<typeof options>;

export interface RegistratorOptions extends Omit<Raw, "hostname"> {
  readonly hostname: string;
  /** False when -hostname (REGISTRATOR_HOSTNAME) was not given: main.ts asks Docker (engineHostname). */
  readonly hostnameGiven: boolean;
  /** An address, or IP_FROM_SWARM until main.ts replaces it with the node's (swarmNodeAddr). */
  readonly ip: string | undefined;
  readonly registry: RegistryUri;
}

export type LoadedOptions =
  | { readonly kind: "help"; readonly text: string }
  | { readonly kind: "options"; readonly options: RegistratorOptions };

/** Pure: argv + env → options. Throws ConfigError with the one line to print. */
export function parseOptions(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  osHostname: string,
): LoadedOptions {
  const parsed = parseArgs(spec, argv, resolveFileSecrets(PROGRAM, secretEnvNames(spec), env));
  if (parsed.kind === "help") return parsed;
  const c = parsed.config;
  let registry = parsed.positional;
  if (registry === undefined) {
    const fromEnv = env["REGISTRATOR_URI"];
    if (fromEnv === undefined || fromEnv === "") {
      throw new ConfigError(
        "REGISTRY_URI",
        `${PROGRAM}: missing argument REGISTRY_URI: expected ${REGISTRY_URI_ACCEPTED} (see ${PROGRAM} --help)`,
      );
    }
    try {
      registry = parseRegistryUri(fromEnv);
    } catch (err) {
      if (!(err instanceof ParseFailure)) throw err;
      const extra = err.message ? ` (${err.message})` : "";
      throw new ConfigError(
        "REGISTRY_URI",
        `${PROGRAM}: invalid REGISTRATOR_URI ${JSON.stringify(fromEnv)}: expected ${REGISTRY_URI_ACCEPTED}${extra}`,
      );
    }
  }
  checkEtcdCertKey(PROGRAM, c);
  // Without -hostname, main.ts replaces this with the Docker engine's name (engineHostname).
  const hostname = c.hostname ?? osHostname;
  return {
    kind: "options",
    options: Object.freeze({ ...c, hostname, hostnameGiven: c.hostname !== undefined, registry }),
  };
}

/**
 * The default -hostname: the Docker engine's name and the first 8 hex digits of the SHA-256 of
 * its ID, e.g. `db-host-3f9c01aa`. Unique per Docker host (two hosts named alike still differ),
 * stable across restarts and container re-creations, and never `:`, `/` or a space (it starts
 * every service ID). Null when Docker's /info lacks either.
 */
export function engineHostname(info: { readonly Name?: unknown; readonly ID?: unknown }): string | null {
  if (typeof info.ID !== "string" || info.ID === "" || typeof info.Name !== "string") return null;
  const name = info.Name.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") || "docker";
  return `${name}-${createHash("sha256").update(info.ID).digest("hex").slice(0, 8)}`;
}

/** What Docker's `GET /info` says of the engine's swarm membership. */
export interface SwarmInfo {
  readonly Swarm?: { readonly LocalNodeState?: unknown; readonly NodeAddr?: unknown } | null;
}

/**
 * `-ip swarm`: the address this node advertises to its swarm (`docker swarm init|join
 * --advertise-addr`), which is where its `mode: host` ports are published. A string that
 * says why when the engine is no active swarm node.
 */
export function swarmNodeAddr(info: SwarmInfo): { readonly ip: string } | { readonly error: string } {
  const state = info.Swarm?.LocalNodeState;
  const addr = info.Swarm?.NodeAddr;
  if (state !== "active") {
    const shown = typeof state === "string" && state !== "" ? state : "unknown";
    return {
      error: `this Docker engine is not an active swarm node (its swarm state is ${shown}): join it to a swarm, or give -ip an address`,
    };
  }
  if (typeof addr !== "string" || isIP(addr) === 0) {
    return { error: `this swarm node's address ${JSON.stringify(addr ?? null)} is not an IP address` };
  }
  return { ip: addr };
}
