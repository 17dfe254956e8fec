/**
 * The admin HTTP server every service runs: `/metrics` (prom-client, default
 * process metrics on), `/healthz` (the process loop answers), `/readyz` (the
 * service's own readiness), plus service routes such as `/routes` (JSON) and
 * pages (any content type, such as the router's status page at `/`).
 */
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { collectDefaultMetrics, Registry } from "prom-client";
import type { HostPort } from "./host-port.js";
import type { Logger } from "./logger.js";
import { http } from "./node-http.js";
import { redactValue } from "./redact.js";

export interface Readiness {
  readonly ready: boolean;
  /** Why not ready (or details when ready); shown as JSON. */
  readonly details?: Record<string, unknown>;
}

export type JsonRoute = (req: IncomingMessage) => unknown | Promise<unknown>;

/** A response that is not JSON: its content type, its body and headers of its own. */
export interface Page {
  readonly contentType: string;
  readonly body: string | Buffer;
  readonly headers?: Readonly<Record<string, string>>;
}

export type PageRoute = (req: IncomingMessage) => Page | Promise<Page>;

export interface AdminOptions {
  readonly listen: HostPort;
  readonly registry: Registry;
  /** Overrides `registry` for /metrics (the router's supervisor gathers its workers' metrics). */
  readonly metrics?: () => Promise<string>;
  readonly readiness: () => Readiness | Promise<Readiness>;
  readonly routes?: Readonly<Record<string, JsonRoute>>;
  /** Non-JSON paths; what they show is the caller's to escape and redact. */
  readonly pages?: Readonly<Record<string, PageRoute>>;
  readonly log: Logger;
  /** Share the port with another process (SO_REUSEPORT; Node 22.12+): the router's rolling update. */
  readonly reusePort?: boolean;
}

/**
 * A registry with the default process metrics, prefixed per service. The event-loop
 * lag histogram samples every 100 ms, not every 10 ms (the library's default): a timer
 * 100 times a second woke an idle service 100 times a second, most of its idle CPU
 * (the router's 7.5–8.8 ms/s, measured by the benchmark's memory part, came to 2.7–3.3).
 * A stall still shows: it delays the sample it holds up by as long as it lasts.
 */
export function createRegistry(prefix: string): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: `${prefix}_`, eventLoopMonitoringPrecision: 100 });
  return registry;
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(redactValue(body), null, 2);
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  res.end(text + "\n");
}

/** Connections the admin port serves at once; more are closed on accept. */
export const ADMIN_MAX_CONNECTIONS = 64;

export class AdminServer {
  private readonly server: Server;
  private boundAddress: AddressInfo | null = null;

  constructor(private readonly opts: AdminOptions) {
    // The admin port shares the process's descriptors with whatever else it serves (the
    // router's clients): a bounded number of connections, each closed when idle or slow.
    // (Node 20 stops applying `timeout` to sockets when createServer gets options: none.)
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        opts.log.error({ err }, "admin request failed");
        if (!res.headersSent) sendJson(res, 500, { error: "internal error" });
        else res.destroy();
      });
    });
    this.server.keepAliveTimeout = 5000;
    this.server.headersTimeout = 5_000;
    this.server.requestTimeout = 10_000;
    this.server.timeout = 10_000;
    this.server.maxConnections = ADMIN_MAX_CONNECTIONS;
  }

  async start(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      const o = {
        port: this.opts.listen.port,
        host: this.opts.listen.host,
        reusePort: this.opts.reusePort === true,
      };
      this.server.listen(o, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    this.boundAddress = this.server.address() as AddressInfo;
    this.opts.log.info(
      { address: this.boundAddress.address, port: this.boundAddress.port },
      "admin listening",
    );
    return this.boundAddress;
  }

  get address(): AddressInfo | null {
    return this.boundAddress;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://admin");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" });
      res.end();
      return;
    }
    switch (url.pathname) {
      case "/metrics": {
        const body = await (this.opts.metrics ?? (() => this.opts.registry.metrics()))();
        res.writeHead(200, { "content-type": this.opts.registry.contentType });
        res.end(body);
        return;
      }
      case "/healthz":
        sendJson(res, 200, { status: "ok" });
        return;
      case "/readyz": {
        const r = await this.opts.readiness();
        sendJson(res, r.ready ? 200 : 503, { ready: r.ready, ...(r.details ?? {}) });
        return;
      }
      default: {
        const page = this.opts.pages?.[url.pathname];
        if (page) {
          const p = await page(req);
          res.writeHead(200, { ...(p.headers ?? {}), "content-type": p.contentType });
          res.end(p.body);
          return;
        }
        const route = this.opts.routes?.[url.pathname];
        if (route) {
          sendJson(res, 200, await route(req));
          return;
        }
        sendJson(res, 404, { error: `no such path ${url.pathname}`, paths: this.paths() });
      }
    }
  }

  private paths(): string[] {
    return [
      "/metrics",
      "/healthz",
      "/readyz",
      ...Object.keys(this.opts.routes ?? {}),
      ...Object.keys(this.opts.pages ?? {}).filter((p) => !p.startsWith("/assets/")),
    ];
  }
}
