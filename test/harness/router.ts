/**
 * The built router CLI (`node dist/router/main.js`) as a child process on free
 * ports, with helpers to read its admin endpoints and to talk PostgreSQL through it.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { PatroniCluster } from "./patroni.js";
import { freePort } from "./ports.js";
import { type Spawned, startProcess, stopProcess, waitFor } from "./proc.js";

const MAIN = new URL("../../router/main.js", import.meta.url).pathname;

export interface RouterStart {
  readonly etcd: string;
  readonly scope?: string;
  /** Extra `--route` values; `{port}` / `{replica}` are replaced with free ports. */
  readonly routes?: readonly string[];
  readonly replica?: boolean;
  readonly args?: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
}

/** The --workers the router runs with (its default: 2). */
function workersOf(args: readonly string[]): number {
  const i = args.lastIndexOf("--workers");
  return i >= 0 ? Number(args[i + 1]) : 2;
}

export class RouterProcess {
  private constructor(
    readonly dir: string,
    readonly proc: Spawned,
    readonly port: number,
    readonly replicaPort: number | null,
    readonly adminPort: number,
  ) {}

  static async start(o: RouterStart): Promise<RouterProcess> {
    const port = await freePort();
    const replicaPort = o.replica === false ? null : await freePort();
    const adminPort = await freePort();
    const args = [
      "--enable-source-maps",
      MAIN,
      "--etcd",
      o.etcd,
      "--listen",
      `127.0.0.1:${port}`,
      "--replica-listen",
      replicaPort === null ? "off" : `127.0.0.1:${replicaPort}`,
      "--admin-listen",
      `127.0.0.1:${adminPort}`,
      ...(o.scope ? ["--scope", o.scope] : []),
      ...(o.routes ?? []).flatMap((r) => ["--route", r]),
      ...(o.args ?? []),
    ];
    const dir = mkdtempSync(join(tmpdir(), "router-"));
    const proc = startProcess(process.execPath, args, {
      logFile: join(dir, "router.log"),
      env: { ...process.env, ...(o.env ?? {}) },
    });
    const r = new RouterProcess(dir, proc, port, replicaPort, adminPort);
    try {
      await waitFor(
        "the router's admin endpoint",
        async () => {
          if (proc.child.exitCode !== null) throw new Error(`router exited: ${proc.tail(20)}`);
          if ((await r.get("/healthz")).status !== 200) return false;
          // Under a supervisor (--workers N > 0, the default): every worker answers, and lists
          // every route it was started with (a worker adds a route once its listeners are open:
          // before that a client would be refused).
          const view = (await r.get("/routes")).body as {
            routes?: unknown[];
            workers?: { routes?: unknown[] }[];
          } | null;
          const want = workersOf(args);
          const routes = (o.scope ? 1 : 0) + (o.routes?.length ?? 0);
          if (want === 0) return (view?.routes?.length ?? 0) >= routes;
          const workers = view?.workers ?? [];
          return workers.length === want && workers.every((w) => (w.routes?.length ?? 0) >= routes);
        },
        { timeoutMs: 20_000 },
      );
    } catch (err) {
      await r.destroy();
      throw err;
    }
    return r;
  }

  get logFile(): string {
    return this.proc.logFile;
  }

  tail(lines = 40): string {
    return this.proc.tail(lines);
  }

