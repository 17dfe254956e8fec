/**
 * etcd v3 client factory: a host list, optional username/password and TLS.
 *
 * Retries and circuit breaking are left to our own loops (lease, watch,
 * reconcile): the client's default breaker would refuse calls for 5 s after
 * three failures, which delays recovery once etcd answers again.
 */
import { InterceptingCall, type Interceptor } from "@grpc/grpc-js";
import { ExponentialBackoff, handleWhen, noop, retry } from "cockatiel";
import { Etcd3, type IOptions, isRecoverableError } from "etcd3";
import { ConfigError, EtcdError } from "./errors.js";
import { formatHostPort, type HostPort } from "./host-port.js";
import { readPemFile } from "./tls.js";

export { Etcd3 } from "etcd3";

export interface EtcdOptions {
  readonly hosts: readonly HostPort[];
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  /** Paths to PEM files; TLS is on when `caFile` is set. */
  readonly caFile?: string | undefined;
  readonly certFile?: string | undefined;
  readonly keyFile?: string | undefined;
  /**
   * The name checked on etcd's certificate instead of each host's: for members reached on
   * addresses their certificate does not name (a compose network's container addresses).
   */
  readonly serverName?: string | undefined;
  /** Deadline of each unary call, in ms. */
  readonly callTimeoutMs?: number;
  readonly dialTimeoutMs?: number;
}

export const DEFAULT_ETCD_CALL_TIMEOUT_MS = 3000;

/**
 * The TLS files of an etcd client, read now: a ConfigError names the first that cannot be
 * read. The option names are the caller's (`--etcd-ca`, `ETCD_CA`, ...).
 */
export function readEtcdTls(
  o: EtcdOptions,
  names: { readonly ca: string; readonly cert: string; readonly key: string },
): { rootCertificate: Buffer; certChain?: Buffer; privateKey?: Buffer } | null {
  if ((o.certFile === undefined) !== (o.keyFile === undefined)) {
    throw new ConfigError(names.cert, `${names.cert} and ${names.key} must be given together`);
  }
  if (o.caFile === undefined) {
    if (o.certFile !== undefined) {
      throw new ConfigError(
        names.ca,
        `${names.cert} needs ${names.ca}: the CA that signed etcd's certificate`,
      );
    }
    return null;
  }
  const rootCertificate = readPemFile(o.caFile, "etcd CA file", names.ca);
  if (o.certFile === undefined) return { rootCertificate };
  return {
    rootCertificate,
    certChain: readPemFile(o.certFile, "etcd client certificate", names.cert),
    privateKey: readPemFile(o.keyFile!, "etcd client key", names.key),
  };
}

/**
 * Every call asks etcd to refuse it without a raft leader, as `etcdctl --require-leader` does
 * (gRPC metadata `hasleader: true`): a member cut off from the majority answers unary calls
 * with "etcdserver: no leader" instead of stale data, and ends a watch or keepalive stream
 * when it loses its leader instead of keeping it open while it sees nothing. The caller then
 * reconnects, and the client picks another member.
 */
export const requireLeader: Interceptor = (options, nextCall) =>
  new InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set("hasleader", "true");
      next(metadata, listener);
    },
  });

export function etcdClientOptions(o: EtcdOptions): IOptions {
  if (o.hosts.length === 0) throw new EtcdError("no etcd hosts given");
  const tls = o.caFile !== undefined;
  if ((o.certFile === undefined) !== (o.keyFile === undefined)) {
    throw new EtcdError("etcd client certificate and key must be given together");
  }
  const callTimeout = o.callTimeoutMs ?? DEFAULT_ETCD_CALL_TIMEOUT_MS;
  const options: IOptions = {
    hosts: o.hosts.map((h) => `${tls ? "https" : "http"}://${formatHostPort(h)}`),
    dialTimeout: o.dialTimeoutMs ?? 2000,
    // Unary calls get a deadline; streams (watch, keepalive) must not. Every call requires a leader.
    defaultCallOptions: (ctx) =>
      ctx.isStream
        ? { interceptors: [requireLeader] }
        : { deadline: Date.now() + callTimeout, interceptors: [requireLeader] },
    faultHandling: {
      host: () => noop,
      // A unary call that fails on one member for a reason another member may not share (it is
      // down, unreachable, cut off from the majority: "no leader", a deadline) goes to the next
      // member of the same shuffled order, each member once: one dead member out of three
      // must not fail a read (the agent's promotion check fails closed on one).
      global:
        o.hosts.length > 1
          ? retry(handleWhen(isRecoverableError), { maxAttempts: o.hosts.length - 1 })
          : noop,
      // etcd3 calls next() on this to get each delay, as it does with its own default factory.
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }) as unknown as NonNullable<
        NonNullable<IOptions["faultHandling"]>["watchBackoff"]
      >,
    },
    grpcOptions: {
      // Notice a dead peer within seconds even when no RST arrives, while a stream (a
      // watch, a lease keepalive) is open. etcd answers pings more often than its
      // --grpc-keepalive-min-time (5 s by default) with a GOAWAY ("too_many_pings"), so
      // stay clearly above it; and it counts every ping on a connection without a stream
      // as a strike (gRPC's PermitWithoutStream is off in etcd), sending a client that
      // only makes unary calls away after three: no pings without a call, then. Unary
      // calls have their deadline.
      // 8 s + 3 s: a watch on a member that went silent (its host cut off) moves within 11 s,
      // before a lost Patroni leader's key expires (ttl 20 s at the least).
      "grpc.keepalive_time_ms": 8000,
      "grpc.keepalive_timeout_ms": 3000,
      "grpc.keepalive_permit_without_calls": 0,
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 1000,
    },
  };
  if (tls) {
    options.credentials = readEtcdTls(o, { ca: "etcd CA", cert: "etcd certificate", key: "etcd key" })!;
    if (o.serverName) options.grpcOptions!["grpc.ssl_target_name_override"] = o.serverName;
  }
  if (o.username !== undefined && o.username !== "") {
    options.auth = {
      username: o.username,
      password: o.password ?? "",
      callOptions: () => ({ deadline: Date.now() + callTimeout }),
    };
  }
  return options;
}

export function createEtcdClient(o: EtcdOptions): Etcd3 {
  return new Etcd3(etcdClientOptions(o));
}

/** Converts an etcd3 library error into ours, keeping it as the cause. */
export function toEtcdError(err: unknown, op: string, context: Record<string, unknown> = {}): EtcdError {
  if (err instanceof EtcdError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new EtcdError(`etcd ${op} failed: ${message}`, { op, ...context }, err);
}

export function isCompactedError(err: unknown): boolean {
  const m = err instanceof Error ? err.message : String(err);
  return /compacted/i.test(m);
}
