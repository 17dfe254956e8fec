/**
 * `-restart-joined`: the decision, pure. A container that runs in another container's network
 * namespace (`--network container:X`, compose's `network_mode: service:X`) cannot start while
 * X is not running. After a daemon restart without --live-restore (a host that rebooted or
 * crashed), Docker 20.10 starts the containers its restart policies name in no particular
 * order, tries such a container once, and leaves it exited with the error below when X was not
 * up yet: the compose stack's router, in `router-ports`' namespace, stays down. The
 * registrator, on the same host and started by the same restore, starts it again.
 *
 * Only containers Docker itself failed to start that way are started: not one a person
 * stopped, not one that exited by itself (its restart policy handles that), not one without
 * a restart policy that brings it back.
 */

/** Docker's words when the namespace's container is not running (daemon/container_operations.go). */
export const NOT_RUNNING_ERROR = "cannot join network of a non running container";

const RESTARTING_POLICIES = new Set(["always", "unless-stopped"]);

export type JoinedDecision =
  | { readonly start: true; readonly reason: "stranded"; readonly networkContainer: string }
  | {
      readonly start: false;
      readonly reason: "not-inspect" | "running" | "own-network" | "no-restart-policy" | "other-error";
    };

interface InspectShape {
  State?: { Running?: unknown; Error?: unknown };
  HostConfig?: { NetworkMode?: unknown; RestartPolicy?: { Name?: unknown } };
}

/** Whether Docker left this container (its `docker inspect`) stranded: to be started again. */
export function joinedDecision(inspect: unknown): JoinedDecision {
  if (typeof inspect !== "object" || inspect === null) return { start: false, reason: "not-inspect" };
  const i = inspect as InspectShape;
  if (i.State?.Running === true) return { start: false, reason: "running" };
  const mode = i.HostConfig?.NetworkMode;
  if (typeof mode !== "string" || !mode.startsWith("container:"))
    return { start: false, reason: "own-network" };
  const policy = i.HostConfig?.RestartPolicy?.Name;
  if (typeof policy !== "string" || !RESTARTING_POLICIES.has(policy)) {
    return { start: false, reason: "no-restart-policy" };
  }
  const error = i.State?.Error;
  if (typeof error !== "string" || !error.includes(NOT_RUNNING_ERROR))
    return { start: false, reason: "other-error" };
  return { start: true, reason: "stranded", networkContainer: mode.slice("container:".length) };
}
