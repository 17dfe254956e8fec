/**
 * The router as several processes: a supervisor and `--workers` workers (Node's
 * cluster module). The supervisor is the one control plane: one etcd watch and one
 * set of REST checks per route, and the decisions (a Router in the control role,
 * without listeners). After each evaluation it sends the route's plan (etcd
 * snapshot, REST results, decisions) to every worker; a worker applies it (holds,
 * fences, balances) and never loads etcd3 or undici. A worker that starts asks for
 * the current plans (`hello`) and opens its listeners only once it has them.
 *
 * The listening sockets are created once by the supervisor and shared (SCHED_NONE):
 * each worker accepts on the same socket, so a worker that dies takes only its own
 * sessions with it, and connections not yet accepted wait for the others. Node closes
 * a shared socket when its last worker is gone: with one worker, its crash refuses new
 * connections until the restarted one listens, hence two by default. The supervisor
 * restarts a dead worker, serves the admin port as one view of all workers (/metrics
 * summed or, for what every worker decides alike, the largest; /routes and /readyz
 * merged), and on SIGTERM lets every worker drain before it exits. Workers exit when
 * the supervisor is gone (ipc.ts: nobody would follow a failover any more).
 */
import cluster, { type Worker } from "node:cluster";
import { readFileSync } from "node:fs";
import { AggregatorRegistry, Counter, Gauge, Registry } from "prom-client";
import { AdminServer, createRegistry, type Readiness } from "../shared/admin.js";
import type { Logger } from "../shared/logger.js";
import { type Decision, mergeDecisions } from "./decisions.js";
import {
  isAnswer,
  isHello,
  type Query,
  type RouteMessage,
  type ToWorker,
  type WorkerMetrics,
} from "./ipc.js";
import type { RouterConfig, RouteSpec } from "./options.js";
import { promMetrics } from "./prom-metrics.js";
import type { RoutePlan } from "./route.js";
import { Router } from "./router.js";
import { statusRoutes } from "./status-page.js";
import { isLogMessage } from "./worker-log.js";

/** A worker that lived this long has its restart backoff reset. */
const STABLE_MS = 30_000;
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 5_000;
/** How long the admin port waits for a worker's answer. */
const QUERY_TIMEOUT_MS = 2_000;

interface Slot {
  readonly index: number;
  worker: Worker | null;
  /** The worker said hello: it takes plans (one sent before would be lost). */
  hello: boolean;
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

/** Metrics only the control plane has (the REST checks run only in the supervisor). */
const CONTROL_METRICS = new Set(["router_rest_check_seconds", "router_rest_checks_total"]);

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
  /** The control plane: routes and decisions, no listeners. */
  private readonly control: Router;
  private readonly controlRegistry = new Registry();
  private controlStarted = false;
  /** Each route's last plan as sent, and what it was sent for (to skip repeats). */
  private readonly plans = new Map<string, { msg: RouteMessage; key: string; revision: number }>();

