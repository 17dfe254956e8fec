/**
 * The events of the "no acknowledged write is lost" matrix, played on any
 * cluster of agent containers (plain `docker run` or the compose stack), in
 * either replication mode. Each event asserts, from the writers' own records,
 * that whoever leads afterwards has every acknowledged write (asynchronous +
 * SIGKILL: the documented bound instead), then brings the cluster back to a
 * leader and streaming replicas for the next event.
 */
import assert from "node:assert/strict";
import pg from "pg";
import {
  type AckWriter,
  makeWriters,
  missing,
  type PgTarget,
  pgConfig,
  startWriters,
  summary,
} from "./ack-writers.js";
import { docker } from "./docker.js";
import { run, waitFor } from "./proc.js";

/** Patroni's maximum_lag_on_failover as the agent renders it (bytes). */
export const MAX_LAG_ON_FAILOVER = 1_048_576;

export interface ClusterUnderTest {
  readonly label: string;
  readonly synchronous: boolean;
  readonly nodes: readonly string[];
  /** Patroni's ttl and loop_wait in this cluster (s). */
  readonly ttl: number;
  readonly loopWait: number;
  /** What `docker stop -t` gives an agent here (the agent's STOP_GRACE_PERIOD). */
  readonly gracePeriod: number;
  containerOf(node: string): string;
  runningLeader(): Promise<string | null>;
  /** The member key of a node exists (it has joined: cloning, starting or running). */
  hasMember(node: string): Promise<boolean>;
  direct(node: string): Promise<PgTarget>;
  viaRouter(): PgTarget;
  /** Waits until the router routes writes (its /readyz, or a write through it). */
  waitRouted(): Promise<void>;
  waitStreaming(node: string): Promise<void>;
  /** Recreates a node with an empty data directory: it joins anew. */
  freshNode(node: string): Promise<void>;
  /** `/status` optime in etcd: the leader's last reported position. */
  statusOptime(): Promise<number>;
  /** The synchronous standby named in `/sync`, or null. */
  syncStandby(): Promise<string | null>;
  diagnostics(): Promise<string>;
}

export interface CellResult {
  readonly leaderAfter: string;
  readonly note: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function withDiagnostics<T>(c: ClusterUnderTest, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    // A new error: the test runner prints an AssertionError's own message and diff, not one
    // appended to afterwards.
    throw new Error(`${(err as Error).message}\n${await c.diagnostics()}`, { cause: err });
  }
}

async function waitLeader(c: ClusterUnderTest, not: string | null, timeoutMs = 120_000): Promise<string> {
  return waitFor(
    not ? `a leader other than ${not}` : "a leader",
    async () => {
      const l = await c.runningLeader();
      return l && l !== not ? l : null;
    },
    { timeoutMs, intervalMs: 250 },
  );
}

/** Brings a stopped node back and waits until it streams from the leader. */
async function rejoin(c: ClusterUnderTest, node: string): Promise<void> {
  await docker(["start", c.containerOf(node)]);
  await c.waitStreaming(node);
  await waitSynchronous(c);
}

/**
 * In synchronous mode, waits until the leader has a synchronous standby: until then Patroni
 * acknowledges commits without one and lets nobody but the leader take over.
 */
async function waitSynchronous(c: ClusterUnderTest): Promise<void> {
  if (!c.synchronous) return;
  await waitFor("a synchronous standby", () => c.syncStandby(), { timeoutMs: 120_000, intervalMs: 500 });
}

async function agentLog(c: ClusterUnderTest, node: string): Promise<string> {
  const r = await run("docker", ["logs", c.containerOf(node)], { timeoutMs: 30_000 });
  return r.stdout + r.stderr;
}

/** Every acknowledged write is on the leader: the assertion of each cell. */
async function assertNothingLost(
  c: ClusterUnderTest,
  leader: string,
  writers: readonly AckWriter[],
): Promise<void> {
  const lost = await missing(await c.direct(leader), writers);
  assert.deepEqual(lost, [], `acknowledged writes missing on ${leader}`);
}

/**
 * A planned stop right after a write, while a replica has just joined: the leader's other
 * replicas are stopped, one replica is recreated empty, and as soon as its member key exists
 * (it is cloning or starting) a write is acknowledged and the leader is stopped.
 */
