/**
 * Part 8, the leader's container killed (`fastfailover`): the compose stack on the real
 * Docker engine (the agent image, three etcd members, the registrator, the router) and
 * HAProxy in front of the same agents, configured as Patroni's template does it with the
 * tighter checks (`inter 1s fall 2 rise 1`). The leader's container is SIGKILLed (`docker
 * kill`) again and again under per-write writers (a new node-postgres connection for every
 * write) through both. For each kill: from the death (Docker's FinishedAt) to the first
 * write begun after it and served (by the new primary: the old one is gone), per path.
 *
 * Two modes on the same stack, in turn: the registrator with `-release-dead-leaders` (the
 * stack's default), which deletes the dead leader's lock at once, and without it (the
 * registrator recreated by a compose override): Patroni's ttl, the path every other
 * Patroni deployment takes. HAProxy is measured in both; without the flag it is the
 * usual Patroni + HAProxy set-up.
 *
 * After each kill the old leader's container is started again and the next kill waits
 * for a leader, two streaming replicas (one synchronous) and every writer writing.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { AGENTS, ComposeStack } from "../test/harness/compose.js";
import { bridgeGateway, docker, imageOf, REPO_ROOT } from "../test/harness/docker.js";
import { freePort } from "../test/harness/ports.js";
import { run, waitFor } from "../test/harness/proc.js";
import { Haproxy, haproxyConfig } from "./haproxy.js";
import type { PgConn } from "./pgbench.js";
import { newClient } from "./pgclient.js";
import { now, type Summary, summary } from "./stats.js";
import { childDir } from "./workdir.js";
import { analyse, TABLE_SQL, Writer } from "./writers.js";

export const FF_MODES = ["release", "ttl"] as const;
export type FfMode = (typeof FF_MODES)[number];
export const FF_PATHS = ["router", "haproxy-fast"] as const;
/** `single`: the stack as `./pgha up` runs it (-internal); `multihost`: with docker-compose.multihost.yml (-ip, published ports). */
export const FF_STACKS = ["single", "multihost"] as const;
export type FfStack = (typeof FF_STACKS)[number];
export type FfPath = (typeof FF_PATHS)[number];

export interface KillRecord {
  readonly mode: FfMode;
  readonly victim: string;
  /** When `docker kill` was run, from the death (negative: before Docker recorded it). */
  readonly killCommandMs?: number;
  /** Per path: death → first write served by the new primary (ms); NaN when none came within the cap. */
  readonly firstServedMs: Record<FfPath, number>;
  /** Per path: the longest time without a completed write around the kill (ms). */
  readonly unavailableMs: Record<FfPath, number>;
  /** Per path: failed attempts begun after the death (new connections that failed). */
  readonly failedNew: Record<FfPath, number>;
  /** Per path: attempts under way at the death that failed. */
  readonly inFlight: Record<FfPath, number>;
  /** Locks the registrator released for this kill (its counter's increase). */
  readonly released: number;
  readonly errors: readonly string[];
  /** Patroni's lines about the race from each agent, from the death on: where the time went. */
  readonly patroni?: Record<string, readonly string[]>;
}

/** Patroni's log lines that tell a failover's steps. */
const RACE_LINES =
  /acquired session lock|promoted self|Request failed|Got response|is still alive|ahead of my wal|Cleaning up failover|does not have lock|following a different leader|no action|demoting self|Lock owner/;

export interface FastFailoverResults {
  readonly stack?: FfStack;
  readonly kills: readonly KillRecord[];
  /** Per mode and path: death → first write served, over the kills. */
  readonly firstServedMs: Record<FfMode, Record<FfPath, Summary>>;
  readonly failedNew: Record<FfMode, Record<FfPath, number>>;
  /** Acknowledged writes missing from the table at the end (acknowledged minus rows, per writer; 0 or more). */
  readonly lost: number;
  readonly ttl: number;
  readonly loopWait: number;
  readonly haproxyConfig: string;
}

