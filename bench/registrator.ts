/**
 * Registrator benchmark against the real dockerd and a real etcd:
 *
 *  1. start latency: a container's `start` event (Docker's own timestamp) → its key
 *     visible through an etcd watch, over N containers started one at a time;
 *  2. initial sync: M running containers, registrator started → every key in etcd;
 *  3. resident memory of the registrator process (VmRSS / VmHWM).
 *
 * Each figure comes with a baseline measured in the same run on the same machine:
 * a minimal pipeline inside this process (event → inspect → put; list → inspect →
 * put) that does no modelling, batching or bookkeeping. Ratios are what to
 * compare across machines; the absolute numbers are for this one.
 *
 * The registrator runs as the image runs it: by default `node dist/registrator/main.js`
 * with the image's NODE_OPTIONS and MALLOC_ARENA_MAX; with --image, the
 * pgha/registrator:dev container itself (host network, socket mounted read-only).
 *
 *   npx tsc -p . && node dist/bench/registrator.js [--starts 100] [--sync 200] [--image]
 *     [--node-options "..."] [--reg-env K=V]...
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import Docker from "dockerode";
import type { Etcd3 } from "etcd3";
import { JsonLineDecoder } from "../registrator/docker-events.js";
import { EtcdServer } from "../test/harness/etcd.js";
import { freePort } from "../test/harness/ports.js";
import { run, waitFor } from "../test/harness/proc.js";
import { RegistratorProcess } from "../test/harness/registrator.js";

const args = process.argv.slice(2);
const arg = (name: string, def: number) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : Number(args[i + 1]);
};
const STARTS = arg("starts", 100);
/** What the image sets (registrator/Dockerfile); --node-options / --reg-env override. */
const IMAGE_ENV: Record<string, string> = { NODE_OPTIONS: "--max-semi-space-size=1", MALLOC_ARENA_MAX: "2" };
const regEnv: Record<string, string> = { ...IMAGE_ENV };
args.forEach((a, i) => {
  if (a === "--node-options") regEnv["NODE_OPTIONS"] = args[i + 1] ?? "";
  const kv = a === "--reg-env" ? args[i + 1] : undefined;
  const eq = kv?.indexOf("=") ?? -1;
  if (kv && eq > 0) regEnv[kv.slice(0, eq)] = kv.slice(eq + 1);
});
const USE_IMAGE = args.includes("--image");
const SYNC = arg("sync", 200);
const IMAGE = "debian:trixie-slim";
const RUN = `pgha-bench-${process.pid}`;
const HOST = "bench";
const docker = new Docker({ socketPath: "/var/run/docker.sock" });

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN;
}
const round = (x: number) => Math.round(x * 10) / 10;
function summary(xs: number[]) {
  return { n: xs.length, p50: round(pct(xs, 50)), p99: round(pct(xs, 99)), max: round(Math.max(...xs)) };
}
function rss(pid: number): { rssMb: number; hwmMb: number; anonMb: number; fileMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return {
    rssMb: round(kb("VmRSS") / 1024),
    hwmMb: round(kb("VmHWM") / 1024),
    anonMb: round(kb("RssAnon") / 1024),
    fileMb: round(kb("RssFile") / 1024),
  };
}

/** Key name → wall-clock ms when a watch saw it put. */
async function watchPuts(client: Etcd3, prefix: string, seen: Map<string, number>) {
  const w = await client.watch().prefix(prefix).create();
  w.on("put", (kv) => seen.set(kv.key.toString(), Date.now()));
  return w;
}

async function createContainer(i: number, start: boolean): Promise<Docker.Container> {
  const c = await docker.createContainer({
    Image: IMAGE,
    Cmd: ["sleep", "infinity"],
    name: `${RUN}-${i}`,
    Labels: { "pgha.test": "1", "pgha.bench": RUN },
    ExposedPorts: { "5432/tcp": {} },
    HostConfig: { PortBindings: { "5432/tcp": [{ HostIp: "127.0.0.1", HostPort: "" }] } },
  });
  if (start) await c.start();
  return c;
}

async function removeAll(): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: [`pgha.bench=${RUN}`] } });
  for (let i = 0; i < list.length; i += 16) {
    await Promise.all(
      list.slice(i, i + 16).map((c) =>
        docker
          .getContainer(c.Id)
          .remove({ force: true })
          .catch(() => undefined),
      ),
    );
  }
}

