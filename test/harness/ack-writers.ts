/**
 * Writers that keep their own record of acknowledged commits, for the tests
 * that promise "no acknowledged write is lost". Each writer inserts numbered
 * rows into `acked` (one per transaction, autocommit); a row counts as
 * acknowledged only once its COMMIT returned. Afterwards `missing()` lists the
 * acknowledged rows a server does not have.
 *
 * Clients, as people use them:
 *  - `psql`: libpq with its default `sslmode=prefer` (an SSLRequest first), one
 *    `psql -c` per write: a new connection each time;
 *  - `pg`: node-postgres, either a new connection per write or one connection
 *    kept and replaced after any error (as a pool does).
 *
 * Every row also records the server's WAL insert position at the INSERT, so a
 * test of asynchronous replication can assert a documented bound on what may
 * be lost instead of "nothing".
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import pg from "pg";

export interface PgTarget {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database?: string;
  /**
   * A libpq URL the psql writers use instead of host and port (e.g. several hosts with
   * `target_session_attrs=read-write`); node-postgres takes no such URL and uses host and port.
   */
  readonly url?: string;
}

export type WriterKind = "psql per-write" | "psql kept" | "pg per-write" | "pg kept";
export const WRITER_KINDS: readonly WriterKind[] = ["psql per-write", "psql kept", "pg per-write", "pg kept"];

export const ACKED_TABLE_SQL =
  "CREATE TABLE IF NOT EXISTS acked (id bigint PRIMARY KEY, writer text NOT NULL, lsn pg_lsn, at timestamptz NOT NULL DEFAULT clock_timestamp())";

export interface Ack {
  readonly id: number;
  readonly at: number;
  /** When the attempt began (the loop's writes). */
  readonly startedAt?: number;
  /** The server's WAL insert position when the row was inserted (before its commit record). */
  readonly lsn: string;
  /** Which server committed it: its postmaster's start time (one per run of a server). */
  readonly server?: string;
}

export interface Failure {
  /** When the failed attempt began, and when it failed (ms since epoch). */
  readonly startedAt: number;
  readonly at: number;
  /** `connect`: no session was established; `session`: the INSERT or COMMIT failed in a session. */
  readonly phase: "connect" | "session";
  readonly error: string;
}

const INSERT = (id: number, writer: string) =>
  `INSERT INTO acked (id, writer, lsn) VALUES (${id}, '${writer}', pg_current_wal_insert_lsn()) RETURNING lsn, pg_postmaster_start_time()::text AS server`;

/** What an acknowledged INSERT returned. */
interface Returned {
  readonly lsn: string;
  readonly server: string;
}

/** psql's unaligned `lsn|server` line. */
function parseReturned(line: string): Returned | null {
  const m = /^([0-9A-F]+\/[0-9A-F]+)\|(.+)$/i.exec(line.trim());
  return m ? { lsn: m[1]!, server: m[2]! } : null;
}

function conninfo(t: PgTarget, timeoutMs = 40_000): string {
  if (t.url !== undefined) {
    const sep = t.url.includes("?") ? "&" : "?";
    return /[?&]connect_timeout=/.test(t.url)
      ? t.url
      : `${t.url}${sep}connect_timeout=${Math.ceil(timeoutMs / 1000)}`;
  }
  return `host=${t.host} port=${t.port} user=${t.user} dbname=${t.database ?? "postgres"} connect_timeout=${Math.ceil(timeoutMs / 1000)}`;
}

function psqlEnv(t: PgTarget): NodeJS.ProcessEnv {
  // libpq's default sslmode=prefer: an SSLRequest first, as every libpq client sends it.
  return { ...process.env, PGPASSWORD: t.password, PGSSLMODE: "prefer", PGAPPNAME: "ack-writer" };
}

/** psql's own error: "connection to server … failed" is a failed new connection, the rest a session's. */
function psqlError(stderr: string): Error {
  const text =
    stderr
      .trim()
      .split("\n")
      .filter((l) => l.trim() !== "")
      .join(" / ") || "psql failed";
  const phase: Failure["phase"] = /connection to server .* failed|could not connect/i.test(stderr)
    ? "connect"
    : "session";
  return Object.assign(new Error(text), { phase });
}

