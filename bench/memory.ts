/**
 * Part 6, memory with idle clients. PostgreSQL here takes 300 connections, so the
 * upstream is the sink (sink.ts), published in etcd as a Patroni member of its own
 * scope (member record + leader key, as Patroni writes them): the router cannot
 * tell it from a primary. Each figure is a fresh process; resident size (VmRSS)
 * is read from /proc 3 s after the last client settled.
 *
 *  - connected: the client sent its StartupMessage and got ReadyForQuery back, so
 *    the proxy holds two sockets for it (client + upstream). A process may hold
 *    20 000 descriptors here, so 8 000 is the most that fits with margin;
 *  - held (router only): the client sent its StartupMessage while no primary is
 *    routable (the leader key is absent), so the router keeps it waiting with one
 *    socket. 10 000 of those fit.
 *
 * With the clients still open and idle, the process's CPU time in each of the next
 * 6 seconds; the median second is its idle cost (its health checks and timers;
 * nothing moves on the sockets). The median, because V8 may run a few full garbage
 * collections some seconds after the burst of connections (its memory reducer).
 * Then, SETTLED_MS after the clients settled, the resident size again: "settled",
 * what the process keeps for those clients once V8 has collected the burst's garbage
 * (a few seconds after it, each process's memory reducer runs a full collection; a
 * process with workers carries one such burst per process at the first read).
 *
 * Beside the router as it ships, the router before its workers (`--memory-before`, a
 * commit built in this run: one process, started as its image started it), so that
 * "memory must not get worse" is a ratio measured in the same run.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { patroniKeys } from "../shared/keys.js";
import { sleep } from "../shared/time.js";
import { freePort } from "../test/harness/ports.js";
import { startProcess, stopProcess, waitFor } from "../test/harness/proc.js";
import { cpuTimeUs, memoryOf, NaiveProxy, RouterProc } from "./endpoints.js";
import { Haproxy, haproxyConfig } from "./haproxy.js";
import type { Lab } from "./lab.js";
import { median, now, round } from "./stats.js";
import { childDir } from "./workdir.js";

const SINK_MAIN = fileURLToPath(new URL("./sink.js", import.meta.url));
const SETTLE_MS = 3_000;
/** From the clients settling to the second ("settled") read of resident memory. */
const SETTLED_MS = 25_000;
const REPO = fileURLToPath(new URL("../..", import.meta.url));
const IDLE_CPU_SECONDS = 6;
const BATCH = 250;

export interface MemoryFigure {
  /**
   * `router`: as it ships (a supervisor and --workers 2, summed); `router-w1`: a supervisor and
   * --workers 1; `router-1`: --workers 0, one process; `router-before`: the router before its
   * workers (--memory-before).
   */
  readonly proxy: "router" | "router-w1" | "router-1" | "router-before" | "haproxy" | "naive";
  readonly state: "connected" | "held";
  readonly clients: number;
  /** Before any client connected. */
  readonly baselineRssMb: number;
  readonly rssMb: number;
  readonly hwmMb: number;
  readonly anonMb: number;
  readonly perClientKb: number;
  /** Resident size SETTLED_MS after the clients settled (MB). */
  readonly settledRssMb: number;
  /** Median CPU time (ms) of IDLE_CPU_SECONDS seconds with the clients open and idle. */
  readonly idleCpuMsPerS: number;
}

/** A StartupMessage (protocol 3.0) for user and database `postgres`. */
export function startupMessage(): Buffer {
  const body = Buffer.from("user\0postgres\0database\0postgres\0\0");
  const b = Buffer.alloc(8 + body.length);
  b.writeInt32BE(b.length, 0);
  b.writeInt32BE(196608, 4);
  body.copy(b, 8);
  return b;
}

/** Opens `n` clients that send a StartupMessage; `answered` waits for ReadyForQuery on each. */
async function openClients(port: number, n: number, answered: boolean): Promise<net.Socket[]> {
  const startup = startupMessage();
  const out: net.Socket[] = [];
  const one = () =>
    new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: "127.0.0.1", port });
      let got = 0;
      s.once("error", reject);
      s.once("connect", () => {
        s.write(startup);
        if (!answered) resolve(s);
      });
      s.on("data", (d: Buffer) => {
        got += d.length;
        if (answered && d[d.length - 6] === 0x5a && got >= 28) resolve(s);
      });
    });
  for (let i = 0; i < n; i += BATCH) {
    out.push(...(await Promise.all(Array.from({ length: Math.min(BATCH, n - i) }, one))));
  }
  for (const s of out) s.on("error", () => undefined);
  return out;
}