/** The baseline pipeline: Docker start events → inspect → put, no more. Returns key → put time. */
async function baselineFollower(client: Etcd3, done: Map<string, number>): Promise<() => void> {
  const stream = (await docker.getEvents({
    filters: { type: ["container"], event: ["start"], label: [`pgha.bench=${RUN}`] },
  })) as unknown as Readable;
  const decoder = new JsonLineDecoder();
  stream.on("data", (chunk: Buffer) => {
    for (const v of decoder.push(chunk).values) {
      const id = (v as { id: string }).id;
      void (async () => {
        const c = await docker.getContainer(id).inspect();
        const port = c.NetworkSettings.Ports["5432/tcp"]?.[0]?.HostPort;
        const key = `/baseline/${c.Name.slice(1)}`;
        await client.put(key).value(`127.0.0.1:${port}`);
        done.set(key, Date.now());
      })();
    }
  });
  return () => stream.destroy();
}

interface Registrator {
  readonly pid: number;
  get(path: string): Promise<{ status: number; body: string }>;
  waitReady(): Promise<void>;
  stop(signal: NodeJS.Signals): Promise<void>;
}

/** The pgha/registrator:dev image on the host network, the socket mounted read-only. */
class RegistratorContainer implements Registrator {
  private constructor(
    readonly name: string,
    readonly pid: number,
    private readonly port: number,
  ) {}

  static async start(etcd: EtcdServer, prefix: string): Promise<RegistratorContainer> {
    const port = await freePort();
    const name = `${RUN}-registrator-${prefix.replace(/\W/g, "")}`;
    const gid = (await run("stat", ["-c", "%g", "/var/run/docker.sock"])).stdout.trim();
    const addr = `127.0.0.1:${port}`;
    await run("docker", [
      "run",
      "-d",
      "--name",
      name,
      "--label",
      "pgha.test=1",
      "--label",
      `pgha.bench=${RUN}`,
      "--network",
      "host",
      "--group-add",
      gid,
      "-v",
      "/var/run/docker.sock:/var/run/docker.sock:ro",
      "-e",
      `REGISTRATOR_METRICS_ADDR=${addr}`,
      "pgha/registrator:dev",
      "-hostname",
      HOST,
      "-log-level",
      "warn",
      `etcd://${etcd.endpoint}${prefix}`,
    ]);
    const pid = Number((await run("docker", ["inspect", "-f", "{{.State.Pid}}", name])).stdout.trim());
    return new RegistratorContainer(name, pid, port);
  }

