#!/usr/bin/env node
// Runs the test tiers (unit, integration, e2e) from dist/test/<tier>/ with node:test.
// Fails when a tier ran no test, when any test failed, and when any test was skipped or
// left todo: a skipped test is not a pass.
//
// Unit files run one at a time. Integration and e2e files run in two lanes (PGHA_TEST_LANES=N
// for another number, 1 for one at a time): most of their time is spent waiting for etcd's
// and Patroni's timers, so two files side by side take about half the time. For e2e the
// images are built once before the lanes start (each file then runs with PGHA_E2E_NO_BUILD=1).
// A file says in a line of its source what it cannot share:
//   // run-tests: alone  (why)   it runs with no other file (it restarts the Docker engine, …)
//   // run-tests: heavy  (why)   it runs beside no other heavy file (several engines, two stacks;
//                               in integration: a registrator that watches this machine's engine,
//                               or containers on it that such a registrator would see)
//   // run-tests: early  (why)   it shares, but starts before the others that share (a long file
//                               that would otherwise run on alone at the end)
// With lanes, a file's output is printed whole when it ends.
//
//   node scripts/run-tests.mjs unit integration e2e
//   TEST_FILTER=router node scripts/run-tests.mjs integration   # only files whose path (dist/test/…) matches
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
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

/**
 * The failed tests of a file's TAP output, with the first lines of their errors: printed again
 * after the summary, so that the end of a long log says what failed and why. A suite whose
 * subtests failed is not listed itself.
 */
function failures(tap, file) {
  const out = [];
  const lines = tap.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)not ok \d+ - (.*)$/.exec(lines[i]);
    if (!m) continue;
    const indent = m[1].length + 2;
    let error = [];
    let suite = false;
    for (let j = i + 1; j < lines.length; j++) {
      const line = lines[j];
      if (line.trim() === "...") break;
      if (line.slice(indent).startsWith("failureType: 'subtestsFailed'")) suite = true;
      const e = /^error: (.*)$/.exec(line.slice(indent));
      if (!e || line.length - line.trimStart().length !== indent) continue;
      if (e[1] === "|-" || e[1] === "|" || e[1] === ">-") {
        for (let k = j + 1; k < lines.length; k++) {
          const more = lines[k];
          if (more.trim() !== "" && more.length - more.trimStart().length <= indent) break;
          if (more.trim() !== "") error.push(more.trim());
        }
      } else error = [e[1].replace(/^'(.*)'$|^"(.*)"$/, "$1$2")];
      break;
    }
    if (!suite) out.push({ file, name: m[2], error: error.join(" ").slice(0, 400) });
  }
  return out;
}

function count(tap, label) {
  const m = new RegExp(`^# ${label} (\\d+)$`, "m").exec(tap);
  return m ? Number(m[1]) : 0;
}

// Each file runs in its own Node process with node:test's reporters: spec to our stdout, TAP
// to a pipe the counts are read from. Not `node --test --test-force-exit`: on Node 20 that
// drops the results of tests that ran (a tier's count varied from run to run). A file that
// keeps running after its tests ended, because a handle stays open, is ended by
// scripts/test-exit.mjs with a warning; one that runs past FILE_LIMIT_MS is stopped and fails.
const FILE_LIMIT_MS = 30 * 60_000;
const SUMMARY_END = /^# todo \d+$/m;
const OPEN_HANDLES = /^# open handles after the tests: (.*)$/m;
const preload = new URL("./test-exit.mjs", import.meta.url).href;

function runFile(file, { buffered = false, env = process.env } = {}) {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      [
        "--enable-source-maps",
        "--import",
        preload,
        "--test-reporter=spec",
        "--test-reporter-destination=stdout",
        "--test-reporter=tap",
        "--test-reporter-destination=stderr",
        file,
      ],
      { cwd: root, env, stdio: ["inherit", buffered ? "pipe" : "inherit", "pipe"] },
    );
    let tap = "";
    let out = "";
    child.stdout?.on("data", (chunk) => {
      out += chunk;
    });
    let overran = false;
    const limit = setTimeout(() => {
      overran = true;
      child.kill("SIGTERM");
      setTimeout(() => child.kill("SIGKILL"), 15_000).unref();
    }, FILE_LIMIT_MS);
    child.stderr.on("data", (chunk) => {
      tap += chunk;
    });
    child.on("close", (code, signal) => {
      clearTimeout(limit);
      resolve({ file, tap, out, code, signal, overran });
    });
  });
}

async function oneByOne(files) {
  const out = [];
  for (const file of files) out.push(await runFile(file));
  return out;
}

function lanesWanted() {
  const raw = process.env.PGHA_TEST_LANES ?? "2";
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 8) {
    console.error(`PGHA_TEST_LANES=${JSON.stringify(raw)} is not a number of lanes (accepted: 1 to 8)`);
    process.exit(2);
  }
  return n;
}

