/**
 * The Docker edge (docker-api.ts). `run()` keeps one event stream open for as long as
 * the registrator lives:
 *
 *   subscribe to events (from the daemon's clock a second back, so nothing falls
 *   between subscribing and listing) → full sync → apply events as they come →
 *   stream ends or Docker is unreachable → capped backoff → subscribe again.
 *
 * It never gives up and never exits the process.
 */
import type { Readable } from "node:stream";
import type { Logger } from "../shared/logger.js";
import { Backoff, sleep } from "../shared/time.js";
import { DockerApi } from "./docker-api.js";
import { type ContainerEvent, decodeEvent, JsonLineDecoder, WATCHED_ACTIONS } from "./docker-events.js";
import { DockerError, toDockerError } from "./errors.js";
import type { Observation } from "./lifecycle.js";
import type { RegistratorMetrics } from "./metrics.js";
import type { DockerEndpoint } from "./options.js";

export const DOCKER_CALL_TIMEOUT_MS = 10_000;
export const RECONNECT_MIN_MS = 100;
export const RECONNECT_MAX_MS = 2000;
/** How far before the daemon's "now" the event subscription starts. */
export const SUBSCRIBE_OVERLAP_S = 1;

export interface SourceHandlers {
  readonly onEvent: (ev: ContainerEvent) => void;
  /** A full sync; runs after each (re)subscription. A throw counts as a lost connection. */
  readonly onConnected: () => Promise<void>;
}

/** A client for a unix socket or tcp:// endpoint (TLS from DOCKER_CERT_PATH when DOCKER_TLS_VERIFY is set). */
export function createDockerClient(
  endpoint: DockerEndpoint,
  env: NodeJS.ProcessEnv = process.env,
): DockerApi {
  return DockerApi.forEndpoint(endpoint, env);
}

export class DockerSource {
  private isConnected = false;
  private readonly abort = new AbortController();

  constructor(
    private readonly docker: DockerApi,
    private readonly log: Logger,
    private readonly metrics: RegistratorMetrics,
  ) {}

  get connected(): boolean {
    return this.isConnected;
  }

  /** Inspects a container; `gone` when Docker no longer knows it. Throws DockerError otherwise. */
  async inspect(id: string): Promise<Observation> {
    const found = await this.inspectRaw(id);
    if (found === null) return { kind: "gone" };
    const mode = (found as { HostConfig?: { NetworkMode?: unknown } }).HostConfig?.NetworkMode;
    if (typeof mode === "string" && mode.startsWith("container:")) {
      const other = await this.inspectRaw(mode.slice("container:".length)).catch(() => null);
      return { kind: "found", inspect: found, related: other ? { networkContainer: other } : {} };
    }
    return { kind: "found", inspect: found };
  }

  /** IDs of the running (and paused) containers. */
  async listRunning(): Promise<string[]> {
    try {
      const list = await this.docker.listContainers(this.callSignal());
      return list.map((c) => c.Id);
    } catch (err) {
      throw toDockerError(err, "list containers");
    }
  }

  stop(): void {
    this.abort.abort();
  }

  /** Runs until stop(): subscribe, sync, follow, and reconnect whenever the stream is lost. */
  async run(handlers: SourceHandlers): Promise<void> {
    const signal = this.abort.signal;
    const backoff = new Backoff(RECONNECT_MIN_MS, RECONNECT_MAX_MS);
    let failures = 0;
    while (!signal.aborted) {
      let stream: Readable | null = null;
      try {
        const since = await this.daemonTime();
        stream = await this.docker.events(
          {
            since: Math.round(since * 1000) / 1000,
            filters: { type: ["container"], event: WATCHED_ACTIONS },
          },
          signal,
        );
        const ended = this.follow(stream, handlers.onEvent);
        this.setConnected(true);
        this.log.info({ reconnect: failures > 0 }, "following Docker events");
        await handlers.onConnected();
        backoff.reset();
        failures = 0;
        const why = await ended;
        if (!signal.aborted) this.log.warn({ why }, "Docker event stream ended; reconnecting");
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        const e = toDockerError(err, "follow events");
        if (failures === 1 && e.context["errno"] === "EACCES") {
          this.log.error(
            { err: e },
            "permission denied on the Docker socket: give the process the socket's group (docker run --group-add <gid of the socket>) or run it as root; retrying",
          );
        } else if (failures === 1) this.log.warn({ err: e }, "Docker is unreachable; retrying with backoff");
        else this.log.debug({ err: e, failures }, "Docker still unreachable");
      } finally {
        stream?.destroy();
        this.setConnected(false);
      }
      if (signal.aborted) break;
      this.metrics.dockerReconnects.inc();
      await sleep(backoff.next(), signal);
    }
  }

  private setConnected(v: boolean): void {
    this.isConnected = v;
    this.metrics.dockerConnected.set(v ? 1 : 0);
  }

  /** Feeds decoded events to onEvent; resolves with why the stream ended. */
  private follow(stream: Readable, onEvent: (ev: ContainerEvent) => void): Promise<string> {
    const decoder = new JsonLineDecoder();
    return new Promise((resolve) => {
      stream.on("data", (chunk: Buffer) => {
        const { values, malformed } = decoder.push(chunk);
        if (malformed > 0) {
          this.metrics.malformedEvents.inc(malformed);
          this.log.warn({ lines: malformed }, "Docker event stream carried lines that are not JSON; skipped");
        }
        for (const v of values) {
          const ev = decodeEvent(v);
          if (ev) onEvent(ev);
        }
      });
      stream.once("end", () => resolve("end of stream"));
      stream.once("close", () => resolve("connection closed"));
      stream.once("error", (err: Error) => resolve(`stream error: ${err.message}`));
    });
  }

  /** The daemon's clock minus the overlap, in seconds (local clock when it does not say). */
  private async daemonTime(): Promise<number> {
    let info: { SystemTime?: string };
    try {
      info = await this.docker.info(this.callSignal());
    } catch (err) {
      throw toDockerError(err, "info");
    }
    const t = info.SystemTime ? Date.parse(info.SystemTime) : Number.NaN;
    return (Number.isFinite(t) ? t : Date.now()) / 1000 - SUBSCRIBE_OVERLAP_S;
  }

  private async inspectRaw(id: string): Promise<unknown | null> {
    try {
      return await this.docker.inspectContainer(id, this.callSignal());
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return null;
      throw toDockerError(err, "inspect", { container: id.slice(0, 12) });
    }
  }

  private callSignal(): AbortSignal {
    return AbortSignal.any([this.abort.signal, AbortSignal.timeout(DOCKER_CALL_TIMEOUT_MS)]);
  }
}

export { DockerError };
