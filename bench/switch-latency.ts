/**
 * Part 4, switch latency: planned switchovers one after another, an etcd watch
 * on the leader key, and clients opening new connections through the router (and,
 * for reference, through HAProxy) all along. Per switchover:
 *
 *   put→served     from the leader key's PUT naming the new leader to the first
 *                  byte a client received from the new primary;
 *   put→writable   from that PUT to PostgreSQL on the new leader leaving recovery, as
 *                  a session opened there beforehand sees it (pg_is_in_recovery()
 *                  every 2 ms): Patroni's and PostgreSQL's share;
 *   writable→served  the rest: Patroni's REST reporting the new role, the router's
 *                  check and decision, and the new server's answer to the held client;
 *   put→route      from the PUT to the router's decision to route to the new leader
 *                  (its log).
 *
 * Nothing here asks Patroni's REST API during the switch: each REST request costs
 * Patroni a thread and, while the server is in recovery, a replication connection to
 * its own PostgreSQL, so polling it would slow the very promotion being measured.
 */
import type { Etcd3 } from "etcd3";
import { patroniKeys } from "../shared/keys.js";
import { sleep } from "../shared/time.js";
import { waitFor } from "../test/harness/proc.js";
import type { Lab } from "./lab.js";
import { newClient, type ProbeResult, probe } from "./pgclient.js";
import { now, round, summary } from "./stats.js";

const PROBE_PACE_MS = 50;
const WRITABLE_POLL_MS = 2;

type ProbeVia = "router" | "haproxy-docs" | "haproxy-fast";

interface LeaderEvent {
  readonly t: number;
  readonly type: "put" | "delete";
  readonly value: string;
}

export interface SwitchSample {
  readonly from: string;
  readonly to: string;
  /** DELETE of the old leader key → PUT of the new one (ms). */
  readonly deleteToPutMs: number;
  /** PUT → PostgreSQL on the new leader out of recovery (Patroni's promotion and PostgreSQL's; ms). */
  readonly putToWritableMs: number;
  /** PUT → the router's decision to route to the new leader (ms). */
  readonly putToRouteMs: number;
  readonly served: Record<ProbeVia, { putToServedMs: number; writableToServedMs: number }>;
  /** The router's decisions from the request to the first client it served, times in ms from the PUT. */
  readonly routerDecisions: readonly {
    atMs: number;
    action?: string;
    target?: string | null;
    reason?: string;
  }[];
}

/** Pure: the first probe served by `port` whose first byte came after `after`. */
export function firstServed(probes: readonly ProbeResult[], port: number, after: number): number {
  let best = Number.POSITIVE_INFINITY;
  for (const p of probes)
    if (p.port === port && p.firstByte > after && p.firstByte < best) best = p.firstByte;
  return best;
}

async function probeLoop(
  lab: Lab,
  port: number,
  out: ProbeResult[],
  signal: AbortSignal,
  offsetMs: number,
): Promise<void> {
  await sleep(offsetMs, signal);
  while (!signal.aborted) {
    const t = now();
    try {
      out.push(await probe(lab.pg(port)));
    } catch {
      // A failed connection is not "served"; HAProxy's failures are counted in the failover parts.
    }
    await sleep(Math.max(0, PROBE_PACE_MS - (now() - t)), signal);
  }
}

/** Polls `fn` every `intervalMs` until it gives a value; fails at once when `failure` reports one. */
async function pollUntil<T>(
  fn: () => Promise<T | null | undefined> | T | null | undefined,
  failure: () => string | null,
  intervalMs: number,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== null && v !== undefined) return v;
    const f = failure();
    if (f) throw new Error(f);
    if (now() > deadline) throw new Error(`no answer within ${timeoutMs} ms`);
    await sleep(intervalMs);
  }
}

/**
 * A session on the new leader's PostgreSQL, opened before the switchover: resolves with when
 * it first reports the server out of recovery (sessions outlive a promotion).
 */
async function watchWritable(lab: Lab, port: number, failure: () => string | null) {
  const client = newClient(lab.pg(port));
  await client.connect();
  const writable = pollUntil(
    async () => {
      const r = await client.query("SELECT pg_is_in_recovery() AS r");
      return r.rows[0].r === false ? now() : null;
    },
    failure,
    WRITABLE_POLL_MS,
  ).finally(() => client.end().catch(() => undefined));
  writable.catch(() => undefined); // awaited later, or abandoned when the switchover fails first
  return { writable };
}

async function watchLeader(client: Etcd3, key: string, out: LeaderEvent[]) {
  const w = await client.watch().key(key).create();
  w.on("put", (kv) => out.push({ t: now(), type: "put", value: kv.value.toString() }));
  w.on("delete", () => out.push({ t: now(), type: "delete", value: "" }));
  return w;
}

