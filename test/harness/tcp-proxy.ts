/**
 * A small TCP proxy between a client and a real peer, to inject the faults a
 * real peer will not produce on demand: cut every connection, refuse new ones,
 * or black-hole traffic (accept, forward nothing).
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

export type ProxyMode = "pass" | "refuse" | "blackhole";

export class FaultProxy {
  private readonly server: Server;
  private readonly pairs = new Set<[Socket, Socket | null]>();
  private mode: ProxyMode = "pass";
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {
    this.server = createServer((client) => this.onClient(client));
  }

  static async start(targetHost: string, targetPort: number, host = "127.0.0.1"): Promise<FaultProxy> {
    const p = new FaultProxy(targetHost, targetPort);
    await new Promise<void>((resolve) => p.server.listen(0, host, resolve));
    const addr = p.server.address();
    p.port = typeof addr === "object" && addr ? addr.port : 0;
    return p;
  }

  get endpoint(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Destroys every open connection and applies `mode` to new ones. */
  cut(mode: Exclude<ProxyMode, "pass"> = "refuse"): void {
    this.mode = mode;
    for (const [a, b] of this.pairs) {
      a.destroy();
      b?.destroy();
    }
    this.pairs.clear();
  }

  heal(): void {
    this.mode = "pass";
  }

  get connections(): number {
    return this.pairs.size;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onClient(client: Socket): void {
    client.on("error", () => undefined);
    if (this.mode === "refuse") {
      client.destroy();
      return;
    }
    const pair: [Socket, Socket | null] = [client, null];
    this.pairs.add(pair);
    client.on("close", () => {
      this.pairs.delete(pair);
      pair[1]?.destroy();
    });
    if (this.mode === "blackhole") return;
    const upstream = createConnection({ host: this.targetHost, port: this.targetPort });
    pair[1] = upstream;
    upstream.on("error", () => client.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
