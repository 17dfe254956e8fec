/**
 * A unix-socket proxy in front of a real one (the Docker socket), to cut the
 * connection to a real dockerd without restarting it: `cut()` destroys every open
 * connection (the event stream ends) and refuses new ones until `heal()`.
 */
import { rmSync } from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";

export class UnixSocketProxy {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private refusing = false;
  accepted = 0;

  private constructor(
    readonly path: string,
    private readonly target: string,
  ) {
    this.server = createServer((client) => this.onClient(client));
  }

  static async start(path: string, target: string): Promise<UnixSocketProxy> {
    rmSync(path, { force: true });
    const p = new UnixSocketProxy(path, target);
    await new Promise<void>((resolve, reject) => {
      p.server.once("error", reject);
      p.server.listen(path, () => resolve());
    });
    return p;
  }

  get url(): string {
    return `unix://${this.path}`;
  }

  cut(): void {
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  heal(): void {
    this.refusing = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }

  private onClient(client: Socket): void {
    client.on("error", () => undefined);
    if (this.refusing) {
      client.destroy();
      return;
    }
    this.accepted++;
    const upstream = createConnection(this.target);
    upstream.on("error", () => client.destroy());
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    }
    upstream.on("close", () => client.destroy());
    client.on("close", () => upstream.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