/** One `psql -c`: a new connection for one statement. */
function runPsql(t: PgTarget, sql: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn("psql", ["-X", "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql, conninfo(t, timeoutMs)], {
      env: psqlEnv(t),
    });
    let out = "";
    let err = "";
    const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs + 5_000);
    p.stdout.on("data", (d: Buffer) => (out += d.toString()));
    p.stderr.on("data", (d: Buffer) => (err += d.toString()));
    p.on("close", (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(psqlError(err || `psql exited with ${code}`));
    });
  });
}

/**
 * One psql process fed statements on its standard input, as a script or a session keeps
 * one connection. psql that is not interactive exits when it loses its connection; the
 * writer then starts a new one (its reconnect).
 */
class PsqlSession {
  private readonly p: ChildProcessWithoutNullStreams;
  private out = "";
  private err = "";
  private exited = false;
  private wake: (() => void) | null = null;
  /** No statement has been answered yet: a failure now is a failed connection. */
  private fresh = true;

  constructor(
    t: PgTarget,
    private readonly timeoutMs: number,
  ) {
    this.p = spawn("psql", ["-X", "-qAt", "-v", "ON_ERROR_STOP=0", conninfo(t, timeoutMs)], {
      env: psqlEnv(t),
    });
    this.p.stdout.on("data", (d: Buffer) => {
      this.out += d.toString();
      this.wake?.();
    });
    this.p.stderr.on("data", (d: Buffer) => {
      this.err += d.toString();
      this.wake?.();
    });
    this.p.on("close", () => {
      this.exited = true;
      this.wake?.();
    });
    this.p.stdin.on("error", () => undefined);
  }

  async insert(id: number, sql: string): Promise<Returned> {
    const done = `done:${id}`;
    this.out = "";
    this.err = "";
    this.p.stdin.write(`${sql};\n\\echo ${done}\n`);
    const deadline = Date.now() + this.timeoutMs;
    while (!this.out.includes(done)) {
      if (this.exited) throw this.failure();
      if (Date.now() > deadline)
        throw Object.assign(new Error("psql did not answer in time"), { phase: "session" });
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 200);
      });
    }
    const returned = this.out
      .split("\n")
      .map(parseReturned)
      .find((r) => r !== null);
    if (!returned) throw this.failure();
    this.fresh = false;
    return returned;
  }

  private failure(): Error {
    const e = psqlError(this.err || "psql exited");
    if (!this.fresh) (e as Error & { phase: Failure["phase"] }).phase = "session";
    return e;
  }

  close(): void {
    if (!this.exited) this.p.kill("SIGKILL");
  }
}

/** Connection errors that libpq and node-postgres report before a session exists. */
const CONNECT_PHASE =
  /connection refused|could not connect|timeout expired|connection to server at .* failed|ECONNREFUSED|ECONNRESET before|Connection terminated due to connection timeout|the database system is (starting up|shutting down)/i;

export class AckWriter {
  readonly acks: Ack[] = [];
  readonly failures: Failure[] = [];
  private stopping = false;
  private loop: Promise<void> | null = null;
  private client: pg.Client | null = null;
  private psql: PsqlSession | null = null;
  private next: number;
  /** How long a client waits to connect and for an answer: longer than the router holds clients. */
  timeoutMs = 40_000;

  /** `idBase` keeps each writer's ids apart (writer k uses idBase + 1, 2, …). */
  constructor(
    readonly name: string,
    readonly kind: WriterKind,
    private readonly target: () => PgTarget,
    idBase: number,
    private readonly paceMs = 100,
  ) {
    this.next = idBase + 1;
  }

  start(): this {
    this.loop = this.run();
    return this;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.loop;
    await this.client?.end().catch(() => undefined);
    this.client = null;
    this.psql?.close();
    this.psql = null;
  }

  /** One write, outside the loop: resolves when acknowledged, throws otherwise. */
  async writeOnce(): Promise<Ack> {
    const id = this.next++;
    const { lsn, server } = await this.insert(id);
    const ack = { id, at: Date.now(), lsn, server };
    this.acks.push(ack);
    return ack;
  }

  /** Longest time between two acknowledged writes (or from `from` to the first one after it), in ms. */
  longestGapMs(from = 0): number {
    let gap = 0;
    let prev = from;
    for (const a of this.acks) {
      if (a.at < from) continue;
      if (prev > 0) gap = Math.max(gap, a.at - prev);
      prev = a.at;
    }
    return gap;
  }

