/**
 * Part 7: the faults of issue 15 on the real compose stack, with the router and HAProxy side
 * by side. The stack is the e2e tier's (test/harness/compose.ts, Patroni ttl from --ttl);
 * HAProxy runs on this host, configured as Patroni's template does it (haproxy.ts), with the
 * agents' addresses on the stack's network as servers and their REST port (8008) /primary as
 * the check. Two sets of the e2e tier's writers (test/harness/ack-writers.ts: psql with
 * sslmode=prefer and node-postgres, a new connection per write and a kept one) run at the
 * same time, one through each front end, so both see the same fault. One round of each fault
 * by default (--fault-rounds), rounds interleaved.
 */
import pg from "pg";
import {
  ACKED_TABLE_SQL,
  AckWriter,
  missing,
  type PgTarget,
  WRITER_KINDS,
} from "../test/harness/ack-writers.js";
import { AGENTS, ComposeStack } from "../test/harness/compose.js";
import { ensureImages } from "../test/harness/docker.js";
import { freePort } from "../test/harness/ports.js";
import { run, waitFor } from "../test/harness/proc.js";
import {
  appliesTo,
  FAULT_LABELS,
  type Fault,
  type FaultRun,
  type FaultsResult,
  FRONT_ENDS,
  type FrontEnd,
  type FrontEndFigures,
  frontEndFigures,
  inFlightMayFail,
  targetOf,
} from "./fault-figures.js";
import { playOf } from "./fault-plays.js";
import { CHECK_PROFILES, type CheckProfile, Haproxy, haproxyConfig } from "./haproxy.js";
import { load } from "./machine.js";

/** One attempt per writer every 100 ms, as in the e2e suite. */
const PACE_MS = 100;
/** HAProxy's checks: the tighter profile, the one the project's reference figures were taken with. */
const HAPROXY_PROFILE: CheckProfile = "fast";
const REST_PORT = 8008;
/** After a fault, the writers run until none has failed for this long. */
const SETTLE_MS = 3_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** HAProxy on this host in front of the agents' addresses; restarted when an address changes. */
class HostHaproxy {
  private proc: Haproxy | null = null;
  private servers = "";
  config = "";

  constructor(readonly port: number) {}

  async ensure(stack: ComposeStack): Promise<void> {
    const ips = await Promise.all(AGENTS.map((a) => stack.ipOf(a)));
    const key = ips.join(",");
    if (this.proc && key === this.servers) return;
    await this.stop();
    this.config = haproxyConfig({
      maxconn: 1000,
      listens: [
        {
          name: "pgha-faults",
          port: this.port,
          profile: HAPROXY_PROFILE,
          // The stack's REST API speaks https (docker-compose.yml): checked with its CA, as the router does.
          servers: AGENTS.map((a, i) => ({
            name: a,
            host: ips[i]!,
            port: 5432,
            restPort: REST_PORT,
            restTls: { caFile: stack.caFile, name: "pgha-agent" },
          })),
        },
      ],
    });
    this.proc = await Haproxy.start(this.config, [this.port]);
    this.servers = key;
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
    this.proc = null;
  }
}

