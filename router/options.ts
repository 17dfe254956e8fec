/**
 * The router's command line (flags and the same names as environment variables,
 * `--scope` = `ROUTER_SCOPE`), and the list of routes it describes.
 */
import { type ConfigOf, opt, type ProgramSpec, valueOption } from "../shared/config.js";
import { ConfigError, ParseFailure } from "../shared/errors.js";
import { etcdConnectionOptions } from "../shared/etcd-options.js";
import { formatHostPort, type HostPort, parseHostPort } from "../shared/host-port.js";
import { LOG_LEVELS } from "../shared/log-levels.js";

export const CHECK_MODES = ["both", "etcd", "rest"] as const;
export type CheckMode = (typeof CHECK_MODES)[number];

export const REPLICA_FALLBACKS = ["primary", "hold", "reject"] as const;
export type ReplicaFallback = (typeof REPLICA_FALLBACKS)[number];
/** What the primary port does with a new client while etcd is unreachable and no primary is routed. */
export const ETCD_LOST_ACTIONS = ["hold", "reject"] as const;

/** Two workers: one can die while the other takes every new connection. */
export const DEFAULT_WORKERS = 2;

/** Default replica lag limit: 16 MiB of WAL. */
export const DEFAULT_MAX_LAG_BYTES = 16 * 1024 * 1024;
/** A process may hold 20 000 descriptors here; each client pairs with an upstream socket. */
export const DEFAULT_MAX_CONNECTIONS = 9000;

const SCOPE_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** `16MiB`, `16MB`, `16m`, `512kB`, `1048576`: a size in bytes (binary multiples). */
export function parseBytes(raw: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(raw.trim());
  if (!m) throw new ParseFailure();
  const mult = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase()] ?? 1;
  const n = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n < 0) throw new ParseFailure();
  return n;
}

export interface RouteSpec {
  readonly scope: string;
  readonly listen: HostPort;
  /** null: no replica listener for this scope. */
  readonly replicaListen: HostPort | null;
  /** Where the route came from: the command line or the etcd route table. */
  readonly source: "flag" | "table";
}

export function parseScope(raw: string): string {
  if (!SCOPE_RE.test(raw)) throw new ParseFailure("a scope is letters, digits, '.', '_' or '-'");
  return raw;
}

/** `SCOPE=HOST:PORT[,HOST:PORT|off]` */
export function parseRouteSpec(raw: string): RouteSpec {
  const eq = raw.indexOf("=");
  if (eq <= 0) throw new ParseFailure("missing SCOPE=");
  const scope = parseScope(raw.slice(0, eq).trim());
  const [primary, replica, ...rest] = raw.slice(eq + 1).split(",");
  if (primary === undefined || primary.trim() === "" || rest.length > 0) throw new ParseFailure();
  const listen = parseHostPort(primary);
  const replicaListen =
    replica === undefined || replica.trim() === "off" ? null : parseHostPort(replica.trim());
  return Object.freeze({ scope, listen, replicaListen, source: "flag" as const });
}

