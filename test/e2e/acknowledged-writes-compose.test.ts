/**
 * No acknowledged write is lost, on the compose stack (docker-compose.yml: three agents,
 * etcd, the registrator, the router), in synchronous mode (the default) and with
 * asynchronous replication (PATRONI_SYNCHRONOUS_MODE=false), for every event of the
 * matrix (test/harness/stop-cells.ts):
 *
 *  - a planned stop right after a write while a replica has just joined (the other one stopped);
 *  - a planned stop under continuous writes through the router (psql and node-postgres);
 *  - SIGKILL of the leader's container (synchronous: the synchronous standby takes over
 *    with every write; asynchronous: the documented bound);
 *  - the grace period running out with no replica streaming.
 *
 * The two stacks run side by side (one with Compose v2, one with Debian's 1.29); each
 * stack's events run in order. Patroni's timings are shortened (ttl 20 s, the least Patroni 4 accepts) to keep the
 * file short; the events do not depend on them.
 */
// run-tests: heavy (two compose stacks side by side)
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { ACKED_TABLE_SQL, pgConfig } from "../harness/ack-writers.js";
import { AGENTS, type Agent, ComposeStack } from "../harness/compose.js";
import { docker, ensureImages } from "../harness/docker.js";
import { waitFor } from "../harness/proc.js";
import {
  type ClusterUnderTest,
  graceRunsOut,
  leaderStoppedUnderWrites,
  plannedStopJustJoined,
} from "../harness/stop-cells.js";

function underTest(stack: ComposeStack, synchronous: boolean): ClusterUnderTest {
  const etcdGet = async (key: string): Promise<string> =>
    docker(["exec", await stack.container("etcd1"), "etcdctl", "get", key, "--print-value-only"]);
  return {
    label: stack.project,
    synchronous,
    nodes: AGENTS,
    ttl: 20,
    loopWait: 2,
    gracePeriod: 60,
    containerOf: (n) => `${stack.project}-${n}`,
    // The lock holder, once its PostgreSQL runs as a primary: a replica that takes the lock for
    // a moment and is refused by the stop fence shows as `leader` in /cluster meanwhile.
    runningLeader: async () => {
      const l = await stack.leader().catch(() => null);
      if (l === null) return null;
      const me = await stack.rest<{ role?: string }>(l, "/patroni").catch(() => null);
      return me?.role === "master" || me?.role === "primary" ? l : null;
    },
    hasMember: async (n) => (await stack.members().catch(() => [])).some((m) => m.name === n),
    direct: async (n) => ({ ...stack.pg(), host: await stack.ipOf(n as Agent), port: 5432 }),
    viaRouter: () => stack.pg(),
    waitRouted: () =>
      waitFor(
        "a write through the router",
        async () => {
          const client = new pg.Client({ ...pgConfig(stack.pg()), connectionTimeoutMillis: 5000 });
          try {
            await client.connect();
            return !(await client.query<{ r: boolean }>("select pg_is_in_recovery() r")).rows[0]!.r;
          } finally {
            await client.end().catch(() => undefined);
          }
        },
        { timeoutMs: 90_000, intervalMs: 250 },
      ).then(() => undefined),
    waitStreaming: async (n) => {
      await waitFor(
        `${n} streaming`,
        async () => {
          const leader = await stack.leader().catch(() => null);
          if (!leader || leader === n) return false;
          const out = await stack.exec(leader, [
            "psql",
            "-Atc",
            "select application_name || ' ' || state from pg_stat_replication",
          ]);
          return out.split("\n").includes(`${n} streaming`);
        },
        { timeoutMs: 180_000, intervalMs: 1000 },
      );
    },
    freshNode: async (n) => {
      await stack.compose(["rm", "-s", "-f", n]);
      await docker(["volume", "rm", `${stack.project}_${n}-data`]);
      await stack.compose(["up", "-d", "--no-deps", n]);
    },
    statusOptime: async () =>
      Number(
        (JSON.parse((await etcdGet(`/service/${stack.project}/status`)) || "{}") as { optime?: number })
          .optime ?? 0,
      ),
    syncStandby: async () =>
      (
        JSON.parse((await etcdGet(`/service/${stack.project}/sync`)) || "{}") as {
          sync_standby?: string | null;
        }
      ).sync_standby ?? null,
    diagnostics: () => stack.diagnostics(),
  };
}

function matrix(synchronous: boolean): void {
  const mode = synchronous ? "synchronous (default)" : "asynchronous (opt-out)";
  describe(`compose stack, ${mode}`, { concurrency: 1 }, () => {
    let stack: ComposeStack;
    let t: ClusterUnderTest;
    before(async () => {
      await ensureImages(["agent", "etcd", "registrator", "router"]);
      stack = await ComposeStack.up(synchronous ? "acksync" : "ackasync", {
        cli: synchronous ? "v2" : "v1",
        env: {
          PATRONI_TTL: "20",
          PATRONI_LOOP_WAIT: "2",
          PATRONI_RETRY_TIMEOUT: "4",
          SWITCHOVER_TIMEOUT: "5",
          ...(synchronous ? {} : { PATRONI_SYNCHRONOUS_MODE: "false" }),
        },
      });
      await stack.waitReady();
      const c = new pg.Client(stack.pg());
      await c.connect();
      await c.query(ACKED_TABLE_SQL);
      await c.end();
      t = underTest(stack, synchronous);
    });
    after(async () => {
      await stack?.destroy();
    });

    it("a planned stop right after a write while a replica has just joined loses nothing", async () => {
      console.log(`[compose, ${mode}] just joined: ${(await plannedStopJustJoined(t)).note}`);
    });

    it("a planned stop under continuous writes loses nothing", async () => {
      console.log(`[compose, ${mode}] planned stop: ${(await leaderStoppedUnderWrites(t, "stop")).note}`);
    });

    it(
      synchronous
        ? "SIGKILL of the leader's container: the synchronous standby takes over and nothing is lost"
        : "SIGKILL of the leader's container loses at most what the documented bound allows",
      async () => {
        console.log(`[compose, ${mode}] SIGKILL: ${(await leaderStoppedUnderWrites(t, "kill")).note}`);
      },
    );

    it("when the grace period runs out, nobody leads until the old leader returns", async () => {
      console.log(`[compose, ${mode}] grace ran out: ${(await graceRunsOut(t)).note}`);
    });
  });
}

describe("no acknowledged write is lost: the compose stack", { timeout: 40 * 60_000, concurrency: 2 }, () => {
  matrix(true);
  matrix(false);
});
