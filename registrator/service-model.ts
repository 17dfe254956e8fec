/**
 * The service model, gliderlabs-compatible and pure: `servicesFor(inspect, options)`
 * turns one `docker inspect` document into the services to register, and the
 * ports it skipped with the reason. It never throws and never mutates its input;
 * whatever shape the input has, the result only holds valid keys and `ip:port`
 * values.
 */
import { isIP } from "node:net";
import { formatHostPort } from "../shared/host-port.js";
import { asObject, asString, type JsonObject } from "../shared/json.js";
import { registryKeys } from "../shared/keys.js";
import { KEY_SAFE, splitEscapedList } from "./names.js";

export type Protocol = "tcp" | "udp" | "sctp";

export interface Service {
  /** `<hostname>:<container-name>:<exposed-port>[:udp]`, or SERVICE_ID. */
  readonly id: string;
  readonly name: string;
  /** `/<prefix>/<name>/<id>` */
  readonly key: string;
  /** `ip:port`, IPv6 bracketed. */
  readonly value: string;
  readonly ip: string;
  readonly port: number;
  readonly tags: readonly string[];
  readonly attrs: Readonly<Record<string, string>>;
  readonly containerId: string;
  readonly containerName: string;
  readonly exposedPort: number;
  readonly protocol: Protocol;
}

/**
 * Why a port or container was not registered. `warn` codes are problems with the
 * input (logged as warnings and counted); the others are the rules working.
 */
export type SkipCode =
  | "malformed"
  | "invalid-port"
  | "invalid-name"
  | "no-address"
  | "duplicate-key"
  | "not-published"
  | "ignored"
  | "not-explicit"
  | "foreign-id";

export const WARN_CODES: ReadonlySet<SkipCode> = new Set([
  "malformed",
  "foreign-id",
  "invalid-port",
  "invalid-name",
  "no-address",
  "duplicate-key",
]);

export interface Skip {
  /** `5432/tcp`, or absent when the whole container is skipped. */
  readonly port?: string;
  readonly code: SkipCode;
  readonly reason: string;
}

export interface ModelOptions {
  readonly hostname: string;
  readonly prefix: string;
  /** -ip: forces the IP of published ports. */
  readonly hostIp?: string | undefined;
  /** The address the hostname resolves to, used for ports bound to 0.0.0.0 or ::. */
  readonly defaultHostIp?: string | undefined;
  readonly internal: boolean;
  readonly explicit: boolean;
  readonly useIpFromLabel?: string | undefined;
  /** -tags */
  readonly tags: readonly string[];
}

export interface ModelResult {
  readonly services: readonly Service[];
  readonly skipped: readonly Skip[];
}

/** Inspect documents of containers this one depends on (NetworkMode `container:<id>`). */
export interface Related {
  readonly networkContainer?: unknown;
}

const PORT_KEY = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/;
const UNSPECIFIED = new Set(["", "0.0.0.0", "::"]);

function validPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** The image's base name without tag or digest: `registry:5000/team/pg:15@sha256:…` → `pg`. */
export function imageBaseName(image: string): string {
  const base = image.replace(/\/+$/, "").split("/").pop() ?? "";
  return base.split("@")[0]!.split(":")[0]!;
}

interface Metadata {
  readonly values: ReadonlyMap<string, string>;
  readonly fromPort: ReadonlySet<string>;
}

/**
 * SERVICE_* settings for one exposed port: env first, labels over env, and the
 * per-port form (`SERVICE_5432_NAME`) over the plain one. Keys are lower-cased
 * without the `SERVICE_` prefix; empty values count as unset.
 */
function metadataFor(env: readonly string[], labels: JsonObject, port: string): Metadata {
  const pairs: [string, string][] = [];
  for (const kv of env) {
    const eq = kv.indexOf("=");
    if (eq > 0) pairs.push([kv.slice(0, eq), kv.slice(eq + 1)]);
  }
  for (const [k, v] of Object.entries(labels)) if (typeof v === "string") pairs.push([k, v]);
  const values = new Map<string, string>();
  const fromPort = new Set<string>();
  for (const [k, v] of pairs) {
    if (!k.startsWith("SERVICE_") || v === "") continue;
    const key = k.slice("SERVICE_".length).toLowerCase();
    const m = /^(\d+)_(.+)$/.exec(key);
    if (m) {
      if (m[1] !== port) continue;
      values.set(m[2]!, v);
      fromPort.add(m[2]!);
    } else if (!fromPort.has(key)) {
      values.set(key, v);
    }
  }
  return { values, fromPort };
}

function networkIp(net: JsonObject | undefined): string | undefined {
  if (!net) return undefined;
  const v4 = asString(net["IPAddress"]);
  if (v4) return v4;
  return asString(net["GlobalIPv6Address"]) || undefined;
}

