/**
 * The router as several processes: a small supervisor and `--workers` workers
 * (Node's cluster module). Every worker runs the whole router (its own etcd
 * watch, REST checks and listeners); the listening sockets are created once by
 * the supervisor and shared (SCHED_NONE): each worker accepts on the same socket,
 * so a worker that dies takes only its own sessions with it, and connections not
 * yet accepted wait for the others. The supervisor restarts a dead worker, serves
 * the admin port as one view of all workers (/metrics summed or, for what every
 * worker decides alike, the largest; /routes and /readyz merged), and on SIGTERM
 * lets every worker drain before it exits.
 *
 * The supervisor loads neither etcd nor the proxy: main.ts imports this module
 * alone in the supervisor process.
 */
import cluster, { type Worker } from "node:cluster";
import { AggregatorRegistry, Counter, Gauge, type Registry } from "prom-client";
import { AdminServer, createRegistry, type Readiness } from "../shared/admin.js";
import type { Logger } from "../shared/logger.js";
import { type Decision, mergeDecisions } from "./decisions.js";
import { isAnswer, type Query, type ToWorker, type WorkerMetrics } from "./ipc.js";
import type { RouterConfig } from "./options.js";
import { statusRoutes } from "./status-page.js";

/** A worker that lived this long has its restart backoff reset. */
const STABLE_MS = 30_000;
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5_000;
/** How long the admin port waits for a worker's answer. */
const QUERY_TIMEOUT_MS = 2_000;

interface Slot {
  readonly index: number;
  worker: Worker | null;
  startedAt: number;
  failures: number;
  timer: NodeJS.Timeout | null;
}

interface RouteEntry {
  scope?: string;
  primary?: { action?: string; target?: string | null };
  replicas?: { eligible?: { name?: string }[] };
  held?: { primary?: number; replica?: number };
  clients?: { primary?: number; replica?: number };
  decisions?: Decision[];
  [k: string]: unknown;
}

/** V8's young-generation semi-space of each worker, MB (see start()). */
const WORKER_SEMI_SPACE_MB = 2;

export class RouterSupervisor {
  readonly registry: Registry;
  private readonly slots: Slot[];
  private readonly admin: AdminServer;
  private readonly restarts: Counter<"reason">;
  private readonly live: Gauge;
  private stopping = false;
  private queryId = 0;
  private readonly pending = new Map<number, (body: unknown) => void>();

  constructor(
    private readonly config: RouterConfig,
    private readonly log: Logger,
  ) {
    this.registry = createRegistry("router_supervisor");
    this.restarts = new Counter({
      name: "router_worker_restarts_total",
      help: "Router workers restarted by the supervisor after they died, by how they ended",
      labelNames: ["reason"],
      registers: [this.registry],
    });
    for (const reason of ["signal", "exit"]) this.restarts.inc({ reason }, 0);
    this.live = new Gauge({
      name: "router_workers",
      help: "Router worker processes running now",
      registers: [this.registry],
    });
    new Gauge({
      name: "router_workers_configured",
      help: "Router worker processes the supervisor keeps running (--workers)",
      registers: [this.registry],
    }).set(config.workers);
    this.slots = Array.from({ length: config.workers }, (_, index) => ({
      index,
      worker: null,
      startedAt: 0,
      failures: 0,
      timer: null,
    }));
    const status = statusRoutes(() => this.routes());
    this.admin = new AdminServer({
      listen: config.adminListen,
      registry: this.registry,
      metrics: () => this.metrics(),
      readiness: () => this.readiness(),
      routes: { "/routes": () => this.routes(), ...status.json },
      pages: status.pages,
      log,
      reusePort: true,
    });
  }

  async start(): Promise<void> {
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    // A worker's young generation capped at 2 MB (V8's default grows it to 16 MB per space):
    // with thousands of idle sessions per worker this keeps each worker ~20–30 MB smaller
    // (bench part 6) at no measured cost to the data path (part 1).
    if (!process.execArgv.some((a) => a.startsWith("--max-semi-space-size"))) {
      cluster.setupPrimary({
        execArgv: [...process.execArgv, `--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`],
      });
    }
    cluster.on("message", (_w, m: unknown) => {
      if (!isAnswer(m)) return;
      this.pending.get(m.id)?.(m.body);
    });
    for (const slot of this.slots) this.fork(slot);
    await this.admin.start();
    this.log.info({ workers: this.config.workers, pid: process.pid }, "router supervisor started");
  }

