/**
 * A stopping node's sequence, within the stop's grace period (Docker's
 * `docker stop -t`, compose's `stop_grace_period`; STOP_GRACE_PERIOD tells it
 * to the agent):
 *
 * 1. A replica stops at once.
 * 2. A leader writes the stop fence (`stopping`): from now on no replica may
 *    promote unless the fence lets it (agent/fence.ts).
 * 3. It asks agent/stop-plan.ts every half second: a replica streaming from
 *    it (in synchronous mode, the synchronous standby) is a candidate, and it
 *    hands over to it (fence `handover`, then Patroni's switchover). While no
 *    replica is ready it waits, until only the time a switchover and a
 *    shutdown need is left of the grace period.
 * 4. Otherwise it stops behind the fence: Patroni shuts PostgreSQL down
 *    cleanly, and the fence becomes `stopped` at the shutdown checkpoint. A
 *    replica that has everything up to there may then lead; one that lacks
 *    any of it may not, and the cluster waits for this node to return.
 *
 * If Docker kills the container mid-way, the fence stays `stopping`: nobody
 * but this node leads until it returns (or an operator deletes the key).
 */
import type { Logger } from "../shared/logger.js";
import { sleep as sleepMs } from "../shared/time.js";
import type { Fence } from "./fence.js";
import { formatLsn, parseControlData } from "./fence.js";
import type { FenceStore } from "./fence-store.js";
import type { PatroniRest } from "./rest.js";
import { planStop, type StopPlan, synchronousModeOf } from "./stop-plan.js";

/** Kept free at the end of the grace period for Patroni's clean shutdown. */
export const SHUTDOWN_RESERVE_MS = 10_000;
/** A switchover is not started with less time than this left. */
export const MIN_SWITCHOVER_MS = 5_000;
const POLL_MS = 500;
/**
 * How long the handover fence stands before the switchover is asked for: routers see it in
 * their watch and hold new clients, and those already in start-up on this leader finish.
 */
const HANDOVER_NOTICE_MS = 300;

export interface StopOptions {
  readonly self: string;
  readonly switchoverOnStop: boolean;
  /** How long Docker gives the container to stop. */
  readonly gracePeriodMs: number;
  /** The longest a switchover may take. */
  readonly switchoverTimeoutMs: number;
}

export interface StopDeps {
  readonly rest: Pick<PatroniRest, "cluster" | "patroni" | "dynamicConfig" | "switchover" | "status">;
  /** null when the agent has no etcd client (it always has one in the image). */
  readonly fence: Pick<FenceStore, "leader" | "write" | "switchoverAnnounced"> | null;
  /** Sends Patroni SIGTERM and resolves with its exit code. */
  readonly terminatePatroni: () => Promise<number>;
  /** `pg_controldata` of the data directory; null when it cannot run. */
  readonly controlData: () => Promise<string | null>;
  readonly log: Logger;
  readonly now?: () => number;
  readonly sleep?: (ms: number) => Promise<void>;
}

export type StopOutcome =
  | { readonly kind: "replica"; readonly reason: string }
  | { readonly kind: "handed-over"; readonly candidate: string; readonly ms: number }
  | { readonly kind: "fenced"; readonly reason: string; readonly lsn: number | null };

export class StopSequence {
  private hurried = false;

  constructor(
    private readonly o: StopOptions,
    private readonly d: StopDeps,
  ) {}

  /** A second stop signal: give up waiting and stop behind the fence now. */
  hurry(): void {
    this.hurried = true;
  }

  async run(startedAt: number): Promise<StopOutcome> {
    const { log, rest } = this.d;
    const now = this.d.now ?? Date.now;
    const sleep = this.sleep;
    const graceEnd = startedAt + this.o.gracePeriodMs;
    const waitUntil = graceEnd - SHUTDOWN_RESERVE_MS - Math.min(this.o.switchoverTimeoutMs, 20_000);

    let isLeader: boolean | null = null;
    try {
      const leader = this.d.fence ? await this.d.fence.leader() : null;
      isLeader = this.d.fence ? leader === this.o.self : null;
    } catch (err) {
      log.warn({ err }, "etcd did not say who leads; asking Patroni");
    }

    let fenced = false;
    let last: StopPlan | null = null;
    for (;;) {
      const [cluster, status, config] = await Promise.all([
        rest.cluster(),
        rest.patroni(),
        rest.dynamicConfig(),
      ]);
      const plan = planStop(
        this.o.self,
        cluster,
        status,
        { enabled: this.o.switchoverOnStop, synchronousMode: synchronousModeOf(config) },
        isLeader,
      );
      if (last === null || last.action !== plan.action || last.reason !== plan.reason) {
        log.info({ action: plan.action, reason: plan.reason }, "stop plan");
      }
      last = plan;
      if (plan.action === "stop" && !plan.leader) {
        await this.d.terminatePatroni();
        return { kind: "replica", reason: plan.reason };
      }
      if (!fenced) {
        fenced = await this.writeFence({
          state: "stopping",
          member: this.o.self,
          since: new Date(now()).toISOString(),
        });
      }
      if (plan.action === "switchover") {
        const left = graceEnd - now() - SHUTDOWN_RESERVE_MS;
        if (left < MIN_SWITCHOVER_MS) {
          return this.stopFenced(
            `${plan.candidate} is ready, but only ${Math.max(0, Math.round(left / 1000))} s of the grace period are left for a switchover`,
          );
        }
        const handedOver = await this.handOver(
          plan.candidate,
          Math.min(this.o.switchoverTimeoutMs, left),
          graceEnd - SHUTDOWN_RESERVE_MS,
        );
        if (handedOver !== null) return handedOver;
        return this.stopFenced(`the switchover to ${plan.candidate} did not happen`);
      }
      if (plan.action === "stop") return this.stopFenced(plan.reason);
      if (this.hurried) return this.stopFenced(`a second stop signal came while ${plan.reason}`);
      if (now() >= waitUntil) {
        return this.stopFenced(`the grace period ran out while waiting: ${plan.reason}`);
      }
      await sleep(POLL_MS);
    }
  }

