/**
 * Read, watch, re-read: a prefix kept as an immutable snapshot.
 *
 * One range read gives the keys and a revision; a watch from revision + 1 keeps
 * the snapshot current. When the watch stream breaks, a new watch resumes from
 * the last revision held, so no event is lost. When that revision has been
 * compacted (or the watch is cancelled for any other reason), the whole prefix
 * is read again, the snapshot replaced, and a `resync` reported. Events older
 * than the snapshot are dropped.
 *
 * Events: `snapshot` (snap, reason) after each full read, `change` (snap, changes)
 * after each batch of watch events, `state` (state, err?) when the stream's state changes.
 */
import { EventEmitter } from "node:events";
import type { Etcd3, IKeyValue, Watcher } from "etcd3";
import { EtcdError } from "./errors.js";
import { isCompactedError, toEtcdError } from "./etcd.js";
import type { Logger } from "./logger.js";
import { Backoff, sleep } from "./time.js";

export interface KV {
  readonly key: string;
  readonly value: string;
  readonly modRevision: number;
  readonly createRevision: number;
  readonly lease: string;
}

export interface PrefixSnapshot {
  /** The store revision this snapshot is consistent with. */
  readonly revision: number;
  readonly kvs: ReadonlyMap<string, KV>;
}

export interface KeyChange {
  readonly type: "put" | "delete";
  readonly key: string;
  readonly value: string | null;
  readonly modRevision: number;
}

export type WatchState = "connecting" | "live" | "disconnected" | "closed";

/**
 * How long a new watch may take to be created before it is given up and the stream started
 * again, on a member picked anew. A member that went silent (its host cut off or dead: no
 * reset ever arrives) never answers, and the watch stream has no deadline: without this a
 * watch started on it waits for the kernel's connect timeout, minutes. Each start given up
 * in a row doubles the wait (up to WATCH_START_TIMEOUT_MAX_MS), so that a member that is
 * only slow (a machine under load) is still waited for in the end.
 */
export const WATCH_START_TIMEOUT_MS = 3000;
export const WATCH_START_TIMEOUT_MAX_MS = 24_000;

/** The wait for a watch's start after `stalls` starts given up in a row. */
export function watchStartTimeout(stalls: number): number {
  return Math.min(WATCH_START_TIMEOUT_MS * 2 ** Math.min(stalls, 10), WATCH_START_TIMEOUT_MAX_MS);
}

/**
 * etcd3's watchers share one stream per client, held by their manager; `cancel()` on a
 * watcher writes to that stream, which does nothing for a stream stuck on a silent member.
 * Failing the stream makes the manager start a new one on a member picked anew (its
 * documented reconnect path, as after a stream error), and tells every watcher.
 */
function restartStream(w: Watcher, err: Error): void {
  const manager = (w as unknown as { manager?: { handleError?: (e: Error) => void } }).manager;
  manager?.handleError?.(err);
}
export type SnapshotReason = "initial" | "resync" | "compacted";

export interface PrefixWatchEvents {
  snapshot: [snap: PrefixSnapshot, reason: SnapshotReason];
  change: [snap: PrefixSnapshot, changes: readonly KeyChange[]];
  state: [state: WatchState, err?: Error];
}

const EMPTY: PrefixSnapshot = Object.freeze({ revision: 0, kvs: new Map<string, KV>() });

function toKV(kv: IKeyValue): KV {
  return Object.freeze({
    key: kv.key.toString("utf8"),
    value: kv.value.toString("utf8"),
    modRevision: Number(kv.mod_revision),
    createRevision: Number(kv.create_revision),
    lease: String(kv.lease),
  });
}

export class PrefixWatch extends EventEmitter<PrefixWatchEvents> {
  private snap: PrefixSnapshot = EMPTY;
  private watcher: Watcher | null = null;
  private st: WatchState = "connecting";
  private closed = false;
  private running = false;
  private readonly abort = new AbortController();
  private wake: (() => void) | null = null;
  private needFullRead = true;
  private lastContactAt = 0;
  /** Starts given up in a row (reset when a watch starts). */
  private stalls = 0;

  constructor(
    private readonly client: Etcd3,
    readonly prefix: string,
    private readonly log: Logger,
    private readonly backoff = new Backoff(100, 1000),
  ) {
    super();
  }

  get snapshot(): PrefixSnapshot {
    return this.snap;
  }
  get state(): WatchState {
    return this.st;
  }
  /** When etcd last answered this watch (ms since epoch), 0 if never. */
  get lastContact(): number {
    return this.lastContactAt;
  }

  /** Starts the loop; resolves after the first full read (retrying until it succeeds or the watch is closed). */
  start(): Promise<void> {
    const first = new Promise<void>((resolve) => {
      this.once("snapshot", () => resolve());
      this.abort.signal.addEventListener("abort", () => resolve(), { once: true });
    });
    if (!this.running) void this.loop();
    return first;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    this.wake?.();
    const w = this.watcher;
    this.watcher = null;
    this.setState("closed");
    if (w) await w.cancel().catch(() => undefined);
  }

  private setState(s: WatchState, err?: Error): void {
    if (this.st === s || (this.st === "closed" && s !== "closed")) return;
    this.st = s;
    if (s === "live") this.lastContactAt = Date.now();
    this.emit("state", s, err);
  }