  constructor(
    private readonly config: RouterConfig,
    private readonly log: Logger,
  ) {
    // The supervisor is the router's main process (PID 1 in its container): Node's process
    // metrics as router_process_*. Workers keep none (lite-metrics.ts); their memory is below.
    this.registry = createRegistry("router");
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
    const slots = () => this.slots;
    new Gauge({
      name: "router_worker_resident_memory_bytes",
      help: "Resident memory of each worker process (the supervisor's is router_process_resident_memory_bytes)",
      labelNames: ["worker"],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const slot of slots()) {
          const bytes = residentBytes(slot.worker?.process.pid);
          if (bytes !== null) this.set({ worker: String(slot.index) }, bytes);
        }
      },
    });
    new Gauge({
      name: "router_workers_configured",
      help: "Router worker processes the supervisor keeps running (--workers)",
      registers: [this.registry],
    }).set(config.workers);
    this.slots = Array.from({ length: config.workers }, (_, index) => ({
      index,
      worker: null,
      hello: false,
      startedAt: 0,
      failures: 0,
      timer: null,
    }));
    this.control = new Router(config, log.child({ control: true }), promMetrics(this.controlRegistry), {
      admin: false,
      control: { plan: (spec, plan) => this.plan(spec, plan), closed: (scope) => this.unroute(scope) },
    });
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
    const semi = process.execArgv.some((a) => a.startsWith("--max-semi-space-size"))
      ? []
      : [`--max-semi-space-size=${WORKER_SEMI_SPACE_MB}`];
    // "advanced": the plans carry Maps (the etcd snapshot, the REST results).
    cluster.setupPrimary({ execArgv: [...process.execArgv, ...semi], serialization: "advanced" });
    cluster.on("message", (w, m: unknown) => {
      // A worker's log line, written as the supervisor's own (worker-log.ts).
      if (isLogMessage(m)) {
        this.log[m.level](m.obj, m.msg);
        return;
      }
      if (isHello(m)) {
        const slot = this.slots.find((s) => s.worker === w);
        if (slot === undefined) return;
        slot.hello = true;
        for (const p of this.plans.values()) this.sendTo(w, p.msg);
        return;
      }
      if (!isAnswer(m)) return;
      this.pending.get(m.id)?.(m.body);
    });
    // Workers start while the control plane loads etcd3: each gets the plans once it says hello.
    for (const slot of this.slots) this.fork(slot);
    await this.admin.start();
    await this.control.start();
    this.controlStarted = true;
    this.log.info({ workers: this.config.workers, pid: process.pid }, "router supervisor started");
  }

  /** After each evaluation of a route: its plan to every worker, unless nothing changed. */
  private plan(spec: RouteSpec, plan: RoutePlan): void {
    const key = JSON.stringify([spec, plan.state, plan.snapshot.revision, plan.decided, [...plan.health]]);
    const last = this.plans.get(spec.scope);
    if (last?.key === key) return;
    const msg: RouteMessage = { t: "pgha:route", spec, plan };
    this.plans.set(spec.scope, { msg, key, revision: plan.snapshot.revision });
    for (const slot of this.slots) if (slot.worker !== null && slot.hello) this.sendTo(slot.worker, msg);
  }

  private unroute(scope: string): void {
    if (!this.plans.delete(scope)) return;
    for (const slot of this.slots)
      if (slot.worker !== null) this.sendTo(slot.worker, { t: "pgha:unroute", scope });
  }

  private sendTo(w: Worker, msg: ToWorker): void {
    if (!w.isConnected()) return;
    try {
      w.send(msg);
    } catch (err) {
      this.log.warn({ err, pid: w.process.pid }, "cannot send to a router worker");
    }
  }

  private fork(slot: Slot): void {
    slot.timer = null;
    if (this.stopping) return;
    const worker = cluster.fork({ ROUTER_WORKER_INDEX: String(slot.index) });
    slot.worker = worker;
    slot.hello = false;
    slot.startedAt = Date.now();
    this.live.set(this.slots.filter((s) => s.worker !== null).length);
    worker.once("exit", (code, signal) => this.exited(slot, worker, code, signal));
    // A message sent as a worker dies fails on its closed channel (EPIPE) and is reported as
    // the worker's 'error': unheard, it would end the supervisor, and every worker with it.
    worker.on("error", (err: Error) =>
      this.log.warn({ err, worker: slot.index, pid: worker.process.pid }, "cannot send to a router worker"),
    );
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
    const control = (await this.controlRegistry.getMetricsAsJSON()).filter((m) =>
      CONTROL_METRICS.has(m.name),
    );
    const all = [
      ...answers.map((a) => (a.body as WorkerMetrics).filter((m) => !CONTROL_METRICS.has(m.name))),
      control,
    ];
    const merged = AggregatorRegistry.aggregate(all as Parameters<typeof AggregatorRegistry.aggregate>[0]);
    // The supervisor's own series as they are: merging would drop those marked "omit"
    // (router_process_start_time_seconds, which the restart alert reads).
    const workers = await merged.metrics();
    return `${workers}${workers.endsWith("\n") ? "" : "\n"}${await this.registry.metrics()}`;
  }

  private async readiness(): Promise<Readiness> {
    const answers = await this.ask("readiness");
    // A worker counts once it has every route of the control plane open (listening): one that
    // has just started, with no plan yet, has no routes and nothing to be unready about.
    const scopes = this.controlStarted ? this.control.scopes : null;
    const workers = answers.map((a) => {
      const r = a.body as Readiness;
      const open = Object.keys((r.details?.["routes"] as Record<string, unknown> | undefined) ?? {});
      const complete = scopes?.every((s) => open.includes(s)) === true;
      return { worker: a.index, pid: a.pid, ...r, ready: r.ready && complete };
    });
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
   * and the first worker's last decisions with the clients every worker held during each. Every
   * worker applies the supervisor's plans; `workers` says where each one's ports route now (a
   * worker that has just started, or missed a plan, shows it here).
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
    await this.control.close();
  }
}

/** VmRSS of a process in bytes, from /proc (null when it cannot be read). */
function residentBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb === undefined ? null : Number(kb) * 1024;
  } catch {
    return null;
  }
}