  private fork(slot: Slot): void {
    slot.timer = null;
    if (this.stopping) return;
    const worker = cluster.fork({ ROUTER_WORKER_INDEX: String(slot.index) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    this.live.set(this.slots.filter((s) => s.worker !== null).length);
    worker.once("exit", (code, signal) => this.exited(slot, worker, code, signal));
  }

  private exited(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    if (slot.worker !== worker) return;
    slot.worker = null;
    this.live.set(this.slots.filter((s) => s.worker !== null).length);
    if (this.stopping) return;
    const lived = Date.now() - slot.startedAt;
    slot.failures = lived >= STABLE_MS ? 1 : slot.failures + 1;
    const delay = Math.min(RESTART_MAX_MS, RESTART_MIN_MS * 2 ** (slot.failures - 1));
    this.restarts.inc({ reason: signal ? "signal" : "exit" });
    this.log.error(
      { worker: slot.index, pid: worker.process.pid, code, signal, livedMs: lived, restartInMs: delay },
      "router worker died; restarting it (its own sessions ended, the other workers keep serving)",
    );
    slot.timer = setTimeout(() => this.fork(slot), delay);
  }

  /** Asks every live worker; resolves with the answers that came in time. */
  private async ask(what: Query): Promise<{ index: number; pid: number | undefined; body: unknown }[]> {
    const asks = this.slots.flatMap((slot) => {
      const w = slot.worker;
      if (w === null || !w.isConnected()) return [];
      const id = ++this.queryId;
      return [
        new Promise<{ index: number; pid: number | undefined; body: unknown } | null>((resolve) => {
          const timer = setTimeout(() => {
            this.pending.delete(id);
            resolve(null);
          }, QUERY_TIMEOUT_MS);
          this.pending.set(id, (body) => {
            clearTimeout(timer);
            this.pending.delete(id);
            resolve(body === null ? null : { index: slot.index, pid: w.process.pid, body });
          });
          try {
            w.send({ t: "pgha:query", id, what } satisfies ToWorker);
          } catch {
            clearTimeout(timer);
            this.pending.delete(id);
            resolve(null);
          }
        }),
      ];
    });
    return (await Promise.all(asks)).filter((a) => a !== null);
  }

  private async metrics(): Promise<string> {
    const answers = await this.ask("metrics");
    const all = [...answers.map((a) => a.body as WorkerMetrics), await this.registry.getMetricsAsJSON()];
    return AggregatorRegistry.aggregate(all as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics();
  }

  private async readiness(): Promise<Readiness> {
    const answers = await this.ask("readiness");
    const workers = answers.map((a) => ({ worker: a.index, pid: a.pid, ...(a.body as Readiness) }));
    // New connections go to whichever worker accepts first: routable as soon as one worker is.
    const ready = !this.stopping && workers.some((w) => w.ready);
    const first = workers.find((w) => w.ready) ?? workers[0];
    return {
      ready,
      details: {
        ...(first?.details ?? {}),
        workers: workers.map((w) => ({ worker: w.worker, pid: w.pid, ready: w.ready })),
      },
    };
  }

  /**
   * One view: the first worker's routes, with held clients and sessions summed over all workers,
   * and the first worker's last decisions with the clients every worker held during each. Each
   * worker decides for itself (its own watch and checks), so `workers` also says where each
   * one's ports route now: during a change they may differ for a moment.
   */
  private async routes(): Promise<unknown> {
    const answers = await this.ask("routes");
    const views = answers.map((a) => ({ ...a, view: a.body as { routes?: RouteEntry[]; clients?: number } }));
    const base = views[0]?.view ?? { routes: [] };
    const routes = (base.routes ?? []).map((r) => {
      const same = views
        .map((v) => v.view.routes?.find((x) => x.scope === r.scope))
        .filter((x) => x !== undefined);
      const sum = (pick: (x: RouteEntry) => number | undefined) =>
        same.reduce((n, x) => n + (pick(x) ?? 0), 0);
      return {
        ...r,
        held: { primary: sum((x) => x.held?.primary), replica: sum((x) => x.held?.replica) },
        clients: { primary: sum((x) => x.clients?.primary), replica: sum((x) => x.clients?.replica) },
        decisions: mergeDecisions(same.map((x) => x.decisions)),
      };
    });
    return {
      ...base,
      routes,
      clients: views.reduce((n, v) => n + (v.view.clients ?? 0), 0),
      workers: views.map((v) => ({
        worker: v.index,
        pid: v.pid,
        clients: v.view.clients ?? 0,
        routes: (v.view.routes ?? []).map((r) => ({
          scope: r.scope,
          primary: { action: r.primary?.action ?? null, target: r.primary?.target ?? null },
          replicas: (r.replicas?.eligible ?? []).map((e) => e.name),
        })),
      })),
    };
  }

  /** SIGTERM: every worker drains (its own deadline), then the supervisor exits. */
  async shutdown(reason: string, deadlineMs: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info({ reason }, "router supervisor shutting down: workers drain");
    const exits: Promise<void>[] = [];
    for (const slot of this.slots) {
      if (slot.timer) clearTimeout(slot.timer);
      const w = slot.worker;
      if (w === null) continue;
      exits.push(new Promise((resolve) => w.once("exit", () => resolve())));
      try {
        w.send({ t: "pgha:shutdown" } satisfies ToWorker);
      } catch {}
    }
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, deadlineMs + 5_000);
    });
    await Promise.race([Promise.all(exits), late]);
    clearTimeout(timer);
    for (const slot of this.slots) slot.worker?.process.kill("SIGKILL");
    await this.admin.close();
  }
}