/**
 * The container's own address: on the network its NetworkMode names (a user-defined
 * network), else on the default bridge, else on the first network by name.
 */
export function containerIp(inspect: JsonObject, related: Related, depth = 0): string | undefined {
  const hostConfig = asObject(inspect["HostConfig"]) ?? {};
  const settings = asObject(inspect["NetworkSettings"]) ?? {};
  const networks = asObject(settings["Networks"]) ?? {};
  const mode = asString(hostConfig["NetworkMode"]) ?? "";
  if (mode.startsWith("container:")) {
    const other = asObject(related.networkContainer);
    return other && depth === 0 ? containerIp(other, {}, 1) : undefined;
  }
  const named = networkIp(asObject(networks[mode === "default" ? "bridge" : mode]));
  if (named) return named;
  const top = networkIp(settings);
  if (top) return top;
  for (const name of Object.keys(networks).sort()) {
    const ip = networkIp(asObject(networks[name]));
    if (ip) return ip;
  }
  return undefined;
}

interface PortEntry {
  readonly key: string;
  readonly port: number;
  readonly protocol: Protocol;
  readonly hostIp: string;
  readonly hostPort: string;
}

function collectPorts(inspect: JsonObject, skipped: Skip[]): PortEntry[] {
  const config = asObject(inspect["Config"]) ?? {};
  const hostConfig = asObject(inspect["HostConfig"]) ?? {};
  const settings = asObject(inspect["NetworkSettings"]) ?? {};
  const hostMode = asString(hostConfig["NetworkMode"]) === "host";
  const bindings = new Map<string, unknown>();
  // Exposed ports; with host networking they listen on the host's own address.
  for (const key of Object.keys(asObject(config["ExposedPorts"]) ?? {})) {
    bindings.set(key, hostMode ? [{ HostIp: "0.0.0.0", HostPort: key.split("/")[0] }] : null);
  }
  // Runtime mappings (bridge and user-defined networks).
  for (const [key, published] of Object.entries(asObject(settings["Ports"]) ?? {}))
    bindings.set(key, published);

  const out: PortEntry[] = [];
  for (const [key, published] of bindings) {
    const m = PORT_KEY.exec(key);
    const port = m ? Number(m[1]) : Number.NaN;
    if (!m || !validPort(port)) {
      skipped.push({
        port: key,
        code: "invalid-port",
        reason: `exposed port ${JSON.stringify(key)} is not PORT[/tcp|udp|sctp]`,
      });
      continue;
    }
    const first = Array.isArray(published) ? asObject(published[0]) : undefined;
    const hostPort = asString(first?.["HostPort"]) ?? "";
    const hostIp = asString(first?.["HostIp"]) ?? "";
    out.push({ key, port, protocol: (m[2] ?? "tcp") as Protocol, hostIp, hostPort });
  }
  return out.sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));
}

/**
 * The host an ID claims when it has the shape of a default ID, `<hostname>:<container>:<port>`
 * (with `:udp` or `:sctp` after it); null for any other ID. A container may not use it to name
 * another host: that would overwrite or shadow the other registrator's key.
 */
export function claimedHost(id: string): string | null {
  const m = /^([^:]+):([^:]+):(\d{1,5})(?::(?:udp|sctp))?$/.exec(id);
  return m ? m[1]! : null;
}

function checkKeySafe(what: string, value: string): string | undefined {
  return KEY_SAFE.test(value)
    ? undefined
    : `${what} ${JSON.stringify(value)} would break the key (it must be non-empty, without '/', spaces or control characters)`;
}

