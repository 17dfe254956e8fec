#!/usr/bin/env node
/**
 * The benchmark, one command: `node dist/bench/run.js [--quick] [--parts ...]`.
 * Starts the lab (3-node Patroni cluster, HAProxy, router) once, runs the parts in
 * order, prints the table and writes bench/results/<timestamp>.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { loadConfigOrExit } from "../shared/config.js";
import { runDataPath } from "./datapath.js";
import { runEvents } from "./failover.js";
import { runFastFailover } from "./fast-failover.js";
import { runFaults } from "./faults.js";
import { Lab } from "./lab.js";
import { cpuBusy, load, machine, uptime } from "./machine.js";
import { runMemory } from "./memory.js";
import { benchSpec, type Part, planOf } from "./options.js";
import { runProfile } from "./profile.js";
import { runRegistrator } from "./registrator-part.js";
import { type Results, render } from "./report.js";
import { runSwitchLatency } from "./switch-latency.js";
import { finishWorkDir } from "./workdir.js";

const { config } = loadConfigOrExit(benchSpec);
const plan = planOf(config);
const t0 = Date.now();
const log = (m: string) => process.stderr.write(`[bench +${Math.round((Date.now() - t0) / 1000)}s] ${m}\n`);
const stamp = new Date().toISOString().replace(/[:.]/g, "-");
mkdirSync(plan.out, { recursive: true });

const results: Results = {
  machine: machine(),
  options: { ...plan },
  ttl: plan.ttl,
  errors: {},
};
const loads: Record<string, { before: number[]; after: number[]; seconds: number }> = {};
(results.machine as Record<string, unknown>)["loadByPart"] = loads;

async function part(name: Part, fn: () => Promise<void>): Promise<void> {
  if (!plan.parts.includes(name)) return;
  const before = load();
  const start = Date.now();
  log(`${name}: start (load ${before.join(" ")})`);
  try {
    await fn();
  } catch (err) {
    results.errors[name] = (err as Error).message.split("\n")[0] ?? String(err);
    log(`${name}: FAILED: ${(err as Error).stack ?? err}`);
  }
  loads[name] = { before, after: load(), seconds: Math.round((Date.now() - start) / 1000) };
}

function save(): string {
  const file = join(plan.out, `${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(results, (_k, v) => (Number.isNaN(v) ? null : v), 2)}\n`);
  return file;
}

async function main(): Promise<void> {
  const busy = await cpuBusy(3_000);
  (results.machine as Record<string, unknown>)["cpuBusyBeforeRun"] = busy;
  log(`CPU busy before the run (others' load): ${Math.round(busy * 100)}% of ${cpus().length} cores`);
  const needsLab = plan.parts.some((p) => p !== "registrator" && p !== "faults" && p !== "fastfailover");
  let lab: Lab | null = null;
  try {
    if (needsLab) {
      log("starting the 3-node Patroni cluster, HAProxy and the router");
      lab = await Lab.start({ ttl: plan.ttl, loopWait: 2, walSegmentSizeMb: plan.walSegmentSize });
      const l = lab;
      results.setup = l.describe();
      await part("datapath", async () => {
        results.dataPath = await runDataPath(
          l,
          {
            rounds: plan.rounds,
            seconds: plan.seconds,
            clients: plan.clients,
            workloads: plan.workloads,
            scale: plan.scale,
          },
          log,
        );
      });
      await part("profile", async () => {
        results.profile = await runProfile(
          l,
          { seconds: plan.profileSeconds, scale: plan.scale, resultsDir: plan.out, stamp },
          log,
        );
      });
      await part("memory", async () => {
        results.memory = await runMemory(l, { connected: plan.memoryClients, held: plan.heldClients }, log);
      });
      await part("planned", async () => {
        results.planned = await runEvents(l, "planned", plan.switchovers, log);
      });
      await part("unplanned", async () => {
        results.unplanned = await runEvents(l, "unplanned", plan.failovers, log);
      });
      await part("latency", async () => {
        results.switchLatency = await runSwitchLatency(l, plan.latencySwitchovers, log);
      });
    }
  } finally {
    if (lab) await lab.destroy().catch((err: Error) => log(`cleanup: ${err.message}`));
  }
  await part("registrator", async () => {
    results.registrator = await runRegistrator({
      starts: plan.registratorStarts,
      sync: plan.registratorSync,
    });
  });
  await part("faults", async () => {
    results.faults = await runFaults({ ttl: plan.ttl, faults: plan.faults, rounds: plan.faultRounds }, log);
  });
  await part("fastfailover", async () => {
    results.fastFailover = await runFastFailover(
      { kills: plan.ffKills, ttl: plan.ttl, stack: plan.ffStack, modes: plan.ffModes },
      log,
    );
  });
  const m = results.machine as Record<string, unknown>;
  m["loadAfter"] = load();
  m["uptimeAfter"] = uptime();
  m["durationSeconds"] = Math.round((Date.now() - t0) / 1000);
  const kept = finishWorkDir(Object.keys(results.errors).length > 0);
  if (kept) log(`logs of the child processes kept in ${kept}`);
  const file = save();
  process.stdout.write(render(results));
  process.stdout.write(`\nJSON: ${file}\n`);
  process.exitCode = Object.keys(results.errors).length > 0 ? 1 : 0;
}

main().catch((err: Error) => {
  log(`failed: ${err.stack ?? err}`);
  results.errors["run"] = err.message;
  try {
    log(`logs of the child processes kept in ${finishWorkDir(true)}`);
    log(`partial results: ${save()}`);
  } catch {}
  process.exit(1);
});