  private async run(): Promise<void> {
    while (!this.stopping) {
      const t0 = Date.now();
      const id = this.next++;
      try {
        const { lsn, server } = await this.insert(id);
        this.acks.push({ id, at: Date.now(), startedAt: t0, lsn, server });
      } catch (err) {
        const msg = (err as Error).message.split("\n").find((l) => l.trim() !== "") ?? String(err);
        const phase =
          (err as { phase?: Failure["phase"] }).phase ?? (CONNECT_PHASE.test(msg) ? "connect" : "session");
        this.failures.push({ startedAt: t0, at: Date.now(), phase, error: msg.slice(0, 300) });
      }
      const wait = this.paceMs - (Date.now() - t0);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }

  private async insert(id: number): Promise<Returned> {
    const t = this.target();
    switch (this.kind) {
      case "psql kept": {
        this.psql ??= new PsqlSession(t, this.timeoutMs);
        try {
          return await this.psql.insert(id, INSERT(id, this.name));
        } catch (err) {
          this.psql.close();
          this.psql = null;
          throw err;
        }
      }
      case "psql per-write": {
        const out = await runPsql(t, INSERT(id, this.name), this.timeoutMs);
        const r = out
          .split("\n")
          .map(parseReturned)
          .find((x) => x !== null);
        if (!r)
          throw Object.assign(new Error(`psql answered ${JSON.stringify(out.trim())}`), { phase: "session" });
        return r;
      }
      case "pg per-write": {
        const c = new pg.Client({ ...pgConfig(t), connectionTimeoutMillis: this.timeoutMs });
        c.on("error", () => undefined);
        try {
          await c.connect();
        } catch (err) {
          throw Object.assign(new Error((err as Error).message), { phase: "connect" });
        }
        try {
          return (await c.query<Returned>(INSERT(id, this.name))).rows[0]!;
        } finally {
          await c.end().catch(() => undefined);
        }
      }
      case "pg kept": {
        if (!this.client) {
          const c = new pg.Client({
            ...pgConfig(t),
            connectionTimeoutMillis: this.timeoutMs,
            query_timeout: this.timeoutMs,
          });
          c.on("error", () => undefined);
          try {
            await c.connect();
          } catch (err) {
            await c.end().catch(() => undefined);
            throw Object.assign(new Error((err as Error).message), { phase: "connect" });
          }
          this.client = c;
        }
        try {
          return (await this.client.query<Returned>(INSERT(id, this.name))).rows[0]!;
        } catch (err) {
          const c = this.client;
          this.client = null;
          await c?.end().catch(() => undefined);
          throw err;
        }
      }
    }
  }
}

export function pgConfig(t: PgTarget): pg.ClientConfig {
  return {
    host: t.host,
    port: t.port,
    user: t.user,
    password: t.password,
    database: t.database ?? "postgres",
  };
}

/** One writer of each kind, each with its own id range, not started. */
export function makeWriters(target: () => PgTarget, label: string, paceMs = 100): AckWriter[] {
  const run = Math.floor(Math.random() * 1_000) * 1_000_000;
  return WRITER_KINDS.map(
    (kind, i) =>
      new AckWriter(
        `${label}-${kind.replace(/\W+/g, "-")}`,
        kind,
        target,
        (i + 1) * 1_000_000_000 + run,
        paceMs,
      ),
  );
}

/** One writer of each kind, writing until stopped. */
export function startWriters(target: () => PgTarget, label: string, paceMs = 100): AckWriter[] {
  return makeWriters(target, label, paceMs).map((w) => w.start());
}

/** The acknowledged ids of these writers that `server` does not have. */
export async function missing(server: PgTarget, writers: readonly AckWriter[]): Promise<number[]> {
  const c = new pg.Client({ ...pgConfig(server), connectionTimeoutMillis: 20_000 });
  await c.connect();
  try {
    const ids = writers.flatMap((w) => w.acks.map((a) => a.id));
    if (ids.length === 0) return [];
    const r = await c.query<{ id: string }>("SELECT id FROM acked WHERE id = ANY($1::bigint[])", [ids]);
    const present = new Set(r.rows.map((x) => Number(x.id)));
    return ids.filter((id) => !present.has(id));
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** A one-line account of the writers, for the test's output. */
export function summary(writers: readonly AckWriter[], from: number): string {
  return writers
    .map((w) => {
      const f = w.failures.filter((x) => x.at >= from);
      const byPhase = `${f.filter((x) => x.phase === "connect").length} connect / ${f.filter((x) => x.phase === "session").length} session failures`;
      return `${w.kind}: ${w.acks.length} acked, writes stopped ${(w.longestGapMs(from) / 1000).toFixed(1)} s, ${byPhase}`;
    })
    .join("; ");
}
