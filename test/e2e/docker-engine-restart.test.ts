/**
 * The Docker engine restarted under the running stack: with --live-restore (which `./pgha`
 * gives the engine it starts, and the README recommends), containers, their networks and
 * published ports keep working while dockerd is away. Writers through the router (psql
 * and node-postgres, per-write and kept) lose nothing and see no failed new connection.
 *
 * This restarts this machine's engine through `./pgha restart-docker`: it needs the
 * engine to be one that ./pgha started (as on CI's fresh machine), and says so otherwise.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
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
    const info = await docker(["info", "-f", "{{.LiveRestoreEnabled}}"]);
    if (info !== "true") {
      // An engine started before live-restore was the default here: restart it once with it.
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
    try {
      await new Promise((r) => setTimeout(r, 3000));
      await run(join(REPO_ROOT, "pgha"), ["restart-docker"], { cwd: REPO_ROOT, timeoutMs: 120_000 });
      await waitFor("the engine to answer", () => docker(["info", "-f", "{{.ID}}"]).then(() => true), {
        timeoutMs: 60_000,
      });
      await new Promise((r) => setTimeout(r, 5000));
    } finally {
      await Promise.all(writers.map((w) => w.stop()));
    }
    const leader = (await stack.leader())!;
    const lost = await missing({ ...stack.pg(), host: await stack.ipOf(leader), port: 5432 }, writers);
    const stopped = Math.max(...writers.map((w) => w.longestGapMs(t0)));
    const failedNew = writers.flatMap((w) =>
      w.failures.filter((f) => f.phase === "connect").map((f) => `${w.kind}: ${f.error}`),
    );
    const ended = writers.flatMap((w) =>
      w.failures.filter((f) => f.phase === "session").map((f) => `${w.kind}: ${f.error}`),
    );
    console.log(
      `engine restart: writes stopped ${(stopped / 1000).toFixed(1)} s; ${failedNew.length} failed new connections; ${ended.length} sessions ended; ${lost.length} lost\n  ${summary(writers, t0)}`,
    );
    assert.deepEqual(lost, []);
    assert.deepEqual(failedNew, [], "no new connection fails");
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