export async function plannedStopJustJoined(c: ClusterUnderTest): Promise<CellResult> {
  return withDiagnostics(c, async () => {
    const leader = await waitLeader(c, null);
    const [joiner, ...others] = c.nodes.filter((n) => n !== leader);
    assert.ok(joiner, "a node to join");
    for (const o of others) await docker(["stop", "-t", String(c.gracePeriod), c.containerOf(o)]);
    await c.freshNode(joiner);
    await waitFor(`${joiner} to join`, () => c.hasMember(joiner), { timeoutMs: 120_000, intervalMs: 100 });
    const target = await c.direct(leader);
    const direct = makeWriters(() => target, `${c.label}-joined`);
    for (const w of direct) await w.writeOnce();
    await Promise.all(direct.map((w) => w.stop()));
    const stoppedAt = Date.now();
    await docker(["stop", "-t", String(c.gracePeriod), c.containerOf(leader)], {
      timeoutMs: (c.gracePeriod + 30) * 1000,
    });
    const log = await agentLog(c, leader);
    const handedOver = /"msg":"switchover done"/.test(log);
    let next: string;
    let fencedLeader: string | null = null;
    if (handedOver) {
      next = await waitLeader(c, leader);
    } else {
      // Stopped behind the fence: nobody may lead until the old leader returns, unless a
      // replica has every write up to its shutdown checkpoint (the joiner, if it caught up
      // before the stop), which the fence then lets lead.
      assert.match(log, /stopping without a handover/);
      await sleep((c.ttl + c.loopWait) * 1000);
      fencedLeader = await c.runningLeader();
      if (fencedLeader !== null) {
        assert.match(
          await agentLog(c, fencedLeader),
          /every write","ms":[\d.]+,"msg":"promotion allowed"/,
          `${fencedLeader} leads while ${leader} is away: only with the fence's leave (every write)`,
        );
        next = fencedLeader;
      } else {
        await docker(["start", c.containerOf(leader)]);
        next = await waitLeader(c, null);
      }
    }
    await assertNothingLost(c, next, direct);
    const how = handedOver
      ? `handed over to ${next}`
      : fencedLeader !== null
        ? `fenced; ${next} had every write and leads`
        : `fenced; ${next} leads after the old leader returned`;
    const note = `${leader} stopped ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s after ${joiner} joined: ${how}`;
    // Back to full strength. The replicas stopped at the start may miss WAL that a freshly
    // cloned new leader never had (no archive here): they join anew, as an operator's
    // reinitialize would make them.
    if (next !== leader) await rejoin(c, leader);
    for (const o of others) {
      await c.freshNode(o);
      await c.waitStreaming(o);
    }
    if (next === leader) await c.waitStreaming(joiner);
    await waitSynchronous(c);
    return { leaderAfter: next, note };
  });
}

/** Writers through the router, then `docker stop` (planned) or `docker kill` (SIGKILL) of the leader. */
export async function leaderStoppedUnderWrites(
  c: ClusterUnderTest,
  how: "stop" | "kill",
): Promise<CellResult> {
  return withDiagnostics(c, async () => {
    const leader = await waitLeader(c, null);
    await waitSynchronous(c);
    await c.waitRouted();
    const writers = startWriters(() => c.viaRouter(), `${c.label}-${how}`);
    await sleep(3000);
    const statusBefore = how === "kill" ? await c.statusOptime() : 0;
    const syncBefore = c.synchronous ? await c.syncStandby() : null;
    const t0 = Date.now();
    if (how === "stop") {
      await docker(["stop", "-t", String(c.gracePeriod), c.containerOf(leader)], {
        timeoutMs: (c.gracePeriod + 30) * 1000,
      });
    } else {
      await docker(["kill", c.containerOf(leader)]);
    }
    const next = await waitLeader(c, leader, (c.ttl + 90) * 1000);
    await c.waitRouted();
    await sleep(3000);
    await Promise.all(writers.map((w) => w.stop()));
    for (const w of writers)
      assert.ok(
        w.acks.some((a) => a.at > t0),
        `${w.kind} wrote after the ${how}: ${summary([w], t0)}`,
      );
    const lost = await missing(await c.direct(next), writers);
    const note = `${how} ${leader} → ${next}; ${summary(writers, t0)}; ${lost.length} acknowledged rows missing`;
    if (c.synchronous) assert.equal(next, syncBefore, `the synchronous standby takes over: ${note}`);
    if (how === "kill" && !c.synchronous) {
      // Asynchronous replication: Patroni promotes a replica within maximum_lag_on_failover of the
      // leader's last reported position. Every acknowledged row before that bound is kept.
      const bound = statusBefore - MAX_LAG_ON_FAILOVER;
      const lsnOf = new Map(writers.flatMap((w) => w.acks.map((a) => [a.id, a.lsn] as const)));
      const beyond = lost.filter((id) => lsnToBytes(lsnOf.get(id)!) >= bound);
      assert.deepEqual(lost, beyond, `rows lost before the documented bound (${bound} bytes): ${note}`);
    } else {
      assert.deepEqual(lost, [], note);
    }
    await rejoin(c, leader);
    return { leaderAfter: next, note };
  });
}

