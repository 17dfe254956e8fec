/**
 * Docker objects for tests, through the docker CLI: every container and network
 * gets the label pgha.test=1 plus a per-fixture label and a unique name prefix,
 * and cleanup() removes them all (call it in after()). `host` points the CLI at
 * another daemon than the machine's (`docker -H <host>`), e.g. a PrivateDockerd.
 */
import { randomBytes } from "node:crypto";
import type { Loose } from "./fixtures.js";
import { run } from "./proc.js";

export const TEST_IMAGE = "debian:trixie-slim";

export class DockerFixture {
  readonly prefix: string;
  private readonly runLabel: string;
  private readonly networks = new Set<string>();
  private readonly hostArgs: readonly string[];

  constructor(tag = "reg", opts: { host?: string } = {}) {
    this.prefix = `pgha-${tag}-${randomBytes(3).toString("hex")}`;
    this.runLabel = `pgha.test.run=${this.prefix}`;
    this.hostArgs = opts.host ? ["-H", opts.host] : [];
  }

  async docker(...args: string[]): Promise<string> {
    return (await run("docker", [...this.hostArgs, ...args], { timeoutMs: 60_000 })).stdout.trim();
  }

  /** Full name of a container or network of this fixture. */
  name(short: string): string {
    return `${this.prefix}-${short}`;
  }

  /** `docker run -d` of the test image (sleep infinity unless a command is given); returns the container ID. */
  async run(short: string, args: readonly string[] = [], command: readonly string[] = ["sleep", "infinity"]) {
    return this.runImage(short, TEST_IMAGE, args, command);
  }

  /** `docker run -d --name <prefix>-<short>` of any image, labelled for cleanup(); returns the container ID. */
  async runImage(short: string, image: string, args: readonly string[], command: readonly string[] = []) {
    return this.docker(
      "run",
      "-d",
      "--name",
      this.name(short),
      "--label",
      "pgha.test=1",
      "--label",
      this.runLabel,
      ...args,
      image,
      ...command,
    );
  }

  /** What an image holds under /app/dist, and the listing of /app and /tmp (for build leftovers). */
  async imageContents(image: string): Promise<{ dist: string[]; app: string }> {
    const dist = await this.docker("run", "--rm", "--entrypoint", "ls", image, "/app/dist");
    const app = await this.docker("run", "--rm", "--entrypoint", "ls", image, "-a", "/app", "/tmp");
    return { dist: dist.split("\n").sort(), app };
  }

  async network(short: string): Promise<string> {
    const name = this.name(short);
    await this.docker("network", "create", "--label", "pgha.test=1", "--label", this.runLabel, name);
    this.networks.add(name);
    return name;
  }

  async inspect(short: string): Promise<Loose> {
    return JSON.parse(await this.docker("inspect", this.name(short)))[0];
  }

  /** The host port a container port is published on. */
  async hostPort(short: string, port: string): Promise<number> {
    const c = await this.inspect(short);
    const binding = c.NetworkSettings.Ports[port.includes("/") ? port : `${port}/tcp`]?.[0];
    if (!binding) throw new Error(`${short}: ${port} is not published`);
    return Number(binding.HostPort);
  }

  async ipOn(short: string, network: string): Promise<string> {
    const c = await this.inspect(short);
    return c.NetworkSettings.Networks[network].IPAddress;
  }

  async cleanup(): Promise<void> {
    const ids = await this.docker("ps", "-aq", "--filter", `label=${this.runLabel}`).catch(() => "");
    if (ids) await this.docker("rm", "-f", ...ids.split("\n")).catch(() => "");
    for (const n of this.networks) await this.docker("network", "rm", n).catch(() => "");
  }
}
