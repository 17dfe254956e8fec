/**
 * Synchronous mode keeps every acknowledged commit: a writer commits numbered
 * rows through the router while the primary's container is killed (SIGKILL);
 * afterwards every row the writer saw committed is on the new primary. The
 * writer's unavailability window is printed.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import pg from "pg";
import { ComposeStack, type ComposeStack as Stack } from "../harness/compose.js";
import { docker, ensureImages } from "../harness/docker.js";
import { waitFor } from "../harness/proc.js";

let stack: Stack;

interface WriterResult {
  readonly acked: number[];
  /** When each acknowledged commit returned (ms since epoch), in order. */
  readonly ackedAt: number[];
  readonly failures: number;
  /** Longest time between two acknowledged commits, and when it began. */
  readonly longestGapMs: number;
  readonly gapStartedAt: number;
}

/**
 * Commits rows 1, 2, 3, … one per transaction (autocommit) until `stop()`; a
 * row counts only once COMMIT returned. Errors drop the connection and retry
 * the same number with a new one.
 */
function startWriter(stopAfter: Promise<void>): Promise<WriterResult> {
  return (async () => {
    const acked: number[] = [];
    const ackedAt: number[] = [];
    let failures = 0;
    let last = Date.now();
    let longestGapMs = 0;
    let gapStartedAt = 0;
    let stopping = false;
    void stopAfter.then(() => {
      stopping = true;
    });
    let client: pg.Client | null = null;
    let n = 1;
    while (!stopping) {
      try {
        if (!client) {
          client = new pg.Client({ ...stack.pg(), connectionTimeoutMillis: 40_000, query_timeout: 40_000 });
          client.on("error", () => undefined);
          await client.connect();
        }
        await client.query("insert into acked (id) values ($1)", [n]);
        const now = Date.now();
        if (now - last > longestGapMs) {
          longestGapMs = now - last;
          gapStartedAt = last;
        }
        last = now;
        acked.push(n);
        ackedAt.push(now);
        n++;
      } catch {
        failures++;
        const c = client;
        client = null;
        await c?.end().catch(() => undefined);
        // The row may or may not have been committed; it was not acknowledged. Use a new number.
        n++;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await client?.end().catch(() => undefined);
    return { acked, ackedAt, failures, longestGapMs, gapStartedAt };
  })();
}

describe("no acknowledged write is lost when the primary is killed", { timeout: 15 * 60_000 }, () => {
  before(async () => {
    await ensureImages(["agent", "etcd", "registrator", "router"]);
    stack = await ComposeStack.up("nolost", { env: { PATRONI_SYNCHRONOUS_MODE: "true" }, cli: "v1" });
    await stack.waitReady();
    const c = new pg.Client(stack.pg());
    await c.connect();
    await c.query("create table acked (id int primary key, at timestamptz default clock_timestamp())");
    await c.end();
  });

  after(async () => {
    await stack?.destroy();
  });

  it("every row the writer saw committed survives docker kill of the primary", async () => {
    const members = await stack.members();
    const primary = members.find((m) => m.role === "leader")!.name as "pg1" | "pg2" | "pg3";
    const syncStandby = members.find((m) => m.role === "sync_standby")?.name;
    assert.ok(syncStandby, `a synchronous standby exists: ${JSON.stringify(members)}`);

    let stop!: () => void;
    const stopped = new Promise<void>((r) => {
      stop = r;
    });
    const writer = startWriter(stopped);
    // Let it commit for a while, then kill the primary's container outright.
    await new Promise((r) => setTimeout(r, 3000));
    const killedAt = Date.now();
    await docker(["kill", `${stack.project}-${primary}`]);

    // A new primary takes over and the router routes to it.
    const next = await waitFor(
      "a new leader",
      async () => {
        const l = (await stack.members()).find((m) => m.role === "leader" && m.state === "running");
        return l && l.name !== primary ? l.name : null;
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    // Keep writing a few seconds on the new primary, then stop.
    await waitFor(
      "the router ready on the new primary",
      async () =>
        (await fetch(`${stack.adminUrl}/readyz`, { signal: AbortSignal.timeout(2000) })).status === 200,
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    await new Promise((r) => setTimeout(r, 3000));
    stop();
    const result = await writer;

    const c = new pg.Client({ ...stack.pg(), connectionTimeoutMillis: 20_000 });
    await c.connect();
    const rows = (await c.query<{ id: number }>("select id from acked order by id")).rows.map((r) => r.id);
    await c.end();
    const present = new Set(rows);
    const lost = result.acked.filter((id) => !present.has(id));
    const beforeKill = result.ackedAt.filter((t) => t < killedAt).length;
    const afterKill = result.ackedAt.length - beforeKill;

    const gapS = (result.longestGapMs / 1000).toFixed(1);
    const fromKillS = ((result.gapStartedAt - killedAt) / 1000).toFixed(1);
    console.log(
      `no-write-lost: killed ${primary}; ${next} promoted (synchronous standby was ${syncStandby}); ` +
        `writer acknowledged ${result.acked.length} rows, ${result.failures} failed attempts; ` +
        `unavailability window ${gapS} s (longest gap between acknowledged commits, starting ${fromKillS} s after the kill); ` +
        `${rows.length} rows on the new primary, ${lost.length} acknowledged rows missing`,
    );
    assert.equal(next, syncStandby, "the synchronous standby is promoted");
    assert.ok(
      beforeKill > 0 && afterKill > 0,
      `commits before (${beforeKill}) and after (${afterKill}) the kill`,
    );
    assert.ok(Math.abs(result.gapStartedAt - killedAt) < 5000, "the longest gap is the failover");
    assert.deepEqual(lost, [], "every acknowledged row is present");
  });
});
