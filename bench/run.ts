#!/usr/bin/env node
/**
 * The benchmark, one command: `node dist/bench/run.js [--quick] [--parts ...]`.
 * Starts a lab (3-node Patroni cluster, HAProxy, router) for the data-path parts on
 * this host's Patroni and PostgreSQL, and another, its members containers of the agent
 * image (--failover-lab), for the switchover and failover parts; runs the parts in order,
 * prints the table and writes bench/results/<timestamp>.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { loadConfigOrExit } from "../shared/config.js";
import { runDataPath } from "./datapath.js";
import { runEvents } from "./failover.js";
import { runFastFailover } from "./fast-failover.js";
import { runFaults } from "./faults.js";
import { runHosts } from "./hosts.js";
import { Lab } from "./lab.js";
import { labLine, ttlFor } from "./lab-versions.js";
import { cpuBusy, load, machine, uptime } from "./machine.js";
import { runMemory } from "./memory.js";
import { benchSpec, FAILOVER_PARTS, HOST_LAB_PARTS, type Part, planOf } from "./options.js";
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
  labs: [],
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

/** Starts a lab, records its versions, runs `parts` on it in order, and destroys it. */
async function runOnLab(runtime: "host" | "container", parts: readonly Part[]): Promise<void> {
  const ttl = ttlFor(runtime, plan.ttl);
  const here = (name: Part, fn: () => Promise<void>) =>
    parts.includes(name) ? part(name, fn) : Promise.resolve();
  let lab: Lab | null = null;
  try {
    log(
      `starting the 3-node Patroni cluster (${runtime === "container" ? "containers of the agent image" : "this host's Patroni"}, ttl ${ttl} s), HAProxy and the router for ${parts.join(", ")}`,
    );
    try {
      lab = await Lab.start({ ttl, loopWait: 2, walSegmentSizeMb: plan.walSegmentSize, runtime });
    } catch (err) {
      for (const p of parts)
        results.errors[p] = `the lab did not start: ${(err as Error).message.split("\n")[0]}`;
      log(`lab (${runtime}) FAILED: ${(err as Error).stack ?? err}`);
      return;
    }
    const l = lab;
    const record = await l.versions(parts);
    results.labs?.push(record);
    log(`lab: ${labLine(record)}`);
    if (runtime === "host" || results.setup === undefined) results.setup = l.describe();
    if (runtime === "container") results.failoverSetup = l.describe();
    if (parts.includes("unplanned")) results.ttl = ttl;
    await here("datapath", async () => {
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
    await here("profile", async () => {
      results.profile = await runProfile(
        l,
        { seconds: plan.profileSeconds, scale: plan.scale, resultsDir: plan.out, stamp },
        log,
      );
    });
    await here("memory", async () => {
      results.memory = await runMemory(
        l,
        { connected: plan.memoryClients, held: plan.heldClients, before: plan.memoryBefore },
        log,
      );
    });
    await here("planned", async () => {
      results.planned = await runEvents(l, "planned", plan.switchovers, log);
    });
    await here("unplanned", async () => {
      results.unplanned = await runEvents(l, "unplanned", plan.failovers, log);
    });
    await here("latency", async () => {
      results.switchLatency = await runSwitchLatency(l, plan.latencySwitchovers, log);
    });
  } finally {
    if (lab) await lab.destroy().catch((err: Error) => log(`cleanup: ${err.message}`));
  }
}

async function main(): Promise<void> {
  const busy = await cpuBusy(3_000);
  (results.machine as Record<string, unknown>)["cpuBusyBeforeRun"] = busy;
  log(`CPU busy before the run (others' load): ${Math.round(busy * 100)}% of ${cpus().length} cores`);
  // The data-path parts stay on this host's packages; the switchover and failover parts run
  // where --failover-lab says (the agent image's containers by default).
  const onFailoverLab = plan.parts.filter((p) => FAILOVER_PARTS.includes(p));
  const labs: { runtime: "host" | "container"; parts: Part[] }[] = [];
  const hostParts = plan.parts.filter(
    (p) => HOST_LAB_PARTS.includes(p) || (plan.failoverLab === "host" && onFailoverLab.includes(p)),
  );
  if (hostParts.length > 0) labs.push({ runtime: "host", parts: hostParts });
  if (plan.failoverLab === "container" && onFailoverLab.length > 0)
    labs.push({ runtime: "container", parts: onFailoverLab });
  for (const spec of labs) await runOnLab(spec.runtime, spec.parts);
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
  await part("hosts", async () => {
    results.hosts = await runHosts(log);
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
