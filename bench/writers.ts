/**
 * The two writers of the failover parts, and what their attempts add up to.
 *
 *  - per-write: a new connection for every write (connect, INSERT, close), as a
 *    short-lived job or a pool-less web handler does;
 *  - long-lived: one connection kept open; on any error it is dropped and a new
 *    one is made, as a pool does.
 *
 * Each starts an attempt every PACE_MS (or right after the previous one when that
 * took longer), so counts of failed attempts are "attempts at this pace".
 */
import type pg from "pg";
import { sleep } from "../shared/time.js";
import type { PgConn } from "./pgbench.js";
import { newClient } from "./pgclient.js";
import { now } from "./stats.js";

export const PACE_MS = 50;

export type WriterMode = "per-write" | "long-lived";

export interface Attempt {
  readonly start: number;
  readonly end: number;
  readonly ok: boolean;
  /** `connect`: a new connection (long-lived reconnect); `write`: an INSERT (per-write: connect + INSERT). */
  readonly what: "connect" | "write";
  readonly error?: string;
}

export const WRITE_SQL = "INSERT INTO bench_writes (src) VALUES ($1)";
export const TABLE_SQL =
  "CREATE TABLE IF NOT EXISTS bench_writes (id bigserial PRIMARY KEY, src text NOT NULL, at timestamptz NOT NULL DEFAULT now())";

export class Writer {
  readonly attempts: Attempt[] = [];
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  private client: pg.Client | null = null;

  constructor(
    readonly label: string,
    readonly mode: WriterMode,
    private readonly conn: PgConn,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.loop;
    await this.client?.end().catch(() => undefined);
    this.client = null;
  }

  /** The last `n` attempts all succeeded. */
  healthy(n: number): boolean {
    const tail = this.attempts.slice(-n);
    return tail.length === n && tail.every((a) => a.ok);
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    while (!signal.aborted) {
      const t = now();
      if (this.mode === "per-write") await this.perWrite();
      else await this.longLived();
      await sleep(Math.max(0, PACE_MS - (now() - t)), signal);
    }
  }

  private record(start: number, what: Attempt["what"], err?: unknown): void {
    const a: Attempt =
      err === undefined
        ? { start, end: now(), ok: true, what }
        : { start, end: now(), ok: false, what, error: describe(err) };
    this.attempts.push(a);
  }

  private async perWrite(): Promise<void> {
    const start = now();
    const client = newClient(this.conn);
    try {
      await client.connect();
      await client.query(WRITE_SQL, [this.label]);
      this.record(start, "write");
    } catch (err) {
      this.record(start, "write", err);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async longLived(): Promise<void> {
    if (this.client === null) {
      const start = now();
      const client = newClient(this.conn);
      try {
        await client.connect();
        this.client = client;
        this.record(start, "connect");
      } catch (err) {
        this.record(start, "connect", err);
        await client.end().catch(() => undefined);
        return;
      }
    }
    const start = now();
    try {
      await this.client.query(WRITE_SQL, [this.label]);
      this.record(start, "write");
    } catch (err) {
      this.record(start, "write", err);
      const c = this.client;
      this.client = null;
      await c.end().catch(() => undefined);
    }
  }
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return `${e.code ? `${e.code} ` : ""}${e.message ?? String(err)}`.slice(0, 160);
}

export interface WriterFigures {
  /** Longest time with no completed write, over the gaps that end after the event (ms). */
  readonly unavailableMs: number;
  /** Failed attempts that ended after the event. */
  readonly failed: number;
  /** Of those, attempts already under way when the event happened (their server went away under them). */
  readonly inFlight: number;
  /** Of those begun after the event, failed new connections: every per-write attempt, and long-lived reconnects. */
  readonly failedNew: number;
  /** Of those begun after the event, writes that failed on an established long-lived connection. */
  readonly failedOnSession: number;
  /** The writer wrote again after the event (and its last attempt succeeded). */
  readonly recovered: boolean;
  readonly writes: number;
  readonly errors: readonly string[];
  /** The first failed attempts, times in ms from the event. */
  readonly failures: readonly { startMs: number; endMs: number; what: Attempt["what"]; error: string }[];
}

/**
 * Pure: a writer's figures around an event at `t0`, observed until `tEnd`.
 * The unavailability window is the longest gap between consecutive completed
 * writes that ends after t0 (the first gap starts at the last write before t0);
 * a writer that never wrote again counts the gap up to tEnd and is not recovered.
 */
export function analyse(
  mode: WriterMode,
  attempts: readonly Attempt[],
  t0: number,
  tEnd: number,
): WriterFigures {
  const done = attempts
    .filter((a) => a.ok && a.what === "write")
    .map((a) => a.end)
    .sort((a, b) => a - b);
  let prev = t0;
  for (const t of done) if (t <= t0) prev = t;
  let longest = 0;
  let after = 0;
  for (const t of done) {
    if (t <= t0 || t > tEnd) continue;
    after++;
    longest = Math.max(longest, t - prev);
    prev = t;
  }
  const inWindow = attempts.filter((a) => a.end > t0 && a.end <= tEnd);
  const last = inWindow[inWindow.length - 1];
  const recovered = after > 0 && last !== undefined && last.ok;
  if (!recovered) longest = Math.max(longest, tEnd - prev);
  const failures = inWindow.filter((a) => !a.ok);
  const begunAfter = failures.filter((a) => a.start >= t0);
  const failedNew = begunAfter.filter((a) => mode === "per-write" || a.what === "connect").length;
  const errors = [...new Set(failures.map((a) => a.error ?? "?"))].slice(0, 5);
  return {
    unavailableMs: Math.round(longest),
    failed: failures.length,
    inFlight: failures.length - begunAfter.length,
    failedNew,
    failedOnSession: begunAfter.length - failedNew,
    recovered,
    writes: after,
    errors,
    failures: failures.slice(0, 10).map((a) => ({
      startMs: Math.round(a.start - t0),
      endMs: Math.round(a.end - t0),
      what: a.what,
      error: a.error ?? "?",
    })),
  };
}
