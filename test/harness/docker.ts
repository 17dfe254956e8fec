/**
 * Real Docker for end-to-end tests: the docker CLI, the stack's images (built
 * once per test process, cached by Docker), and cleanup by label.
 *
 * Everything a test creates carries the label `pgha.test=<run id>` and a unique
 * name prefix, so `removeLabelled()` in after() removes exactly what it made.
 */
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import type { Etcd3 } from "etcd3";
import { createEtcdClient } from "../../shared/etcd.js";
import { freePort } from "./ports.js";
import { run, waitFor } from "./proc.js";

export const REPO_ROOT = join(new URL(".", import.meta.url).pathname, "..", "..", "..");
export const TEST_LABEL = "pgha.test";

/** Runs `docker ARGS…`; resolves with stdout (trimmed). */
export async function docker(args: readonly string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await run("docker", args, { timeoutMs: opts.timeoutMs ?? 120_000 });
  return r.stdout.trim();
}

/** A short unique name prefix: `<what>-<6 hex>-`. */
export function uniquePrefix(what: string): string {
  return `${what}-${randomBytes(3).toString("hex")}-`;
}

/** A random password without characters that need quoting anywhere. */
export function randomSecret(): string {
  return randomBytes(18).toString("base64url");
}

/** Image of each part; PGHA_<NAME>_IMAGE picks another (the compose file reads the same variables). */
export function imageOf(
  name: "agent" | "alertmanager" | "etcd" | "prometheus" | "registrator" | "router",
): string {
  return process.env[`PGHA_${name.toUpperCase()}_IMAGE`] ?? `pgha/${name}:dev`;
}

/** The group that owns the Docker socket, for a registrator that runs without root. */
export async function dockerSocketGid(): Promise<string> {
  return dockerSocketGidOf("/var/run/docker.sock");
}

/** The group that owns a Docker socket at `path`. */
export async function dockerSocketGidOf(path: string): Promise<string> {
  const r = await run("stat", ["-c", "%g", path]);
  return r.stdout.trim();
}

const built = new Map<string, Promise<void>>();

/**
 * Builds the named images (agent, alertmanager, etcd, prometheus, registrator, router) with
 * scripts/build-images.sh, at most once per test process. PGHA_E2E_NO_BUILD=1
 * uses the images as they are.
 */
export function ensureImages(names: readonly string[]): Promise<void> {
  const missing = names.filter((n) => !built.has(n));
  if (missing.length > 0 && process.env["PGHA_E2E_NO_BUILD"] !== "1") {
    const p = run(join(REPO_ROOT, "scripts", "build-images.sh"), missing, {
      timeoutMs: 20 * 60_000,
      cwd: REPO_ROOT,
    }).then(() => undefined);
    for (const n of missing) built.set(n, p);
  }
  return Promise.all(names.map((n) => built.get(n) ?? Promise.resolve())).then(() => undefined);
}

/** The address of this host on Docker's default bridge (where `-p IP::PORT` publishes). */
export async function bridgeGateway(): Promise<string> {
  const out = await docker([
    "network",
    "inspect",
    "bridge",
    "-f",
    "{{range .IPAM.Config}}{{.Gateway}} {{.Subnet}} {{end}}",
  ]);
  const words = out.split(/\s+/);
  const gateway = words.find((s) => /^\d+\.\d+\.\d+\.\d+$/.test(s));
  if (gateway) return gateway;
  // dockerd gives the bridge the first address of its subnet when none is configured.
  const subnet = words.find((s) => /^\d+\.\d+\.\d+\.\d+\/\d+$/.test(s));
  if (!subnet) throw new Error(`no IPv4 subnet on Docker's bridge network: ${out}`);
  const [a, b, c, d] = subnet.split("/")[0]!.split(".").map(Number) as [number, number, number, number];
  return `${a}.${b}.${c}.${d + 1}`;
}

/** The host port Docker published for a container port (`docker port`). */
export async function publishedPort(
  container: string,
  port: number,
): Promise<{ host: string; port: number }> {
  const out = await docker(["port", container, `${port}/tcp`]);
  const line = out.split("\n").find((l) => /^\d+\.\d+\.\d+\.\d+:\d+$/.test(l.trim()));
  if (!line) throw new Error(`${container} publishes no IPv4 port for ${port}: ${out}`);
  const [host, p] = line.trim().split(":");
  return { host: host!, port: Number(p) };
}

export async function inspect<T = Record<string, unknown>>(container: string): Promise<T> {
  return (JSON.parse(await docker(["inspect", container])) as T[])[0]!;
}

/** `docker exec` in a container; resolves with stdout. */
export async function dockerExec(
  container: string,
  cmd: readonly string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<string> {
  const envArgs = Object.entries(opts.env ?? {}).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
  return docker(["exec", ...envArgs, container, ...cmd], { timeoutMs: opts.timeoutMs ?? 60_000 });
}

/** The last lines of a container's log, for failure messages. */
export async function logsTail(container: string, lines = 40): Promise<string> {
  try {
    const r = await run("docker", ["logs", "--tail", String(lines), container], { timeoutMs: 10_000 });
    return `--- ${container} ---\n${r.stdout}${r.stderr}`;
  } catch (err) {
    return `--- ${container}: ${(err as Error).message.split("\n")[0]}`;
  }
}

/** Removes every container, network and volume carrying `pgha.test=<value>`. */
export async function removeLabelled(value: string): Promise<void> {
  const filter = `label=${TEST_LABEL}=${value}`;
  const containers = (await docker(["ps", "-aq", "--filter", filter]).catch(() => ""))
    .split("\n")
    .filter(Boolean);
  if (containers.length > 0) await docker(["rm", "-f", "-v", ...containers]).catch(() => undefined);
  const networks = (await docker(["network", "ls", "-q", "--filter", filter]).catch(() => ""))
    .split("\n")
    .filter(Boolean);
  for (const n of networks) await docker(["network", "rm", n]).catch(() => undefined);
  const volumes = (await docker(["volume", "ls", "-q", "--filter", filter]).catch(() => ""))
    .split("\n")
    .filter(Boolean);
  if (volumes.length > 0) await docker(["volume", "rm", "-f", ...volumes]).catch(() => undefined);
}

/**
 * Runs the stack's etcd image as a labelled container published on hostIp (the bridge
 * gateway, so containers reach it too) on a free port; resolves once it answers.
 */
export async function startEtcdContainer(
  name: string,
  label: string,
  hostIp: string,
): Promise<{ client: Etcd3; port: number }> {
  const port = await freePort(hostIp);
  await docker([
    "run",
    "-d",
    "--name",
    name,
    "--label",
    `${TEST_LABEL}=${label}`,
    "-p",
    `${hostIp}:${port}:2379`,
    "-e",
    `ETCD_ADVERTISE_CLIENT_URLS=http://${hostIp}:${port}`,
    imageOf("etcd"),
  ]);
  const client = createEtcdClient({ hosts: [{ host: hostIp, port }] });
  await waitFor(
    "etcd to answer",
    () =>
      client
        .get("/")
        .string()
        .then(() => true),
    { timeoutMs: 30_000 },
  );
  return { client, port };
}