export const routerOptions = {
  etcd: opt.hostPortList({
    flag: "etcd",
    env: "ROUTER_ETCD",
    description: "etcd v3 endpoints",
    default: "127.0.0.1:2379",
    defaultPort: 2379,
  }),
  ...etcdConnectionOptions({ envPrefix: "ROUTER_ETCD_" }),
  namespace: opt.string({
    flag: "namespace",
    env: "ROUTER_NAMESPACE",
    description: "Patroni's namespace in etcd",
    default: "/service/",
  }),
  scope: valueOption<string | undefined>(
    {
      flag: "scope",
      env: "ROUTER_SCOPE",
      description: "Patroni scope (cluster name) served on --listen and --replica-listen",
      accepted: "a scope name of letters, digits, '.', '_' or '-'",
      metavar: "NAME",
      default: undefined,
      defaultLabel: "unset",
    },
    (raw) => (raw === "" ? undefined : parseScope(raw)),
  ),
  listen: opt.hostPort({
    flag: "listen",
    env: "ROUTER_LISTEN",
    description: "where clients reach the primary of --scope",
    default: "0.0.0.0:5432",
  }),
  replicaListen: opt.hostPort({
    flag: "replica-listen",
    env: "ROUTER_REPLICA_LISTEN",
    description: "where clients reach a replica of --scope",
    default: "0.0.0.0:5433",
    allowOff: true,
  }),
  adminListen: opt.hostPort({
    flag: "admin-listen",
    env: "ROUTER_ADMIN_LISTEN",
    description: "HTTP /metrics /healthz /readyz /routes",
    default: "0.0.0.0:8080",
  }),
  route: opt.repeat(
    {
      flag: "route",
      env: "ROUTER_ROUTE",
      description: "one more cluster: its scope, primary listener and optional replica listener",
      accepted: "SCOPE=HOST:PORT[,HOST:PORT|off]",
      metavar: "SCOPE=HOST:PORT[,HOST:PORT]",
    },
    parseRouteSpec,
  ),
  routeTable: opt.bool({
    flag: "route-table",
    env: "ROUTER_ROUTE_TABLE",
    description:
      "follow the live route table in etcd (/routing/allocation/<scope> = PORT[,REPLICA_PORT]) on the host of --listen",
  }),
  check: opt.oneOf({
    flag: "check",
    env: "ROUTER_CHECK",
    description: "who decides the primary: both (etcd leader confirmed by REST /primary), etcd or rest",
    values: CHECK_MODES,
    default: "both",
  }),
  closeOnDemote: opt.bool({
    flag: "close-on-demote",
    env: "ROUTER_CLOSE_ON_DEMOTE",
    description: "close the sessions on a primary that is no longer the routed one",
    default: true,
  }),
  holdTimeout: opt.seconds({
    flag: "hold-timeout",
    env: "ROUTER_HOLD_TIMEOUT",
    description: "how long a client waits for a routable backend before it is closed",
    default: 30,
    max: 3600,
  }),
  maxLag: valueOption(
    {
      flag: "max-lag",
      env: "ROUTER_MAX_LAG",
      description: "replicas further behind the leader than this are not used",
      accepted: "a size in bytes such as 16MiB, 512kB or 1048576",
      metavar: "BYTES",
      default: DEFAULT_MAX_LAG_BYTES,
      defaultLabel: "16MiB",
    },
    parseBytes,
  ),
  etcdLost: opt.oneOf({
    flag: "etcd-lost",
    env: "ROUTER_ETCD_LOST",
    description:
      "primary port while this router has not reached etcd for 3 s and routes no primary: hold new clients, or reject them at once so that a client listing several routers tries the next",
    values: ETCD_LOST_ACTIONS,
    default: "hold",
  }),
  replicaFallback: opt.oneOf({
    flag: "replica-fallback",
    env: "ROUTER_REPLICA_FALLBACK",
    description: "replica port with no eligible replica: send to the primary, hold, or reject",
    values: REPLICA_FALLBACKS,
    default: "primary",
  }),
  workers: opt.int({
    flag: "workers",
    env: "ROUTER_WORKERS",
    description:
      "router processes sharing the listening ports under a supervisor that restarts a dead one; 0 runs one process and no supervisor",
    default: DEFAULT_WORKERS,
    min: 0,
    max: 64,
  }),
  maxConnections: opt.int({
    flag: "max-connections",
    env: "ROUTER_MAX_CONNECTIONS",
    description: "client connections (held ones included) across all listeners, per worker",
    default: DEFAULT_MAX_CONNECTIONS,
    min: 1,
    max: 1_000_000,
  }),
  maxConnectionsPerSource: opt.int({
    flag: "max-connections-per-source",
    env: "ROUTER_MAX_CONNECTIONS_PER_SOURCE",
    description:
      "client connections from one source address, per worker; 0 (the default): no cap. One client that opens many slow connections then cannot take every slot",
    default: 0,
    min: 0,
    max: 1_000_000,
  }),
  connectTimeout: opt.seconds({
    flag: "connect-timeout",
    env: "ROUTER_CONNECT_TIMEOUT",
    description: "one upstream connect attempt (retried within --hold-timeout)",
    default: 3,
    min: 0.05,
    max: 600,
  }),
  startupTimeout: opt.seconds({
    flag: "startup-timeout",
    env: "ROUTER_STARTUP_TIMEOUT",
    description: "a client that sends no startup packet within this is closed",
    default: 60,
    min: 0.1,
    max: 3600,
  }),
  idleTimeout: opt.seconds({
    flag: "idle-timeout",
    env: "ROUTER_IDLE_TIMEOUT",
    description: "close a session with no traffic either way for this long; 0 is never",
    default: 0,
  }),
  restTimeout: opt.seconds({
    flag: "rest-timeout",
    env: "ROUTER_REST_TIMEOUT",
    description: "deadline of one Patroni REST check",
    default: 1,
    min: 0.05,
    max: 1,
  }),
  restInterval: opt.seconds({
    flag: "rest-interval",
    env: "ROUTER_REST_INTERVAL",
    description: "Patroni REST checks of every member, besides the ones on each etcd change",
    default: 1,
    min: 0.1,
    max: 60,
  }),
  restCa: opt.optionalString({
    flag: "rest-ca",
    env: "ROUTER_REST_CA",
    description: "CA bundle (PEM file) for Patroni's REST API over https",
    metavar: "FILE",
  }),
  restServerName: opt.optionalString({
    flag: "rest-server-name",
    env: "ROUTER_REST_SERVER_NAME",
    description:
      "the name Patroni's REST certificates must carry, instead of the host in each member's api_url (members reached on addresses no certificate names)",
    metavar: "NAME",
  }),
  restCert: opt.optionalString({
    flag: "rest-cert",
    env: "ROUTER_REST_CERT",
    description: "client certificate (PEM file) for Patroni's REST API",
    metavar: "FILE",
  }),
  restKey: opt.optionalString({
    flag: "rest-key",
    env: "ROUTER_REST_KEY",
    description: "client key (PEM file) for Patroni's REST API",
    metavar: "FILE",
  }),
  drainTimeout: opt.seconds({
    flag: "drain-timeout",
    env: "ROUTER_DRAIN_TIMEOUT",
    description: "on SIGTERM, how long sessions may finish before they are closed",
    default: 10,
    max: 3600,
  }),
  logLevel: opt.oneOf({
    flag: "log-level",
    env: "ROUTER_LOG_LEVEL",
    description: "log level",
    values: LOG_LEVELS,
    default: "info",
  }),
};

