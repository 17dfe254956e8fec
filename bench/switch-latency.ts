/**
 * Part 4, switch latency: planned switchovers one after another, an etcd watch
 * on the leader key, and clients opening new connections through the router (and,
 * for reference, through HAProxy) all along. Per switchover:
 *
 *   put→served   from the leader key's PUT naming the new leader to the first
 *                byte a client received from the new primary;
 *   rest→served  from the new leader's REST /primary first answering 200 (polled
 *                every 10 ms from the PUT on) to that same first byte: the share
 *                that is the router's own (Patroni's promotion is not);
 *   master→served  from the first /primary 200 whose body says role master (PostgreSQL
 *                has left recovery; Patroni 3 answers 200 from the moment it holds the
 *                lock, while the server is still read-only) to that first byte.
 */
import type { Etcd3 } from "etcd3";
import { patroniKeys } from "../shared/keys.js";
import { sleep } from "../shared/time.js";
import { waitFor } from "../test/harness/proc.js";
import type { Lab } from "./lab.js";
import { type ProbeResult, probe } from "./pgclient.js";
import { now, round, summary } from "./stats.js";

const PROBE_PACE_MS = 50;
const REST_POLL_MS = 10;

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
  /** PUT → the new leader's REST /primary answering 200 (Patroni's promotion; ms). */
  readonly putToRestMs: number;
  /** PUT → its /primary answering 200 with role master in the body (out of recovery; ms). */
  readonly putToMasterMs: number;
  readonly served: Record<
    ProbeVia,
    { putToServedMs: number; restToServedMs: number; masterToServedMs: number }
  >;
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
      const tPost = now();
      let failed: string | null = null;
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
      // REST /primary of the new leader, polled from the PUT on, concurrently with the request:
      // when it first answers 200, and when its body first says the server left recovery.
      let tRest = Number.NaN;
      const tMaster = await pollUntil(
        async () => {
          const r = await target.rest("/primary", 1000).catch(() => null);
          if (r?.status !== 200) return null;
          const t = now();
          if (Number.isNaN(tRest)) tRest = t;
          const role = (r.body as { role?: unknown } | null)?.role;
          return role === "master" || role === "primary" ? t : null;
        },
        () => failed,
        REST_POLL_MS,
      );
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
          restToServedMs: round(t - tRest, 1),
          masterToServedMs: round(t - tMaster, 1),
        };
      }
      const s: SwitchSample = {
        from,
        to,
        deleteToPutMs: del ? round(put.t - del.t, 1) : Number.NaN,
        putToRestMs: round(tRest - put.t, 1),
        putToMasterMs: round(tMaster - put.t, 1),
        served,
        routerDecisions: lab.router
          .decisions(tPost - 100, put.t + served.router.putToServedMs + 100)
          .map((d) => ({
            atMs: Math.round(d.t - put.t),
            action: d.action,
            target: d.target,
            reason: d.reason ?? d.msg,
          })),
      };
      samples.push(s);
      log(
        `switch ${i + 1}/${count} ${from} -> ${to}: put→rest ${s.putToRestMs} ms, put→master ` +
          `${s.putToMasterMs} ms; router put→served ${served.router.putToServedMs} ms (rest→served ` +
          `${served.router.restToServedMs}, master→served ${served.router.masterToServedMs}); haproxy-docs ` +
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
  const pick = (via: ProbeVia, k: "putToServedMs" | "restToServedMs" | "masterToServedMs") =>
    samples.map((s) => s.served[via][k]);
  return {
    samples,
    summary: {
      n: samples.length,
      putToRestMs: summary(samples.map((s) => s.putToRestMs)),
      putToMasterMs: summary(samples.map((s) => s.putToMasterMs)),
      deleteToPutMs: summary(samples.map((s) => s.deleteToPutMs)),
      router: {
        putToServedMs: summary(pick("router", "putToServedMs")),
        restToServedMs: summary(pick("router", "restToServedMs")),
        masterToServedMs: summary(pick("router", "masterToServedMs")),
      },
      "haproxy-docs": { putToServedMs: summary(pick("haproxy-docs", "putToServedMs")) },
      "haproxy-fast": { putToServedMs: summary(pick("haproxy-fast", "putToServedMs")) },
      routerSwitchSecondsMeanMs: routerMetricMeanMs,
    },
  };
}