/** Pure: the per-mode summaries of the kills. */
export function summarise(
  kills: readonly KillRecord[],
): Pick<FastFailoverResults, "firstServedMs" | "failedNew"> {
  const first = {} as Record<FfMode, Record<FfPath, Summary>>;
  const failed = {} as Record<FfMode, Record<FfPath, number>>;
  for (const mode of FF_MODES) {
    const ks = kills.filter((k) => k.mode === mode);
    first[mode] = {} as Record<FfPath, Summary>;
    failed[mode] = {} as Record<FfPath, number>;
    for (const p of FF_PATHS) {
      // A kill with no write served within the cap counts as the cap's worth: never dropped.
      first[mode][p] = summary(
        ks.map((k) => (Number.isFinite(k.firstServedMs[p]) ? k.firstServedMs[p] : SERVED_CAP_MS)),
        0,
      );
      failed[mode][p] = ks.reduce((n, k) => n + k.failedNew[p], 0);
    }
  }
  return { firstServedMs: first, failedNew: failed };
}

/** How long a kill waits for every path to serve a write again. */
const SERVED_CAP_MS = 90_000;
const REGISTRATOR_FLAG = "-release-dead-leaders";

/**
 * The compose override that runs the registrator without the flag: its command as in
 * docker-compose.yml (single) or docker-compose.multihost.yml, less -release-dead-leaders.
 */
export function ttlOverride(stack: FfStack): string {
  // Compose's own `${NAME}` interpolation, spelled out so no reader takes it for a template.
  const v = (expr: string) => ["$", "{", expr, "}"].join("");
  const command =
    stack === "single"
      ? ["-internal", "-hostname", v("DOCKER_HOSTNAME:-local")]
      : ["-ip", v("HOST_IP"), "-hostname", v("HOST_IP")];
  const etcd =
    stack === "single"
      ? `etcd://${v("REGISTRY_ETCD:-etcd1:2379,etcd2:2379,etcd3:2379")}${v("REGISTRY_PREFIX:-")}`
      : `etcd://${[1, 2, 3].map((n) => `${v(`ETCD${n}_IP`)}:${v(`ETCD${n}_PORT:-2379`)}`).join(",")}${v("REGISTRY_PREFIX:-")}`;
  const lines = [...command, "-cleanup", "-restart-joined", "-metrics-addr", "0.0.0.0:8080", etcd].map(
    (x) => `      - ${x}`,
  );
  return `services:\n  registrator:\n    command:\n${lines.join("\n")}\n`;
}

class Bench {
  private haproxy: Haproxy | null = null;
  private haConfig = "";
  private haPort = 0;
  private readonly writers = new Map<FfPath, Writer>();
  private readonly override: string;

  constructor(
    private readonly stack: ComposeStack,
    kind: FfStack,
    private readonly log: (m: string) => void,
  ) {
    this.override = join(childDir("fast-failover"), "registrator-ttl.yml");
    writeFileSync(this.override, ttlOverride(kind));
  }

  private conn(port: number): PgConn {
    return { ...this.stack.pg(port) };
  }

  /** Runs the registrator with or without the flag (compose recreates its container), and checks it. */
  async mode(mode: FfMode): Promise<void> {
    const files = [...this.stack.files, ...(mode === "ttl" ? [this.override] : [])];
    await run(
      join(REPO_ROOT, "scripts", "compose.sh"),
      [
        "--env-file",
        this.stack.envFile,
        "-p",
        this.stack.project,
        ...files.flatMap((f) => ["-f", f]),
        "up",
        "-d",
        "--no-deps",
        "registrator",
      ],
      {
        cwd: REPO_ROOT,
        env: { PATH: process.env["PATH"], HOME: process.env["HOME"], PGHA_COMPOSE: this.stack.cli },
        timeoutMs: 120_000,
      },
    );
    const args = await docker(["inspect", "-f", "{{json .Args}}", await this.registrator()]);
    const on = (JSON.parse(args) as string[]).includes(REGISTRATOR_FLAG);
    if (on !== (mode === "release")) throw new Error(`the registrator runs with ${args}: not mode ${mode}`);
    await waitFor("the registrator to be ready", async () => (await this.registratorMetrics()) !== null, {
      timeoutMs: 60_000,
      intervalMs: 250,
    });
  }

  private registrator(): Promise<string> {
    return this.stack.container("registrator");
  }