export async function runSwitchLatency(
  lab: Lab,
  count: number,
  log: (m: string) => void,
): Promise<{ samples: SwitchSample[]; summary: Record<string, unknown> }> {
  const c = lab.cluster;
  await lab.waitAllServePrimary(120_000);
  const etcd = c.etcd.client();
  const events: LeaderEvent[] = [];
  const watcher = await watchLeader(etcd, patroniKeys.leader(c.namespace, c.scope), events);
  const probes: Record<ProbeVia, ProbeResult[]> = { router: [], "haproxy-docs": [], "haproxy-fast": [] };
  const abort = new AbortController();
  const loops = [
    probeLoop(lab, lab.router.port, probes.router, abort.signal, 0),
    probeLoop(lab, lab.router.port, probes.router, abort.signal, PROBE_PACE_MS / 2),
    probeLoop(lab, lab.haproxyDocsPort, probes["haproxy-docs"], abort.signal, 0),
    probeLoop(lab, lab.haproxyFastPort, probes["haproxy-fast"], abort.signal, PROBE_PACE_MS / 2),
  ];
  const samples: SwitchSample[] = [];
  const hist0 = await lab.router.metric("router_switch_seconds_sum");
  const histN0 = await lab.router.metric("router_switch_seconds_count");
  try {
    for (let i = 0; i < count; i++) {
      const leader = await lab.primary();
      const from = leader.name;
      const target = lab.nextCandidate(from);
      const to = target.name;
      await c.waitSwitchoverPossible(to);
      let failed: string | null = null;
      const { writable } = await watchWritable(lab, target.pgPort, () => failed);
      const tPost = now();
      const post = leader
        .restPost("/switchover", { leader: from, candidate: to })
        .then((r) => {
          if (r.status !== 200) failed = `switchover ${from} -> ${to}: ${r.status} ${r.text}`;
        })
        .catch((err: Error) => {
          failed = `switchover ${from} -> ${to}: ${err.message}`;
        });
      const put = await pollUntil(
        () => events.find((e) => e.t > tPost && e.type === "put" && e.value === to),
        () => failed,
        5,
      );
      const tWritable = await writable;
      await post;
      if (failed) throw new Error(failed);
      const del = events.find((e) => e.t > tPost && e.t < put.t && e.type === "delete");
      const served = {} as SwitchSample["served"];
      for (const via of Object.keys(probes) as ProbeVia[]) {
        const t = await waitFor(
          `a client through ${via} served by ${to}`,
          () => {
            const s = firstServed(probes[via], target.pgPort, put.t);
            return Number.isFinite(s) ? s : null;
          },
          { timeoutMs: 60_000, intervalMs: 20 },
        ).catch(() => Number.NaN);
        served[via] = {
          putToServedMs: round(t - put.t, 1),
          writableToServedMs: round(t - tWritable, 1),
        };
      }
      const decisions = lab.router.decisions(tPost - 100, put.t + served.router.putToServedMs + 100);
      const route = decisions.find((d) => d.t >= put.t - 1 && d.action === "route" && d.target === to);
      const s: SwitchSample = {
        from,
        to,
        deleteToPutMs: del ? round(put.t - del.t, 1) : Number.NaN,
        putToWritableMs: round(tWritable - put.t, 1),
        putToRouteMs: route ? round(route.t - put.t, 1) : Number.NaN,
        served,
        routerDecisions: decisions.map((d) => ({
          atMs: Math.round(d.t - put.t),
          action: d.action,
          target: d.target,
          reason: d.reason ?? d.msg,
        })),
      };
      samples.push(s);
      log(
        `switch ${i + 1}/${count} ${from} -> ${to}: put→writable ${s.putToWritableMs} ms; router ` +
          `put→route ${s.putToRouteMs} ms, put→served ${served.router.putToServedMs} ms ` +
          `(writable→served ${served.router.writableToServedMs}); haproxy-docs ` +
          `${served["haproxy-docs"].putToServedMs} ms, haproxy-fast ${served["haproxy-fast"].putToServedMs} ms`,
      );
      await lab.waitAllServePrimary(120_000);
    }
  } finally {
    abort.abort();
    await Promise.all(loops);
    watcher.cancel();
  }
  const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
  const hist1 = await lab.router.metric("router_switch_seconds_sum");
  const histN1 = await lab.router.metric("router_switch_seconds_count");
  const routerMetricMeanMs = round(((sum(hist1) - sum(hist0)) / (sum(histN1) - sum(histN0))) * 1000, 1);
  const pick = (via: ProbeVia, k: "putToServedMs" | "writableToServedMs") =>
    samples.map((s) => s.served[via][k]);
  return {
    samples,
    summary: {
      n: samples.length,
      putToWritableMs: summary(samples.map((s) => s.putToWritableMs)),
      deleteToPutMs: summary(samples.map((s) => s.deleteToPutMs)),
      router: {
        putToServedMs: summary(pick("router", "putToServedMs")),
        putToRouteMs: summary(samples.map((s) => s.putToRouteMs)),
        writableToServedMs: summary(pick("router", "writableToServedMs")),
        // The router's own part: its decision to the released client's first byte.
        routeToServedMs: summary(
          samples.map((s) => round(s.served.router.putToServedMs - s.putToRouteMs, 1)),
        ),
      },
      "haproxy-docs": { putToServedMs: summary(pick("haproxy-docs", "putToServedMs")) },
      "haproxy-fast": { putToServedMs: summary(pick("haproxy-fast", "putToServedMs")) },
      routerSwitchSecondsMeanMs: routerMetricMeanMs,
    },
  };
}