  async get(path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`http://127.0.0.1:${this.port}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  }

  async waitReady(): Promise<void> {
    await waitFor(
      "the registrator container to be ready",
      async () => (await this.get("/readyz")).status === 200,
      {
        timeoutMs: 60_000,
      },
    );
  }

  async stop(signal: NodeJS.Signals): Promise<void> {
    await run("docker", signal === "SIGKILL" ? ["rm", "-f", this.name] : ["stop", this.name]);
    await run("docker", ["rm", "-f", this.name]).catch(() => undefined);
  }
}

async function startRegistrator(etcd: EtcdServer, prefix: string, waitReady: boolean): Promise<Registrator> {
  if (USE_IMAGE) {
    const c = await RegistratorContainer.start(etcd, prefix);
    if (waitReady) await c.waitReady();
    return c;
  }
  return RegistratorProcess.start({ etcd, prefix, hostname: HOST, logLevel: "warn", env: regEnv, waitReady });
}

async function main(): Promise<void> {
  const etcd = await EtcdServer.start();
  const client = etcd.client();
  const results: Record<string, unknown> = {
    starts: STARTS,
    sync: SYNC,
    node: process.version,
    registrator: USE_IMAGE ? "pgha/registrator:dev image" : { main: "dist/registrator/main.js", env: regEnv },
  };
  let reg: Registrator | null = null;
  try {
    // ---- 1. start → key visible ----
    reg = await startRegistrator(etcd, "/bench", true);
    const seen = new Map<string, number>();
    const watcher = await watchPuts(client, "/bench/", seen);
    const baseSeen = new Map<string, number>();
    const stopBaseline = await baselineFollower(client, baseSeen);
    const startTimes = new Map<string, number>();
    const events = (await docker.getEvents({
      filters: { type: ["container"], event: ["start"], label: [`pgha.bench=${RUN}`] },
    })) as unknown as Readable;
    const dec = new JsonLineDecoder();
    events.on("data", (chunk: Buffer) => {
      for (const v of dec.push(chunk).values) {
        const e = v as { Actor: { Attributes: { name: string } }; timeNano: number };
        startTimes.set(e.Actor.Attributes.name, e.timeNano / 1e6);
      }
    });
    const latencies: number[] = [];
    const baseline: number[] = [];
    for (let i = 0; i < STARTS; i++) {
      await createContainer(i, true);
      const name = `${RUN}-${i}`;
      const key = `/bench/debian/${HOST}:${name}:5432`;
      const deadline = Date.now() + 10_000;
      while (
        (!seen.has(key) || !baseSeen.has(`/baseline/${name}`) || !startTimes.has(name)) &&
        Date.now() < deadline
      ) {
        await new Promise((r) => setTimeout(r, 2));
      }
      const t0 = startTimes.get(name);
      if (t0 === undefined || !seen.has(key)) throw new Error(`no key for ${name} within 10 s`);
      latencies.push(seen.get(key)! - t0);
      baseline.push(baseSeen.get(`/baseline/${name}`)! - t0);
    }
    stopBaseline();
    events.destroy();
    const afterStarts = rss(reg.pid);
    results["startToKeyMs"] = summary(latencies);
    results["startToKeyBaselineMs"] = summary(baseline);
    results["startToKeyRatioP50"] = round(pct(latencies, 50) / pct(baseline, 50));
    results["rssAfterStarts"] = afterStarts;
    await reg.stop("SIGTERM");
    reg = null;
    watcher.cancel();

    // ---- 2. initial sync of SYNC running containers ----
    for (let i = STARTS; i < SYNC; i += 8) {
      await Promise.all(
        Array.from({ length: Math.min(8, SYNC - i) }, (_, j) => createContainer(i + j, true)),
      );
    }
    const running = await docker.listContainers({ filters: { label: [`pgha.bench=${RUN}`] } });
    if (running.length < SYNC) throw new Error(`only ${running.length} containers running`);
    const syncSeen = new Map<string, number>();
    const w2 = await watchPuts(client, "/sync/", syncSeen);
    const t0 = Date.now();
    reg = await startRegistrator(etcd, "/sync", false);
    const spawnedAt = Date.now();
    const mine = (k: string) => k.includes(`:${RUN}-`);
    while ([...syncSeen.keys()].filter(mine).length < SYNC && Date.now() - t0 < 60_000) {
      await new Promise((r) => setTimeout(r, 5));
    }
    const allKeysAt = Date.now();
    await reg.waitReady();
    const readyAt = Date.now();
    results["syncAllKeysMs"] = allKeysAt - t0;
    results["syncReadyMs"] = readyAt - t0;
    results["spawnMs"] = spawnedAt - t0;
    results["rssAfterSync"] = rss(reg.pid);
    results["syncInternalMs"] = JSON.parse((await reg.get("/readyz")).body).initialSyncMs;
    w2.cancel();

    // Baseline: list, inspect one by one, put one by one.
    const b0 = Date.now();
    const list = await docker.listContainers();
    for (const c of list.filter((x) => x.Names.some((n) => n.includes(RUN)))) {
      const info = await docker.getContainer(c.Id).inspect();
      await client.put(`/baseline-sync/${info.Name.slice(1)}`).value("127.0.0.1:1");
    }
    results["syncBaselineMs"] = Date.now() - b0;
    results["syncRatio"] = round((results["syncInternalMs"] as number) / (Date.now() - b0));
    await reg.stop("SIGTERM");
    reg = null;
  } finally {
    if (reg) await reg.stop("SIGKILL");
    await removeAll();
    await etcd.destroy();
  }
  const out = JSON.stringify(results, null, 2);
  console.log(out);
  const dir = new URL("../../bench/results/", import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `registrator-${new Date().toISOString().replace(/[:.]/g, "-")}.json`), out + "\n");
}

main().catch(async (err) => {
  console.error(err);
  await removeAll().catch(() => undefined);
  process.exit(1);
});
