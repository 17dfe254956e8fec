/**
 * `-restart-joined`: the edges (joined-restart.ts decides). Looks at the containers that are
 * not running once Docker's events are followed (at start and after each reconnect) and again
 * shortly after any container starts (the namespace's holder coming up), and starts the ones
 * Docker left stranded.
 */
import type { Logger } from "../shared/logger.js";
import type { DockerApi } from "./docker-api.js";
import type { ContainerEvent } from "./docker-events.js";
import { joinedDecision } from "./joined-restart.js";

/** After a start event, wait this long for more (a restore starts many containers at once). */
export const SETTLE_MS = 500;
const CALL_TIMEOUT_MS = 30_000;

export class JoinedRestarter {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;

  constructor(
    private readonly docker: DockerApi,
    private readonly log: Logger,
  ) {}

  onEvent(ev: ContainerEvent): void {
    if (ev.action === "start") this.schedule();
  }

  /** Looks now (after a (re)subscription). */
  check(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.pass().finally(() => {
      this.running = null;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.check();
      }
    });
    return this.running;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.check();
    }, SETTLE_MS);
  }

  private async pass(): Promise<void> {
    let ids: string[];
    try {
      ids = (await this.docker.listStopped(AbortSignal.timeout(CALL_TIMEOUT_MS))).map((c) => c.Id);
    } catch (err) {
      this.log.warn({ err }, "could not list the stopped containers");
      return;
    }
    for (const id of ids) {
      if (this.stopped) return;
      try {
        const inspect = await this.docker.inspectContainer(id, AbortSignal.timeout(CALL_TIMEOUT_MS));
        const d = joinedDecision(inspect);
        if (!d.start) continue;
        const name = String((inspect as { Name?: unknown }).Name ?? id).replace(/^\//, "");
        try {
          await this.docker.startContainer(id, AbortSignal.timeout(CALL_TIMEOUT_MS));
          this.log.info(
            { container: name, networkContainer: d.networkContainer.slice(0, 12) },
            "started a container Docker left stopped because its network namespace's container was not running yet",
          );
        } catch (err) {
          // Its namespace's container is still down: the next start event looks again.
          this.log.info({ container: name, err }, "could not start a stranded container yet");
        }
      } catch (err) {
        this.log.debug({ err, id: id.slice(0, 12) }, "could not inspect a stopped container");
      }
    }
  }
}