  private async registratorMetrics(): Promise<string | null> {
    const ip = (
      await docker([
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
        await this.registrator(),
      ])
    ).split(" ")[0];
    try {
      const res = await fetch(`http://${ip}:8080/metrics`, { signal: AbortSignal.timeout(3000) });
      return res.ok ? await res.text() : null;
    } catch {
      return null;
    }
  }

  private async releases(): Promise<number> {
    const text = (await this.registratorMetrics()) ?? "";
    let n = 0;
    for (const m of text.matchAll(/^registrator_leader_releases_total\{[^}]*\} (\S+)$/gm)) n += Number(m[1]);
    return n;
  }

  /** HAProxy in front of the agents' current addresses (started again when an address changed). */
  private async ensureHaproxy(): Promise<void> {
    const servers = await Promise.all(
      AGENTS.map(async (a) => ({
        name: a,
        host: await this.stack.ipOf(a),
        port: 5432,
        restPort: 8008,
        // The compose stack's REST API speaks https: checked with its CA, as the router does.
        restTls: { caFile: this.stack.caFile, name: "pgha-agent" },
      })),
    );
    if (this.haPort === 0) this.haPort = await freePort();
    const config = haproxyConfig({
      maxconn: 1000,
      listens: [{ name: "haproxy-fast", port: this.haPort, profile: "fast", servers }],
    });
    if (this.haproxy && config === this.haConfig) return;
    await this.haproxy?.stop();
    this.haproxy = await Haproxy.start(config, [this.haPort]);
    this.haConfig = config;
  }

  get haproxyConfig(): string {
    return this.haConfig;
  }

  async start(): Promise<void> {
    await this.ensureHaproxy();
    const c = newClient(this.conn(this.stack.routerPort));
    await c.connect();
    await c.query(TABLE_SQL);
    await c.end();
  }

  private writer(path: FfPath): Writer {
    let w = this.writers.get(path);
    if (!w) {
      w = new Writer(
        `ff-${path}`,
        "per-write",
        this.conn(path === "router" ? this.stack.routerPort : this.haPort),
      );
      w.start();
      this.writers.set(path, w);
    }
    return w;
  }

  async kill(mode: FfMode): Promise<KillRecord> {
    const leader = await this.stack.waitReady({ timeoutMs: 300_000 });
    await this.ensureHaproxy();
    const ws = FF_PATHS.map((p) => this.writer(p));
    await waitFor("every path to write", () => ws.every((w) => w.healthy(10)), {
      timeoutMs: 120_000,
      intervalMs: 50,
    });
    const released = await this.releases();
    const container = `${this.stack.project}-${leader}`;
    const killCommandAt = now();
    await docker(["kill", container]);
    const died = Date.parse(await docker(["inspect", "-f", "{{.State.FinishedAt}}", container]));
    // A write begun after the death: one begun before may be an acknowledgement from the
    // old primary that the client read late (on a loaded machine, even after FinishedAt).
    // Costs at most one attempt's time when a held attempt was the first one served.
    const servedAfter = (w: Writer) => w.attempts.find((a) => a.ok && a.what === "write" && a.start >= died);
    await waitFor("every path to serve a write", () => ws.every((w) => servedAfter(w) !== undefined), {
      timeoutMs: SERVED_CAP_MS,
      intervalMs: 50,
    }).catch(() => undefined);
    // A little after, so the windows and failures around the kill are complete.
    await new Promise((r) => setTimeout(r, 1000));
    const end = now();
    const rec = {
      mode,
      victim: leader,
      killCommandMs: Math.round(killCommandAt - died),
      firstServedMs: {} as Record<FfPath, number>,
      unavailableMs: {} as Record<FfPath, number>,
      failedNew: {} as Record<FfPath, number>,
      inFlight: {} as Record<FfPath, number>,
      released: (await this.releases()) - released,
      errors: [] as string[],
    };
    for (const [i, p] of FF_PATHS.entries()) {
      const w = ws[i]!;
      const served = servedAfter(w);
      const a = analyse("per-write", w.attempts, died, end);
      rec.firstServedMs[p] = served ? Math.round(served.end - died) : Number.NaN;
      rec.unavailableMs[p] = a.unavailableMs;
      rec.failedNew[p] = a.failedNew;
      rec.inFlight[p] = a.inFlight;
      rec.errors.push(...a.errors.map((e) => `${p}: ${e}`));
    }
    this.log(
      `fastfailover ${mode}: ${leader} killed; first write served ${FF_PATHS.map((p) => `${p} ${rec.firstServedMs[p]} ms`).join(", ")}; ` +
        `failed new ${FF_PATHS.map((p) => rec.failedNew[p]).join("/")}, in flight ${FF_PATHS.map((p) => rec.inFlight[p]).join("/")}; released ${rec.released}`,
    );
    const patroni: Record<string, string[]> = {};
    for (const a of AGENTS) {
      const r = await run(
        "docker",
        ["logs", "--since", new Date(died - 1000).toISOString(), `${this.stack.project}-${a}`],
        { timeoutMs: 30_000 },
      ).catch(() => null);
      patroni[a] = (r ? r.stdout + r.stderr : "")
        .split("\n")
        .filter((l) => RACE_LINES.test(l))
        .slice(0, 12)
        .map((l) => l.slice(0, 240));
    }
    await docker(["start", container]);
    return { ...rec, patroni };
  }

  /** Acknowledged writes the table does not hold (per writer, acknowledged minus rows). */
  async lost(): Promise<number> {
    const c = newClient(this.conn(this.stack.routerPort));
    await c.connect();
    try {
      let lost = 0;
      for (const w of this.writers.values()) {
        const acked = w.attempts.filter((a) => a.ok && a.what === "write").length;
        const r = await c.query<{ n: string }>("SELECT count(*) AS n FROM bench_writes WHERE src = $1", [
          w.label,
        ]);
        lost += Math.max(0, acked - Number(r.rows[0]!.n));
      }
      return lost;
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  async stopWriters(): Promise<void> {
    await Promise.all([...this.writers.values()].map((w) => w.stop()));
  }

  async stop(): Promise<void> {
    await this.stopWriters();
    await this.haproxy?.stop();
  }
}

export async function runFastFailover(
  o: { kills: number; ttl: number; stack: FfStack; modes: readonly FfMode[] },
  log: (m: string) => void,
): Promise<FastFailoverResults> {
  const loopWait = 2;
  // The images run Patroni 4, which takes no ttl under 20 s (as the faults part).
  const ttl = Math.max(20, o.ttl);
  log(
    `fastfailover: the compose stack (${o.stack}; agent ${imageOf("agent")}, registrator ${imageOf("registrator")}), ttl ${ttl} s`,
  );
  const env: Record<string, string> = {
    PATRONI_TTL: String(ttl),
    PATRONI_LOOP_WAIT: String(loopWait),
    PATRONI_RETRY_TIMEOUT: String(Math.max(1, Math.min(4, Math.floor((ttl - loopWait) / 2)))),
  };
  if (o.stack === "multihost") {
    // Every "host" is this machine, on Docker's bridge address: three etcd members on their own ports.
    const hostIp = await bridgeGateway();
    env["HOST_IP"] = hostIp;
    for (const n of [1, 2, 3]) {
      env[`ETCD${n}_IP`] = hostIp;
      env[`ETCD${n}_PORT`] = String(await freePort(hostIp));
      env[`ETCD${n}_PEER_PORT`] = String(await freePort(hostIp));
    }
  }
  const stack = await ComposeStack.up("bench-ff", {
    cli: "v2",
    env,
    ...(o.stack === "multihost" ? { overrides: ["docker-compose.multihost.yml"] } : {}),
  });
  const b = new Bench(stack, o.stack, log);
  const kills: KillRecord[] = [];
  try {
    await stack.waitReady({ timeoutMs: 300_000 });
    await b.start();
    for (const mode of o.modes) {
      await b.mode(mode);
      for (let i = 0; i < o.kills; i++) kills.push(await b.kill(mode));
    }
    await stack.waitReady({ timeoutMs: 300_000 });
    await b.stopWriters();
    const lost = await b.lost();
    return {
      stack: o.stack,
      kills,
      ...summarise(kills),
      lost,
      ttl,
      loopWait,
      haproxyConfig: b.haproxyConfig,
    };
  } finally {
    await b.stop().catch(() => undefined);
    await stack.destroy();
  }
}
