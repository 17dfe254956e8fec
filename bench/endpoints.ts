/**
 * The things clients connect to in the benchmark, each a child process on free
 * loopback ports: our router (the built CLI, as an operator runs it), the naive
 * pipe proxy, and (see haproxy.ts) HAProxy.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../test/harness/ports.js";
import { type Spawned, startProcess, stopProcess, waitFor } from "../test/harness/proc.js";
import { listening } from "./haproxy.js";
import { childDir } from "./workdir.js";

const ROUTER_MAIN = fileURLToPath(new URL("../router/main.js", import.meta.url));
const NAIVE_MAIN = fileURLToPath(new URL("./naive-proxy.js", import.meta.url));

export class RouterProc {
  private constructor(
    readonly proc: Spawned,
    readonly port: number,
    readonly adminPort: number,
    readonly dir: string,
  ) {}

  get pid(): number {
    return this.proc.child.pid!;
  }

  /**
   * Starts `node [nodeArgs] dist/router/main.js` for one scope, logging at warn.
   * `waitReady` waits for /readyz (a routable primary); otherwise only for /healthz.
   */
  static async start(o: {
    etcd: string;
    scope: string;
    args?: readonly string[];
    nodeArgs?: readonly string[];
    waitReady?: boolean;
    /** `info` logs routing decisions (nothing per connection); default `warn`. */
    logLevel?: "warn" | "info";
    /** Another build's router/main.js (the memory part's router before its workers). */
    main?: string;
    /** Workers to wait for; by default `--workers` of `args`, else 2. 0: one process. */
    workers?: number;
  }): Promise<RouterProc> {
    const port = await freePort();
    const adminPort = await freePort();
    const dir = childDir("router");
    const proc = startProcess(
      process.execPath,
      [
        // As the image's ENTRYPOINT runs it (router/Dockerfile).
        ...(o.nodeArgs ?? ["--max-semi-space-size=2"]),
        o.main ?? ROUTER_MAIN,
        "--etcd",
        o.etcd,
        "--scope",
        o.scope,
        "--listen",
        `127.0.0.1:${port}`,
        "--replica-listen",
        "off",
        "--admin-listen",
        `127.0.0.1:${adminPort}`,
        "--log-level",
        o.logLevel ?? "warn",
        ...(o.args ?? []),
      ],
      { logFile: join(dir, "router.log"), cwd: dir },
    );
    const r = new RouterProc(proc, port, adminPort, dir);
    const path = o.waitReady === false ? "/healthz" : "/readyz";
    await waitFor(
      `the router's ${path}`,
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`router exited: ${proc.tail(20)}`);
        return (await r.get(path)).status === 200;
      },
      { timeoutMs: 30_000 },
    );
    // The supervisor's admin port answers before its workers listen (and /healthz does not
    // wait for them): wait until every worker has the route open, i.e. listens on its port.
    const i = (o.args ?? []).lastIndexOf("--workers");
    const workers = o.workers ?? (i >= 0 ? Number(o.args?.[i + 1]) : 2);
    if (workers > 0) {
      await waitFor(
        `the router's ${workers} worker(s) to listen`,
        async () => {
          const view = JSON.parse((await r.get("/routes")).text) as {
            workers?: { routes?: { scope?: string }[] }[];
          };
          const open = (view.workers ?? []).filter((w) => w.routes?.some((x) => x.scope === o.scope));
          return open.length === workers;
        },
        { timeoutMs: 30_000 },
      );
    }
    return r;
  }

  async get(path: string): Promise<{ status: number; text: string }> {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}${path}`, {
      signal: AbortSignal.timeout(5000),
    });
    return { status: res.status, text: await res.text() };
  }

  /** Samples of one metric from /metrics: labels text → value. */
  async metric(name: string): Promise<Map<string, number>> {
    const out = new Map<string, number>();
    for (const line of (await this.get("/metrics")).text.split("\n")) {
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
      if (m && m[1] === name) out.set(m[2] ?? "", Number(m[3]));
    }
    return out;
  }

  async metricSum(name: string): Promise<number> {
    let sum = 0;
    for (const v of (await this.metric(name)).values()) sum += v;
    return sum;
  }

  /** The routing decisions the router logged between two wall-clock times (needs `logLevel: "info"`). */
  decisions(fromMs: number, toMs: number): RouterDecision[] {
    return routerDecisions(readFileSync(this.proc.logFile, "utf8"), fromMs, toMs);
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await stopProcess(this.proc, signal, 20_000);
  }
}

export interface RouterDecision {
  readonly t: number;
  readonly msg: string;
  readonly action?: string;
  readonly target?: string | null;
  readonly reason?: string;
}

const DECISION_MESSAGES = new Set(["primary decision", "routed primary changed; closing its sessions"]);

/** Pure: the router's decision lines (pino JSON) logged within [fromMs, toMs]. */
export function routerDecisions(log: string, fromMs: number, toMs: number): RouterDecision[] {
  const out: RouterDecision[] = [];
  for (const line of log.split("\n")) {
    if (!line.startsWith("{")) continue;
    let o: { time?: string | number; msg?: string; action?: string; target?: string | null; reason?: string };
    try {
      o = JSON.parse(line);
    } catch {
      continue;
    }
    if (!o.msg || !DECISION_MESSAGES.has(o.msg)) continue;
    const t = typeof o.time === "number" ? o.time : Date.parse(String(o.time));
    if (!(t >= fromMs && t <= toMs)) continue;
    out.push({ t, msg: o.msg, action: o.action, target: o.target, reason: o.reason });
  }
  return out;
}

/** The naive `socket.pipe` proxy to a fixed address. */
export class NaiveProxy {
  private constructor(
    readonly proc: Spawned,
    readonly port: number,
  ) {}

  get pid(): number {
    return this.proc.child.pid!;
  }

  static async start(targetPort: number, targetHost = "127.0.0.1"): Promise<NaiveProxy> {
    const port = await freePort();
    const dir = childDir("naive");
    const proc = startProcess(process.execPath, [NAIVE_MAIN, String(port), targetHost, String(targetPort)], {
      logFile: join(dir, "naive.log"),
    });
    await waitFor(
      "the naive proxy to listen",
      async () => {
        if (proc.child.exitCode !== null) throw new Error(`naive proxy exited: ${proc.tail(20)}`);
        return listening(port);
      },
      { timeoutMs: 10_000, intervalMs: 50 },
    );
    return new NaiveProxy(proc, port);
  }

  async stop(): Promise<void> {
    await stopProcess(this.proc, "SIGTERM", 5_000);
  }
}

/**
 * A process and all its descendants (the router's supervisor and its workers): what a proxy
 * costs is the sum over its processes. Read from the parent links in /proc/<pid>/stat.
 */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // pid (comm) state ppid …: comm may hold spaces and parentheses; the last ")" ends it.
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(name));
      children.set(ppid, list);
    } catch {
      // the process ended between the listing and the read
    }
  }
  const out: number[] = [];
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/**
 * CPU time a process and its descendants have used so far, all their threads (µs), from the
 * scheduler's per-thread counters in /proc (nanoseconds, unlike the 10 ms ticks of
 * /proc/<pid>/stat).
 */
export function cpuTimeUs(pid: number): number {
  let ns = 0;
  // The process itself must exist (a wrong pid is an error, named); a descendant may end meanwhile.
  const root = readdirSync(`/proc/${pid}/task`);
  for (const p of processTree(pid)) {
    let tasks: string[];
    try {
      tasks = p === pid ? root : readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // ended meanwhile
    }
    for (const task of tasks) {
      try {
        ns += Number(readFileSync(`/proc/${p}/task/${task}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        // the thread ended between the listing and the read: its time is lost (a thread's, not the process's)
      }
    }
  }
  return ns / 1000;
}

/**
 * Resident memory of a process and its descendants from /proc (MB). `rssMb` counts each
 * process's private memory (anonymous and shared-memory pages) and the file-backed pages
 * (the node binary and libraries, shared between the router's supervisor and workers) once,
 * as the largest process maps them: summing every process's VmRSS would count the same
 * binary three times. For one process it is its VmRSS. `hwmMb` sums the peaks as reported.
 */
export function memoryOf(pid: number): { rssMb: number; hwmMb: number; anonMb: number } {
  let priv = 0;
  let file = 0;
  let hwm = 0;
  let anon = 0;
  for (const p of processTree(pid)) {
    let status: string;
    try {
      status = readFileSync(`/proc/${p}/status`, "utf8");
    } catch {
      continue;
    }
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0);
    priv += kb("RssAnon") + kb("RssShmem");
    file = Math.max(file, kb("RssFile"));
    hwm += kb("VmHWM");
    anon += kb("RssAnon");
  }
  const mb = (x: number) => Math.round((x / 1024) * 10) / 10;
  return { rssMb: mb(priv + file), hwmMb: mb(hwm), anonMb: mb(anon) };
}