/** A session through `t` that may write: the front end reaches the primary. */
async function writable(t: PgTarget): Promise<boolean> {
  const c = new pg.Client({ ...t, database: t.database ?? "postgres", connectionTimeoutMillis: 5_000 });
  c.on("error", () => undefined);
  try {
    await c.connect();
    const r = await c.query<{ r: boolean }>("SELECT pg_is_in_recovery() AS r");
    return r.rows[0]?.r === false;
  } catch {
    return false;
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** What Patroni (through the agents) and the router said about the leader during a fault. */
const DECISION_LINE = /demot|failsafe|DCS|lock|promot|leader|primary decision|shut ?down|fence/i;
/** Patroni's steady "no action" line every loop, and traceback frames. */
const ROUTINE_LINE = /no action\. I am|^\s+File "|Lock owner: (\S+); I am \1$/;

async function decisionsDuring(
  stack: ComposeStack,
  since: number,
  until: number,
): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const service of [...AGENTS, "router"]) {
    try {
      const r = await run(
        "docker",
        [
          "logs",
          "--since",
          new Date(since).toISOString(),
          "--until",
          new Date(until).toISOString(),
          await stack.container(service),
        ],
        { timeoutMs: 30_000 },
      );
      out[service] = (r.stdout + r.stderr)
        .split("\n")
        .filter((l) => DECISION_LINE.test(l) && !ROUTINE_LINE.test(l))
        .slice(0, 120)
        .map((l) => l.slice(0, 400));
    } catch (err) {
      out[service] = [`(no logs: ${(err as Error).message.split("\n")[0]})`];
    }
  }
  return out;
}

/** Writers of every kind through one front end, with id ranges no other set of this run uses. */
function writersFor(target: () => PgTarget, label: string, set: number): AckWriter[] {
  return WRITER_KINDS.map(
    (kind, i) =>
      new AckWriter(
        `${label}-${kind.replace(/\W+/g, "-")}`,
        kind,
        target,
        (i + 1) * 1_000_000_000 + set * 1_000_000,
        PACE_MS,
      ),
  );
}

async function playOne(
  stack: ComposeStack,
  haproxy: HostHaproxy,
  fault: Fault,
  index: number,
  ttl: number,
  log: (m: string) => void,
): Promise<FaultRun> {
  const loadBefore = load();
  const targets: Record<FrontEnd, () => PgTarget> = {
    router: () => stack.pg(),
    haproxy: () => ({ ...stack.pg(), port: haproxy.port }),
  };
  const play = await playOf(stack, fault);
  const sets = FRONT_ENDS.filter((fe) => appliesTo(fault, fe)).map((fe) => ({
    fe,
    writers: writersFor(
      targets[fe],
      `bench-${fault}-${fe}`,
      index * FRONT_ENDS.length + FRONT_ENDS.indexOf(fe),
    ),
  }));
  for (const s of sets) for (const w of s.writers) w.start();
  let t0 = 0;
  let injected = 0;
  let recovered = 0;
  let end = 0;
  try {
    await sleep(3_000);
    t0 = Date.now();
    log(`faults: ${fault}: ${play.detail}`);
    await play.inject();
    injected = Date.now();
    await play.recovered();
    recovered = Date.now();
    // Then until every writer has written since, with no failure in the last 3 s (4 s at least,
    // a minute at most): a front end that serves late is measured to the end of its pause.
    const all = sets.flatMap((x) => x.writers);
    const settled = () =>
      all.every(
        (w) => w.acks.some((a) => a.at > recovered) && !w.failures.some((f) => f.at > Date.now() - SETTLE_MS),
      );
    await sleep(4_000);
    await waitFor("every writer to write again", settled, { timeoutMs: 60_000, intervalMs: 200 }).catch(() =>
      log(`faults: ${fault}: not every writer wrote again within a minute of the recovery`),
    );
  } finally {
    end = Date.now();
    await Promise.all(sets.flatMap((s) => s.writers.map((w) => w.stop())));
  }
  const leader = await waitFor("a leader after the fault", () => stack.leader().catch(() => null), {
    timeoutMs: 120_000,
    intervalMs: 1000,
  });
  const server = { ...stack.pg(), host: await stack.ipOf(leader), port: 5432 };
  const decisions = await decisionsDuring(stack, t0 - 1000, Date.now());
  const frontEnds: Record<FrontEnd, FrontEndFigures | null> = { router: null, haproxy: null };
  for (const s of sets) {
    const lost = await missing(server, s.writers);
    frontEnds[s.fe] = frontEndFigures(
      s.writers.map((w) => ({ kind: w.kind, ackTimes: w.acks.map((a) => a.at), failures: w.failures })),
      lost.length,
      { t0, injected, end, inFlightMayFail: inFlightMayFail(fault) },
    );
  }
  return {
    fault,
    label: FAULT_LABELS[fault],
    at: new Date(t0).toISOString(),
    load: { before: loadBefore, after: load() },
    injectMs: injected - t0,
    recoveredMs: recovered - t0,
    target: targetOf(fault, ttl),
    frontEnds,
    detail: play.detail,
    decisions,
  };
}