  private get sleep(): (ms: number) => Promise<void> {
    return this.d.sleep ?? sleepMs;
  }

  /**
   * Hands over to `candidate`: the handover fence, then Patroni's switchover. Patroni answers
   * the request once the new leader holds the lock; if that answer is late or a refusal, the
   * switchover may still be under way (Patroni demotes this node, then the candidate takes the
   * lock), and stopping Patroni now would cancel its demotion half-way. So the outcome is
   * then watched, up to `deadline`: done when another member holds the leader key, given up
   * when nothing is announced any more and this node still runs as the primary.
   */
  private async handOver(
    candidate: string,
    timeoutMs: number,
    deadline: number,
  ): Promise<StopOutcome | null> {
    const { log, rest } = this.d;
    const now = this.d.now ?? Date.now;
    await this.writeFence({
      state: "handover",
      member: this.o.self,
      candidate,
      since: new Date(now()).toISOString(),
    });
    await this.sleep(HANDOVER_NOTICE_MS);
    log.info({ candidate }, "switching over before stopping");
    const t0 = now();
    try {
      const r = await rest.switchover(this.o.self, candidate, timeoutMs);
      if (r.status === 200) {
        const ms = now() - t0;
        log.info({ candidate, ms, patroni: r.text }, "switchover done");
        await this.d.terminatePatroni();
        return { kind: "handed-over", candidate, ms };
      }
      log.warn({ candidate, status: r.status, patroni: r.text, ms: now() - t0 }, "switchover refused");
    } catch (err) {
      log.warn({ err, candidate, ms: now() - t0 }, "switchover did not answer in time");
    }
    const leader = await this.followSwitchover(deadline);
    if (leader !== null) {
      const ms = now() - t0;
      // The same message as an answered switchover; `seenIn` tells the two apart.
      log.info({ candidate, leader, ms, seenIn: "etcd" }, "switchover done");
      await this.d.terminatePatroni();
      return { kind: "handed-over", candidate: leader, ms };
    }
    await this.writeFence({ state: "stopping", member: this.o.self, since: new Date(now()).toISOString() });
    return null;
  }

  /**
   * After a late or refused answer: the member that took over, or null once the switchover
   * is clearly not happening (nothing announced, this node a running primary holding the
   * key) or `deadline` has passed.
   */
  private async followSwitchover(deadline: number): Promise<string | null> {
    const { log, rest } = this.d;
    const fence = this.d.fence;
    const now = this.d.now ?? Date.now;
    if (fence === null) return null;
    let waiting: string | null = null;
    for (;;) {
      const [leader, announced, status] = await Promise.all([
        fence.leader().catch(() => undefined),
        fence.switchoverAnnounced().catch(() => undefined),
        rest.status(),
      ]);
      if (typeof leader === "string" && leader !== this.o.self) return leader;
      const primaryStill =
        leader === this.o.self &&
        announced === false &&
        status?.role === "primary" &&
        status.state === "running";
      if (primaryStill) {
        log.warn(
          "the switchover is not under way: nothing announced, and this node still leads as a running primary",
        );
        return null;
      }
      const why =
        announced === true
          ? "the switchover is still announced"
          : leader === null
            ? "nobody holds the leader key yet"
            : `this node is ${status?.role ?? "unknown"}, ${status?.state ?? "not answering"}`;
      if (why !== waiting) {
        log.info({ why }, "waiting for the switchover to finish");
        waiting = why;
      }
      if (now() >= deadline) {
        log.warn({ why }, "the switchover did not finish within the grace period");
        return null;
      }
      await this.sleep(POLL_MS);
    }
  }

  /** Patroni shuts PostgreSQL down; the fence then names the shutdown checkpoint. */
  private async stopFenced(reason: string): Promise<StopOutcome> {
    const { log } = this.d;
    const now = this.d.now ?? Date.now;
    log.warn(
      { reason },
      `stopping without a handover: no replica that lacks any acknowledged write may take over; until one has every write, the cluster waits for ${this.o.self} to return`,
    );
    const code = await this.d.terminatePatroni();
    const ctl = parseControlData((await this.d.controlData()) ?? "");
    if (code === 0 && ctl.state === "shut down" && ctl.checkpointLsn !== null) {
      const ok = await this.writeFence({
        state: "stopped",
        member: this.o.self,
        lsn: ctl.checkpointLsn,
        since: new Date(now()).toISOString(),
      });
      if (ok) {
        log.warn(
          { lsn: formatLsn(ctl.checkpointLsn) },
          `stopped cleanly behind the stop fence: a replica may lead once it has WAL up to ${formatLsn(ctl.checkpointLsn)}; otherwise the cluster waits for ${this.o.self}`,
        );
      }
      return { kind: "fenced", reason, lsn: ctl.checkpointLsn };
    }
    log.warn(
      { patroniExit: code, clusterState: ctl.state },
      `PostgreSQL did not shut down cleanly: the stop fence stays; only ${this.o.self} may lead until an operator deletes it`,
    );
    return { kind: "fenced", reason, lsn: null };
  }

  private async writeFence(f: Fence): Promise<boolean> {
    if (!this.d.fence) return false;
    try {
      await this.d.fence.write(f);
      return true;
    } catch (err) {
      this.d.log.error({ err, state: f.state }, "could not write the stop fence");
      return false;
    }
  }
}