async function closeClients(socks: net.Socket[]): Promise<void> {
  for (const s of socks) s.destroy();
  await sleep(500);
}

async function startSink() {
  const dir = childDir("sink");
  const proc = startProcess(process.execPath, [SINK_MAIN], { logFile: join(dir, "sink.log") });
  const ports = await waitFor(
    "the sink to listen",
    () => {
      const line = readFileSync(proc.logFile, "utf8").split("\n")[0] ?? "";
      return line.startsWith("{") ? (JSON.parse(line) as { pgPort: number; restPort: number }) : null;
    },
    { timeoutMs: 10_000, intervalMs: 50 },
  );
  return { proc, ...ports };
}

async function measure(
  proxy: MemoryFigure["proxy"],
  state: MemoryFigure["state"],
  pid: number,
  port: number,
  n: number,
  whenOpen: () => Promise<void> = async () => undefined,
): Promise<MemoryFigure> {
  await sleep(1_000);
  const base = memoryOf(pid);
  const socks = await openClients(port, n, state === "connected");
  try {
    await whenOpen();
    const settledAt = now();
    await sleep(SETTLE_MS);
    const m = memoryOf(pid);
    const perSecond: number[] = [];
    for (let i = 0, t0 = now(), c0 = cpuTimeUs(pid); i < IDLE_CPU_SECONDS; i++) {
      await sleep(1_000);
      const t1 = now();
      const c1 = cpuTimeUs(pid);
      perSecond.push((c1 - c0) / (t1 - t0)); // µs per ms = ms per s
      t0 = t1;
      c0 = c1;
    }
    const idleCpuMsPerS = round(median(perSecond), 2);
    const opened = now() - settledAt;
    await sleep(Math.max(0, SETTLED_MS - opened));
    return {
      settledRssMb: memoryOf(pid).rssMb,
      idleCpuMsPerS,
      proxy,
      state,
      clients: n,
      baselineRssMb: base.rssMb,
      ...m,
      perClientKb: Math.round(((m.rssMb - base.rssMb) * 1024 * 10) / n) / 10,
    };
  } finally {
    await closeClients(socks);
  }
}

/**
 * `rev`'s router built in this run's directory (its tree from git, this checkout's
 * node_modules, its own tsc settings), and the node flags its image started it with.
 */
export function routerAt(rev: string): { main: string; nodeArgs: string[] } {
  const dir = childDir(`router-${rev.slice(0, 12)}`);
  mkdirSync(dir, { recursive: true });
  execFileSync("sh", ["-c", 'git -C "$0" archive "$1" | tar -x -C "$2"', REPO, rev, dir], { stdio: "pipe" });
  symlinkSync(join(REPO, "node_modules"), join(dir, "node_modules"));
  execFileSync(
    process.execPath,
    [join(REPO, "node_modules/typescript/bin/tsc"), "-p", join(dir, "tsconfig.json")],
    {
      stdio: "pipe",
    },
  );
  const main = join(dir, "dist/router/main.js");
  if (!existsSync(main)) throw new Error(`${rev} has no dist/router/main.js once built`);
  const entry = /^ENTRYPOINT\s*(\[.*\])\s*$/m.exec(readFileSync(join(dir, "router/Dockerfile"), "utf8"));
  const argv = entry ? (JSON.parse(entry[1]!) as string[]) : ["node", "/app/dist/router/main.js"];
  return { main, nodeArgs: argv.slice(1).filter((a) => a.startsWith("--")) };
}