export async function runFaults(
  opts: { ttl: number; faults: readonly Fault[]; rounds: number },
  log: (m: string) => void,
): Promise<FaultsResult> {
  await ensureImages(["agent", "etcd", "registrator", "router"]);
  // The images run Patroni 4, which takes no ttl under 20 s (the agent refuses less); Patroni
  // wants ttl >= loop_wait + 2 x retry_timeout.
  const ttl = Math.max(20, opts.ttl);
  const retry = Math.max(1, Math.min(4, Math.floor((ttl - 2) / 2)));
  log(`faults: bringing up the compose stack (ttl ${ttl} s)`);
  const stack = await ComposeStack.up("bench-faults", {
    cli: "v2",
    env: {
      PATRONI_TTL: String(ttl),
      PATRONI_LOOP_WAIT: "2",
      PATRONI_RETRY_TIMEOUT: String(retry),
      SWITCHOVER_TIMEOUT: "5",
    },
  });
  const haproxy = new HostHaproxy(await freePort());
  const runs: FaultRun[] = [];
  try {
    await stack.waitReady();
    const c = new pg.Client({ ...stack.pg() });
    await c.connect();
    await c.query(ACKED_TABLE_SQL);
    await c.end();
    // Interleaved: every fault once, then again, so a noisy minute falls on different faults.
    const plays = Array.from({ length: opts.rounds }, (_, r) =>
      opts.faults.map((fault) => ({ fault, round: r + 1 })),
    ).flat();
    for (const [i, { fault, round }] of plays.entries()) {
      try {
        await stack.waitReady({ timeoutMs: 180_000 });
        await haproxy.ensure(stack);
        for (const [fe, port] of [
          ["router", stack.routerPort],
          ["haproxy", haproxy.port],
        ] as const) {
          await waitFor(`${fe} to reach the primary`, () => writable({ ...stack.pg(), port }), {
            timeoutMs: 60_000,
            intervalMs: 500,
          });
        }
        const r = { ...(await playOne(stack, haproxy, fault, i, ttl, log)), round };
        runs.push(r);
        const fig = (fe: FrontEnd) => {
          const x = r.frontEnds[fe];
          return x
            ? `${fe} stopped ${(x.writesStoppedMs / 1000).toFixed(1)} s, ${x.failedNew} failed new, ${x.sessionsEnded} ended, ${x.lost} lost`
            : `${fe} n/a`;
        };
        log(`faults: ${fault} (round ${round}): ${FRONT_ENDS.map(fig).join("; ")}`);
      } catch (err) {
        const msg = (err as Error).message.split("\n")[0] ?? String(err);
        log(`faults: ${fault} FAILED: ${(err as Error).stack ?? err}`);
        runs.push({
          fault,
          round,
          label: FAULT_LABELS[fault],
          at: new Date().toISOString(),
          load: { before: load(), after: load() },
          injectMs: 0,
          recoveredMs: 0,
          target: targetOf(fault, ttl),
          frontEnds: { router: null, haproxy: null },
          error: msg,
        });
      }
    }
  } finally {
    await haproxy.stop().catch(() => undefined);
    await stack.destroy();
  }
  return {
    ttl,
    rounds: opts.rounds,
    writersPerFrontEnd: WRITER_KINDS,
    paceMs: PACE_MS,
    haproxy: { checks: CHECK_PROFILES[HAPROXY_PROFILE], config: haproxy.config },
    runs,
  };
}
