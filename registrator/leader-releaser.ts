/**
 * Releasing a dead leader's lock (`-release-dead-leaders`): the edges. The
 * tracker hands over every look it takes at a container (`observe`); the
 * decisions are leader-release.ts's. For a Patroni member of this host that
 * died, it reads the member's cluster prefix in one range request, asks
 * `releaseDecision`, and deletes the leader key and the member's record in one
 * transaction:
 *
 *   if  each key's value, mod_revision and lease == <as read>
 *   then delete /<namespace>/<scope>/leader, delete /<namespace>/<scope>/members/<member>
 *
 * so a lock taken or renewed since the read (a new leader, the member's own
 * restarted Patroni, which also rewrites its record) is never touched. Each death is handled once (Docker's
 * FinishedAt); a failed etcd call is retried, with a fresh read, for a few
 * seconds, then left to Patroni's ttl.
 */
import type { Etcd3 } from "etcd3";
import { toEtcdError } from "../shared/etcd.js";
import { agentKeys, clusterPrefix, patroniKeys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { Backoff, sleep } from "../shared/time.js";
import type { ContainerEvent } from "./docker-events.js";
import {
  type ClusterRead,
  DEATH_CAUSES,
  type DeathNotice,
  type DieEvent,
  deathNotice,
  KEEP_CODES,
  type KeyRead,
  liveness,
  type MemberIdentity,
  memberKey,
  memberLabel,
  memberOf,
  type NoticeOptions,
  type ReleaseDecision,
  releaseDecision,
  type Tie,
} from "./leader-release.js";
import {
  type ContainerFacts,
  type ContainerView,
  NO_FACTS,
  nextFacts,
  type Observation,
} from "./lifecycle.js";
import type { RegistratorMetrics } from "./metrics.js";

/** etcd calls for one death are retried (each with a fresh read) for about this long. */
export const RELEASE_RETRY_MS = 3000;

function containerName(inspect: unknown, id: string): string {
  const name = (inspect as { Name?: unknown } | null)?.Name;
  return typeof name === "string" && name !== "" ? name.replace(/^\//, "") : id.slice(0, 12);
}

/** What the releaser took when a `die` arrived: before any restart policy could start the container again. */
interface AtDeath {
  readonly died: DieEvent;
  /** The facts of the events up to the die (a `start` after it resets the tracker's). */
  readonly facts: ContainerFacts;
  readonly published: readonly string[];
  /** The member's keys, read at once; null when the container was not known to run a member. */
  readonly read: Promise<ClusterRead | Error> | null;
}

export class LeaderReleaser {
  /** `ip:port` values published for each container while it ran (its latest start's). */
  private readonly published = new Map<string, readonly string[]>();
  /** The member each live container names (any host's): a second live claimant is a doubt. */
  private readonly live = new Map<string, { member: MemberIdentity; name: string }>();
  private readonly deaths = new Map<string, AtDeath>();
  /** Each container's facts since its last start, from the events as they arrive. */
  private readonly facts = new Map<string, ContainerFacts>();
  /** The death (FinishedAt) already handled for each container. */
  private readonly handled = new Map<string, string>();
  private readonly running = new Set<Promise<void>>();
  private readonly stopping = new AbortController();

  constructor(
    private readonly client: Etcd3,
    private readonly o: NoticeOptions,
    private readonly log: Logger,
    private readonly metrics: RegistratorMetrics,
  ) {
    for (const reason of DEATH_CAUSES) metrics.leaderReleases.inc({ reason }, 0);
    for (const reason of KEEP_CODES) {
      if (reason !== "alive") metrics.leaderReleaseSkips.inc({ reason }, 0);
    }
  }

  /**
   * Docker's events, as they arrive (before the tracker's look): on `die`, what was published
   * for the container is kept and its member's keys are read at once, while Docker cleans up.
   */
  onEvent(ev: ContainerEvent): void {
    if (this.stopping.signal.aborted) return;
    const facts = nextFacts(this.facts.get(ev.id) ?? NO_FACTS, ev);
    this.facts.set(ev.id, facts);
    // A start does not forget a death: the look that answers the die may come after a restart.
    if (ev.action !== "die") return;
    const live = this.live.get(ev.id);
    const read = live ? this.read(live.member).catch((err: unknown) => toEtcdError(err, "range read")) : null;
    this.deaths.set(ev.id, {
      died: { at: ev.at ?? Date.now(), exitCode: ev.exitCode ?? null },
      facts,
      published: this.published.get(ev.id) ?? [],
      read,
    });
  }

  /** Every look the tracker takes at a container: what it decided and the facts its events gave. */
  observe(id: string, obs: Observation, view: ContainerView | null, facts: ContainerFacts): void {
    if (this.stopping.signal.aborted) return;
    if (obs.kind === "gone") {
      this.published.delete(id);
      this.live.delete(id);
      this.deaths.delete(id);
      this.facts.delete(id);
      this.handled.delete(id);
      return;
    }
    const name = containerName(obs.inspect, id);
    const identity = memberOf(obs.inspect, this.o.namespace).member;
    const atDeath = this.deaths.get(id);
    const live = liveness(obs.inspect, atDeath?.died.at ?? null);
    const alive = live === undefined || live.kind === "alive" || live.restart === "restarted";
    if (view?.state === "registered")
      this.published.set(
        id,
        view.services.map((s) => s.value),
      );
    if (identity && alive) this.live.set(id, { member: identity, name });
    else this.live.delete(id);
    const deathFacts = atDeath?.facts ?? facts;
    if (!deathFacts.deathEvent || live?.kind === "alive") return;

    // This look answers the death: it is handled once, whatever follows.
    this.deaths.delete(id);
    const notice = deathNotice(obs.inspect, deathFacts, atDeath?.died ?? null, this.o);
    if (notice.action === "keep" && (notice.member === null || notice.code === "alive")) return;
    const finishedAt = notice.action === "check" ? notice.death.finishedAt : this.finishedAt(obs.inspect);
    if (this.handled.get(id) === finishedAt) return;
    this.handled.set(id, finishedAt);
    const log = this.log.child({ container: name, member: memberLabel(notice.member!) });
    if (notice.action === "keep") {
      this.kept(log, notice.code, notice.reason, false);
      return;
    }
    const tie = {
      published: atDeath?.published ?? this.published.get(id) ?? [],
      twins: this.twins(id, notice.member),
      readAtDeath: atDeath?.read != null,
    };
    const p = this.release(log, notice, tie, atDeath?.read ?? null).finally(() => this.running.delete(p));
    this.running.add(p);
  }

  /** Stops acting and waits for the releases under way. */
  async close(): Promise<void> {
    this.stopping.abort();
    await Promise.allSettled([...this.running]);
  }

  private twins(id: string, member: MemberIdentity): string[] {
    const key = memberKey(member);
    return [...this.live]
      .filter(([other, l]) => other !== id && memberKey(l.member) === key)
      .map(([, l]) => l.name);
  }

  private finishedAt(inspect: unknown): string {
    const at = (inspect as { State?: { FinishedAt?: unknown } } | null)?.State?.FinishedAt;
    return typeof at === "string" ? at : "";
  }

  private kept(log: Logger, code: string, reason: string, leader: boolean): void {
    this.metrics.leaderReleaseSkips.inc({ reason: code });
    // The lead's rule: a doubt about whose container it was is a debug line; a leader kept is news.
    if (leader && code !== "not-tied") log.info({ action: "keep", code, reason }, "dead leader's lock kept");
    else log.debug({ action: "keep", code, reason }, "nothing to release");
  }

  private async release(
    log: Logger,
    notice: Extract<DeathNotice, { action: "check" }>,
    firstTie: Tie,
    readAtDeath: Promise<ClusterRead | Error> | null,
  ): Promise<void> {
    const started = performance.now();
    const deadline = started + RELEASE_RETRY_MS;
    const backoff = new Backoff(50, 800);
    let tie = firstTie;
    for (let attempt = 1; ; attempt++) {
      let decision: ReleaseDecision | null = null;
      try {
        // The read taken at the die first; a retry reads again (and is no longer "at death").
        const early = attempt === 1 && readAtDeath ? await readAtDeath : null;
        if (early instanceof Error) throw early;
        if (early === null) tie = { ...tie, readAtDeath: false };
        const read = early ?? (await this.read(notice.member));
        decision = releaseDecision(notice, tie, read);
        if (decision.action === "keep") {
          this.kept(log, decision.code, decision.reason, decision.leader);
          return;
        }
        const r = await this.deleteIfUnchanged([
          { key: decision.key, compare: decision.compare },
          decision.record,
        ]);
        const ms = Math.round(performance.now() - started);
        if (!r.succeeded) {
          this.kept(
            log,
            "changed",
            "the lock changed between the read and the transaction (a new leader, or Patroni's own expiry); nothing deleted",
            true,
          );
          return;
        }
        this.metrics.leaderReleases.inc({ reason: decision.code });
        const finished = Date.parse(notice.death.finishedAt);
        log.warn(
          {
            action: "release",
            reason: decision.code,
            why: decision.reason,
            key: decision.key,
            revision: r.revision,
            ms,
            afterDeathMs: Number.isFinite(finished) ? Date.now() - finished : undefined,
          },
          "released the lock of a dead leader: its replicas race for it now",
        );
        return;
      } catch (err) {
        const e = toEtcdError(err, decision?.action === "release" ? "txn" : "range read", {
          member: memberLabel(notice.member),
        });
        if (performance.now() >= deadline || this.stopping.signal.aborted) {
          log.error(
            { err: e, attempts: attempt },
            "could not release a dead leader's lock; Patroni's ttl releases it",
          );
          return;
        }
        if (attempt === 1)
          log.warn({ err: e }, "etcd did not answer while releasing a dead leader's lock; retrying");
        await sleep(backoff.next(), this.stopping.signal);
      }
    }
  }

  private async read(m: MemberIdentity): Promise<ClusterRead> {
    this.metrics.etcdOperations.inc({ op: "get" });
    try {
      return await readCluster(this.client, m);
    } catch (err) {
      this.metrics.etcdErrors.inc({ op: "get" });
      throw err;
    }
  }

  private async deleteIfUnchanged(keys: readonly KeyAsRead[]): Promise<TxnResult> {
    this.metrics.etcdOperations.inc({ op: "txn" });
    try {
      return await deleteIfUnchanged(this.client, keys);
    } catch (err) {
      this.metrics.etcdErrors.inc({ op: "txn" });
      throw err;
    }
  }
}

/** The member's cluster keys (leader, member record, stop fence, config), in one range request. */
export async function readCluster(client: Etcd3, m: MemberIdentity): Promise<ClusterRead> {
  const res = await client.getAll().prefix(clusterPrefix(m.namespace, m.scope)).exec();
  const byKey = new Map<string, KeyRead>();
  for (const kv of res.kvs) {
    byKey.set(kv.key.toString(), {
      value: kv.value.toString(),
      modRevision: String(kv.mod_revision),
      lease: String(kv.lease),
    });
  }
  return {
    revision: String(res.header.revision),
    leader: byKey.get(patroniKeys.leader(m.namespace, m.scope)) ?? null,
    member: byKey.get(patroniKeys.member(m.namespace, m.scope, m.name)) ?? null,
    fence: byKey.get(agentKeys.fence(m.namespace, m.scope)) ?? null,
    config: byKey.get(patroniKeys.config(m.namespace, m.scope)) ?? null,
  };
}

export interface TxnResult {
  readonly succeeded: boolean;
  /** etcd's revision after the transaction. */
  readonly revision: string;
}

/** A key and what was read of it. */
export interface KeyAsRead {
  readonly key: string;
  readonly compare: KeyRead;
}

/**
 * Deletes the keys in one transaction if each one's value, mod revision and lease are still
 * those read; otherwise deletes none.
 */
export async function deleteIfUnchanged(client: Etcd3, keys: readonly KeyAsRead[]): Promise<TxnResult> {
  if (keys.length === 0) throw new Error("deleteIfUnchanged: no key given");
  let txn = client.if(keys[0]!.key, "Value", "==", keys[0]!.compare.value);
  for (const [i, { key, compare }] of keys.entries()) {
    if (i > 0) txn = txn.and(key, "Value", "==", compare.value);
    txn = txn.and(key, "Mod", "==", compare.modRevision).and(key, "Lease", "==", compare.lease);
  }
  const r = await txn.then(...keys.map(({ key }) => client.delete().key(key))).commit();
  return { succeeded: r.succeeded, revision: String(r.header.revision) };
}
