/**
 * The few Docker Engine API calls the registrator makes — `GET /info`,
 * `/containers/json`, `/containers/{id}/json` and the `/events` stream, and with
 * -restart-joined `POST /containers/{id}/start` — over
 * the unix socket, or tcp:// (https with DOCKER_TLS_VERIFY + DOCKER_CERT_PATH).
 *
 * A full Docker client (dockerode) pulls in an SSH stack that instantiates a
 * WebAssembly module at load, tar and build-session code: about 22 MB resident
 * more than this file, for calls this process never makes, and under the
 * image's `node --jitless` it does not load at all (registrator/README.md). Errors keep the shapes the rest of the
 * registrator converts: an HTTP status as `statusCode`, a socket error as its
 * `code` (EACCES, ECONNREFUSED, …).
 */
import { readFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import type { RequestOptions } from "node:https";
import { join } from "node:path";
import { http, https } from "../shared/node-http.js";
import type { DockerEndpoint } from "./options.js";

/** An answer larger than this is refused (an inspect is a few KiB; a list of 1 000 containers about 2 MiB). */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** Docker answered with a status other than 2xx. */
export class DockerStatusError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
    this.name = "DockerStatusError";
  }
}

export class DockerApi {
  private constructor(
    private readonly transport: typeof http | typeof https,
    private readonly base: RequestOptions,
  ) {}

  /** A client for a unix socket or tcp:// endpoint (TLS from DOCKER_CERT_PATH when DOCKER_TLS_VERIFY is set). */
  static forEndpoint(endpoint: DockerEndpoint, env: NodeJS.ProcessEnv = process.env): DockerApi {
    if (endpoint.kind === "unix") return new DockerApi(http, { socketPath: endpoint.socketPath });
    const certPath = env["DOCKER_CERT_PATH"];
    if (env["DOCKER_TLS_VERIFY"] && certPath) {
      return new DockerApi(https, {
        host: endpoint.host,
        port: endpoint.port,
        ca: readFileSync(join(certPath, "ca.pem")),
        cert: readFileSync(join(certPath, "cert.pem")),
        key: readFileSync(join(certPath, "key.pem")),
      });
    }
    return new DockerApi(http, { host: endpoint.host, port: endpoint.port });
  }

  info(signal: AbortSignal): Promise<{ SystemTime?: string; Name?: string; ID?: string }> {
    return this.json("/info", signal);
  }

  /** Running (and paused) containers. */
  listContainers(signal: AbortSignal): Promise<Array<{ Id: string }>> {
    return this.json("/containers/json", signal);
  }

  /** Containers that are not running (exited or created): `docker ps -a --filter status=…`. */
  listStopped(signal: AbortSignal): Promise<Array<{ Id: string }>> {
    const filters = JSON.stringify({ status: ["exited", "created"] });
    return this.json(`/containers/json?all=1&filters=${encodeURIComponent(filters)}`, signal);
  }

  /** `docker start`; resolves once Docker started it (or it already ran). */
  async startContainer(id: string, signal: AbortSignal): Promise<void> {
    const res = await this.request("POST", `/containers/${encodeURIComponent(id)}/start`, signal);
    if (!isOk(res)) throw await statusError(res);
    res.resume();
  }

  /** `docker inspect`; a DockerStatusError with statusCode 404 when Docker does not know it. */
  inspectContainer(id: string, signal: AbortSignal): Promise<unknown> {
    return this.json(`/containers/${encodeURIComponent(id)}/json`, signal);
  }

  /** The event stream from `since` (seconds), filtered; newline-delimited JSON until the signal aborts. */
  async events(
    query: { since: number; filters: Record<string, readonly string[]> },
    signal: AbortSignal,
  ): Promise<IncomingMessage> {
    const q = new URLSearchParams({ since: String(query.since), filters: JSON.stringify(query.filters) });
    const res = await this.get(`/events?${q}`, signal);
    if (isOk(res)) return res;
    throw await statusError(res);
  }

  private async json<T>(path: string, signal: AbortSignal): Promise<T> {
    const res = await this.get(path, signal);
    if (!isOk(res)) throw await statusError(res);
    const body = await readBody(res);
    try {
      return JSON.parse(body) as T;
    } catch {
      throw new Error(`GET ${path.split("?")[0]}: the answer is not JSON`);
    }
  }

  private get(path: string, signal: AbortSignal): Promise<IncomingMessage> {
    return this.request("GET", path, signal);
  }

  private request(method: "GET" | "POST", path: string, signal: AbortSignal): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = this.transport.request({
        ...this.base,
        method,
        path,
        headers: { accept: "application/json" },
        signal,
      });
      req.once("response", resolve);
      // Not once: a socket error after the answer (or the abort that ends an event stream)
      // emits here again, and the stream's own listeners handle it.
      req.on("error", reject);
      req.end();
    });
  }
}

function isOk(res: IncomingMessage): boolean {
  const s = res.statusCode ?? 0;
  return s >= 200 && s < 300;
}

async function readBody(res: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      res.destroy();
      throw new Error(`the answer is larger than ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Docker's error body is `{"message": "..."}`; anything else is summarised. */
async function statusError(res: IncomingMessage): Promise<DockerStatusError> {
  const status = res.statusCode ?? 0;
  let message = `HTTP ${status}`;
  try {
    const body = await readBody(res);
    const parsed = JSON.parse(body) as { message?: unknown };
    if (typeof parsed.message === "string") message = `HTTP ${status}: ${parsed.message}`;
  } catch {
    // keep the status line alone
  }
  return new DockerStatusError(status, message);
}
