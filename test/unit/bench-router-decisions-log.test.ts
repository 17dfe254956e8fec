import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { describe, it } from "node:test";
import { cpuTimeUs, routerDecisions } from "../../bench/endpoints.js";

describe("router decisions from its log", () => {
  const log = [
    '{"level":"info","time":"2026-11-28T15:04:59.731Z","msg":"admin listening"}',
    '{"level":"warn","time":"2026-11-28T15:05:00.000Z","route":"b","action":"pause","target":"pg2","reason":"switchover from pg2 to pg1 pending","msg":"primary decision"}',
    "not json",
    '{"level":"warn","time":"2026-11-28T15:05:01.500Z","from":"pg2","to":null,"sessions":3,"msg":"routed primary changed; closing its sessions"}',
    '{"level":"info","time":"2026-11-28T15:05:02.900Z","action":"route","target":"pg1","reason":"pg1 holds the leader key and answers /primary","msg":"primary decision"}',
  ].join("\n");
  const at = (iso: string) => Date.parse(iso);

  it("keeps the decision lines within the window, with their time, action and reason", () => {
    const d = routerDecisions(log, at("2026-11-28T15:05:00.000Z"), at("2026-11-28T15:05:02.000Z"));
    assert.deepEqual(
      d.map((x) => [x.t - at("2026-11-28T15:05:00.000Z"), x.action ?? x.msg, x.target ?? null]),
      [
        [0, "pause", "pg2"],
        [1500, "routed primary changed; closing its sessions", null],
      ],
    );
  });
});

describe("a process's CPU time from /proc", () => {
  it("grows by the CPU a busy child burns, and hardly at all while it sleeps", async () => {
    // the child says "ready", sleeps 1 s, burns 300 ms of CPU, says "burnt" and waits to be killed
    const child = spawn(
      process.execPath,
      [
        "-e",
        "process.stdout.write('ready\\n'); setTimeout(() => { const t0 = process.cpuUsage(); for (;;) { const u = process.cpuUsage(t0); if (u.user + u.system >= 300000) break; } process.stdout.write('burnt\\n'); setInterval(() => {}, 1000); }, 1000)",
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    try {
      const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
      assert.equal((await lines.next()).value, "ready");
      const start = cpuTimeUs(child.pid!);
      await new Promise((r) => setTimeout(r, 200));
      const asleep = cpuTimeUs(child.pid!) - start;
      assert.equal((await lines.next()).value, "burnt");
      const burnt = cpuTimeUs(child.pid!) - start;
      assert.ok(asleep < 50_000, `${asleep} µs while the child slept`);
      // the child looped until its own account said 300 ms of CPU, however long that took
      assert.ok(burnt >= 300_000, `${burnt} µs after the child burnt 300 ms`);
      assert.ok(burnt < 300_000 + 150_000, `${burnt} µs: more than the child's 300 ms and its idle second`);
    } finally {
      child.kill("SIGKILL");
    }
  });

  it("names the process when it does not exist", () => {
    assert.throws(() => cpuTimeUs(2 ** 22 + 1), /ENOENT.*\/proc\/4194305\/task/);
  });
});