export type RouterConfig = ConfigOf<typeof routerOptions>;

export const routerSpec: ProgramSpec<typeof routerOptions, undefined> = {
  program: "router",
  summary:
    "Routes PostgreSQL clients to the current Patroni primary (and replicas), following etcd and Patroni's REST API.",
  options: routerOptions,
  epilog: [
    "Examples:",
    "  router --etcd etcd:2379 --scope demo                      # :5432 primary, :5433 replicas",
    "  router --route a=0.0.0.0:6001,0.0.0.0:6002 --route b=0.0.0.0:6003",
    "  router --route-table --listen 0.0.0.0:5432               # ports from /routing/allocation/<scope>",
  ].join("\n"),
};

/**
 * The static routes a configuration describes: `--scope` on `--listen`/`--replica-listen`,
 * then each `--route`. Throws a one-line ConfigError on conflicts or when nothing is routed.
 */
export function staticRoutes(c: RouterConfig): readonly RouteSpec[] {
  const routes: RouteSpec[] = [];
  if (c.scope !== undefined) {
    routes.push({ scope: c.scope, listen: c.listen, replicaListen: c.replicaListen, source: "flag" });
  }
  routes.push(...c.route);
  if (routes.length === 0 && !c.routeTable) {
    throw new ConfigError(
      "scope",
      "router: nothing to route: expected --scope NAME, --route SCOPE=HOST:PORT or --route-table",
    );
  }
  const scopes = new Set<string>();
  const addresses = new Set<string>([`${c.adminListen.port}`]);
  for (const r of routes) {
    if (scopes.has(r.scope)) {
      throw new ConfigError("route", `router: scope ${JSON.stringify(r.scope)} is routed twice`);
    }
    scopes.add(r.scope);
    for (const hp of [r.listen, r.replicaListen]) {
      if (hp === null) continue;
      if (addresses.has(`${hp.port}`)) {
        throw new ConfigError(
          "route",
          `router: port ${hp.port} (${formatHostPort(hp)}) is used twice: expected distinct ports for every listener`,
        );
      }
      addresses.add(`${hp.port}`);
    }
  }
  return Object.freeze(routes);
}

/** A route table value, `PORT` or `PORT,REPLICA_PORT`, as listeners on `host`. Null when unusable. */
export function routeFromTable(scope: string, value: string, host: string): RouteSpec | null {
  if (!SCOPE_RE.test(scope)) return null;
  const m = /^\s*(\d{1,5})\s*(?:,\s*(\d{1,5})\s*)?$/.exec(value);
  if (!m) return null;
  const port = Number(m[1]);
  const replicaPort = m[2] === undefined ? null : Number(m[2]);
  const ok = (p: number) => p >= 1 && p <= 65535;
  if (!ok(port) || (replicaPort !== null && (!ok(replicaPort) || replicaPort === port))) return null;
  return Object.freeze({
    scope,
    listen: Object.freeze({ host, port }),
    replicaListen: replicaPort === null ? null : Object.freeze({ host, port: replicaPort }),
    source: "table" as const,
  });
}
