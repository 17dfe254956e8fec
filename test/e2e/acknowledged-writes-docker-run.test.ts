/**
 * No acknowledged write is lost, on a cluster started with plain `docker run` as the
 * agent README documents it (etcd, a registrator with -ip/-hostname, two nodes, a
 * router), in synchronous mode (the image's default), in Patroni 4's quorum commit
 * (PATRONI_SYNCHRONOUS_MODE=quorum) and with asynchronous replication (the documented
 * opt-out), for every event of the matrix:
 *
 *  - a planned stop right after a write while the replica has just joined;
 *  - a planned stop under continuous writes (psql and node-postgres, per-write and kept);
 *  - SIGKILL of the leader's container (asynchronous: the documented bound);
 *  - the grace period running out with no replica streaming (nobody leads until the
 *    old leader returns).
 *
 * The clusters run side by side; each one's events run in order.
 */
// run-tests: heavy (two clusters side by side, three in all)
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { ACKED_TABLE_SQL, pgConfig } from "../harness/ack-writers.js";
import { docker, ensureImages, removeLabelled, uniquePrefix } from "../harness/docker.js";
import { DockerRunCluster, DockerRunHost } from "../harness/docker-run-cluster.js";
import { waitFor } from "../harness/proc.js";
import {
  type ClusterUnderTest,
  graceRunsOut,
  leaderStoppedUnderWrites,
  plannedStopJustJoined,
} from "../harness/stop-cells.js";

const prefix = uniquePrefix("ackrun");
const label = prefix.slice(0, -1);
let host: DockerRunHost;

const TIMINGS = {
  PATRONI_TTL: "20",
  PATRONI_LOOP_WAIT: "2",
  PATRONI_RETRY_TIMEOUT: "4",
  SWITCHOVER_TIMEOUT: "5",
};

type Mode = "synchronous (default)" | "quorum commit" | "asynchronous (opt-out)";
const MODE_SETTING: Readonly<Record<Mode, string>> = {
  "synchronous (default)": "true",
  "quorum commit": "quorum",
  "asynchronous (opt-out)": "false",
};

function underTest(c: DockerRunCluster, synchronous: boolean): ClusterUnderTest {
  return {
    label: c.scope,
    synchronous,
    nodes: ["john", "paul"],
    ttl: 20,
    loopWait: 2,
    gracePeriod: 60,
    containerOf: (n) => c.container(n),
    runningLeader: () => c.runningLeader(),
    hasMember: async (n) => (await c.member(n)) !== null,
    direct: (n) => c.direct(n),
    viaRouter: () => c.viaRouter(),
    waitRouted: () =>
      waitFor(
        "a write through the router",
        async () => {
          const client = new pg.Client({ ...pgConfig(c.viaRouter()), connectionTimeoutMillis: 5000 });
          try {
            await client.connect();
            await client.query("select 1 from acked limit 1");
            return !(await client.query<{ r: boolean }>("select pg_is_in_recovery() r")).rows[0]!.r;
          } finally {
            await client.end().catch(() => undefined);
          }
        },
        { timeoutMs: 90_000, intervalMs: 250 },
      ).then(() => undefined),
    waitStreaming: (n) => c.waitStreaming(n),
    freshNode: async (n) => {
      await docker(["rm", "-f", "-v", c.container(n)]).catch(() => undefined);
      await c.runNode(n);
    },
    statusOptime: async () => {
      const v = await host.etcd.get(`/service/${c.scope}/status`).string();
      return Number((JSON.parse(v ?? "{}") as { optime?: number }).optime ?? 0);
    },
    syncStandby: async () => {
      const v = await host.etcd.get(`/service/${c.scope}/sync`).string();
      return (JSON.parse(v ?? "{}") as { sync_standby?: string | null }).sync_standby ?? null;
    },
    diagnostics: () => c.logs(["john", "paul", "router"]),
  };
}

async function bootstrap(c: DockerRunCluster): Promise<void> {
  await c.runNode("john");
  await waitFor("john to lead", () => c.runningLeader().then((l) => l === "john"), {
    timeoutMs: 180_000,
    intervalMs: 500,
  });
  const client = new pg.Client(pgConfig(await c.direct("john")));
  await client.connect();
  await client.query(ACKED_TABLE_SQL);
  await client.end();
  await c.runRouter();
}

function matrix(mode: Mode): void {
  const synchronous = MODE_SETTING[mode] !== "false";
  describe(`docker run, ${mode}`, { concurrency: 1 }, () => {
    let c: DockerRunCluster;
    let t: ClusterUnderTest;
    before(async () => {
      c = new DockerRunCluster(
        host,
        `${prefix}${MODE_SETTING[mode] === "quorum" ? "quorum" : synchronous ? "sync" : "async"}`,
        {
          ...TIMINGS,
          ...(mode === "synchronous (default)" ? {} : { PATRONI_SYNCHRONOUS_MODE: MODE_SETTING[mode] }),
        },
      );
      t = underTest(c, synchronous);
      await bootstrap(c);
      // The cluster runs the mode it was given (Patroni's dynamic configuration).
      const config = JSON.parse(
        await docker(["exec", c.container("john"), "curl", "-fsS", "localhost:8008/config"]),
      ) as { synchronous_mode?: unknown };
      assert.equal(
        config.synchronous_mode,
        { true: true, quorum: "quorum", false: false }[MODE_SETTING[mode]],
      );
    });

    it("a planned stop right after a write while the replica has just joined loses nothing", async () => {
      const r = await plannedStopJustJoined(t);
      console.log(`[${mode}] just joined: ${r.note}`);
    });

    it("a planned stop under continuous writes loses nothing", async () => {
      const r = await leaderStoppedUnderWrites(t, "stop");
      console.log(`[${mode}] planned stop: ${r.note}`);
    });

    it(
      synchronous
        ? "SIGKILL of the leader's container loses nothing"
        : "SIGKILL of the leader's container loses at most what the documented bound allows",
      async () => {
        const r = await leaderStoppedUnderWrites(t, "kill");
        console.log(`[${mode}] SIGKILL: ${r.note}`);
      },
    );

    it("when the grace period runs out, nobody leads until the old leader returns", async () => {
      const r = await graceRunsOut(t);
      console.log(`[${mode}] grace ran out: ${r.note}`);
    });
  });
}

describe("no acknowledged write is lost: plain docker run", { timeout: 40 * 60_000, concurrency: 2 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    host = await DockerRunHost.start(prefix, label);
  });
  after(async () => {
    host?.close();
    await removeLabelled(label);
  });
  matrix("synchronous (default)");
  matrix("quorum commit");
  matrix("asynchronous (opt-out)");
});