/** A file's `// run-tests: alone|heavy|early` line, from its TypeScript source. */
function laneClass(file) {
  const source = join(root, file.replace(/^dist\//, "").replace(/\.js$/, ".ts"));
  const m = /^\/\/ run-tests: (alone|heavy|early)\b/m.exec(readFileSync(source, "utf8"));
  return m ? m[1] : "shared";
}

/**
 * Runs the files `lanes` at a time: the files that run alone first, then the heavy ones, then
 * the early ones, then the rest, each started as soon as a lane is free and what runs allows it.
 */
async function inLanes(tier, files, lanes, problems) {
  if (tier === "e2e" && process.env.PGHA_E2E_NO_BUILD !== "1") {
    console.log("building the images once for every lane (scripts/build-images.sh)");
    const t0 = Date.now();
    const b = spawnSync(join(root, "scripts", "build-images.sh"), [], { cwd: root, stdio: "inherit" });
    if (b.status !== 0) {
      problems.push(`scripts/build-images.sh exited ${b.status ?? b.signal}: no e2e file ran`);
      return [];
    }
    console.log(`images built in ${Math.round((Date.now() - t0) / 1000)} s`);
  }
  const env = tier === "e2e" ? { ...process.env, PGHA_E2E_NO_BUILD: "1" } : process.env;
  const rank = { alone: 0, heavy: 1, early: 2, shared: 3 };
  const queue = files
    .map((file) => ({ file, kind: laneClass(file) }))
    .sort((a, b) => rank[a.kind] - rank[b.kind]);
  const running = new Set();
  const results = [];
  console.log(
    `${files.length} file(s) in ${lanes} lanes (alone first, then heavy, then early, then the rest)`,
  );
  await new Promise((done) => {
    const fits = (f) => {
      if (running.size >= lanes) return false;
      const kinds = [...running].map((r) => r.kind);
      if (f.kind === "alone") return running.size === 0;
      if (kinds.includes("alone")) return false;
      return !(f.kind === "heavy" && kinds.includes("heavy"));
    };
    const next = () => {
      if (queue.length === 0 && running.size === 0) return done();
      for (let i = 0; i < queue.length; i++) {
        const f = queue[i];
        if (!fits(f)) {
          // One that runs alone waits for the lanes to empty: nothing starts past it.
          if (f.kind === "alone") break;
          continue;
        }
        queue.splice(i--, 1);
        running.add(f);
        const t0 = Date.now();
        console.log(`started ${f.file}${f.kind === "shared" ? "" : ` (${f.kind})`}`);
        runFile(f.file, { buffered: true, env }).then((r) => {
          running.delete(f);
          console.log(`\n--- ${f.file}: ended after ${Math.round((Date.now() - t0) / 1000)} s ---`);
          process.stdout.write(r.out);
          results.push(r);
          next();
        });
      }
    };
    next();
  });
  return results;
}

const summary = [];
const failedTests = [];
let failed = false;
const started = Date.now();
for (const tier of tiers) {
  const files = findTests(join(root, "dist", "test", tier))
    .map((f) => relative(root, f))
    .filter((f) => !filter || filter.test(f))
    .filter((f) => {
      // tsc leaves the output of a deleted test behind: run only tests that have a source.
      const source = f.replace(/^dist\//, "").replace(/\.js$/, ".ts");
      if (existsSync(join(root, source))) return true;
      console.log(`skipping ${f}: ${source} no longer exists (left over from an earlier build)`);
      return false;
    });
  const t0 = Date.now();
  console.log(`\n=== ${tier}: ${files.length} file(s) ===`);
  const r = { tier, files: files.length, tests: 0, pass: 0, fail: 0, cancelled: 0, skipped: 0, todo: 0 };
  const problems = [];
  const lanes = tier === "unit" ? 1 : lanesWanted();
  const results = lanes > 1 ? await inLanes(tier, files, lanes, problems) : await oneByOne(files);
  for (const f of results) {
    const file = f.file;
    failedTests.push(...failures(f.tap, file));
    for (const k of ["tests", "pass", "fail", "cancelled", "skipped", "todo"]) r[k] += count(f.tap, k);
    const complete = SUMMARY_END.test(f.tap);
    const open = OPEN_HANDLES.exec(f.tap);
    if (open) console.log(`warning: ${file} kept running after its tests ended (open: ${open[1]}); ended`);
    if (f.overran) problems.push(`${file} ran past ${FILE_LIMIT_MS / 60_000} min and was stopped`);
    else if (!complete) {
      problems.push(`${file} ended without reporting its tests (exit ${f.code ?? f.signal})`);
      process.stderr.write(f.tap.slice(-4000));
    } else if (f.code !== 0 && count(f.tap, "fail") === 0) {
      problems.push(`${file} exited ${f.code ?? f.signal}`);
    }
  }
  r.seconds = Math.round((Date.now() - t0) / 100) / 10;
  if (r.tests === 0) problems.push("ran no test");
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
if (failedTests.length > 0) {
  console.log("failed tests:");
  for (const t of failedTests.slice(0, 10)) console.log(`  ${t.file}: ${t.name}\n    ${t.error}`);
  if (failedTests.length > 10) console.log(`  … and ${failedTests.length - 10} more (above)`);
}
process.exit(failed ? 1 : 0);