  private async loop(): Promise<void> {
    this.running = true;
    while (!this.closed) {
      try {
        if (this.needFullRead) await this.fullRead();
        const ended = await this.watchOnce();
        if (this.closed) break;
        this.setState("disconnected", ended.err);
        if (ended.reread) this.needFullRead = true;
      } catch (err) {
        if (this.closed) break;
        const e = toEtcdError(err, "range", { prefix: this.prefix });
        this.setState("disconnected", e);
        this.log.debug({ err: e }, "etcd read failed; retrying");
      }
      await sleep(this.backoff.next(), this.abort.signal);
    }
    this.running = false;
  }

  private async fullRead(): Promise<void> {
    const res = await this.client.getAll().prefix(this.prefix).exec();
    if (this.closed) return;
    const kvs = new Map<string, KV>();
    for (const kv of res.kvs) {
      const k = toKV(kv);
      kvs.set(k.key, k);
    }
    const reason: SnapshotReason =
      this.snap === EMPTY ? "initial" : this.compactedSeen ? "compacted" : "resync";
    this.compactedSeen = false;
    this.snap = Object.freeze({ revision: Number(res.header.revision), kvs });
    this.needFullRead = false;
    this.lastContactAt = Date.now();
    if (reason !== "initial")
      this.log.info({ prefix: this.prefix, revision: this.snap.revision, reason }, "prefix re-read");
    this.emit("snapshot", this.snap, reason);
  }
  private compactedSeen = false;

  /** Watches from the snapshot's revision + 1 until the stream breaks; says whether to re-read. */
  private watchOnce(): Promise<{ reread: boolean; err?: Error }> {
    return new Promise((resolve) => {
      const w = this.client
        .watch()
        .prefix(this.prefix)
        .startRevision(String(this.snap.revision + 1))
        .watcher();
      this.watcher = w;
      let done = false;
      let started: NodeJS.Timeout | undefined;
      const finish = (reread: boolean, err?: Error) => {
        if (done) return;
        done = true;
        clearTimeout(started);
        this.wake = null;
        if (this.watcher === w) this.watcher = null;
        w.removeAllListeners();
        w.on("error", () => undefined);
        w.on("disconnected", () => undefined);
        void w.cancel().catch(() => undefined);
        resolve(err === undefined ? { reread } : { reread, err });
      };
      this.wake = () => finish(false);
      const waitMs = watchStartTimeout(this.stalls);
      started = setTimeout(() => {
        this.stalls++;
        const err = new EtcdError(
          `etcd did not start the watch on ${this.prefix} within ${waitMs} ms; starting it again on a member picked anew`,
        );
        this.log.warn({ prefix: this.prefix }, err.message);
        restartStream(w, err);
        finish(false, err);
      }, waitMs);
      started.unref();
      w.on("connected", () => {
        clearTimeout(started);
        this.stalls = 0;
        this.backoff.reset();
        this.setState("live");
      });
      w.on("data", (res) => {
        this.lastContactAt = Date.now();
        try {
          this.apply(res.events, Number(res.header.revision));
        } catch (err) {
          // A consumer's bug must not break the stream; the state stays consistent.
          this.log.error({ err }, "watch consumer threw");
        }
      });
      w.on("disconnected", (err: Error) => finish(false, toEtcdError(err, "watch", { prefix: this.prefix })));
      w.on("error", (err: Error) => {
        // etcd cancels a watch whose start revision was compacted; the client drops the
        // reason, so ask with a range read at that revision.
        void this.wasCompacted(err).then((compacted) => {
          if (compacted) this.compactedSeen = true;
          this.log.warn(
            { err: toEtcdError(err, "watch", { prefix: this.prefix }), compacted },
            "watch cancelled; re-reading",
          );
          finish(true, err);
        });
      });
      w.on("end", () => finish(false));
    });
  }

  private async wasCompacted(err: Error): Promise<boolean> {
    if (isCompactedError(err)) return true;
    try {
      await this.client
        .get(this.prefix)
        .revision(String(this.snap.revision + 1))
        .exec();
      return false;
    } catch (probe) {
      return isCompactedError(probe);
    }
  }

  private apply(events: readonly { type: string; kv: IKeyValue }[], headerRevision: number): void {
    const changes: KeyChange[] = [];
    let kvs: Map<string, KV> | null = null;
    for (const ev of events) {
      const modRevision = Number(ev.kv.mod_revision);
      if (modRevision <= this.snap.revision) continue; // older than what we hold
      kvs ??= new Map(this.snap.kvs);
      const key = ev.kv.key.toString("utf8");
      if (ev.type === "Put" || ev.type === "put" || ev.type === "PUT") {
        const kv = toKV(ev.kv);
        kvs.set(key, kv);
        changes.push({ type: "put", key, value: kv.value, modRevision });
      } else {
        kvs.delete(key);
        changes.push({ type: "delete", key, value: null, modRevision });
      }
    }
    const revision = Math.max(this.snap.revision, headerRevision);
    if (kvs === null) {
      if (revision !== this.snap.revision) this.snap = Object.freeze({ revision, kvs: this.snap.kvs });
      return;
    }
    this.snap = Object.freeze({ revision, kvs });
    this.emit("change", this.snap, changes);
  }
}
