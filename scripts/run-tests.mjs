#!/usr/bin/env node
// Runs the test tiers (unit, integration, e2e) from dist/test/<tier>/ with node:test,
// one file at a time for the service tiers. Fails when a tier ran no test, when any
// test failed, and when any test was skipped or left todo: a skipped test is not a pass.
//
//   node scripts/run-tests.mjs unit integration e2e
//   TEST_FILTER=router node scripts/run-tests.mjs integration   # only files whose path matches
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const TIERS = ["unit", "integration", "e2e"];
const root = new URL("..", import.meta.url).pathname;
const tiers = process.argv.slice(2);
if (tiers.length === 0 || tiers.some((t) => !TIERS.includes(t))) {
  console.error(`usage: run-tests.mjs TIER... (tiers: ${TIERS.join(", ")})`);
  process.exit(2);
}
const filter = process.env.TEST_FILTER ? new RegExp(process.env.TEST_FILTER) : null;

function findTests(dir) {
  let out = [];
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries.sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(findTests(p));
    else if (name.endsWith(".test.js")) out.push(p);
  }
  return out;
}

function count(tap, label) {
  const m = new RegExp(`^# ${label} (\\d+)$`, "m").exec(tap);
  return m ? Number(m[1]) : 0;
}

const summary = [];
let failed = false;
const started = Date.now();
for (const tier of tiers) {
  const files = findTests(join(root, "dist", "test", tier)).filter((f) => !filter || filter.test(f));
  const t0 = Date.now();
  console.log(`\n=== ${tier}: ${files.length} file(s) ===`);
  let status = 1;
  let tap = "";
  if (files.length > 0) {
    const args = [
      "--enable-source-maps",
      "--test",
      // A test file whose handles stay open must not hang the run.
      "--test-force-exit",
      "--test-reporter=spec",
      "--test-reporter-destination=stdout",
      // The counts come from a TAP report on stderr, a pipe written synchronously: a report
      // to a file loses its closing counts when --test-force-exit ends the process.
      "--test-reporter=tap",
      "--test-reporter-destination=stderr",
      // Service tiers share dockerd, ports and CPU: one file at a time.
      `--test-concurrency=${tier === "unit" ? 2 : 1}`,
      ...files.map((f) => relative(root, f)),
    ];
    const r = spawnSync(process.execPath, args, {
      cwd: root,
      stdio: ["inherit", "inherit", "pipe"],
      maxBuffer: 512 * 1024 * 1024,
    });
    status = r.status ?? 1;
    tap = r.stderr?.toString() ?? "";
    if (status !== 0 && !/^# tests \d+$/m.test(tap)) process.stderr.write(tap.slice(-4000));
  }
  const r = {
    tier,
    files: files.length,
    tests: count(tap, "tests"),
    pass: count(tap, "pass"),
    fail: count(tap, "fail"),
    cancelled: count(tap, "cancelled"),
    skipped: count(tap, "skipped"),
    todo: count(tap, "todo"),
    seconds: Math.round((Date.now() - t0) / 100) / 10,
  };
  const problems = [];
  if (r.tests === 0) problems.push("ran no test");
  if (status !== 0) problems.push(`runner exited ${status}`);
  if (r.fail > 0) problems.push(`${r.fail} failed`);
  if (r.cancelled > 0) problems.push(`${r.cancelled} cancelled`);
  if (r.skipped > 0) problems.push(`${r.skipped} skipped`);
  if (r.todo > 0) problems.push(`${r.todo} todo`);
  r.ok = problems.length === 0;
  r.problems = problems;
  if (!r.ok) failed = true;
  summary.push(r);
}

console.log("\n=== test summary ===");
for (const r of summary) {
  console.log(
    `${r.ok ? "PASS" : "FAIL"} ${r.tier.padEnd(12)} files ${String(r.files).padStart(3)}  tests ${String(r.tests).padStart(4)}  pass ${String(r.pass).padStart(4)}  ${String(r.seconds).padStart(7)} s${r.ok ? "" : `  (${r.problems.join(", ")})`}`,
  );
}
console.log(`total ${Math.round((Date.now() - started) / 1000)} s`);
const sum = (k) => summary.reduce((n, r) => n + r[k], 0);
const skipped = sum("skipped") + sum("todo");
console.log(
  `tests: ${sum("pass")} passed, ${sum("fail") + sum("cancelled")} failed${skipped ? `, ${skipped} skipped` : ""}`,
);
process.exit(failed ? 1 : 0);
