/**
 * Self-discovery: this container's public PostgreSQL and Patroni REST addresses,
 * read from the keys the registrator writes for it:
 *
 *   /<prefix>/<service>/<DOCKER_HOSTNAME>:<container-name>:<port>  =  ip:port
 *
 * The key names and the value parser are pure; `discoverAddresses` waits for
 * both keys (bounded, progress logged) and on timeout fails with a line that
 * names the exact keys it waited for.
 */

import { PgHaError, TimeoutError } from "../shared/errors.js";
import { createEtcdClient, type EtcdOptions, toEtcdError } from "../shared/etcd.js";
import { formatHostPort, type HostPort, parseHostPort } from "../shared/host-port.js";
import { registryKeys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { sleep } from "../shared/time.js";
import type { AddressSource } from "./config.js";

export interface NodeAddresses {
  readonly postgres: HostPort;
  readonly api: HostPort;
}

export interface DiscoveryKeys {
  readonly postgres: string;
  readonly api: string;
}

type RegistrySource = Extract<AddressSource, { kind: "registry" }>;

/** The registrator's instance ID for one exposed port (gliderlabs: `<hostname>:<container>:<port>`). */
export function registryInstanceId(dockerHostname: string, containerName: string, port: number): string {
  return `${dockerHostname}:${containerName.replace(/^\//, "")}:${port}`;
}

export function discoveryKeys(src: RegistrySource): DiscoveryKeys {
  return Object.freeze({
    postgres: registryKeys.instance(
      src.prefix,
      src.service5432,
      registryInstanceId(src.dockerHostname, src.containerName, 5432),
    ),
    api: registryKeys.instance(
      src.prefix,
      src.service8008,
      registryInstanceId(src.dockerHostname, src.containerName, 8008),
    ),
  });
}

/** A registrator value `ip:port` (IPv6 bracketed); null when it is anything else. */
export function parseRegistryValue(value: string): HostPort | null {
  try {
    const hp = parseHostPort(value);
    return hp.host === "" ? null : hp;
  } catch {
    return null;
  }
}

/** Reads one key; null when absent. */
export type KeyReader = (key: string) => Promise<string | null>;

export interface DiscoveryOptions {
  readonly timeoutMs: number;
  readonly pollMs?: number;
  /** How often a progress line is logged while waiting. */
  readonly progressMs?: number;
  readonly signal?: AbortSignal;
  readonly now?: () => number;
}

export class DiscoveryError extends PgHaError {
  constructor(message: string, context: Record<string, unknown>) {
    super("E_TIMEOUT", message, context);
  }
}

/**
 * Waits until both keys hold a valid `ip:port`. Polls (the wait is short and
 * bounded); logs when it starts waiting, every `progressMs`, and when a key
 * holds something that is not an address.
 */
export async function discoverAddresses(
  read: KeyReader,
  keys: DiscoveryKeys,
  log: Logger,
  opts: DiscoveryOptions,
): Promise<NodeAddresses> {
  const now = opts.now ?? Date.now;
  const started = now();
  const deadline = started + opts.timeoutMs;
  const pollMs = opts.pollMs ?? 250;
  const progressMs = opts.progressMs ?? 5000;
  let nextProgress = started + progressMs;
  let lastProblem = "";
  let announced = false;
  for (;;) {
    let pg: string | null = null;
    let api: string | null = null;
    let problem: string;
    try {
      [pg, api] = await Promise.all([read(keys.postgres), read(keys.api)]);
      const pgAddr = pg === null ? null : parseRegistryValue(pg);
      const apiAddr = api === null ? null : parseRegistryValue(api);
      if (pgAddr && apiAddr) {
        log.info(
          { postgres: pg, api, keys, waitedMs: now() - started },
          "discovered this node's public addresses",
        );
        return Object.freeze({ postgres: pgAddr, api: apiAddr });
      }
      const missing = [pg === null ? keys.postgres : null, api === null ? keys.api : null].filter(
        (k) => k !== null,
      );
      const bad = [
        pg !== null && !pgAddr ? `${keys.postgres}=${JSON.stringify(pg)}` : null,
        api !== null && !apiAddr ? `${keys.api}=${JSON.stringify(api)}` : null,
      ].filter((k) => k !== null);
      problem = bad.length > 0 ? `not ip:port: ${bad.join(", ")}` : `missing: ${missing.join(", ")}`;
    } catch (err) {
      problem = `etcd unreachable: ${toEtcdError(err, "get").message}`;
    }
    const t = now();
    if (!announced) {
      announced = true;
      log.info(
        { keys, timeoutMs: opts.timeoutMs },
        "waiting for the registrator to publish this container's ports",
      );
    }
    if (problem !== lastProblem && lastProblem !== "") log.info({ problem }, "discovery: still waiting");
    lastProblem = problem;
    if (t >= deadline) {
      throw new DiscoveryError(
        `no registrator keys for this container after ${Math.round(opts.timeoutMs / 1000)} s: waited for ${keys.postgres} and ${keys.api} (${problem}); check that a registrator with -hostname ${hostnameOf(keys)} writes to this etcd, or set DOCKER_HOST_IP, DOCKER_HOST_PORT_5432 and DOCKER_HOST_PORT_8008`,
        { keys, problem },
      );
    }
    if (t >= nextProgress) {
      nextProgress = t + progressMs;
      log.info(
        { waitedS: Math.round((t - started) / 1000), timeoutS: Math.round(opts.timeoutMs / 1000), problem },
        "discovery: waiting for the registrator",
      );
    }
    await sleep(Math.min(pollMs, Math.max(1, deadline - t)), opts.signal);
    if (opts.signal?.aborted) throw new TimeoutError("discovery aborted", { keys });
  }
}

function hostnameOf(keys: DiscoveryKeys): string {
  const id = keys.postgres.slice(keys.postgres.lastIndexOf("/") + 1);
  return id.split(":").slice(0, -2).join(":");
}

/** The node's public addresses: given (DOCKER_HOST_IP) or read from the registrator's keys. */
export async function resolveAddresses(
  src: AddressSource,
  etcd: EtcdOptions,
  log: Logger,
  signal?: AbortSignal,
): Promise<NodeAddresses> {
  if (src.kind === "static") {
    log.info(
      { postgres: formatHostPort(src.postgres), api: formatHostPort(src.api) },
      "public addresses given by DOCKER_HOST_IP; skipping discovery",
    );
    return { postgres: src.postgres, api: src.api };
  }
  const client = createEtcdClient(etcd);
  try {
    const read: KeyReader = async (key) => client.get(key).string();
    return await discoverAddresses(read, discoveryKeys(src), log, {
      timeoutMs: src.timeoutSeconds * 1000,
      ...(signal ? { signal } : {}),
    });
  } finally {
    client.close();
  }
}
