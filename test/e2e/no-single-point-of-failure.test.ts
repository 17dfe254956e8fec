/**
 * Lose any one part of the compose stack, and clients see a pause, never an error.
 * Four writers go through the router the whole time: psql (libpq, sslmode=prefer) and
 * node-postgres, each both opening a new connection per write and keeping one that it
 * replaces after an error. For each fault:
 *
 *  - the leader's container stopped (a planned stop) and SIGKILLed;
 *  - one etcd member SIGKILLed (the raft leader); every etcd member stopped for 40 s;
 *  - the leader cut off from every etcd member for 45 s (iptables in its namespace);
 *  - the synchronous standby's container SIGKILLed;
 *  - a router worker SIGKILLed; the registrator SIGKILLed;
 *
 * it asserts that no acknowledged write is lost and that no new connection fails (a
 * session already open may end when its server or router worker goes, and its writer
 * reconnects), and prints how long writes stopped. Patroni runs with ttl 20 s here (the least Patroni 4 accepts).
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import {
  ACKED_TABLE_SQL,
  type AckWriter,
  missing,
  pgConfig,
  startWriters,
  summary,
} from "../harness/ack-writers.js";
import { AGENTS, ComposeStack, ETCD_MEMBERS, SYNC_ROLES } from "../harness/compose.js";
import { docker, ensureImages } from "../harness/docker.js";
import { run, waitFor } from "../harness/proc.js";

let stack: ComposeStack;
const results: string[] = [];

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function containerPid(container: string): Promise<number> {
  return Number(await docker(["inspect", "-f", "{{.State.Pid}}", container]));
}

/** Writes stopped longer than this (or anything failed): the fault prints what the parts did. */
const LONG_STOP_MS = 5_000;

/**
 * What the router decided and what each agent logged (Patroni's loop lines that change
 * nothing left out) from `from` on: printed when a fault went worse than it should.
 */
