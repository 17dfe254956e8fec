/**
 * Patroni's before_stop hook: what happens between "PostgreSQL is about to be
 * stopped" and the stop itself (`pgha-before-stop` asks the agent, which
 * answers when it is done; Patroni waits for the script).
 *
 * A client whose start-up has reached this server and whose authentication has
 * begun cannot be moved: the router replays a start-up only while the server
 * has answered nothing. If PostgreSQL stops then, the client sees its
 * connection fail. So before a planned stop, a switchover announced in etcd
 * (Patroni's failover key: REST, patronictl, the agent's own handover) or the
 * agent's own stop sequence:
 *
 * 1. On a primary, unless the agent's own stop sequence already gave it, a short
 *    notice: the routers that watch the failover key stop sending new clients
 *    here.
 * 2. Then, up to a bound, wait until no backend is in its start-up (process
 *    title ending in `authentication`, `initializing` or `startup`, or a child of
 *    the postmaster not yet named, in its SSL negotiation): those clients finish
 *    connecting, as sessions that end like any other session.
 *
 * Any other stop (a leader that lost etcd and demotes itself, a crash, a
 * restart) is not held up: the hook answers at once. The announcement is read
 * with a short deadline, and an etcd that does not answer counts as none.
 * The bound keeps a client that never finishes its authentication (a stuck
 * password prompt) from delaying the stop for long.
 */
import { readdirSync, readFileSync } from "node:fs";

/** A backend's ps title while its client connects: `postgres: [cluster: ]user db host(port) state`. */
const START_UP_TITLE = /^postgres: .*(?:\[local\]|\(\d+\)) (?:authentication|initializing|startup)$/;

/** A process as the drain sees it: its title is its command line, NULs as read from /proc. */
export interface PgProcess {
  readonly pid: number;
  readonly ppid: number;
  readonly title: string;
}

/** A postmaster's command line: its program is `postgres` (PostgreSQL's children rename theirs `postgres: …`). */
function isPostmasterLine(title: string): boolean {
  const program = title.split("\0", 1)[0]!.split(" ", 1)[0]!;
  return program === "postgres" || program.endsWith("/postgres");
}

/**
 * The backends still in their start-up. Two kinds:
 * - named ones: the title ends in `authentication`, `initializing` or `startup` (after the
 *   client's StartupMessage);
 * - unnamed ones: a child of the postmaster that still has the postmaster's own command line.
 *   PostgreSQL names a backend only once it has read the StartupMessage; before that the
 *   child answers an SSLRequest and does the TLS handshake under its parent's name, and a
 *   client there (it has had the server's 'S') cannot be moved either.
 * A standby's startup process ("postgres: startup recovering …") names no client: not counted.
 */
export function backendsInStartUp(procs: readonly PgProcess[]): number {
  const byPid = new Map<number, PgProcess>();
  for (const p of procs) byPid.set(p.pid, p);
  let n = 0;
  for (const p of procs) {
    const title = p.title.replaceAll("\0", " ").trim();
    if (START_UP_TITLE.test(title)) {
      n++;
      continue;
    }
    const parent = byPid.get(p.ppid);
    if (parent !== undefined && parent.title === p.title && isPostmasterLine(p.title)) n++;
  }
  return n;
}

/** PostgreSQL's processes this process may read: postmasters, and the children that renamed themselves. */
export function pgProcesses(): PgProcess[] {
  const out: PgProcess[] = [];
  let pids: string[];
  try {
    pids = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const pid of pids) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const title = readFileSync(`/proc/${pid}/cmdline`, "latin1");
      if (!title.startsWith("postgres:") && !isPostmasterLine(title)) continue;
      // stat: "pid (comm) state ppid …"; comm may hold spaces and parentheses, so read after the last ')'.
      const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      out.push({ pid: Number(pid), ppid, title });
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return out;
}

export interface DrainOptions {
  /** How long the routers get to see the announcement before the wait (primary only). */
  readonly noticeMs: number;
  /** The longest the whole hook may take once a planned stop is known. */
  readonly maxMs: number;
  readonly pollMs: number;
}

export const DRAIN_DEFAULTS: DrainOptions = Object.freeze({ noticeMs: 200, maxMs: 2000, pollMs: 20 });

/** How long the hook waits for etcd's answer on whether a switchover is announced. */
export const ANNOUNCEMENT_DEADLINE_MS = 500;

export interface DrainDeps {
  /** True when this PostgreSQL runs as a primary (no standby.signal). */
  readonly primary: () => boolean;
  /** True while the agent's own stop sequence runs (it gave the notice before the switchover). */
  readonly stopSequenceRunning: () => boolean;
  /** True when a switchover is announced in etcd; false when none is, or etcd did not answer in time. */
  readonly switchoverAnnounced: () => Promise<boolean>;
  readonly processes: () => readonly PgProcess[];
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
}

export interface DrainResult {
  /** False: not a planned stop, answered without waiting. */
  readonly planned: boolean;
  readonly noticeMs: number;
  /** Backends in start-up at the first look after the notice. */
  readonly inStartUp: number;
  /** Still in start-up when the hook returned (the bound ran out, or not a planned stop). */
  readonly left: number;
  readonly ms: number;
}

export async function drainStartUps(d: DrainDeps, o: DrainOptions = DRAIN_DEFAULTS): Promise<DrainResult> {
  const t0 = d.now();
  const ownStop = d.stopSequenceRunning();
  const planned = ownStop || (await d.switchoverAnnounced());
  if (!planned) {
    const n = backendsInStartUp(d.processes());
    return { planned, noticeMs: 0, inStartUp: n, left: n, ms: d.now() - t0 };
  }
  const noticeMs = d.primary() && !ownStop ? Math.max(0, Math.min(o.noticeMs, o.maxMs - (d.now() - t0))) : 0;
  if (noticeMs > 0) await d.sleep(noticeMs);
  const inStartUp = backendsInStartUp(d.processes());
  let left = inStartUp;
  while (left > 0 && d.now() - t0 < o.maxMs) {
    await d.sleep(Math.min(o.pollMs, Math.max(1, o.maxMs - (d.now() - t0))));
    left = backendsInStartUp(d.processes());
  }
  return { planned, noticeMs, inStartUp, left, ms: d.now() - t0 };
}

/** `check` with a deadline: false when it fails or takes longer than `ms`. */
export function withinDeadline(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms, false);
    check().then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      () => {
        clearTimeout(t);
        resolve(false);
      },
    );
  });
}
