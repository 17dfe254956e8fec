/**
 * The one way the router opens a connection to a server: sessions (conn.ts) and spare
 * connections (spares.ts) both connect through here, so every upstream socket has the
 * same options.
 */
import net from "node:net";
import type { Target } from "./target.js";

/** A new connection to a server, with the options every upstream socket has. */
export function connectUpstream(target: Target): net.Socket {
  return net.connect({
    host: target.host,
    port: target.port,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: 30_000,
    allowHalfOpen: true,
  });
}
