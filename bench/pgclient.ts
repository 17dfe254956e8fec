/** node-postgres clients as the benchmark's writers and probes use them. */
import type { EventEmitter } from "node:events";
import pg from "pg";
import type { PgConn } from "./pgbench.js";
import { now } from "./stats.js";

/** Long enough for a client the router holds through a failover (its hold budget is 30 s). */
export const CONNECT_TIMEOUT_MS = 40_000;
export const QUERY_TIMEOUT_MS = 20_000;

export function newClient(c: PgConn): pg.Client {
  const client = new pg.Client({
    host: c.host,
    port: c.port,
    user: c.user,
    password: c.password,
    database: c.database,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    query_timeout: QUERY_TIMEOUT_MS,
  });
  // A connection that dies while idle is reported as an event; the next query reports it again.
  client.on("error", () => undefined);
  return client;
}

/** The server port that answers a new connection through `c` (which member served it). */
export async function serverPort(c: PgConn): Promise<number> {
  const client = newClient(c);
  try {
    await client.connect();
    const r = await client.query("SELECT inet_server_port() AS port");
    return Number(r.rows[0].port);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export interface ProbeResult {
  readonly start: number;
  /** When the first server message (the authentication request) reached the client. */
  readonly firstByte: number;
  readonly ready: number;
  readonly port: number;
}

/** One new connection through `c`: when the server first answered, and which server it was. */
export async function probe(c: PgConn): Promise<ProbeResult> {
  const start = now();
  let firstByte = Number.NaN;
  const client = newClient(c);
  const conn = (client as unknown as { connection: EventEmitter }).connection;
  conn.once("message", () => {
    firstByte = now();
  });
  try {
    await client.connect();
    const ready = now();
    const r = await client.query("SELECT inet_server_port() AS port");
    return { start, firstByte, ready, port: Number(r.rows[0].port) };
  } finally {
    await client.end().catch(() => undefined);
  }
}