export async function runMemory(
  lab: Lab,
  o: { connected: readonly number[]; held: number; before: string | null },
  log: (m: string) => void,
): Promise<MemoryFigure[]> {
  const sink = await startSink();
  const etcd = lab.cluster.etcd.client();
  const ns = lab.cluster.namespace;
  const scope = `memsink${process.pid}`;
  const member = {
    conn_url: `postgres://127.0.0.1:${sink.pgPort}/postgres`,
    api_url: `http://127.0.0.1:${sink.restPort}/patroni`,
    state: "running",
    role: "master",
    version: "3.0.2",
    xlog_location: 0,
    timeline: 1,
  };
  await etcd.put(patroniKeys.member(ns, scope, "sink")).value(JSON.stringify(member));
  const out: MemoryFigure[] = [];
  const done = (f: MemoryFigure) => {
    out.push(f);
    log(
      `memory ${f.proxy} ${f.clients} ${f.state}: ${f.rssMb} MB resident, ${f.settledRssMb} MB settled (baseline ${f.baselineRssMb} MB, ` +
        `${f.perClientKb} KB/client; idle CPU ${f.idleCpuMsPerS} ms/s)`,
    );
  };
  const routerArgs = ["--max-connections", "10500", "--hold-timeout", "900", "--startup-timeout", "900"];
  try {
    await etcd.put(patroniKeys.leader(ns, scope)).value("sink");
    // The router as it ships (a supervisor and two workers: every process's memory counts),
    // with one worker, and in one process (--workers 0) as before the workers: the cost of the workers.
    for (const [proxy, extra] of [
      ["router", []],
      ["router-w1", ["--workers", "1"]],
      ["router-1", ["--workers", "0"]],
    ] as const)
      for (const n of o.connected) {
        const r = await RouterProc.start({
          etcd: lab.cluster.etcd.endpoint,
          scope,
          args: [...routerArgs, ...extra],
        });
        try {
          done(
            await measure(proxy, "connected", r.pid, r.port, n, async () => {
              const active = await r.metricSum("router_connections_active");
              if (active !== n) throw new Error(`router reports ${active} active sessions, expected ${n}`);
            }),
          );
        } finally {
          await r.stop("SIGKILL");
        }
      }
    if (o.before !== null) {
      let before: ReturnType<typeof routerAt> | null = null;
      try {
        before = routerAt(o.before);
      } catch (err) {
        const why = (err as { stderr?: Buffer }).stderr?.toString().trim() || (err as Error).message;
        log(`memory router-before: not measured, ${o.before} could not be built: ${why.slice(0, 300)}`);
      }
      for (const n of before === null ? [] : o.connected) {
        const r = await RouterProc.start({
          etcd: lab.cluster.etcd.endpoint,
          scope,
          args: routerArgs,
          main: before!.main,
          nodeArgs: before!.nodeArgs,
          workers: 0,
        });
        try {
          done(await measure("router-before", "connected", r.pid, r.port, n));
        } finally {
          await r.stop("SIGKILL");
        }
      }
    }
    if (o.held > 0) {
      await etcd.delete().key(patroniKeys.leader(ns, scope));
      const r = await RouterProc.start({
        etcd: lab.cluster.etcd.endpoint,
        scope,
        args: routerArgs,
        waitReady: false,
      });
      try {
        done(
          await measure("router", "held", r.pid, r.port, o.held, () =>
            waitFor(
              `${o.held} held clients`,
              async () => (await r.metricSum("router_held_clients")) === o.held,
              { timeoutMs: 60_000, intervalMs: 250 },
            ).then(() => undefined),
          ),
        );
      } finally {
        await r.stop("SIGKILL");
      }
    }
    for (const n of o.connected) {
      const port = await freePort();
      const h = await Haproxy.start(
        haproxyConfig({
          maxconn: 9000,
          serverMaxconn: 9000,
          listens: [
            {
              name: "sink",
              port,
              profile: "docs",
              servers: [{ name: "sink", host: "127.0.0.1", port: sink.pgPort, restPort: sink.restPort }],
            },
          ],
        }),
        [port],
      );
      try {
        done(await measure("haproxy", "connected", h.pid, port, n));
      } finally {
        await h.stop();
      }
    }
    for (const n of o.connected) {
      const p = await NaiveProxy.start(sink.pgPort);
      try {
        done(await measure("naive", "connected", p.pid, p.port, n));
      } finally {
        await p.stop();
      }
    }
  } finally {
    await etcd
      .delete()
      .prefix(`${ns}${scope}/`)
      .catch(() => undefined);
    await stopProcess(sink.proc, "SIGTERM", 5_000);
  }
  return out;
}