/**
 * The grace period runs out: the leader's replicas are stopped (so none streams), a write is
 * acknowledged, the leader is stopped with a short grace period, then the replicas return.
 * By design nobody may lead (they lack the write) until the old leader returns; it then leads
 * with every write.
 */
export async function graceRunsOut(c: ClusterUnderTest): Promise<CellResult> {
  return withDiagnostics(c, async () => {
    const leader = await waitLeader(c, null);
    const replicas = c.nodes.filter((n) => n !== leader);
    const target = await c.direct(leader);
    for (const r of replicas) {
      await docker(["stop", "-t", "30", c.containerOf(r)]);
      await settledWithout(c, target, replicas.slice(0, replicas.indexOf(r) + 1));
    }
    const writers = makeWriters(() => target, `${c.label}-grace`);
    for (const w of writers) await w.writeOnce();
    await Promise.all(writers.map((w) => w.stop()));
    await docker(["stop", "-t", String(c.gracePeriod), c.containerOf(leader)], {
      timeoutMs: (c.gracePeriod + 30) * 1000,
    });
    assert.match(await agentLog(c, leader), /stopping without a handover/);
    for (const r of replicas) await docker(["start", c.containerOf(r)]);
    // Long enough for a replica to win a race: the old leader's lock expired long ago.
    const until = Date.now() + (c.ttl + 3 * c.loopWait + 5) * 1000;
    while (Date.now() < until) {
      assert.equal(await c.runningLeader(), null, "no replica that lacks the write may lead");
      await sleep(500);
    }
    const refusals = (await Promise.all(replicas.map((r) => agentLog(c, r)))).join("\n");
    await docker(["start", c.containerOf(leader)]);
    const next = await waitLeader(c, null);
    assert.equal(next, leader, "the old leader leads again");
    await assertNothingLost(c, next, writers);
    for (const r of replicas) await c.waitStreaming(r);
    await waitSynchronous(c);
    const refused = (refusals.match(/promotion refused by the stop fence/g) ?? []).length;
    return {
      leaderAfter: next,
      note: `no leader while ${leader} was away (${refused} promotions refused by the fence); ${leader} leads again with every write`,
    };
  });
}

/**
 * In synchronous mode, waits until the leader names no stopped replica as its synchronous
 * standby, in `/sync` and in `synchronous_standby_names`. Patroni 3.0.2 can otherwise keep
 * `synchronous_standby_names` pointing at a replica that stopped within two seconds of being
 * picked (it sleeps 2 s after picking, and writes `/sync` only if the replica is still there),
 * and then every commit waits until a replica returns.
 */
async function settledWithout(
  c: ClusterUnderTest,
  leader: PgTarget,
  stopped: readonly string[],
): Promise<void> {
  if (!c.synchronous) return;
  await waitFor(
    `the leader to stop waiting for ${stopped.join(", ")}`,
    async () => {
      const sync = await c.syncStandby();
      if (sync !== null && stopped.includes(sync)) return false;
      const client = new pg.Client({ ...pgConfig(leader), connectionTimeoutMillis: 5000 });
      await client.connect();
      try {
        const names = (
          await client.query<{ s: string }>("select current_setting('synchronous_standby_names') s")
        ).rows[0]!.s;
        // Settled: nobody is waited for, or `/sync` and PostgreSQL name the same running replica.
        return sync === null ? names === "" : names.includes(sync);
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    { timeoutMs: 30_000, intervalMs: 500 },
  );
}

export function lsnToBytes(lsn: string): number {
  const [hi, lo] = lsn.split("/");
  return Number.parseInt(hi!, 16) * 2 ** 32 + Number.parseInt(lo!, 16);
}
