import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  backendsInStartUp,
  type DrainDeps,
  drainStartUps,
  withinDeadline,
} from "../../agent/startup-drain.js";

const proc = (title: string, pid = 100, ppid = 1) => ({ pid, ppid, title });

describe("backends in start-up, from process titles", () => {
  const table: [string, number][] = [
    ["postgres: pgha: postgres postgres 127.0.0.1(36352) authentication", 1],
    ["postgres: postgres postgres 127.0.0.1(36352) authentication", 1],
    ["postgres: pgha: app appdb 172.18.0.5(41000) initializing", 1],
    ["postgres: pgha: app appdb [local] startup", 1],
    ["postgres: pgha: app appdb ::1(5000) authentication\0\0\0", 1],
    ["postgres: pgha: app appdb 127.0.0.1(36352) idle", 0],
    ["postgres: pgha: app appdb 127.0.0.1(36352) INSERT", 0],
    ["postgres: pgha: startup recovering 000000020000000000000003", 0],
    ["postgres: pgha: startup ", 0],
    ["postgres: pgha: checkpointer ", 0],
    ["postgres: pgha: walsender replicator 172.18.0.3(40000) streaming 0/3000060", 0],
    ["postgres: pgha: authentication", 0],
    ["/usr/bin/python3 /usr/bin/patroni authentication", 0],
  ];
  for (const [title, n] of table) {
    it(`${JSON.stringify(title)} → ${n}`, () => assert.equal(backendsInStartUp([proc(title)]), n));
  }
  it("counts every one", () => assert.equal(backendsInStartUp(table.map(([t], i) => proc(t, 100 + i))), 5));
});

describe("backends not yet named: children of the postmaster still under its command line", () => {
  const postmaster = "/usr/lib/postgresql/17/bin/postgres\0-D\0/data\0--config-file=/data/postgresql.conf\0";
  const named = [
    proc(postmaster, 40, 7),
    proc("postgres: pgha: checkpointer ", 41, 40),
    proc("postgres: pgha: app appdb 10.0.0.5(4000) idle", 42, 40),
  ];
  it("a postmaster and its named children: none", () => assert.equal(backendsInStartUp(named), 0));
  it("a child with the postmaster's command line (its client in the SSL negotiation): one", () =>
    assert.equal(backendsInStartUp([...named, proc(postmaster, 43, 40), proc(postmaster, 44, 40)]), 2));
  it("a postmaster started as plain `postgres`: its unnamed child counts too", () =>
    assert.equal(backendsInStartUp([proc("postgres\0-D\0/d\0", 5, 1), proc("postgres\0-D\0/d\0", 6, 5)]), 1));
  it("the same command line under another parent, or another program forked: none", () => {
    assert.equal(backendsInStartUp([proc(postmaster, 43, 99)]), 0);
    const shell = "/bin/bash\0-c\0postgres\0";
    assert.equal(backendsInStartUp([proc(shell, 50, 1), proc(shell, 51, 50)]), 0);
    const patroni = "/usr/bin/python3\0/usr/bin/patroni\0/etc/patroni.yml\0";
    assert.equal(backendsInStartUp([proc(patroni, 7, 1), proc(patroni, 8, 7)]), 0);
  });
});

/** A clock that moves only when the drain sleeps; processes given per call. */
function lab(opts: { primary: boolean; stopping?: boolean; announced?: boolean; startUps: number[] }) {
  let now = 0;
  const slept: number[] = [];
  let call = 0;
  const deps: DrainDeps = {
    primary: () => opts.primary,
    stopSequenceRunning: () => opts.stopping ?? false,
    switchoverAnnounced: async () => opts.announced ?? true,
    processes: () => {
      const n = opts.startUps[Math.min(call++, opts.startUps.length - 1)] ?? 0;
      return Array.from({ length: n }, (_, i) =>
        proc(`postgres: app db 10.0.0.1(${1000 + i}) authentication`, 100 + i),
      );
    },
    now: () => now,
    sleep: async (ms) => {
      slept.push(ms);
      now += ms;
    },
  };
  return { deps, slept };
}

describe("withinDeadline", () => {
  it("the check's answer when it comes in time; false when it fails or is late", async () => {
    assert.equal(await withinDeadline(async () => true, 1000), true);
    assert.equal(await withinDeadline(() => Promise.reject(new Error("etcd down")), 1000), false);
    assert.equal(await withinDeadline(() => new Promise<boolean>(() => undefined), 20), false);
  });
});

describe("draining start-ups before a stop", () => {
  const o = { noticeMs: 200, maxMs: 2000, pollMs: 20 };

  it("a primary gives the notice, then answers at once when nobody is in start-up", async () => {
    const { deps, slept } = lab({ primary: true, startUps: [0] });
    assert.deepEqual(await drainStartUps(deps, o), {
      planned: true,
      noticeMs: 200,
      inStartUp: 0,
      left: 0,
      ms: 200,
    });
    assert.deepEqual(slept, [200]);
  });

  it("no switchover announced and no stop requested: no notice, no wait, whoever is in start-up", async () => {
    const { deps, slept } = lab({ primary: true, announced: false, startUps: [2] });
    assert.deepEqual(await drainStartUps(deps, o), {
      planned: false,
      noticeMs: 0,
      inStartUp: 2,
      left: 2,
      ms: 0,
    });
    assert.deepEqual(slept, []);
  });

  it("the agent's own stop sequence is a planned stop without an announcement read", async () => {
    const { deps } = lab({ primary: true, stopping: true, announced: false, startUps: [1, 0] });
    const r = await drainStartUps(deps, o);
    assert.deepEqual([r.planned, r.noticeMs, r.left, r.ms], [true, 0, 0, 20]);
  });

  it("a replica gives no notice", async () => {
    const { deps } = lab({ primary: false, startUps: [0] });
    assert.equal((await drainStartUps(deps, o)).ms, 0);
  });

  it("no notice while the agent's own stop sequence runs (it gave one before the switchover)", async () => {
    const { deps } = lab({ primary: true, stopping: true, startUps: [0] });
    assert.equal((await drainStartUps(deps, o)).noticeMs, 0);
  });

  it("waits while clients are in start-up, polling, and answers once they are done", async () => {
    const { deps, slept } = lab({ primary: true, startUps: [2, 2, 1, 0] });
    assert.deepEqual(await drainStartUps(deps, o), {
      planned: true,
      noticeMs: 200,
      inStartUp: 2,
      left: 0,
      ms: 260,
    });
    assert.deepEqual(slept, [200, 20, 20, 20]);
  });

  it("stops waiting at the bound, notice included, and says how many were left", async () => {
    const { deps } = lab({ primary: true, startUps: [3] });
    const r = await drainStartUps(deps, o);
    assert.equal(r.ms, 2000);
    assert.equal(r.left, 3);
  });

  it("a notice longer than the bound is cut to it", async () => {
    const { deps } = lab({ primary: true, startUps: [1] });
    const r = await drainStartUps(deps, { noticeMs: 5000, maxMs: 1000, pollMs: 20 });
    assert.deepEqual([r.noticeMs, r.ms, r.left], [1000, 1000, 1]);
  });
});