  async get(path: string): Promise<{ status: number; body: unknown; text: string }> {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}${path}`, {
      signal: AbortSignal.timeout(5000),
    });
    const text = await res.text();
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {}
    return { status: res.status, body, text };
  }

  /** Sum of a metric's samples whose labels include `labels`. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const { text } = await this.get("/metrics");
    let sum = 0;
    for (const line of text.split("\n")) {
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const have = m[2] ?? "";
      if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) sum += Number(m[3]);
    }
    return sum;
  }

  async waitReady(timeoutMs = 30_000): Promise<void> {
    await waitFor("the router to be ready", async () => (await this.get("/readyz")).status === 200, {
      timeoutMs,
    });
  }

  /** /routes entry of one scope. */
  async route(scope: string): Promise<RouteView> {
    const body = (await this.get("/routes")).body as { routes: RouteView[] };
    const r = body.routes.find((x) => x.scope === scope);
    if (!r) throw new Error(`no route ${scope} in /routes`);
    return r;
  }

  /**
   * Where each worker's ports route for a scope (/routes' `workers`): one entry per worker, or
   * the one process's own decision with --workers 0. Each worker decides for itself, so a test
   * that checks where a new connection goes waits until all agree.
   */
  async workerRoutes(scope: string): Promise<{ primary: string | null; replicas: string[] }[]> {
    const body = (await this.get("/routes")).body as {
      routes: RouteView[];
      workers?: { routes?: { scope: string; primary: { target: string | null }; replicas: string[] }[] }[];
    };
    if (!body.workers) {
      const r = body.routes.find((x) => x.scope === scope);
      if (!r) throw new Error(`no route ${scope} in /routes`);
      return [{ primary: r.primary.target, replicas: r.replicas.eligible.map((e) => e.name) }];
    }
    return body.workers.map((w) => {
      const r = w.routes?.find((x) => x.scope === scope);
      if (!r) throw new Error(`no route ${scope} in a worker's /routes`);
      return { primary: r.primary.target, replicas: r.replicas };
    });
  }

  /** Signals the router and waits for it to exit; its log stays readable. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | string> {
    await stopProcess(this.proc, signal, 15_000);
    return this.proc.exited;
  }

  /** Stops the router and removes its temp dir (log included). */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface RouteView {
  scope: string;
  leader: string | null;
  etcd: { connected: boolean };
  primary: { action: string; target: string | null; reason: string; sessions: number };
  replicas: { eligible: { name: string }[]; excluded: { name: string; reason: string }[] };
  members: { name: string; role?: string; lagBytes?: number | null; invalid?: string }[];
  /** The last primary decisions, newest first (router/decisions.ts). */
  decisions: {
    at: number;
    action: string;
    target: string | null;
    reason: string;
    switch?: {
      kind: string;
      from: string | null;
      to: string;
      ms: number;
      held: number;
      released: number;
      failed: number;
    };
  }[];
}

/** A node-postgres client to the cluster's superuser through `port`. */
export function clientVia(c: PatroniCluster, port: number, extra: Partial<pg.ClientConfig> = {}): pg.Client {
  return new pg.Client({ ...c.nodes[0]!.pg(), port, connectionTimeoutMillis: 60_000, ...extra });
}

/** Which member served a query through `port` (by the server's port), and whether it is in recovery. */
export async function whoServes(
  c: PatroniCluster,
  port: number,
): Promise<{ member: string; standby: boolean }> {
  const client = clientVia(c, port);
  await client.connect();
  try {
    const r = await client.query("SELECT inet_server_port() AS port, pg_is_in_recovery() AS standby");
    const serverPort = Number(r.rows[0].port);
    const node = c.nodes.find((n) => n.pgPort === serverPort);
    if (!node) throw new Error(`no member listens on ${serverPort}`);
    return { member: node.name, standby: r.rows[0].standby as boolean };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Opens a raw TCP connection and resolves once connected. */
export function rawConnect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** Resolves with everything a socket received once it is closed by the peer (or rejects after timeoutMs). */
export function untilClosed(s: net.Socket, timeoutMs = 30_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const t = setTimeout(() => reject(new Error("socket not closed in time")), timeoutMs);
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", () => undefined);
    s.once("close", () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks));
    });
  });
}

export interface PsqlResult {
  /** psql's exit status: 0 done, 1 a query failed, 2 the connection failed or broke. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * One psql run (one connection, one command) through `port`: a libpq client, which by
 * default sends an SSLRequest first (sslmode=prefer), unlike node-postgres. Never throws.
 */
export function psql(
  port: number,
  sql: string,
  o: { user?: string; password?: string; sslmode?: string; timeoutMs?: number } = {},
): Promise<PsqlResult> {
  const args = [
    "-X",
    "-tA",
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-U",
    o.user ?? "postgres",
    "-d",
    "postgres",
  ];
  const env = {
    ...process.env,
    PGPASSWORD: o.password ?? "",
    PGSSLMODE: o.sslmode ?? "prefer",
    PGCONNECT_TIMEOUT: "60",
    PGAPPNAME: "router-test",
  };
  return new Promise((resolve) => {
    execFile("psql", [...args, "-c", sql], { env, timeout: o.timeoutMs ?? 90_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** psql as the cluster's superuser through `port`. */
export function psqlVia(
  c: PatroniCluster,
  port: number,
  sql: string,
  sslmode = "prefer",
): Promise<PsqlResult> {
  const n = c.nodes[0]!.pg();
  return psql(port, sql, { user: n.user, password: n.password, sslmode });
}
