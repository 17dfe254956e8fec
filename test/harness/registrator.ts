/**
 * The registrator as a real child process (node dist/registrator/main.js), with
 * its admin server on a free port and its log in a temp file.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { EtcdServer } from "./etcd.js";
import { freePort } from "./ports.js";
import { type Spawned, startProcess, stopProcess, waitFor } from "./proc.js";

export const REGISTRATOR_MAIN = fileURLToPath(new URL("../../registrator/main.js", import.meta.url));

export interface RegistratorStart {
  readonly etcd: EtcdServer | string;
  readonly prefix: string;
  /** -hostname; undefined leaves the registrator's default (the Docker engine's name). */
  readonly hostname: string | undefined;
  readonly args?: readonly string[];
  readonly env?: Record<string, string>;
  /** Default: $REGISTRATOR_TEST_LOG_LEVEL or debug. */
  readonly logLevel?: string;
  /** Wait for /readyz (default true). */
  readonly waitReady?: boolean;
}

export class RegistratorProcess {
  private constructor(
    readonly proc: Spawned,
    readonly adminPort: number,
  ) {}

  static async start(o: RegistratorStart): Promise<RegistratorProcess> {
    const adminPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), "registrator-"));
    const endpoint = typeof o.etcd === "string" ? o.etcd : o.etcd.endpoint;
    const proc = startProcess(
      process.execPath,
      [
        REGISTRATOR_MAIN,
        ...(o.hostname === undefined ? [] : ["-hostname", o.hostname]),
        "-metrics-addr",
        `127.0.0.1:${adminPort}`,
        "-log-level",
        o.logLevel ?? process.env.REGISTRATOR_TEST_LOG_LEVEL ?? "debug",
        ...(o.args ?? []),
        `etcd://${endpoint}${o.prefix}`,
      ],
      { logFile: join(dir, "registrator.log"), env: { ...process.env, ...o.env } },
    );
    const r = new RegistratorProcess(proc, adminPort);
    if (o.waitReady ?? true) await r.waitReady();
    return r;
  }

  get pid(): number {
    return this.proc.child.pid!;
  }

  get alive(): boolean {
    return this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }

  async get(path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}${path}`, {
      signal: AbortSignal.timeout(5000),
    });
    return { status: res.status, body: await res.text() };
  }

  async waitReady(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      "the registrator to be ready",
      async () => {
        if (!this.alive) throw new Error(`registrator exited: ${this.proc.tail(30)}`);
        return (await this.get("/readyz")).status === 200;
      },
      { timeoutMs, intervalMs: 100 },
    ).catch((err: Error) => {
      throw new Error(`${err.message}\n${this.proc.tail(30)}`);
    });
  }

  /** Sum of a metric's samples whose labels include `labels`, or 0 when absent. */
  async metric(name: string, labels: Record<string, string> = {}): Promise<number> {
    const { body } = await this.get("/metrics");
    let sum = 0;
    for (const line of body.split("\n")) {
      const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const ls = m[2] ?? "";
      if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
    }
    return sum;
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await stopProcess(this.proc, signal);
  }

  tail(lines = 40): string {
    return this.proc.tail(lines);
  }
}
