/**
 * What one container should have registered, given what Docker says about it
 * now and what it had before. Pure: the tracker feeds it inspect documents and
 * the facts it collected from events, and publishes the services it returns.
 *
 * - running (not paused, not restarting): its services, unless -require-healthy
 *   and its HEALTHCHECK does not report healthy;
 * - paused, stopped, restarting: nothing, except with `-deregister on-success`
 *   a container that failed (non-zero exit, not stopped or killed by a signal)
 *   keeps what it had;
 * - gone: forgotten.
 */
import { fields } from "../shared/json.js";
import { type ContainerEvent, isTerminatingSignal } from "./docker-events.js";
import type { DeregisterMode } from "./options.js";
import { type ModelOptions, type Related, type Service, type Skip, servicesFor } from "./service-model.js";

export type Observation =
  | { readonly kind: "found"; readonly inspect: unknown; readonly related?: Related }
  | { readonly kind: "gone" };

export interface ContainerFacts {
  /** Someone stopped or killed the container (stop event, or kill with a terminating signal) since it last started. */
  readonly stopRequested: boolean;
  /**
   * A planned stop since it last started: a `stop` event, or a `kill` with a terminating
   * signal other than SIGKILL (`docker stop` and `docker restart` send SIGTERM first), which
   * the agent answers by handing over before it exits.
   */
  readonly stopSignalled?: boolean;
  /** A `kill` with SIGKILL since it last started (`docker kill`, or `docker stop` running out of time). */
  readonly sigkilled?: boolean;
  /** An `oom` event since it last started (the kernel killed a process of the container for memory). */
  readonly oom?: boolean;
  /** A `die`, `oom` or `kill` event since it last started: the next look may find it dead. */
  readonly deathEvent?: boolean;
  /** A `die` event since it last started: its init process exited, and with it every process of the container. */
  readonly died?: boolean;
}

export const NO_FACTS: ContainerFacts = Object.freeze({ stopRequested: false });

const SIGKILL_NAMES = new Set(["9", "SIGKILL", "KILL"]);

/** The facts after one more event of the container. Pure. */
export function nextFacts(prev: ContainerFacts, ev: ContainerEvent): ContainerFacts {
  if (ev.action === "start") return NO_FACTS;
  const terminating = ev.action === "kill" && isTerminatingSignal(ev.signal);
  const sigkill = terminating && ev.signal !== undefined && SIGKILL_NAMES.has(ev.signal.toUpperCase());
  return Object.freeze({
    stopRequested: prev.stopRequested || ev.action === "stop" || terminating,
    // A kill without a signal attribute counts as a planned stop: never release on a guess.
    stopSignalled: (prev.stopSignalled ?? false) || ev.action === "stop" || (terminating && !sigkill),
    sigkilled: (prev.sigkilled ?? false) || sigkill,
    oom: (prev.oom ?? false) || ev.action === "oom",
    deathEvent:
      (prev.deathEvent ?? false) || ev.action === "die" || ev.action === "oom" || ev.action === "kill",
    died: (prev.died ?? false) || ev.action === "die",
  });
}

export type RegistrationState = "registered" | "retained" | "none";

export interface ContainerView {
  readonly id: string;
  readonly name: string;
  readonly state: RegistrationState;
  readonly reason: string;
  readonly services: readonly Service[];
  readonly skipped: readonly Skip[];
}

export interface LifecycleOptions extends ModelOptions {
  readonly deregister: DeregisterMode;
  readonly requireHealthy: boolean;
}

/** Exit codes above 128 mean death by signal 1..64 (137 = SIGKILL, 143 = SIGTERM). */
export function diedBySignal(exitCode: number): boolean {
  return exitCode > 128 && exitCode <= 128 + 64;
}

function view(
  id: string,
  name: string,
  state: RegistrationState,
  reason: string,
  services: readonly Service[] = [],
  skipped: readonly Skip[] = [],
): ContainerView {
  return Object.freeze({ id, name, state, reason, services, skipped });
}

/** The container's next view, or null when it is gone. Never throws. */
export function decideContainer(
  id: string,
  prev: ContainerView | undefined,
  obs: Observation,
  facts: ContainerFacts,
  opts: LifecycleOptions,
): ContainerView | null {
  if (obs.kind === "gone") return null;
  const inspect = fields(obs.inspect);
  const rawName = typeof inspect["Name"] === "string" ? inspect["Name"] : "";
  const name = rawName.replace(/^\//, "") || prev?.name || id.slice(0, 12);
  const state = fields(inspect["State"]);
  const running = state["Running"] === true;
  const paused = state["Paused"] === true;
  const restarting = state["Restarting"] === true;

  if (running && !paused && !restarting) {
    const health = state["Health"];
    if (opts.requireHealthy && health !== undefined && health !== null) {
      const status = String(fields(health)["Status"] ?? "unknown");
      if (status !== "healthy") return view(id, name, "none", `health is ${status} (-require-healthy)`);
    }
    const model = servicesFor(obs.inspect, opts, obs.related);
    return model.services.length > 0
      ? view(id, name, "registered", "running", model.services, model.skipped)
      : view(id, name, "none", "running, nothing to register", [], model.skipped);
  }
  if (paused) return view(id, name, "none", "paused");

  const exitCode = typeof state["ExitCode"] === "number" ? state["ExitCode"] : 0;
  const what = restarting ? "restarting" : `stopped (${String(state["Status"] ?? "exited")})`;
  const success = exitCode === 0 || facts.stopRequested || diedBySignal(exitCode);
  if (opts.deregister === "on-success" && !success && prev && prev.services.length > 0) {
    return view(
      id,
      name,
      "retained",
      `${what} with exit code ${exitCode}; kept registered (-deregister on-success)`,
      prev.services,
    );
  }
  return view(id, name, "none", `${what} with exit code ${exitCode}`);
}
