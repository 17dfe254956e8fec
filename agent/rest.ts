/**
 * The few calls the agent makes to its own Patroni's REST API.
 */

import { type CaFetch, caFetch } from "../shared/ca-fetch.js";
import { PgHaError } from "../shared/errors.js";
import { decodePatroniStatus, type PatroniStatus } from "../shared/patroni-rest.js";
import type { Credentials } from "./config.js";

export class RestError extends PgHaError {
  constructor(message: string, context: Record<string, unknown>, cause?: unknown) {
    super("E_UPSTREAM", message, context, cause);
  }
}

export class PatroniRest {
  private readonly fetch: CaFetch;

  /** `caFile`: the CA to check an https REST API with; null for http. */
  constructor(
    readonly baseUrl: string,
    private readonly auth: Credentials,
    caFile: string | null = null,
  ) {
    this.fetch = caFetch(caFile);
  }

  /** GET /cluster; null when Patroni does not answer in time. */
  async cluster(timeoutMs = 2000): Promise<unknown> {
    try {
      const res = await this.fetch(`${this.baseUrl}/cluster`, { signal: AbortSignal.timeout(timeoutMs) });
      if (res.status !== 200) return null;
      return (await res.json()) as unknown;
    } catch {
      return null;
    }
  }

  /** GET /patroni as Patroni answers it (role, state, xlog, replication...); null when it does not answer. */
  async patroni(timeoutMs = 2000): Promise<unknown> {
    try {
      const res = await this.fetch(`${this.baseUrl}/patroni`, { signal: AbortSignal.timeout(timeoutMs) });
      return (await res.json()) as unknown;
    } catch {
      return null;
    }
  }

  /** GET /config: the cluster's dynamic configuration (synchronous_mode, ttl, ...); null when it does not answer. */
  async dynamicConfig(timeoutMs = 2000): Promise<unknown> {
    try {
      const res = await this.fetch(`${this.baseUrl}/config`, { signal: AbortSignal.timeout(timeoutMs) });
      if (res.status !== 200) return null;
      return (await res.json()) as unknown;
    } catch {
      return null;
    }
  }

  /**
   * This node's WAL position as Patroni counts it in a leader race: the larger of the received
   * and replayed positions of a replica, the current one of a primary; null when unknown.
   */
  async walPosition(timeoutMs = 2000): Promise<number | null> {
    const s = decodePatroniStatus(await this.patroni(timeoutMs));
    const nums = [s.location, s.receivedLocation, s.replayedLocation].filter(
      (v): v is number => v !== null && Number.isSafeInteger(v),
    );
    return nums.length === 0 ? null : Math.max(...nums);
  }

  /** GET /patroni decoded (role, state, WAL positions); null when Patroni does not answer. */
  async status(timeoutMs = 2000): Promise<PatroniStatus | null> {
    try {
      const res = await this.fetch(`${this.baseUrl}/patroni`, { signal: AbortSignal.timeout(timeoutMs) });
      return decodePatroniStatus(await res.json());
    } catch {
      return null;
    }
  }

  /** POST /switchover; Patroni answers once the new leader holds the lock (or it gave up). */
  async switchover(
    leader: string,
    candidate: string,
    timeoutMs: number,
  ): Promise<{ status: number; text: string }> {
    const basic = Buffer.from(`${this.auth.username}:${this.auth.password}`).toString("base64");
    try {
      const res = await this.fetch(`${this.baseUrl}/switchover`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Basic ${basic}` },
        body: JSON.stringify({ leader, candidate }),
        signal: AbortSignal.timeout(timeoutMs),
      });
      return { status: res.status, text: (await res.text()).trim() };
    } catch (err) {
      throw new RestError(`switchover request failed: ${(err as Error).message}`, { leader, candidate }, err);
    }
  }
}
