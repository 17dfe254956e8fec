/**
 * HAProxy 2.6 as the reference router, configured the way Patroni's own HAProxy
 * template does it (patroni/patroni, extras/confd/templates/haproxy.tmpl):
 * TCP mode, an HTTP check of each member's Patroni REST API, `http-check expect
 * status 200`, `on-marked-down shutdown-sessions`, and the template's timeouts.
 * Two check profiles: the template's own (inter 3s fall 3 rise 2) and a tighter
 * one (inter 1s fall 2 rise 1) that the project's reference figures were taken with.
 */
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { type Spawned, startProcess, stopProcess, waitFor } from "../test/harness/proc.js";
import { childDir } from "./workdir.js";

export const HAPROXY_BIN = process.env.HAPROXY_BIN ?? "haproxy";

export type CheckProfile = "docs" | "fast";

/** `default-server` check settings per profile. */
export const CHECK_PROFILES: Readonly<Record<CheckProfile, string>> = {
  docs: "inter 3s fall 3 rise 2",
  fast: "inter 1s fall 2 rise 1",
};

export interface HaproxyServer {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly restPort: number;
  /**
   * Patroni's REST API over https: the check speaks TLS and checks the certificate against
   * this CA file on this name (the compose stack's members: `pgha-agent`).
   */
  readonly restTls?: { readonly caFile: string; readonly name: string };
}

export interface HaproxyListen {
  readonly name: string;
  readonly port: number;
  readonly profile: CheckProfile;
  readonly servers: readonly HaproxyServer[];
}

/** Pure: the haproxy.cfg text. `maxconn` is global; each server keeps the template's maxconn 100 unless given. */
export function haproxyConfig(o: {
  maxconn: number;
  serverMaxconn?: number;
  listens: readonly HaproxyListen[];
}): string {
  const lines = [
    "global",
    `\tmaxconn ${o.maxconn}`,
    "",
    "defaults",
    "\tmode tcp",
    "\tretries 2",
    "\ttimeout client 30m",
    "\ttimeout connect 4s",
    "\ttimeout server 30m",
    "\ttimeout check 5s",
  ];
  for (const l of o.listens) {
    lines.push(
      "",
      `listen ${l.name}`,
      `\tbind 127.0.0.1:${l.port}`,
      "\toption httpchk GET /primary",
      "\thttp-check expect status 200",
      `\tdefault-server ${CHECK_PROFILES[l.profile]} on-marked-down shutdown-sessions`,
    );
    for (const s of l.servers) {
      lines.push(
        `\tserver ${s.name} ${s.host}:${s.port} maxconn ${o.serverMaxconn ?? 100} check port ${s.restPort}` +
          (s.restTls
            ? ` check-ssl verify required ca-file ${s.restTls.caFile} verifyhost ${s.restTls.name}`
            : ""),
      );
    }
  }
  return lines.join("\n") + "\n";
}

export class Haproxy {
  private constructor(
    readonly proc: Spawned,
    readonly configFile: string,
  ) {}

  get pid(): number {
    return this.proc.child.pid!;
  }

  static async start(config: string, ports: readonly number[]): Promise<Haproxy> {
    const dir = childDir("haproxy");
    const file = join(dir, "haproxy.cfg");
    writeFileSync(file, config);
    const proc = startProcess(HAPROXY_BIN, ["-db", "-f", file], { logFile: join(dir, "haproxy.log") });
    const h = new Haproxy(proc, file);
    for (const port of ports) {
      await waitFor(
        `haproxy to listen on ${port}`,
        async () => {
          if (proc.child.exitCode !== null) throw new Error(`haproxy exited: ${proc.tail(20)}`);
          return listening(port);
        },
        { timeoutMs: 10_000, intervalMs: 50 },
      );
    }
    return h;
  }

  async stop(): Promise<void> {
    await stopProcess(this.proc, "SIGTERM", 5_000);
  }
}

export function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