/** The services one container should have registered, and what was skipped and why. */
export function servicesFor(
  inspectInput: unknown,
  options: ModelOptions,
  related: Related = {},
): ModelResult {
  const skipped: Skip[] = [];
  const inspect = asObject(inspectInput);
  const id = asString(inspect?.["Id"]);
  const rawName = asString(inspect?.["Name"]);
  const config = asObject(inspect?.["Config"]);
  if (!inspect || !id || !rawName || !config) {
    return {
      services: [],
      skipped: [{ code: "malformed", reason: "inspect document lacks Id, Name or Config" }],
    };
  }
  const containerName = rawName.replace(/^\//, "");
  const nameProblem = checkKeySafe("container name", containerName);
  if (nameProblem) return { services: [], skipped: [{ code: "invalid-name", reason: nameProblem }] };

  const env = Array.isArray(config["Env"])
    ? config["Env"].filter((e): e is string => typeof e === "string")
    : [];
  const labels = asObject(config["Labels"]) ?? {};
  const defaultName = imageBaseName(asString(config["Image"]) ?? "");

  const ports = collectPorts(inspect, skipped);
  const candidates: PortEntry[] = [];
  for (const p of ports) {
    if (!options.internal && p.hostPort === "") {
      skipped.push({
        port: p.key,
        code: "not-published",
        reason: "not published on the host (use -internal to register it)",
      });
      continue;
    }
    if (!options.internal && !(/^\d+$/.test(p.hostPort) && validPort(Number(p.hostPort)))) {
      skipped.push({
        port: p.key,
        code: "invalid-port",
        reason: `host port ${JSON.stringify(p.hostPort)} is not a port number`,
      });
      continue;
    }
    candidates.push(p);
  }
  const isGroup = candidates.length > 1;
  const ownIp = options.internal ? containerIp(inspect, related) : undefined;
  const hostMode = asString(asObject(inspect["HostConfig"])?.["NetworkMode"]) === "host";

  const services: Service[] = [];
  const keys = new Set<string>();
  for (const p of candidates) {
    const meta = metadataFor(env, labels, String(p.port));
    const get = (k: string) => meta.values.get(k);
    if (get("ignore")) {
      skipped.push({ port: p.key, code: "ignored", reason: "SERVICE_IGNORE is set" });
      continue;
    }
    let name = get("name");
    if (name === undefined) {
      if (options.explicit) {
        skipped.push({ port: p.key, code: "not-explicit", reason: "no SERVICE_NAME and -explicit is set" });
        continue;
      }
      name = defaultName;
    }
    if (isGroup && !meta.fromPort.has("name")) name = `${name}-${p.port}`;
    const suffix = p.protocol === "tcp" ? "" : `:${p.protocol}`;
    const serviceId = get("id") ?? `${options.hostname}:${containerName}:${p.port}${suffix}`;

    let ip: string | undefined;
    let port: number;
    let addressNote: string;
    if (options.internal) {
      ip = hostMode ? (options.hostIp ?? options.defaultHostIp) : ownIp;
      port = p.port;
      addressNote = "the container has no IP address on its network";
    } else {
      ip = options.hostIp ?? (UNSPECIFIED.has(p.hostIp) ? options.defaultHostIp : p.hostIp);
      port = Number(p.hostPort);
      addressNote = `published on ${p.hostIp || "all interfaces"} and the host's address is unknown (set -ip)`;
    }
    if (options.useIpFromLabel) {
      const fromLabel = asString(labels[options.useIpFromLabel]);
      if (fromLabel) {
        const slash = fromLabel.lastIndexOf("/");
        ip = slash === -1 ? fromLabel : fromLabel.slice(0, slash);
        addressNote = `label ${options.useIpFromLabel} holds ${JSON.stringify(fromLabel)}, not an IP address`;
      }
    }
    if (ip === undefined || isIP(ip) === 0) {
      skipped.push({
        port: p.key,
        code: "no-address",
        reason: ip === undefined ? addressNote : `${JSON.stringify(ip)}: ${addressNote}`,
      });
      continue;
    }

    const problem = checkKeySafe("service name", name) ?? checkKeySafe("service ID", serviceId);
    if (problem) {
      skipped.push({ port: p.key, code: "invalid-name", reason: problem });
      continue;
    }
    const claimed = claimedHost(serviceId);
    if (claimed !== null && claimed !== options.hostname) {
      skipped.push({
        port: p.key,
        code: "foreign-id",
        reason: `service ID ${JSON.stringify(serviceId)} names host ${JSON.stringify(claimed)}, not this registrator's ${JSON.stringify(options.hostname)}: an ID of the form <hostname>:<container>:<port> must name this host`,
      });
      continue;
    }
    const key = registryKeys.instance(options.prefix, name, serviceId);
    if (keys.has(key)) {
      skipped.push({
        port: p.key,
        code: "duplicate-key",
        reason: `another port of this container already uses ${key} (set SERVICE_<port>_ID)`,
      });
      continue;
    }
    keys.add(key);

    const tags = [...splitEscapedList(get("tags") ?? ""), ...options.tags];
    if (p.protocol === "udp") tags.push("udp");
    const attrs: Record<string, string> = {};
    for (const [k, v] of meta.values) if (!["id", "name", "tags", "ignore"].includes(k)) attrs[k] = v;

    services.push(
      Object.freeze({
        id: serviceId,
        name,
        key,
        value: formatHostPort({ host: ip, port }),
        ip,
        port,
        tags: Object.freeze(tags),
        attrs: Object.freeze(attrs),
        containerId: id,
        containerName,
        exposedPort: p.port,
        protocol: p.protocol,
      }),
    );
  }
  return { services: Object.freeze(services), skipped: Object.freeze(skipped) };
}
