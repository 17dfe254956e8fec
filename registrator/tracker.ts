/**
 * Follows every container: Docker events and full syncs both land here as "look
 * at container X again". Work on one container is serialised and coalesced (a
 * burst of events gives at most one inspect in flight and one queued after it),
 * so its events apply in order and the last inspect always reflects the last
 * event. Each result goes through the pure `decideContainer`, its services to the
 * publisher, and its decision to the log when it changes.
 */
import type { Logger } from "../shared/logger.js";
import { Backoff } from "../shared/time.js";
import type { ContainerEvent } from "./docker-events.js";
import {
  type ContainerFacts,
  type ContainerView,
  decideContainer,
  type LifecycleOptions,
  NO_FACTS,
  nextFacts,
  type Observation,
} from "./lifecycle.js";
import type { RegistratorMetrics } from "./metrics.js";
import { type Service, type Skip, WARN_CODES } from "./service-model.js";

/** Inspections in flight at once during a full sync. */
export const INSPECT_CONCURRENCY = 8;
export const INSPECT_RETRY_MAX_MS = 5000;

export interface TrackerDeps {
  readonly inspect: (id: string) => Promise<Observation>;
  readonly listRunning: () => Promise<string[]>;
  readonly publish: (containerId: string, services: readonly Service[]) => void;
  readonly isConnected: () => boolean;
  /** Every look at a container: what Docker said, the decision, and the facts its events gave. */
  readonly observed?: (
    id: string,
    obs: Observation,
    view: ContainerView | null,
    facts: ContainerFacts,
  ) => void;
}

interface Work {
  dirty: boolean;
  done: Promise<void>;
}

interface Retry {
  timer: NodeJS.Timeout;
  backoff: Backoff;
}

class Semaphore {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    this.active++;
    try {
      return await fn();
    } finally {
      this.active--;
      this.waiting.shift()?.();
    }
  }
}

function describe(v: ContainerView | null | undefined): string {
  if (!v) return "gone";
  return `${v.state}|${v.reason}|${v.services.map((s) => `${s.key}=${s.value}`).join(",")}`;
}

function skipKey(s: Skip): string {
  return `${s.port ?? ""}|${s.code}|${s.reason}`;
}

export class ContainerTracker {
  private readonly views = new Map<string, ContainerView>();
  private readonly facts = new Map<string, ContainerFacts & { lastAction?: string }>();
  private readonly work = new Map<string, Work>();
  private readonly retries = new Map<string, Retry>();
  private readonly inspects = new Semaphore(INSPECT_CONCURRENCY);
  private stopped = false;

  constructor(
    private readonly deps: TrackerDeps,
    private readonly opts: LifecycleOptions,
    private readonly log: Logger,
    private readonly metrics: RegistratorMetrics,
  ) {}

  /** The current view of every container that has one. */
  snapshot(): ContainerView[] {
    return [...this.views.values()];
  }

  onEvent(ev: ContainerEvent): void {
    if (this.stopped) return;
    this.metrics.dockerEvents.inc({ action: ev.action });
    const prev = this.facts.get(ev.id) ?? NO_FACTS;
    this.facts.set(ev.id, { ...nextFacts(prev, ev), lastAction: ev.action });
    void this.schedule(ev.id);
  }

  /** Lists the running containers and looks at them and at every container known so far. */
  async syncAll(): Promise<void> {
    const running = await this.deps.listRunning();
    const ids = new Set([...running, ...this.views.keys()]);
    await Promise.all([...ids].map((id) => this.schedule(id)));
  }

  stop(): void {
    this.stopped = true;
    for (const r of this.retries.values()) clearTimeout(r.timer);
    this.retries.clear();
  }

  /** Resolves once the container has been looked at after this call. */
  schedule(id: string): Promise<void> {
    const existing = this.work.get(id);
    if (existing) {
      existing.dirty = true;
      return existing.done;
    }
    const w: Work = { dirty: true, done: Promise.resolve() };
    this.work.set(id, w);
    w.done = (async () => {
      try {
        while (w.dirty && !this.stopped) {
          w.dirty = false;
          await this.process(id);
        }
      } finally {
        this.work.delete(id);
        // Events queued behind a "gone" still need its facts (a destroy is not a vanish).
        if (!this.views.has(id)) this.facts.delete(id);
      }
    })();
    return w.done;
  }

  private async process(id: string): Promise<void> {
    // The facts this look answers: the events before it began. One that comes during the
    // inspect (the `start` of a restart policy right after a `die`) gets a look of its own.
    const factsBefore = this.facts.get(id) ?? NO_FACTS;
    let obs: Observation;
    try {
      obs = await this.inspects.run(() => this.deps.inspect(id));
    } catch (err) {
      this.metrics.inspectErrors.inc();
      this.log.warn({ err, container: id.slice(0, 12) }, "could not inspect container; will look again");
      this.retryLater(id);
      return;
    }
    this.clearRetry(id);
    if (this.stopped) return;
    const prev = this.views.get(id);
    const facts = this.facts.get(id) ?? NO_FACTS;
    if (obs.kind === "gone" && !prev && this.facts.get(id)?.lastAction !== "destroy") {
      this.metrics.skipped.inc({ reason: "vanished" });
      this.log.warn(
        { container: id.slice(0, 12) },
        "container vanished before it could be inspected; skipped",
      );
    }
    const next = decideContainer(id, prev, obs, facts, this.opts);
    if (next) this.views.set(id, next);
    else this.views.delete(id);
    this.deps.publish(id, next?.services ?? []);
    this.report(id, prev, next);
    this.deps.observed?.(id, obs, next, factsBefore);
  }

  private report(id: string, prev: ContainerView | undefined, next: ContainerView | null): void {
    const log = this.log.child({ container: next?.name ?? prev?.name ?? id.slice(0, 12) });
    if (describe(prev) !== describe(next)) {
      const had = (prev?.services.length ?? 0) > 0;
      const action =
        next === null || next.state === "none"
          ? had
            ? "deregister"
            : "none"
          : next.state === "retained"
            ? "keep"
            : "register";
      const reason = next?.reason ?? "container removed";
      const services = next?.services.map((s) => `${s.key}=${s.value}`) ?? [];
      if (action === "none") log.debug({ action, reason }, "container decision");
      else log.info({ action, reason, services }, "container decision");
    }
    const before = new Set((prev?.skipped ?? []).map(skipKey));
    for (const s of next?.skipped ?? []) {
      if (before.has(skipKey(s))) continue;
      this.metrics.skipped.inc({ reason: s.code });
      if (WARN_CODES.has(s.code))
        log.warn({ port: s.port, skip: s.code, reason: s.reason }, "not registered");
      else log.debug({ port: s.port, skip: s.code, reason: s.reason }, "not registered");
    }
  }

  private retryLater(id: string): void {
    if (this.stopped) return;
    const r = this.retries.get(id) ?? {
      timer: undefined as unknown as NodeJS.Timeout,
      backoff: new Backoff(250, INSPECT_RETRY_MAX_MS),
    };
    clearTimeout(r.timer);
    r.timer = setTimeout(() => {
      // A reconnect's full sync covers it when Docker is away.
      if (this.deps.isConnected()) void this.schedule(id);
    }, r.backoff.next());
    this.retries.set(id, r);
  }

  private clearRetry(id: string): void {
    const r = this.retries.get(id);
    if (r) {
      clearTimeout(r.timer);
      this.retries.delete(id);
    }
  }
}
