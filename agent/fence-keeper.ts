/**
 * Lifts the stop fence once it has done its job: when this node holds the
 * leader key and its PostgreSQL runs as primary, whatever the fence protected
 * is either on this node or already out of reach, so the key only stands in
 * the way of the next failover. Checks every few seconds; deletes only the
 * fence it read (compare on mod_revision), so a fence written meanwhile by a
 * stopping leader stays. Stops checking once this node begins to stop. On the
 * fence's own leader, back while nobody leads, it also makes sure failsafe
 * mode lets this node race for the lock.
 */
import { Gauge, type Registry } from "prom-client";
import type { Logger } from "../shared/logger.js";
import { type PatroniStatus, runsAsPrimary } from "../shared/patroni-rest.js";
import type { FenceStore } from "./fence-store.js";

export const FENCE_CHECK_INTERVAL_MS = 2000;

export interface FenceKeeperDeps {
  readonly self: string;
  /** This node's Patroni REST address as the other members reach it (its member record's api_url). */
  readonly apiUrl: string;
  readonly fence: Pick<FenceStore, "read" | "leader" | "deleteIf" | "joinFailsafe">;
  /** This node's role and state from its Patroni; null when it does not answer. */
  readonly status: () => Promise<PatroniStatus | null>;
  readonly registry: Registry;
  readonly log: Logger;
}

export class FenceKeeper {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private running: Promise<void> = Promise.resolve();
  private readonly present: Gauge;

  constructor(private readonly d: FenceKeeperDeps) {
    this.present = new Gauge({
      name: "pgha_stop_fence",
      help: "1 while a stop fence keeps replicas that may lack acknowledged writes from promoting (as this agent last read it)",
      registers: [d.registry],
    });
  }

  start(): void {
    const tick = () => {
      if (this.stopped) return;
      this.running = this.check().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, FENCE_CHECK_INTERVAL_MS);
      });
    };
    this.timer = setTimeout(tick, FENCE_CHECK_INTERVAL_MS);
  }

  /** Stops checking and waits for a check in flight, so no delete races a fence being written. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }

  async check(): Promise<void> {
    const { fence, log, self } = this.d;
    try {
      const rec = await fence.read();
      this.present.set(rec.read.kind === "none" ? 0 : 1);
      if (rec.read.kind === "none" || rec.modRevision === null) return;
      const [leader, status] = await Promise.all([fence.leader(), this.d.status()]);
      // The fence's own leader, back while nobody leads: it must be allowed to race. A replica
      // that took the lock for a moment (and was refused by the fence) rewrote failsafe mode's
      // member list from the members it saw, without this node; failsafe mode would then bar
      // the one node that has every write.
      if (leader === null && rec.read.kind === "fence" && rec.read.fence.member === self && !this.stopped) {
        if (await fence.joinFailsafe(self, this.d.apiUrl)) {
          log.warn(
            { apiUrl: this.d.apiUrl },
            `${self} added itself to failsafe mode's member list: it holds the writes the stop fence waits for`,
          );
        }
        return;
      }
      const primary = runsAsPrimary(status);
      if (leader !== self || !primary || this.stopped) return;
      if (await fence.deleteIf(rec.modRevision)) {
        this.present.set(0);
        const was = rec.read.kind === "fence" ? rec.read.fence : { state: "unreadable", member: "?" };
        log.info({ fence: was }, `stop fence lifted: ${self} leads and runs as primary`);
      }
    } catch (err) {
      log.debug({ err }, "stop fence check failed; trying again");
    }
  }
}
