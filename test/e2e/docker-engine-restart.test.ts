/**
 * The Docker engine restarted under the running stack: with --live-restore and
 * --userland-proxy=false (which `./pgha` gives the engine it starts, and the README
 * recommends), containers, their networks and published ports (kernel rules, no proxy
 * process) keep working while dockerd is away. Writers through the router (psql
 * and node-postgres, per-write and kept) lose nothing and see no failed new connection.
 *
 * This restarts this machine's engine through `./pgha restart-docker`: it needs the
 * engine to be one that ./pgha started (as on CI's fresh machine), and says so otherwise.
 */
// run-tests: alone (it stops and starts the machine's Docker engine, under every other file's containers)
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { ACKED_TABLE_SQL, missing, pgConfig, startWriters, summary } from "../harness/ack-writers.js";
import { ComposeStack } from "../harness/compose.js";
import { docker, ensureImages, REPO_ROOT } from "../harness/docker.js";
import { run, waitFor } from "../harness/proc.js";

let stack: ComposeStack;

describe("the Docker engine restarted under the stack", { timeout: 15 * 60_000 }, () => {
  before(async () => {
    assert.ok(
      existsSync(join(REPO_ROOT, ".cache", "pgha", "dockerd.pid")),
      "this test restarts the Docker engine with ./pgha restart-docker, which needs an engine that ./pgha started (./pgha setup starts one when none answers)",
    );
    // An engine ./pgha started before it gave these flags: restart it once with them.
    const pid = readFileSync(join(REPO_ROOT, ".cache", "pgha", "dockerd.pid"), "utf8").trim();
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    if (!cmdline.includes("--live-restore") || !cmdline.includes("--userland-proxy=false")) {
      await run(join(REPO_ROOT, "pgha"), ["restart-docker"], { cwd: REPO_ROOT, timeoutMs: 120_000 });
    }
    assert.equal(
      await docker(["info", "-f", "{{.LiveRestoreEnabled}}"]),
      "true",
      "the engine runs with --live-restore",
    );
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    stack = await ComposeStack.up("engine", { cli: "v2" });
    await stack.waitReady();
    const c = new pg.Client(pgConfig(stack.pg()));
    await c.connect();
    await c.query(ACKED_TABLE_SQL);
    await c.end();
  });

  after(async () => {
    await stack?.destroy();
  });

  it("the stack keeps serving while dockerd restarts: nothing lost, no failed new connection", async () => {
    const writers = startWriters(() => stack.pg(), "engine");
    const t0 = Date.now();
    let restartBegan = 0;
    let engineBack = 0;
    try {
      await new Promise((r) => setTimeout(r, 3000));
      restartBegan = Date.now();
      await run(join(REPO_ROOT, "pgha"), ["restart-docker"], { cwd: REPO_ROOT, timeoutMs: 120_000 });
      await waitFor("the engine to answer", () => docker(["info", "-f", "{{.ID}}"]).then(() => true), {
        timeoutMs: 60_000,
      });
      engineBack = Date.now();
      await new Promise((r) => setTimeout(r, 5000));
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
    }
    const leader = (await stack.leader())!;
    const lost = await missing({ ...stack.pg(), host: await stack.ipOf(leader), port: 5432 }, writers);
    const stopped = Math.max(...writers.map((w) => w.longestGapMs(t0)));
    // The documented bound (README: "The Docker engine"): dockerd rebuilds its iptables rules
    // for published ports when it starts, and new connections are refused for that moment.
    const connectFailures = writers.flatMap((w) => w.failures.filter((f) => f.phase === "connect"));
    const whileRebuilding = connectFailures.filter((f) => f.at >= restartBegan && f.at <= engineBack + 1000);
    const failedNew = writers.flatMap((w) =>
      w.failures
        .filter((f) => f.phase === "connect" && !whileRebuilding.includes(f))
        .map((f) => `${w.kind}: ${f.error}`),
    );
    const refusedFor =
      whileRebuilding.length === 0
        ? 0
        : Math.max(...whileRebuilding.map((f) => f.at)) -
          Math.min(...whileRebuilding.map((f) => f.startedAt));
    const ended = writers.flatMap((w) =>
      w.failures.filter((f) => f.phase === "session").map((f) => `${w.kind}: ${f.error}`),
    );
    console.log(
      `engine restart: writes stopped ${(stopped / 1000).toFixed(1)} s; ${whileRebuilding.length} new connections refused within ${(refusedFor / 1000).toFixed(1)} s while dockerd rebuilt its port rules, ${failedNew.length} other failed new connections; ${ended.length} sessions ended; ${lost.length} lost\n  ${summary(writers, t0)}`,
    );
    assert.deepEqual(lost, []);
    assert.deepEqual(failedNew, [], "no new connection fails outside the engine's restart");
    assert.ok(refusedFor <= 2000, `new connections refused for at most 2 s (${refusedFor} ms)`);
    assert.deepEqual(ended, [], "no session ends");
    // Every container still runs, none restarted.
    const restarts = await docker([
      "ps",
      "-q",
      "--filter",
      `label=com.docker.compose.project=${stack.project}`,
    ]);
    assert.ok(restarts.split("\n").filter(Boolean).length >= 9, "the stack's containers are all up");
  });
});