async function printWhy(from: number): Promise<void> {
  const since = new Date(from - 2000).toISOString();
  const logs = async (container: string) => {
    const r = await run("docker", ["logs", "--since", since, container], { timeoutMs: 30_000 }).catch(
      (err: Error) => ({ stdout: err.message, stderr: "" }),
    );
    return (r.stdout + r.stderr).split("\n").filter((l) => l.trim() !== "");
  };
  const router = await logs(await stack.container("router"));
  const parts = [
    `router:\n${router
      .filter((l) => /decision|warn|error|fenc/i.test(l))
      .slice(-30)
      .join("\n")}`,
  ];
  for (const a of AGENTS) {
    const lines = (await logs(`${stack.project}-${a}`)).filter((l) => !/no action\.|GET \/|"GET /.test(l));
    parts.push(`${a}:\n${lines.slice(-60).join("\n")}`);
  }
  console.log(`[spof] what the parts did since ${since}:\n${parts.join("\n")}`);
}

async function ipOf(container: string): Promise<string> {
  return docker(["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container]);
}

/**
 * Writers run through the fault: `inject` plays it, `recovered` waits until the cluster
 * serves again. Asserts nothing acknowledged is lost and no new connection failed.
 */
async function underFault(
  name: string,
  inject: () => Promise<void>,
  recovered: () => Promise<void>,
  opts: {
    sessionsMayEnd: boolean;
    /**
     * A server that dies mid-start-up of a connection whose answer (its authentication
     * request) already reached the client: that connection cannot be replayed elsewhere, and
     * fails. Only connections begun before the fault may fail so (README: "Faults").
     */
    inFlightMayFail?: boolean;
  },
): Promise<void> {
  await stack.waitReady({ timeoutMs: 180_000 });
  const writers = startWriters(() => stack.pg(), `spof-${name.replace(/\W+/g, "-")}`);
  let t0 = 0;
  let injected = 0;
  try {
    await sleep(3000);
    t0 = Date.now();
    await inject();
    injected = Date.now();
    await recovered();
    await sleep(4000);
  } finally {
    await Promise.all(writers.map((w) => w.stop()));
  }
  const leader = (await stack.leader())!;
  const lost = await missing({ ...stack.pg(), host: await stack.ipOf(leader), port: 5432 }, writers);
  const stopped = Math.max(...writers.map((w) => w.longestGapMs(t0 - 1000)));
  const connectFailures = writers.flatMap((w) =>
    w.failures.filter((f) => f.phase === "connect").map((f) => ({ ...f, kind: w.kind })),
  );
  // The fault happened between t0 and `injected` (the docker CLI's own time).
  const inFlight = opts.inFlightMayFail ? connectFailures.filter((f) => f.startedAt <= injected) : [];
  const failedNew = connectFailures
    .filter((f) => !inFlight.includes(f))
    .map(
      (f) =>
        `${f.kind}: ${f.error} (began ${f.startedAt - t0} ms after the fault began, failed at ${f.at - t0} ms; injected by ${injected - t0} ms)`,
    );
  const endedSessions = writers.flatMap((w: AckWriter) => w.failures.filter((f) => f.phase === "session"));
  const line = `${name}: writes stopped ${(stopped / 1000).toFixed(1)} s; ${failedNew.length} failed new connections${inFlight.length > 0 ? ` (+${inFlight.length} in start-up on the server that died)` : ""}; ${endedSessions.length} sessions ended; ${lost.length} acknowledged writes lost`;
  results.push(line);
  console.log(`fault: ${line}\n  ${summary(writers, t0)}`);
  const endedWhy = [...new Set(endedSessions.map((f) => f.error))];
  if (endedWhy.length > 0) console.log(`  sessions ended with: ${endedWhy.slice(0, 5).join(" | ")}`);
  if (
    stopped > LONG_STOP_MS ||
    lost.length > 0 ||
    failedNew.length > 0 ||
    (!opts.sessionsMayEnd && endedSessions.length > 0)
  )
    await printWhy(t0);
  assert.deepEqual(lost, [], `${name}: acknowledged writes lost`);
  assert.deepEqual(failedNew, [], `${name}: no new connection fails`);
  if (!opts.sessionsMayEnd && endedSessions.length > 0) {
    const log = await run("docker", ["logs", await stack.container("router")], { timeoutMs: 30_000 });
    const decisions = (log.stdout + log.stderr)
      .split("\n")
      .filter(
        (l) =>
          l.includes("primary decision") && Date.parse(/"time":"([^"]+)"/.exec(l)?.[1] ?? "") >= t0 - 1000,
      );
    assert.deepEqual(
      endedSessions.map((f) => f.error),
      [],
      `${name}: no session ends; the router's decisions since the fault:\n${decisions.join("\n")}`,
    );
  }
  for (const w of writers)
    assert.ok(
      w.acks.some((a) => a.at > t0),
      `${name}: ${w.kind} wrote after the fault`,
    );
}

describe("no single point of failure: the compose stack under faults", { timeout: 30 * 60_000 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    stack = await ComposeStack.up("spof", {
      cli: "v2",
      env: { PATRONI_TTL: "20", PATRONI_LOOP_WAIT: "2", PATRONI_RETRY_TIMEOUT: "4", SWITCHOVER_TIMEOUT: "5" },
    });
    await stack.waitReady();
    const c = new pg.Client(pgConfig(stack.pg()));
    await c.connect();
    await c.query(ACKED_TABLE_SQL);
    await c.end();
  });

  after(async () => {
    console.log(`fault summary:\n${results.map((r) => `  ${r}`).join("\n")}`);
    await stack?.destroy();
  });

  it("the leader's container stopped", async () => {
    const leader = (await stack.leader())!;
    const container = `${stack.project}-${leader}`;
    await underFault(
      "leader stopped",
      () => docker(["stop", "-t", "60", container], { timeoutMs: 90_000 }).then(() => undefined),
      async () => {
        await waitFor(
          "a new leader",
          async () => ((await stack.leader().catch(() => null)) ?? leader) !== leader,
          {
            timeoutMs: 60_000,
          },
        );
        await docker(["start", container]);
      },
      { sessionsMayEnd: true },
    );
  });

  it("the leader's container SIGKILLed", async () => {
    const leader = (await stack.leader())!;
    const container = `${stack.project}-${leader}`;
    await underFault(
      "leader SIGKILLed",
      () => docker(["kill", container]).then(() => undefined),
      async () => {
        await waitFor(
          "a new leader",
          async () => ((await stack.leader().catch(() => null)) ?? leader) !== leader,
          {
            timeoutMs: 90_000,
          },
        );
        await docker(["start", container]);
      },
      { sessionsMayEnd: true, inFlightMayFail: true },
    );
  });

  it("one etcd member SIGKILLed (the raft leader)", async () => {
    const member = await stack.etcdLeader();
    const container = await stack.container(member);
    await underFault(
      `etcd member ${member} SIGKILLed`,
      () => docker(["kill", container]).then(() => undefined),
      async () => {
        await sleep(5000);
        await docker(["start", container]);
      },
      { sessionsMayEnd: false },
    );
  });

  it("every etcd member stopped for 40 s", async () => {
    const containers = await Promise.all(ETCD_MEMBERS.map((m) => stack.container(m)));
    await underFault(
      "every etcd member stopped for 40 s",
      () => docker(["stop", "-t", "5", ...containers]).then(() => undefined),
      async () => {
        await sleep(40_000);
        await docker(["start", ...containers]);
      },
      { sessionsMayEnd: false },
    );
  });

  it("the leader cut off from every etcd member for 45 s", async () => {
    const leader = (await stack.leader())!;
    const pid = await containerPid(`${stack.project}-${leader}`);
    const etcdIps = await Promise.all(ETCD_MEMBERS.map(async (m) => ipOf(await stack.container(m))));
    const iptables = (args: string[]) => run("nsenter", ["-t", String(pid), "-n", "iptables", ...args]);
    await underFault(
      "the leader cut off from etcd for 45 s",
      async () => {
        for (const ip of etcdIps) {
          await iptables(["-I", "OUTPUT", "-d", ip, "-j", "DROP"]);
          await iptables(["-I", "INPUT", "-s", ip, "-j", "DROP"]);
        }
      },
      async () => {
        await sleep(45_000);
        for (const ip of etcdIps) {
          await iptables(["-D", "OUTPUT", "-d", ip, "-j", "DROP"]);
          await iptables(["-D", "INPUT", "-s", ip, "-j", "DROP"]);
        }
      },
      // When the cut heals, the old primary takes its lock again, answering /primary 503 for a
      // moment with a body that says failsafe mode: the router holds new clients and asks again
      // (router/README: the end of a failsafe period). Sometimes another member takes the lock
      // as the cut heals and the old primary demotes itself: its sessions end then.
      { sessionsMayEnd: true },
    );
  });

  it("the synchronous standby's container SIGKILLed", async () => {
    const standby = (await stack.members()).find((m) => SYNC_ROLES.includes(m.role))!.name;
    const container = `${stack.project}-${standby}`;
    await underFault(
      `the synchronous standby ${standby} SIGKILLed`,
      () => docker(["kill", container]).then(() => undefined),
      async () => {
        // Commits wait until Patroni names the other replica (its next loop); then it is back.
        await sleep(10_000);
        await docker(["start", container]);
      },
      // The router's sessions go to the primary, which stays: none ends.
      { sessionsMayEnd: false },
    );
  });

  it("a router worker SIGKILLed", async () => {
    const router = await stack.container("router");
    const view = (await (await fetch(`${stack.adminUrl}/routes`)).json()) as { workers: { pid: number }[] };
    const victim = view.workers[0]!.pid;
    await underFault(
      "a router worker SIGKILLed",
      // The image has no kill(1): node sends the signal.
      () =>
        docker(["exec", router, "node", "-e", `process.kill(${victim}, "SIGKILL")`]).then(() => undefined),
      () =>
        waitFor(
          "the supervisor's new worker",
          async () => {
            const v = (await (await fetch(`${stack.adminUrl}/routes`)).json()) as {
              workers: { pid: number }[];
            };
            return v.workers.length === 2 && !v.workers.some((w) => w.pid === victim);
          },
          { timeoutMs: 30_000 },
        ).then(() => undefined),
      // A connection that the dying worker had already accepted (in start-up, or in its
      // session) goes with it; those still in the kernel's queue move to the other worker.
      { sessionsMayEnd: true, inFlightMayFail: true },
    );
  });

  it("the registrator SIGKILLed", async () => {
    const registrator = await stack.container("registrator");
    const pid = await containerPid(registrator);
    await underFault(
      "the registrator SIGKILLed",
      async () => {
        process.kill(pid, "SIGKILL");
      },
      () =>
        waitFor(
          "Docker to restart the registrator",
          async () =>
            (await docker(["inspect", "-f", "{{.State.Running}} {{.RestartCount}}", registrator])) !==
            "true 0",
          { timeoutMs: 30_000 },
        ).then(() => undefined),
      { sessionsMayEnd: false },
    );
  });
});
